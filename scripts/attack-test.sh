#!/usr/bin/env bash
# The attack corpus against the real auth-svc and gateway binaries (each under its own broker
# user, a fresh database, key directory and broker names): forged tokens crafted with PyJWT and
# raw base64 sent to the gateway and, over the broker with the gateway's credentials, to
# auth-svc; broker actions the gateway user must be refused (tests/attacks/attack.py, pika).
# The services log into $AUTHSTACK_TEST_LOGS/attacks for the log scan.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$(scripts/python-clients.sh)
# shellcheck source=scripts/test-platform.sh
source scripts/test-platform.sh
RUST_LOG="${RUST_LOG:-info,auth_svc=debug,gateway=debug,authstack_bus=debug}" start_platform attacks
AUTHSTACK_TEST_LOGS="${AUTHSTACK_TEST_LOGS:-$root/.test-logs}" "$venv/bin/python" tests/attacks/attack.py \
  "$PLATFORM_URL" "$PLATFORM_KEYS" "$GATEWAY_AMQP_URL" "$AUTH_RPC_EXCHANGE" "$AUTH_RPC_QUEUE" \
  "$AUTH_EVENTS_EXCHANGE" "$PLATFORM_URL"
