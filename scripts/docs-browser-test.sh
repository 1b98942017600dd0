#!/usr/bin/env bash
# `make test-docs-browser`: headless Chromium (Debian's package, installed if absent) renders
# the real gateway's /docs (Swagger UI) and /redoc (ReDoc) with every host but 127.0.0.1
# unresolvable, so only assets compiled into the gateway can load; tests/docs/check_docs_dom.py
# asserts that the rendered DOM shows every operation of /openapi.json. Screenshots for a human:
# .cache/docs-swagger.png and .cache/docs-redoc.png.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if ! command -v chromium >/dev/null; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
fi
# shellcheck source=scripts/test-platform.sh
source scripts/test-platform.sh
start_platform docs
# Rendered pages (their examples hold sample passwords: not logs).
out="$root/.cache/docs-test"
mkdir -p "$out" .cache
profile=$(mktemp -d)
browse() {
  timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" \
    --virtual-time-budget=15000 --window-size=1280,2400 "$@" 2>>"$out/chromium.log"
}
curl -fsS "$PLATFORM_URL/openapi.json" -o "$out/openapi.json"
browse --dump-dom "$PLATFORM_URL/docs/" >"$out/swagger.html"
browse --dump-dom "$PLATFORM_URL/redoc" >"$out/redoc.html"
browse --screenshot="$root/.cache/docs-swagger.png" "$PLATFORM_URL/docs/"
browse --screenshot="$root/.cache/docs-redoc.png" "$PLATFORM_URL/redoc"
rm -rf "$profile"
python3 tests/docs/check_docs_dom.py "$out/openapi.json" "$out/swagger.html" "$out/redoc.html" \
  .cache/docs-swagger.png .cache/docs-redoc.png
