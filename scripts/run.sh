#!/usr/bin/env bash
# `make run`: the whole platform as local processes — PostgreSQL and RabbitMQ (started or
# installed if needed), a dev key ring in kubelet's layout, two auth-svc replicas and the
# gateway on http://127.0.0.1:8080. Ctrl-C stops what this script started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
profile=${PROFILE:-debug}
run_dir=${RUN_DIR:-$root/.run}
port=${GATEWAY_PORT:-8080}
db=${AUTHSTACK_DB:-authstack}
pg_admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}

scripts/ensure-services.sh
cargo_flags=()
[ "$profile" = release ] && cargo_flags+=(--release)
echo "[run] building ($profile)"
cargo build "${cargo_flags[@]}" -p auth-svc -p gateway -p authstack-dev
bin="$root/target/$profile"

if ! psql "$pg_admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
  psql "$pg_admin" -qc "CREATE DATABASE $db"
fi
mkdir -p "$run_dir/logs"
"$bin/authstack-dev" keygen --dir "$run_dir/keys" >/dev/null

export DATABASE_URL="${pg_admin%/*}/$db"
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
export AUTH_KEY_DIR="$run_dir/keys"
export AUTH_ISSUER="http://127.0.0.1:$port"
export GATEWAY_LISTEN="127.0.0.1:$port"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "[run] stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

for i in 1 2; do
  AUTH_HTTP_LISTEN="127.0.0.1:$((8080 + i))" AUTH_INSTANCE_NAME="auth-svc-$i" \
    "$bin/auth-svc" >"$run_dir/logs/auth-svc-$i.log" 2>&1 &
  pids+=($!)
done
"$bin/gateway" >"$run_dir/logs/gateway.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "[run] a process exited; see $run_dir/logs"; tail -n 20 "$run_dir"/logs/*.log; exit 1; }; done
  sleep 0.5
done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { echo "[run] gateway not ready; see $run_dir/logs"; exit 1; }

cat <<MSG

AuthStack is running.
  API            http://127.0.0.1:$port/api/v1/
  JWKS           http://127.0.0.1:$port/.well-known/jwks.json
  OpenID config  http://127.0.0.1:$port/.well-known/openid-configuration
  Health         http://127.0.0.1:$port/healthz  /readyz  /metrics
  auth-svc       http://127.0.0.1:8081/readyz and http://127.0.0.1:8082/readyz (2 replicas)
  Database       $DATABASE_URL
  Key ring       $AUTH_KEY_DIR   (rotate: target/$profile/authstack-dev rotate --dir $AUTH_KEY_DIR --start)
  Logs           $run_dir/logs/
Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "[run] a process exited; see $run_dir/logs"
