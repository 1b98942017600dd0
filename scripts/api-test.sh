#!/usr/bin/env bash
# `make test-api`: the OpenAPI description of the real gateway (with auth-svc, a fresh database
# and broker names) judged by independent tools: openapi-spec-validator checks /openapi.json;
# schemathesis generates requests from it against the live gateway and fails on any 5xx or any
# response the description does not allow. API_TEST_SECONDS bounds the run (default 100 s;
# `make test-api-long` runs longer).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$(scripts/python-api-tools.sh)
seconds=${API_TEST_SECONDS:-100}
# shellcheck source=scripts/test-platform.sh
source scripts/test-platform.sh
# Fuzzing registers and logs in many times from one address.
export AUTH_REGISTER_RATE_PER_ADDRESS=0 AUTH_LOGIN_RATE_PER_ADDRESS=0
export AUTH_ARGON2_MEMORY_KIB=7168 AUTH_ARGON2_ITERATIONS=5
start_platform api
# Reports and the fetched description (its examples hold sample passwords: not a log).
out="$root/.cache/api-test"
mkdir -p "$out"
curl -fsS "$PLATFORM_URL/openapi.json" -o "$out/openapi.json"
"$venv/bin/openapi-spec-validator" "$out/openapi.json"

# An administrator with a token, so authenticated operations are exercised beyond their 401s.
name="fuzz$(python3 -c 'import uuid; print(uuid.uuid4().hex[:10])')"
curl -fsS -X POST "$PLATFORM_URL/api/v1/auth/register" -H 'content-type: application/json' \
  -d "{\"email\":\"$name@example.com\",\"username\":\"$name\",\"password\":\"correct horse battery\"}" >/dev/null
DATABASE_URL="$PLATFORM_DB" "$bin/auth-svc" grant-role --login "$name" >/dev/null
token=$(curl -fsS -X POST "$PLATFORM_URL/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"login\":\"$name\",\"password\":\"correct horse battery\"}" | python3 -c 'import sys,json; print(json.load(sys.stdin)["access_token"])')
# Operations that would end the caller's own session or account are left out (they are
# covered by the black-box tests); the WebSocket handshake is not HTTP request/response.
# schemathesis keeps its example database under the working directory: run it in $out.
cd "$out"
timeout --signal=INT "$((seconds + 60))" "$venv/bin/st" run "$out/openapi.json" \
  --url "$PLATFORM_URL" \
  --header "Authorization: Bearer $token" \
  --checks all --exclude-checks positive_data_acceptance \
  --exclude-path /api/v1/auth/logout-all \
  --exclude-path /api/v1/ws \
  --exclude-operation-id delete_me \
  --max-time "$seconds" \
  --workers 2 \
  --max-response-time 10 \
  --report junit --report-dir "$out" \
  --no-color >"$out/schemathesis.txt" 2>&1 || { tail -n 80 "$out/schemathesis.txt"; exit 1; }
tail -n 25 "$out/schemathesis.txt"
