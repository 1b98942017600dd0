#!/usr/bin/env bash
# `make bench-peers`: installs the peers (Keycloak, Dex) and the load generators into the cache
# outside the clone, builds the release binaries, and runs scripts/peers/bench_peers.py (its
# docstring says what is measured and how; knobs: PEERS_DURATION, PEERS_CONNECTIONS,
# PEERS_LOGIN_CONNECTIONS, PEERS_USERS, PEERS_RATE_VERIFY, PEERS_WARMUP,
# PEERS_ROTATION_SECONDS, PEERS_ONLY=authstack,keycloak,dex, PEERS_REPORT, KEYCLOAK_VERSION,
# KEYCLOAK_JAVA_HOME, KEYCLOAK_HEAP, DEX_VERSION).
# With --if-installed (used by `make bench`) it installs nothing and runs only when the peers
# are already in the cache.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cache=${PEERS_CACHE:-${AUTHSTACK_CACHE:-$HOME/.cache/authstack}/peers}
if [ "${1:-}" = --if-installed ]; then
  if [ ! -e "$cache/keycloak-${KEYCLOAK_VERSION:-26.7.3}/.authstack-built" ] || ! ls "$cache"/dex-*/bin/dex >/dev/null 2>&1; then
    echo "[bench] peers not installed: 'make bench-peers' installs Keycloak and Dex and compares them"
    exit 0
  fi
else
  scripts/peers/install.sh all >/dev/null
fi
scripts/ensure-services.sh >/dev/null
scripts/load-tools.sh
cargo build --release --locked -q -p auth-svc -p gateway -p authstack-dev -p authstack-bench
echo
echo "Peers on this machine (make bench-peers):"
python3 scripts/peers/bench_peers.py
