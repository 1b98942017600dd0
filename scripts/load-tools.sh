#!/usr/bin/env bash
# Installs the independent load generators of `make bench` and `make bench-peers`, if absent:
# wrk (Debian's package; closed loop) and oha (crates.io, `cargo install` into the cache outside
# the clone: $AUTHSTACK_CACHE/tools/oha; open loop at a fixed rate with latency correction).
# Knobs (environment): AUTHSTACK_CACHE (~/.cache/authstack), OHA_VERSION (1.16.0).
set -euo pipefail
cache=${AUTHSTACK_CACHE:-$HOME/.cache/authstack}
oha_version=${OHA_VERSION:-1.16.0}
if ! command -v wrk >/dev/null; then
  echo "[load-tools] wrk from Debian" >&2
  apt-get install -y -qq wrk >&2 || { apt-get update -qq >&2 && apt-get install -y -qq wrk >&2; }
fi
if ! command -v oha >/dev/null && [ ! -x "$cache/tools/oha/bin/oha" ]; then
  echo "[load-tools] oha $oha_version from crates.io (cargo install; a few minutes)" >&2
  cargo install --locked --quiet --root "$cache/tools/oha" --version "$oha_version" oha >&2
fi
