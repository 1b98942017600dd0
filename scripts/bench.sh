#!/usr/bin/env bash
# `make bench`: release builds of the platform and a plain hyper hello-world baseline, measured
# side by side in one run on this machine, printed as a table with ratios and the targets of
# DESIGN section 8. Uses its own database, queue names and ports; leaves nothing behind.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-64}
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bin="$target_dir/release"
pg_admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}

scripts/ensure-services.sh >/dev/null
echo "[bench] building release binaries"
cargo build --release --locked -q -p auth-svc -p gateway -p authstack-dev -p authstack-bench

id=$(python3 -c 'import uuid; print(uuid.uuid4().hex[:12])')
db="authstack_bench_$id"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  "$bin/authstack-dev" amqp-delete --queue "bench.rpc.$id" --exchange "bench.events.$id" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

psql "$pg_admin" -qc "CREATE DATABASE $db"
"$bin/authstack-dev" keygen --dir "$work/keys" >/dev/null
gw_port=$(free_port); hello_port=$(free_port)
export DATABASE_URL="${pg_admin%/*}/$db" AUTH_KEY_DIR="$work/keys" LOG_FORMAT=json RUST_LOG=warn
export AUTH_RPC_QUEUE="bench.rpc.$id" AUTH_EVENTS_EXCHANGE="bench.events.$id"
export AUTH_ISSUER="http://127.0.0.1:$gw_port" GATEWAY_LISTEN="127.0.0.1:$gw_port"
"$bin/hello" --listen "127.0.0.1:$hello_port" >"$work/hello.log" 2>&1 & pids+=($!)
# Two replicas share this machine's cores: each hashes one password at a time, so together they
# run as many argon2 computations as the raw baseline has threads (no oversubscription).
cpus=$(nproc)
export AUTH_HASHING_THREADS=$(( cpus / 2 > 0 ? cpus / 2 : 1 ))
for i in 1 2; do
  AUTH_HTTP_LISTEN="127.0.0.1:$(free_port)" AUTH_INSTANCE_NAME="bench-auth-$i" "$bin/auth-svc" >"$work/auth-$i.log" 2>&1 & pids+=($!)
done
"$bin/gateway" >"$work/gateway.log" 2>&1 & pids+=($!)
# A second gateway on the same auth-svc replicas with RabbitMQ's direct reply-to, to compare.
direct_port=$(free_port)
GATEWAY_LISTEN="127.0.0.1:$direct_port" GATEWAY_RPC_REPLY_MODE=direct GATEWAY_INSTANCE_NAME=gateway-direct \
  "$bin/gateway" >"$work/gateway-direct.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$gw_port/readyz" >/dev/null 2>&1 && curl -fs "http://127.0.0.1:$direct_port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
for _ in $(seq 1 50); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' -d '{"login":"","password":""}' "http://127.0.0.1:$gw_port/api/v1/auth/login")
  [ "$code" != 503 ] && break; sleep 0.1
done

results="$work/results.jsonl"
run() { # name scenario base connections [extra args]
  local name=$1 scenario=$2 base=$3 conns=$4; shift 4
  echo "[bench] $name ($conns connections, ${DURATION}s)" >&2
  local before after line
  before=$(python3 scripts/cpu-snapshot.py)
  line=$("$bin/loadgen" --base "$base" --scenario "$scenario" --connections "$conns" --duration "$DURATION" --warmup 2 --name "$name" "$@" | tail -n1)
  after=$(python3 scripts/cpu-snapshot.py)
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); a=json.loads(sys.argv[3]); r["cpu_s"]={k: round(a[k]-b[k],2) for k in a}; print(json.dumps(r))' "$line" "$before" "$after" >>"$results"
}
gw="http://127.0.0.1:$gw_port"
# The baseline and the verify-only path alternate (median of ROUNDS each), so background noise
# on the machine hits both alike.
for round in $(seq 1 "${BENCH_ROUNDS:-3}"); do
  run "hello-baseline#$round" hello "http://127.0.0.1:$hello_port" "$CONNS"
  run "session#$round" session "$gw" "$CONNS" --users 64
done
run users-me me "$gw" "${ME_CONNECTIONS:-32}" --users 64
run users-me-direct me "http://127.0.0.1:$direct_port" "${ME_CONNECTIONS:-32}" --users 64
run refresh refresh "$gw" "$CONNS" --users 64
echo "[bench] argon2id raw verify rate (${DURATION}s)" >&2
"$bin/argon2-rate" --seconds "$DURATION" >>"$results"
run login login "$gw" 16 --users 16

python3 - "$results" <<'PY'
import json, sys
rows, rounds = {}, {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        r = json.loads(line)
        if "#" in r["name"]:
            rounds.setdefault(r["name"].split("#")[0], []).append(r)
        else:
            rows[r["name"]] = r
for name, runs in rounds.items():
    runs.sort(key=lambda r: r["rps"])
    rows[name] = dict(runs[len(runs) // 2], name=name, rounds=[round(r["rps"]) for r in runs])
hello, argon = rows["hello-baseline"], rows["argon2id-verify"]
def fmt(r): return f'{r["rps"]:>10.0f} {r["p50_ms"]:>8.2f} {r["p99_ms"]:>8.2f} {r["failed"]:>7}'
print()
print(f'{"path":<28} {"req/s":>10} {"p50 ms":>8} {"p99 ms":>8} {"failed":>7}   target')
print(f'{"hyper hello-world (baseline)":<28} {fmt(hello)}')
checks = []
s = rows["session"]; ratio = s["rps"] / hello["rps"]
checks.append(ratio >= 0.5 and s["p99_ms"] < 5)
print(f'{"GET /api/v1/auth/session":<28} {fmt(s)}   {ratio:.2f}x baseline (>= 0.5x, p99 < 5 ms) {"PASS" if checks[-1] else "FAIL"}')
print(f'{"":<28} (medians of rounds: baseline {hello["rounds"]}, session {s["rounds"]} req/s)')
m = rows["users-me"]; checks.append(m["rps"] >= 5000 and m["p99_ms"] < 20)
print(f'{"GET /api/v1/users/me":<28} {fmt(m)}   >= 5000/s, p99 < 20 ms {"PASS" if checks[-1] else "FAIL"}')
md = rows["users-me-direct"]
print(f'{"  same, direct reply-to":<28} {fmt(md)}   {md["rps"] / m["rps"]:.2f}x the exclusive reply queue')
r = rows["refresh"]; checks.append(r["rps"] >= 1500)
print(f'{"POST /api/v1/auth/refresh":<28} {fmt(r)}   >= 1500/s {"PASS" if checks[-1] else "FAIL"}')
l = rows["login"]; ratio = l["rps"] / argon["rate"]; checks.append(ratio >= 0.85)
print(f'{"argon2id verify (raw, " + str(argon["threads"]) + " thr)":<28} {argon["rate"]:>10.1f}')
print(f'{"POST /api/v1/auth/login":<28} {fmt(l)}   {ratio:.2f}x raw argon2 (>= 0.85x) {"PASS" if checks[-1] else "FAIL"}')
print()
print("CPU per request by component (microseconds; includes the 2 s warm-up, so slightly high):")
comps = ["gateway", "auth-svc", "postgres", "rabbitmq", "loadgen"]
print(f'{"path":<28} ' + " ".join(f"{c:>9}" for c in comps))
for name in ["hello-baseline", "session", "users-me", "refresh", "login"]:
    r = rows[name]
    n = r["rps"] * (r["seconds"] + 2)
    print(f'{name:<28} ' + " ".join(f'{r["cpu_s"][c] / n * 1e6:>9.0f}' for c in comps))
print()
failed = sum(r.get("failed", 0) for r in rows.values())
print(f"{sum(checks)}/{len(checks)} targets met; {failed} failed requests")
PY
