# shellcheck shell=bash disable=SC2034 # the variables are used by the scripts that source it
# Shared settings of the node scripts (sourced, never run): versions, cache and state paths.
#
# Binaries are cached per machine outside the clone ($AUTHSTACK_CACHE, default
# ~/.cache/authstack), next to the Kubernetes binaries of scripts/k8s-binaries.sh. A running
# node keeps everything under $NODE_STATE (default ~/.cache/authstack/node/state): containerd's
# root, state and socket, the CNI configuration, kubelet's directories, the logs.

NODE_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$NODE_SCRIPTS/../.." && pwd)"
AUTHSTACK_CACHE="${AUTHSTACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/authstack}"
NODE_CACHE="$AUTHSTACK_CACHE/node"
NODE_STATE="${NODE_STATE:-$NODE_CACHE/state}"

CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
RUNC_VERSION="${RUNC_VERSION:-v1.5.3}"
CNI_PLUGINS_VERSION="${CNI_PLUGINS_VERSION:-v1.10.0}"
# No portmap: its iptables chains are shared by every CNI user of the machine.
CNI_PLUGINS=(bridge host-local loopback)
CRICTL_VERSION="${CRICTL_VERSION:-v1.37.0}"
K8S_VERSION="${K8S_VERSION:-1.37.2}"
# CoreDNS: its version is the one scripts/node/coredns/go.mod requires.
COREDNS_MODULE_DIR="$NODE_SCRIPTS/coredns"
COREDNS_VERSION="$(sed -n 's|^require github.com/coredns/coredns \(v[^ ]*\)$|\1|p' "$COREDNS_MODULE_DIR/go.mod")"

CONTAINERD_DIR="$NODE_CACHE/containerd-$CONTAINERD_VERSION"
RUNC_DIR="$NODE_CACHE/runc-$RUNC_VERSION"
CNI_DIR="$NODE_CACHE/cni-plugins-$CNI_PLUGINS_VERSION"
CRICTL_DIR="$NODE_CACHE/crictl-$CRICTL_VERSION"
K8S_BIN_DIR="$AUTHSTACK_CACHE/k8s/v$K8S_VERSION/bin"
COREDNS_DIR="$NODE_CACHE/coredns-$COREDNS_VERSION"

# The running node (see scripts/node/up.sh and down.sh).
CONTAINERD_SOCKET="$NODE_STATE/containerd/containerd.sock"
CONTAINERD_NAMESPACE="k8s.io" # the namespace the CRI plugin (and so kubelet) uses
# The node's own network namespace and its link to the host (a veth pair, a /30).
NODE_NETNS="${NODE_NETNS:-authstack-node}"
NODE_HOST_VETH="${NODE_HOST_VETH:-authstack-host}"
NODE_HOST_IP="${NODE_HOST_IP:-10.250.0.1}"
NODE_IP="${NODE_IP:-10.250.0.2}"
NODE_LINK_PREFIX=30
NODE_NAME="${NODE_NAME:-authstack-node}"
# The pod network (CNI bridge in the node's namespace).
NODE_BRIDGE="cni-authstack"
NODE_POD_CIDR="${NODE_POD_CIDR:-10.244.0.0/24}"
NODE_CNI_NETWORK="authstack-pods"
# The cluster's Service range (kube-apiserver's --service-cluster-ip-range, SERVICE_CIDR in
# testkit/src/k8s/mod.rs): the host routes it to the node, where kube-proxy's rules answer.
NODE_SERVICE_CIDR="${NODE_SERVICE_CIDR:-10.0.0.0/24}"
NODE_CLUSTER_DOMAIN="cluster.local"
# Local PersistentVolumes the joined node offers (StorageClass "standard", the default).
NODE_VOLUMES="${NODE_VOLUMES:-8}"
NODE_VOLUME_SIZE="${NODE_VOLUME_SIZE:-10Gi}"
NODE_STORAGE_CLASS="standard"
# Images: `make images` writes them here; the pause image is the node's own.
IMAGES_DIR="${IMAGES_DIR:-$REPO_ROOT/target/images}"
PAUSE_IMAGE="localhost/authstack-node/pause:v$K8S_VERSION"
# kubelet's cgroup parent for pods (a cgroupfs path in every v1 hierarchy), and its ports.
NODE_CGROUP_ROOT="/authstack-node"
KUBELET_PORT="${KUBELET_PORT:-10250}"
KUBELET_HEALTHZ_PORT="${KUBELET_HEALTHZ_PORT:-10248}"
KUBE_PROXY_HEALTHZ_PORT=10256
COREDNS_READY_PORT=8181

node_log() { printf '[node] %s\n' "$*" >&2; }
node_die() {
  printf '[node] error: %s\n' "$*" >&2
  exit 1
}

node_containerd_ok() {
  [[ -x "$CONTAINERD_DIR/bin/containerd" && -x "$CONTAINERD_DIR/bin/containerd-shim-runc-v2" && -x "$CONTAINERD_DIR/bin/ctr" ]]
}
node_runc_ok() { [[ -x "$RUNC_DIR/bin/runc" ]]; }
node_coredns_ok() { [[ -x "$COREDNS_DIR/bin/coredns" ]]; }
node_crictl_ok() { [[ -x "$CRICTL_DIR/bin/crictl" ]]; }
node_cni_ok() {
  local p
  for p in "${CNI_PLUGINS[@]}"; do
    [[ -x "$CNI_DIR/bin/$p" ]] || return 1
  done
}
