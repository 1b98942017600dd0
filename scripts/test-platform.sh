# Sourced by scripts that test the real binaries from outside (bash): `start_platform NAME`
# starts auth-svc and the gateway on a fresh database, key directory and broker names, each
# under its own broker user, logging to $AUTHSTACK_TEST_LOGS/NAME, and sets
#   PLATFORM_URL   the gateway's base URL
#   PLATFORM_KEYS  the key directory (for authstack-dev rotate)
#   PLATFORM_DB    the database URL (for auth-svc grant-role)
#   PLATFORM_METRICS_URL  the gateway's metrics listener
#   PLATFORM_GATEWAY_PID  the gateway's process id
# PLATFORM_PROFILE=release runs the release binaries (default: debug).
# Settings come from the environment (export AUTH_ACCESS_TOKEN_TTL=… before calling).
# `stop_platform` (installed as the EXIT trap) stops the services and removes what they used.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="${CARGO_TARGET_DIR:-$root/target}/${PLATFORM_PROFILE:-debug}"
pg_admin=${PG_ADMIN_URL:-${TEST_DATABASE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
platform_pids=()
platform_db=""
platform_work=""
platform_logs=""

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stop_platform() {
  for p in "${platform_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$platform_db" ] && psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $platform_db WITH (FORCE)" >/dev/null 2>&1
  [ -n "${AUTH_RPC_QUEUE:-}" ] && "$bin/authstack-dev" amqp-delete --queue "$AUTH_RPC_QUEUE" \
    --exchange "$AUTH_RPC_EXCHANGE" --exchange "$AUTH_EVENTS_EXCHANGE" >/dev/null 2>&1
  [ -n "$platform_work" ] && rm -rf "$platform_work"
  return 0
}

# Starts a gateway on `port` with its metrics at `metrics_url`, logging to `log`; $! is its pid.
start_gateway() {
  AUTH_ISSUER="$PLATFORM_URL" GATEWAY_LISTEN="127.0.0.1:$1" AMQP_URL="$GATEWAY_AMQP_URL" \
    GATEWAY_METRICS_LISTEN="${2#http://}" GATEWAY_INSTANCE_NAME="gateway-$1" \
    "$bin/gateway" >"$3" 2>&1 &
  platform_pids+=($!)
}

# A second gateway replica of the running platform: sets PLATFORM_URL2 once it is ready.
start_second_gateway() {
  local port
  port=$(free_port)
  start_gateway "$port" "http://127.0.0.1:$(free_port)" "$platform_logs/gateway-2-$port.log"
  PLATFORM_URL2="http://127.0.0.1:$port"
  for _ in $(seq 1 150); do curl -fs "$PLATFORM_URL2/readyz" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "second gateway not ready"
  return 1
}

start_platform() {
  local name=$1 id logs port
  id=$(python3 -c 'import uuid; print(uuid.uuid4().hex[:12])')
  logs="${AUTHSTACK_TEST_LOGS:-$root/.test-logs}/$name"
  platform_logs=$logs
  mkdir -p "$logs"
  platform_db="authstack_test_${name//-/_}_$id"
  platform_work=$(mktemp -d)
  trap stop_platform EXIT
  eval "$(python3 "$root/scripts/broker-users.py" env "$name-$id")"
  psql "$pg_admin" -qc "CREATE DATABASE $platform_db"
  "$bin/authstack-dev" keygen --dir "$platform_work/keys" >/dev/null
  port=$(free_port)
  PLATFORM_URL="http://127.0.0.1:$port"
  PLATFORM_KEYS="$platform_work/keys"
  PLATFORM_DB="${pg_admin%/*}/$platform_db"
  PLATFORM_METRICS_URL="http://127.0.0.1:$(free_port)"
  export LOG_FORMAT=json
  # A caller's RUST_LOG applies; without one, each binary logs at its own default level.
  if [ -n "${RUST_LOG:-}" ]; then export RUST_LOG; fi
  DATABASE_URL="$PLATFORM_DB" AUTH_KEY_DIR="$PLATFORM_KEYS" AUTH_ISSUER="$PLATFORM_URL" \
    AMQP_URL="$AUTH_SVC_AMQP_URL" AUTH_HTTP_LISTEN="127.0.0.1:$(free_port)" \
    "$bin/auth-svc" >"$logs/auth-svc-$id.log" 2>&1 &
  platform_pids+=($!)
  start_gateway "$port" "$PLATFORM_METRICS_URL" "$logs/gateway-$id.log"
  PLATFORM_GATEWAY_PID=$!
  for _ in $(seq 1 150); do curl -fs "$PLATFORM_URL/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fs "$PLATFORM_URL/readyz" >/dev/null || { echo "[$name] gateway not ready; see $logs"; return 1; }
  # Until auth-svc consumes, calls answer 503; a bad login answers 400 once it does.
  for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
      -d '{"login":"","password":""}' "$PLATFORM_URL/api/v1/auth/login")
    [ "$code" != 503 ] && return 0
    sleep 0.1
  done
  echo "[$name] auth-svc does not answer; see $logs"
  return 1
}
