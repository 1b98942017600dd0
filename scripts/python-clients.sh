#!/usr/bin/env bash
# Prints the path of a Python venv with the independent clients used by the tests (PyJWT,
# websockets, pika), creating it on first use in .cache/venv-clients.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.cache/venv-clients"
want=("PyJWT[crypto]==2.10.1" "websockets==15.0.1" "pika==1.3.2")
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import jwt, cryptography, websockets, pika" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "${want[@]}" >&2
fi
echo "$venv"
