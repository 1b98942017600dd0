#!/usr/bin/env bash
# `make cluster-up NODE=real`: the control plane of `make cluster-up` plus a real node
# (scripts/node/up.sh): containerd + runc + CNI, the images of `make images` imported, a
# kubelet that registers, kube-proxy and CoreDNS. kube-apiserver listens on the host's end of
# the node's link ($NODE_HOST_IP), which the kubelet and the pods (Service `kubernetes`) reach.
# Prints `export KUBECONFIG=...` as its last line. `make cluster-down` removes it all.
#
# Environment: CARGO (default cargo), AUTHSTACK_CLUSTER_DIR (the control plane's state, default
# .run/cluster), IMAGES_DIR (default target/images), and the settings of scripts/node/env.sh.
set -euo pipefail
# shellcheck source=scripts/node/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

[[ "$(id -u)" == 0 ]] || node_die "a real node needs root (network namespace, mounts, cgroups)"
compgen -G "$IMAGES_DIR/*.oci.tar" >/dev/null ||
  node_die "no images in $IMAGES_DIR: run \`make images\` first (the node has no registry)"

cluster() { "${CARGO:-cargo}" run --locked -q -p authstack-testkit --bin authstack-cluster -- "$@"; }

"$REPO_ROOT/scripts/k8s-binaries.sh" node >/dev/null
# The node's network first: kube-apiserver binds to the host's end of its link.
"$NODE_SCRIPTS/up.sh"
export_line="$(cluster up --nodes none --bind-address "$NODE_HOST_IP" | tail -1)"
kubeconfig="${export_line#export KUBECONFIG=}"
[[ -f "$kubeconfig" ]] || node_die "the control plane printed no kubeconfig (got: $export_line)"
"$NODE_SCRIPTS/up.sh" --join "$kubeconfig"
node_log "Services from the host: ClusterIPs of $NODE_SERVICE_CIDR, NodePorts on $NODE_IP"
echo "$export_line"
