#!/usr/bin/env bash
# `make run`: the whole platform as local processes — PostgreSQL and RabbitMQ (started or
# installed if needed), a dev key ring in kubelet's layout, two auth-svc replicas, the
# gateway on http://127.0.0.1:8080 and the chat service on http://127.0.0.1:8090 (CHAT_PORT).
# Ctrl-C stops what this script started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Release by default: the platform at its real speed (the debug build serves a quarter of it).
# PROFILE=debug builds faster for quick edits.
profile=${PROFILE:-release}
run_dir=${RUN_DIR:-$root/.run}
port=${GATEWAY_PORT:-8080}
chat_port=${CHAT_PORT:-8090}
db=${AUTHSTACK_DB:-authstack}
pg_admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}

scripts/ensure-services.sh
cargo_flags=()
[ "$profile" = release ] && cargo_flags+=(--release)
echo "[run] building ($profile; the first release build takes several minutes, PROFILE=debug is quicker)"
build_started=$(date +%s)
cargo build "${cargo_flags[@]}" -p auth-svc -p gateway -p authstack-dev -p authstack-chat -p authstack-cli
echo "[run] build took $(( $(date +%s) - build_started )) s"
bin="${CARGO_TARGET_DIR:-$root/target}/$profile"

if ! psql "$pg_admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
  psql "$pg_admin" -qc "CREATE DATABASE $db"
fi
mkdir -p "$run_dir/logs"
"$bin/authstack-dev" keygen --dir "$run_dir/keys" >/dev/null

# auth-svc runs as its own least-privilege role, as in the cluster (same SQL as the operator's
# PostgreSQL hook): it owns schema auth, nothing else. The chat service gets one of its own the
# same way, owning schema chat.
server=${pg_admin#*://}; server=${server#*@}; server=${server%%/*}
# Prints the URL of a role that owns only schema $3 (created or updated; password kept in .run).
schema_owner_url() {
  local role=$1 password_file="$run_dir/$2-db-password" schema=$3
  if [ ! -s "$password_file" ]; then
    (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$password_file")
  fi
  local password
  password=$(cat "$password_file")
  psql "${pg_admin%/*}/$db" -X -q -v role="$role" -v password="$password" -v schema="$schema" \
    -f operator/sql/auth-svc-role.sql >&2
  echo "postgres://$role:$password@$server/$db"
}
DATABASE_URL=$(schema_owner_url "${AUTH_DB_ROLE:-authstack_auth_svc}" auth-svc auth)
export DATABASE_URL
chat_database_url=$(schema_owner_url "${CHAT_DB_ROLE:-authstack_chat}" chat chat)
# Each component connects with its own least-privilege broker user (scripts/broker-users.py).
eval "$(python3 scripts/broker-users.py env)"
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
  AMQP_URL="$AUTH_SVC_AMQP_URL" AUTH_HTTP_LISTEN="127.0.0.1:$((8080 + i))" AUTH_INSTANCE_NAME="auth-svc-$i" \
    "$bin/auth-svc" >"$run_dir/logs/auth-svc-$i.log" 2>&1 &
  pids+=($!)
done
AMQP_URL="$GATEWAY_AMQP_URL" "$bin/gateway" >"$run_dir/logs/gateway.log" 2>&1 &
pids+=($!)
# The chat service: its own schema and role in the same database, tokens verified from the gateway's JWKS.
CHAT_LISTEN="127.0.0.1:$chat_port" CHAT_DATABASE_URL="$chat_database_url" AUTHSTACK_URL="http://127.0.0.1:$port" \
  "$bin/authstack-chat" >"$run_dir/logs/chat.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "[run] a process exited; see $run_dir/logs"; tail -n 20 "$run_dir"/logs/*.log; exit 1; }; done
  sleep 0.5
done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { echo "[run] gateway not ready; see $run_dir/logs"; exit 1; }
for _ in $(seq 1 60); do curl -fs "http://127.0.0.1:$chat_port/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
curl -fs "http://127.0.0.1:$chat_port/readyz" >/dev/null || { echo "[run] chat service not ready; see $run_dir/logs"; exit 1; }

cat <<MSG

AuthStack is running.
  API            http://127.0.0.1:$port/api/v1/
  JWKS           http://127.0.0.1:$port/.well-known/jwks.json
  OpenID config  http://127.0.0.1:$port/.well-known/openid-configuration
  Health         http://127.0.0.1:$port/healthz  /readyz   (metrics: http://127.0.0.1:9090/metrics)
  auth-svc       http://127.0.0.1:8081/readyz and http://127.0.0.1:8082/readyz (2 replicas)
  Database       postgres://${AUTH_DB_ROLE:-authstack_auth_svc}:…@$server/$db  (auth-svc's role; password in $run_dir/auth-svc-db-password)
  Key ring       $AUTH_KEY_DIR   (rotate: $bin/authstack-dev rotate --dir $AUTH_KEY_DIR --start)
  Chat service   http://127.0.0.1:$chat_port/api/v1/chats
  CLI            $bin/authstack   (install: cargo install --path cli)
  Logs           $run_dir/logs/
Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "[run] a process exited; see $run_dir/logs"
