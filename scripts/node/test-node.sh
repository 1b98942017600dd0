#!/usr/bin/env bash
# `make test-node` / `make bench-rotation-cluster`: AuthStack on a real node, from scratch to
# nothing left: `make cluster-up NODE=real`, then scripts/node/cluster_check.py (helm install,
# the minimal sample Ready, the gateway answering through its Service), with --rotation also
# scripts/node/rotation_check.py (a requested rotation, a revoke and a rotation by schedule under
# load through the Service), with
# --faults scripts/node/fault_check.py (PostgreSQL, RabbitMQ and auth-svc pods deleted under
# load), and `make cluster-down` whatever happened. Expects the images of `make images`.
#
# Usage: scripts/node/test-node.sh [--rotation] [--faults]
set -euo pipefail
# shellcheck source=scripts/node/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

rotation=false faults=false
for arg in "$@"; do
  case "$arg" in
    --rotation) rotation=true ;;
    --faults) faults=true ;;
    *) node_die "usage: $0 [--rotation] [--faults]" ;;
  esac
done
cargo="${CARGO:-cargo}"
bin="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release"
if $rotation || $faults; then
  node_log "building loadgen and kubectl-authstack (release)"
  "$cargo" build --release --locked -q -p authstack-bench --bin loadgen -p authstack-operator --bin kubectl-authstack
fi

trap 'make -C "$REPO_ROOT" --no-print-directory cluster-down >&2' EXIT
started=$SECONDS
line="$(make -C "$REPO_ROOT" --no-print-directory cluster-up NODE=real | tail -1)"
export KUBECONFIG="${line#export KUBECONFIG=}"
node_log "cluster-up NODE=real took $((SECONDS - started)) s"
python3 "$NODE_SCRIPTS/cluster_check.py"
if $rotation; then
  python3 "$NODE_SCRIPTS/rotation_check.py" --loadgen "$bin/loadgen" --plugin "$bin/kubectl-authstack"
fi
if $faults; then
  python3 "$NODE_SCRIPTS/fault_check.py" --loadgen "$bin/loadgen"
fi
