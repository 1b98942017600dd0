#!/usr/bin/env bash
# Prints the path of a Python venv with the independent API checkers used by the tests
# (openapi-spec-validator, schemathesis), creating it on first use in .cache/venv-api.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.cache/venv-api"
want=("openapi-spec-validator==0.9.0" "schemathesis==4.32.5")
if [ ! -x "$venv/bin/st" ] || ! "$venv/bin/python" -c "import openapi_spec_validator, schemathesis" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "${want[@]}" >&2
fi
echo "$venv"
