#!/usr/bin/env bash
# Prints the Python of the image builder's and node scripts' venv (.cache/venv-images),
# creating it, or recreating it when scripts/images/requirements.txt changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.cache/venv-images"
requirements="$root/scripts/images/requirements.txt"
if [[ ! -x "$venv/bin/python" ]] || ! cmp -s "$requirements" "$venv/.requirements"; then
  printf '==> creating the Python venv .cache/venv-images (%s)\n' "$(grep -v '^#' "$requirements" | tr '\n' ' ')" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 || { echo "error: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install --quiet --no-input -r "$requirements" >&2 ||
    { echo "error: pip install -r scripts/images/requirements.txt failed (is PyPI reachable?)" >&2; exit 1; }
  cp "$requirements" "$venv/.requirements"
fi
echo "$venv/bin/python"
