#!/usr/bin/env bash
# `make bench-rotation`: the rotation scenario outside the test suite, with release binaries —
# a private Kubernetes control plane (authstack-cluster: etcd, kube-apiserver, controllers,
# kwok), the operator, one kubelet stand-in per auth-svc replica (each with its own lag), two
# auth-svc replicas and the gateway — under steady mixed load (logins,
# refreshes, /users/me, /session). Mid-run a rotation is requested with the kubectl plugin;
# the table shows rate and latency before, during and after it, and the time from the CR
# update to the new key signing.
#
# Knobs (environment): PROPAGATION_DELAY (default 10s), KUBELET_LAGS_MS ("1000 3000"),
# CONNECTIONS (32), BEFORE (15 s of load before the rotation), AFTER (15 s after it settled),
# ROTATION_MODE=demo to set everything up and wait (use your own clients and
# `kubectl authstack rotate demo -n auth`; Ctrl-C to stop).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
P=${PROPAGATION_DELAY:-10s}
read -r -a LAGS <<< "${KUBELET_LAGS_MS:-1000 3000}"
CONNS=${CONNECTIONS:-32}
BEFORE=${BEFORE:-15}
AFTER=${AFTER:-15}
MODE=${ROTATION_MODE:-bench}
pg_admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
bin="${CARGO_TARGET_DIR:-$root/target}/release"
p_secs=$(python3 -c "import re,sys; s='$P'; t=sum(float(n)*{'ms':0.001,'s':1,'m':60,'h':3600}[u] for n,u in re.findall(r'([0-9.]+)(ms|s|m|h)', s)); print(t)")

# The measured processes log at their binaries' default level (info), as deployed: a caller's
# RUST_LOG applies only to the demo.
[ "$MODE" = demo ] || unset RUST_LOG
scripts/ensure-services.sh >/dev/null
echo "[rotation] building release binaries" >&2
cargo build --release --locked -q -p auth-svc -p gateway -p authstack-dev -p authstack-bench -p authstack-operator -p authstack-testkit

id=$(python3 -c 'import uuid; print(uuid.uuid4().hex[:12])')
db="authstack_rot_$id"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$bin/authstack-cluster" --dir "$work/cluster" down >/dev/null 2>&1 || true
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  "$bin/authstack-dev" amqp-delete --queue "auth.rpc.rot-$id" --exchange "auth.requests.rot-$id" --exchange "auth.events.rot-$id" >/dev/null 2>&1 || true
  [ "$MODE" = demo ] || rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 1 200); do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "timed out: $1" >&2; exit 1; }

psql "$pg_admin" -qc "CREATE DATABASE $db"
echo "[rotation] starting a private control plane (builds the Kubernetes binaries once per machine)" >&2
"$bin/authstack-cluster" --dir "$work/cluster" up >/dev/null
export KUBECONFIG="$work/cluster/kubeconfig"
kubectl=$(scripts/k8s-tools.sh --print-path kubectl)
k() { "$kubectl" "$@" 2> >(grep -v 'version difference between client' >&2); }
k apply --server-side -f crds/authstack.yaml >/dev/null
k wait --for=condition=Established crd/authstacks.authstack.io >/dev/null
k create namespace auth >/dev/null
k -n auth create secret generic pg-url --from-literal=url="${pg_admin%/*}/$db" >/dev/null
k -n auth create secret generic amqp-url --from-literal=url=amqp://guest:guest@127.0.0.1:5672/%2f >/dev/null
"$bin/authstack-operator" --metrics-listen "127.0.0.1:$(free_port)" --namespace auth --leader-election=false >"$work/operator.log" 2>&1 & pids+=($!)
gw_port=$(free_port)
issuer="http://127.0.0.1:$gw_port"
k -n auth apply -f - >/dev/null <<JSON
{"apiVersion":"authstack.io/v1alpha1","kind":"AuthStack","metadata":{"name":"demo"},"spec":{"postgres":{"external":{"secretRef":{"name":"pg-url"}}},"rabbitmq":{"external":{"secretRef":{"name":"amqp-url"}}},"authService":{"tokens":{"issuer":"$issuer"}},"keys":{"propagationDelay":"$P","rotationInterval":"0s"}}}
JSON
wait_for "k -n auth get secret demo-signing-keys"

export LOG_FORMAT=json AUTH_ISSUER="$issuer"
eval "$(python3 scripts/broker-users.py env "rot-$id")"
export DATABASE_URL="${pg_admin%/*}/$db" AUTH_HASHING_THREADS=1 AUTH_KEY_POLL_MS=500
# All simulated clients share one address: no per-address rate limits here.
export AUTH_LOGIN_RATE_PER_ADDRESS=0 AUTH_REGISTER_RATE_PER_ADDRESS=0
for i in "${!LAGS[@]}"; do
  "$bin/authstack-dev" kubelet-sync -n auth --secret demo-signing-keys --dir "$work/keys-$i" --delay-ms "${LAGS[$i]}" >"$work/kubelet-$i.log" 2>&1 & pids+=($!)
  wait_for "test -e $work/keys-$i/keyring.json"
  AMQP_URL="$AUTH_SVC_AMQP_URL" AUTH_KEY_DIR="$work/keys-$i" AUTH_HTTP_LISTEN="127.0.0.1:$(free_port)" AUTH_INSTANCE_NAME="auth-$i" "$bin/auth-svc" >"$work/auth-$i.log" 2>&1 & pids+=($!)
done
AMQP_URL="$GATEWAY_AMQP_URL" GATEWAY_METRICS_LISTEN="127.0.0.1:$(free_port)" GATEWAY_LISTEN="127.0.0.1:$gw_port" "$bin/gateway" >"$work/gateway.log" 2>&1 & pids+=($!)
gw="http://127.0.0.1:$gw_port"
wait_for "curl -fs $gw/readyz"
wait_for "[ \$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' -d '{\"login\":\"\",\"password\":\"\"}' $gw/api/v1/auth/login) != 503 ]"

if [ "$MODE" = demo ]; then
  cat <<MSG
Rotation demo is running (files in $work).
  export KUBECONFIG=$KUBECONFIG
  Gateway:   $gw   (JWKS: $gw/.well-known/jwks.json)
  Status:    $bin/kubectl-authstack -n auth status demo
  Rotate:    $bin/kubectl-authstack -n auth rotate demo
  Revoke:    $bin/kubectl-authstack -n auth revoke demo <kid>
  Logs:      $work/*.log
Press Ctrl-C to stop.
MSG
  wait -n "${pids[@]}" || true
  exit 0
fi

max_lag=$(printf '%s\n' "${LAGS[@]}" | sort -n | tail -1)
during=$(python3 -c "print(round($p_secs + $max_lag/1000 + 2, 1))")
total=$(python3 -c "print(round($BEFORE + $during + $AFTER, 1))")
end_during=$(python3 -c "print($BEFORE + $during)")
results="$work/rotation.jsonl"
echo "[rotation] ${total}s of mixed load on $CONNS connections; rotation requested at ${BEFORE}s (propagation ${P}, kubelet lags ${LAGS[*]} ms)" >&2
"$bin/loadgen" --base "$gw" --scenario mixed --connections "$CONNS" --users "$CONNS" --warmup 2 --duration "$total" \
  --phase "before=0-$BEFORE" --phase "during=$BEFORE-$end_during" --phase "after=$end_during-$total" >"$results" 2>"$work/loadgen.err" &
load=$!
sleep "$(python3 -c "print(2 + $BEFORE)")"
before_kid=$(k -n auth get secret demo-signing-keys -o json | python3 -c 'import sys,json,base64; r=json.loads(base64.b64decode(json.load(sys.stdin)["data"]["keyring.json"])); print([k["kid"] for k in r["keys"] if k["state"]=="active"][0])')
requested=$(date +%s.%N)
"$bin/kubectl-authstack" -n auth rotate demo >&2
# Probe: log in every 100 ms until a token is signed by a new kid.
"$bin/loadgen" --base "$gw" --scenario hello --connections 1 --duration 0.1 --warmup 0 >/dev/null 2>&1 || true
signed_after=$(python3 - "$gw" "$before_kid" "$requested" <<'PY'
import json, sys, time, urllib.request, base64
gw, old, requested = sys.argv[1], sys.argv[2], float(sys.argv[3])
def login():
    req = urllib.request.Request(gw + "/api/v1/auth/login", data=json.dumps({"login": "bench0", "password": "bench password 123"}).encode(), headers={"content-type": "application/json"})
    tok = json.loads(urllib.request.urlopen(req, timeout=10).read())["access_token"]
    head = json.loads(base64.urlsafe_b64decode(tok.split(".")[0] + "=="))
    return head["kid"]
deadline = time.time() + 120
while time.time() < deadline:
    if login() != old:
        print(round(time.time() - requested, 2)); break
    time.sleep(0.1)
else:
    print("never")
PY
)
wait "$load"
python3 - "$results" "$signed_after" "$P" "${LAGS[*]}" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        r = json.loads(line); rows[r["name"]] = r
print()
print(f'{"phase":<10} {"seconds":>8} {"req/s":>9} {"p50 ms":>8} {"p99 ms":>8} {"served":>8} {"failed":>7}')
for name in ["before", "during", "after"]:
    r = rows[f"phase:{name}"]
    print(f'{name:<10} {r["seconds"]:>8.1f} {r["rps"]:>9.0f} {r["p50_ms"]:>8.2f} {r["p99_ms"]:>8.2f} {r["ok"]:>8} {r["failed"]:>7}')
b, d = rows["phase:before"], rows["phase:during"]
total = rows[[k for k in rows if not k.startswith("phase:")][0]]
print()
print(f'CR update -> new key signing: {sys.argv[2]} s (propagation delay {sys.argv[3]}, kubelet lags {sys.argv[4]} ms)')
ratio = d["p99_ms"] / b["p99_ms"] if b["p99_ms"] else float("inf")
print(f'requests served {total["ok"]}, failed {total["failed"]}; p99 during / before = {ratio:.2f} (target <= 1.2, 0 failed)')
PY
