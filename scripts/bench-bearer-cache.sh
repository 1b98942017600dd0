#!/usr/bin/env bash
# What auth-svc's own verification of the forwarded access token costs per call: GET
# /api/v1/users/me (gateway → RPC → auth-svc verifies the token, checks the session, reads the
# account) with auth-svc's verified-token cache on (AUTH_TOKEN_CACHE_CAPACITY=10000) and off (0:
# every call checks the signature), alternating ROUNDS times in one run; prints the medians and
# their ratio. PROFILE=release (default) or debug.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
profile=${PROFILE:-release}
DURATION=${BENCH_DURATION:-8}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-32}
pg_admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
flags=(); [ "$profile" = release ] && flags+=(--release)
cargo build "${flags[@]}" --locked -q -p auth-svc -p gateway -p authstack-dev -p authstack-bench
bin="${CARGO_TARGET_DIR:-$root/target}/$profile"
id=$(python3 -c 'import uuid; print(uuid.uuid4().hex[:12])')
db="authstack_bench_$id"
work=$(mktemp -d)
pids=()
auth_pids=()
eval "$(python3 scripts/broker-users.py env "bench-$id")"
cleanup() {
  for p in "${pids[@]}" "${auth_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  "$bin/authstack-dev" amqp-delete --queue "$AUTH_RPC_QUEUE" --exchange "$AUTH_RPC_EXCHANGE" \
    --exchange "$AUTH_EVENTS_EXCHANGE" >/dev/null 2>&1 || true
  [ -n "${KEEP_LOGS:-}" ] && cp "$work"/*.log "$KEEP_LOGS"/ 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

psql "$pg_admin" -qc "CREATE DATABASE $db"
"$bin/authstack-dev" keygen --dir "$work/keys" >/dev/null
port=$(free_port)
# Logs as deployed: JSON at each binary's default level (info); a caller's RUST_LOG does not apply.
unset RUST_LOG
export DATABASE_URL="${pg_admin%/*}/$db" AUTH_KEY_DIR="$work/keys" LOG_FORMAT=json
export AUTH_ISSUER="http://127.0.0.1:$port" GATEWAY_LISTEN="127.0.0.1:$port" AUTH_HASHING_THREADS=1
# The load generator is a single client address: per-address rate limits would measure
# themselves, not the cache (and refuse the rounds' registrations).
export AUTH_LOGIN_RATE_PER_ADDRESS=0 AUTH_REGISTER_RATE_PER_ADDRESS=0
AMQP_URL="$GATEWAY_AMQP_URL" GATEWAY_METRICS_LISTEN="127.0.0.1:$(free_port)" "$bin/gateway" >"$work/gateway.log" 2>&1 & pids+=($!)
gw="http://127.0.0.1:$port"

start_auth() { # cache capacity
  for p in "${auth_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  auth_pids=()
  sleep 1 # let the gateway see that no replica is left, so the probe below is about the new ones
  for i in 1 2; do
    AMQP_URL="$AUTH_SVC_AMQP_URL" AUTH_TOKEN_CACHE_CAPACITY="$1" AUTH_HTTP_LISTEN="127.0.0.1:$(free_port)" \
      "$bin/auth-svc" >>"$work/auth-$i.log" 2>&1 & auth_pids+=($!)
  done
  for _ in $(seq 1 100); do
    # An unknown refresh token needs auth-svc to answer: 401 once a replica consumes.
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
      -d '{"refresh_token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}' "$gw/api/v1/auth/refresh" || true)
    [ "$code" = 401 ] && return 0
    sleep 0.2
  done
  echo "auth-svc did not come up"; tail -n 20 "$work"/*.log; exit 1
}

results="$work/results.jsonl"
for round in $(seq 1 "$ROUNDS"); do
  for capacity in 10000 0; do
    start_auth "$capacity"
    echo "[bench] users/me, auth-svc token cache $capacity, round $round" >&2
    "$bin/loadgen" --base "$gw" --scenario me --connections "$CONNS" --duration "$DURATION" --warmup 2 \
      --users 32 --user-prefix "bearer$id" --name "cache-$capacity" | tail -n1 >>"$results"
  done
done
python3 - "$results" "$profile" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["name"], []).append(r)
def med(name, key):
    return statistics.median(r[key] for r in by[name])
on, off = med("cache-10000", "rps"), med("cache-0", "rps")
print(f"profile {sys.argv[2]}, medians of {len(by['cache-0'])} alternating rounds")
print(f"  users/me with auth-svc's token cache: {on:9.0f} req/s, p99 {med('cache-10000', 'p99_ms'):.2f} ms")
print(f"  users/me verifying every token anew:  {off:9.0f} req/s, p99 {med('cache-0', 'p99_ms'):.2f} ms")
print(f"  ratio without/with the cache: {off / on:.2f}")
PY
