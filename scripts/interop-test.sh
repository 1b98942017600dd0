#!/usr/bin/env bash
# Runs the real auth-svc and gateway binaries (a fresh database, key directory and queue names
# per algorithm) and verifies their tokens with PyJWT from the published JWKS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin="${CARGO_TARGET_DIR:-$root/target}/debug"
venv=$(scripts/python-clients.sh)
pg_admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
work=$(mktemp -d)
logs="${AUTHSTACK_TEST_LOGS:-$root/.test-logs}/interop"
mkdir -p "$logs"
pids=()
dbs=()
ids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for d in "${dbs[@]}"; do psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done
  for i in "${ids[@]}"; do "$bin/authstack-dev" amqp-delete --queue "auth.rpc.interop-$i" --exchange "auth.requests.interop-$i" --exchange "auth.events.interop-$i" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for alg in EdDSA ES256 RS256; do
  id=$(python3 -c 'import uuid; print(uuid.uuid4().hex[:12])')
  db="authstack_interop_$id"; dbs+=("$db"); ids+=("$id")
  psql "$pg_admin" -qc "CREATE DATABASE $db"
  "$bin/authstack-dev" keygen --dir "$work/$alg/keys" --algorithm "$alg" >/dev/null
  port=$(free_port); health=$(free_port); metrics=$(free_port)
  export DATABASE_URL="${pg_admin%/*}/$db" AUTH_KEY_DIR="$work/$alg/keys"
  eval "$(python3 scripts/broker-users.py env "interop-$id")"
  export AUTH_ISSUER="http://authstack.interop" GATEWAY_LISTEN="127.0.0.1:$port" AUTH_HTTP_LISTEN="127.0.0.1:$health" GATEWAY_METRICS_LISTEN="127.0.0.1:$metrics"
  AMQP_URL="$AUTH_SVC_AMQP_URL" "$bin/auth-svc" >"$logs/auth-$alg-$id.log" 2>&1 & pids+=($!)
  AMQP_URL="$GATEWAY_AMQP_URL" "$bin/gateway" >"$logs/gateway-$alg-$id.log" 2>&1 & pids+=($!)
  ok=0
  for _ in $(seq 1 100); do
    if curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && curl -fs "http://127.0.0.1:$health/readyz" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  [ $ok -eq 1 ] || { echo "platform ($alg) not ready"; tail -n 30 "$logs"/*-"$alg"-"$id".log; exit 1; }
  # Wait until the gateway sees an auth-svc consumer (a bad login then answers 400, not 503).
  for _ in $(seq 1 50); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' -d '{"login":"","password":""}' "http://127.0.0.1:$port/api/v1/auth/login")
    [ "$code" != 503 ] && break
    sleep 0.1
  done
  "$venv/bin/python" tests/interop/verify_tokens.py "http://127.0.0.1:$port" "$alg"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
done
