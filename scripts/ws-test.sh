#!/usr/bin/env bash
# `make test-ws`: the WebSocket /api/v1/ws of the real gateway (with auth-svc, a fresh database
# and broker names) judged by an independent client, Python `websockets` (tests/ws/test_ws.py):
# the right events and no other account's, RPC over the socket, and every close code.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$(scripts/python-clients.sh)
# shellcheck source=scripts/test-platform.sh
source scripts/test-platform.sh
# Short tokens so expiry is observable; no clock skew, so the socket closes at `exp`.
export AUTH_ACCESS_TOKEN_TTL=${AUTH_ACCESS_TOKEN_TTL:-15} AUTH_CLOCK_SKEW_SECS=0 GATEWAY_CLOCK_SKEW_SECS=0
export AUTH_REFRESH_REUSE_GRACE=0 AUTH_KEY_POLL_MS=200 GATEWAY_UNKNOWN_KID_REFRESH_MS=200
export GATEWAY_WS_AUTH_TIMEOUT_MS=1000 GATEWAY_WS_SEND_BUFFER=64
# Many accounts from one address.
export AUTH_REGISTER_RATE_PER_ADDRESS=0 AUTH_LOGIN_RATE_PER_ADDRESS=0
# A small kernel send buffer, so a client that stops reading fills its queue within seconds.
export GATEWAY_SOCKET_SEND_BUFFER_BYTES=16384
# Lower argon2 cost within OWASP's minimums (47104 KiB x 1 is one of them; 7168 x 5 is cheaper).
export AUTH_ARGON2_MEMORY_KIB=7168 AUTH_ARGON2_ITERATIONS=5
start_platform ws
start_second_gateway
"$venv/bin/python" tests/ws/test_ws.py "$PLATFORM_URL" "$PLATFORM_KEYS" "$PLATFORM_DB" "$bin" "$PLATFORM_METRICS_URL" "$PLATFORM_URL2"
