#!/usr/bin/env bash
# Starts AuthStack's node in the background, everything under $NODE_STATE:
#   - a network namespace of its own ($NODE_NETNS), joined to the host by a veth pair
#     ($NODE_HOST_IP on the host, $NODE_IP in the node); the pod bridge, the pods' routes, IP
#     forwarding and any iptables rules live in that namespace only, never on the host;
#   - containerd (own socket, root and state) with runc and the CNI bridge network
#     $NODE_POD_CIDR, and the images of `make images` (target/images/*.oci.tar) imported, plus
#     a pause image built from the kubelet's own sources;
#   - with --kubelet: a standalone kubelet (no API server) running the static pods in
#     $NODE_STATE/manifests, pods in the cgroup $NODE_CGROUP_ROOT of every v1 hierarchy
#     (cgroupfs driver, failCgroupV1: false);
#   - with --join KUBECONFIG: the node joins the cluster of KUBECONFIG (whose server must be
#     reachable from the node, e.g. kube-apiserver on $NODE_HOST_IP): the kubelet registers
#     Node $NODE_NAME, kube-proxy (iptables mode, rules in the node's namespace) serves the
#     Services, CoreDNS on $NODE_IP:53 is the pods' cluster DNS, and $NODE_VOLUMES local
#     PersistentVolumes back the default StorageClass "$NODE_STORAGE_CLASS".
# The host gets routes to $NODE_POD_CIDR (and, joined, to the Services' $NODE_SERVICE_CIDR) via
# the node, so pods and Services are reachable from it.
# `scripts/node/down.sh` removes all of it. Running it again keeps what already runs.
#
# Usage: scripts/node/up.sh [--kubelet | --join KUBECONFIG]
set -euo pipefail
# shellcheck source=scripts/node/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

with_kubelet=false
join_kubeconfig=""
case "${1:-}" in
  "") ;;
  --kubelet) with_kubelet=true ;;
  --join)
    [[ -f "${2:-}" ]] || node_die "--join needs the cluster's kubeconfig file"
    with_kubelet=true
    join_kubeconfig="$(realpath "$2")"
    ;;
  *) node_die "usage: $0 [--kubelet | --join KUBECONFIG]" ;;
esac
[[ "$(id -u)" == 0 ]] || node_die "the node needs root (network namespace, mounts, cgroups)"

"$NODE_SCRIPTS/binaries.sh"
if $with_kubelet; then
  "$REPO_ROOT/scripts/k8s-binaries.sh" node >/dev/null
fi
mkdir -p "$NODE_STATE"/{run,logs,containerd,cni/net.d,cni/ipam,manifests,volumes,images}

in_node() { nsenter --net="/var/run/netns/$NODE_NETNS" "$@"; }
running() { [[ -f "$NODE_STATE/run/$1.pid" ]] && kill -0 "$(cat "$NODE_STATE/run/$1.pid")" 2>/dev/null; }

# start <name> <command...>: in the node's network namespace, detached, logging to logs/<name>.log.
start() {
  local name="$1"
  shift
  setsid nsenter --net="/var/run/netns/$NODE_NETNS" "$@" \
    >>"$NODE_STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$NODE_STATE/run/$name.pid"
}

# wait_for <seconds> <what> <command...>
wait_for() {
  local deadline=$((SECONDS + $1)) what="$2"
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || node_die "$what did not come up in time; see $NODE_STATE/logs/"
    sleep 0.5
  done
}

network() {
  if ! ip netns list | grep -qx "$NODE_NETNS\( .*\)\?"; then
    node_log "network namespace $NODE_NETNS: node $NODE_IP, host $NODE_HOST_IP, pods $NODE_POD_CIDR"
    ip netns add "$NODE_NETNS"
    ip link add "$NODE_HOST_VETH" type veth peer name eth0 netns "$NODE_NETNS"
    ip addr add "$NODE_HOST_IP/$NODE_LINK_PREFIX" dev "$NODE_HOST_VETH"
    ip link set "$NODE_HOST_VETH" up
    in_node ip link set lo up
    in_node ip addr add "$NODE_IP/$NODE_LINK_PREFIX" dev eth0
    in_node ip link set eth0 up
    in_node ip route add default via "$NODE_HOST_IP"
    # Inside the node's namespace only: the node routes between the host link and the pods.
    in_node sysctl -qw net.ipv4.ip_forward=1
    # Replies of a pod to another pod on the bridge pass iptables, so kube-proxy's DNAT of a
    # Service address is undone (per namespace: the host's setting stays as it is).
    in_node sysctl -qw net.bridge.bridge-nf-call-iptables=1
    ip route replace "$NODE_POD_CIDR" via "$NODE_IP" dev "$NODE_HOST_VETH"
  fi
}

pause_image() {
  local archive="$NODE_STATE/images/pause.oci.tar" src bin="$NODE_CACHE/pause-v$K8S_VERSION/pause"
  [[ -f "$archive" ]] && return 0
  if [[ ! -x "$bin" ]]; then
    src="$(go env GOMODCACHE)/k8s.io/kubernetes@v$K8S_VERSION/build/pause/linux/pause.c"
    [[ -f "$src" ]] || go mod download "k8s.io/kubernetes@v$K8S_VERSION" >/dev/null
    mkdir -p "$(dirname "$bin")"
    gcc -Os -static -Wall -Werror -DVERSION="v$K8S_VERSION-authstack" -o "$bin.tmp" "$src"
    mv "$bin.tmp" "$bin"
  fi
  SOURCE_DATE_EPOCH=0 "$("$REPO_ROOT/scripts/images/venv.sh")" "$NODE_SCRIPTS/pause_image.py" "$bin" "$PAUSE_IMAGE" "$archive"
}

containerd_config() {
  cat >"$NODE_STATE/containerd/config.toml" <<EOF
# Written by scripts/node/up.sh: containerd for AuthStack's node, all state under $NODE_STATE.
version = 3
root = "$NODE_STATE/containerd/root"
state = "$NODE_STATE/containerd/state"
temp = "$NODE_STATE/containerd/tmp"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_SOCKET"

[ttrpc]
  address = "$CONTAINERD_SOCKET.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_STATE/containerd/opt"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  netns_mounts_under_state_dir = true
  # This sandbox has no CAP_SYS_RESOURCE: nothing may lower its OOM score (the pause
  # container's default -998 fails with "failed to update /proc/self/oom_score_adj").
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$CNI_DIR/bin"]
    conf_dir = "$NODE_STATE/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$RUNC_DIR/bin/runc"
        Root = "$NODE_STATE/runc"
        SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
  # The bridge holds the gateway address; no masquerading: pods reach the host and each
  # other directly, and the node's namespace routes the rest.
  cat >"$NODE_STATE/cni/net.d/10-$NODE_CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NODE_CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$NODE_POD_CIDR" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "$NODE_STATE/cni/ipam"
      }
    }
  ]
}
EOF
}

crictl_config() {
  cat >"$NODE_STATE/crictl.yaml" <<EOF
runtime-endpoint: unix://$CONTAINERD_SOCKET
image-endpoint: unix://$CONTAINERD_SOCKET
timeout: 30
EOF
}

ctr_() { "$CONTAINERD_DIR/bin/ctr" --address "$CONTAINERD_SOCKET" --namespace "$CONTAINERD_NAMESPACE" "$@"; }

start_containerd() {
  if running containerd; then
    node_log "containerd already running (pid $(cat "$NODE_STATE/run/containerd.pid"))"
    return 0
  fi
  containerd_config
  crictl_config
  node_log "starting containerd $CONTAINERD_VERSION on $CONTAINERD_SOCKET"
  PATH="$RUNC_DIR/bin:$CONTAINERD_DIR/bin:$PATH" start containerd \
    "$CONTAINERD_DIR/bin/containerd" --config "$NODE_STATE/containerd/config.toml"
  wait_for 60 containerd "$CRICTL_DIR/bin/crictl" --config "$NODE_STATE/crictl.yaml" version
}

import_images() {
  local archive
  for archive in "$NODE_STATE/images/pause.oci.tar" "$IMAGES_DIR"/*.oci.tar; do
    [[ -f "$archive" ]] || continue
    node_log "importing $(basename "$archive")"
    ctr_ images import --platform linux/amd64 "$archive" >/dev/null 2> >(grep -v DEPRECATION >&2)
  done
  ctr_ images list -q | sed 's/^/[node]   /' >&2
}

# The pods' cgroup parent in every v1 hierarchy (the kubelet wants it to exist); cpuset needs
# its CPUs and memory nodes copied from the parent before anything can join it.
cgroups() {
  local h dir
  for h in /sys/fs/cgroup/*/; do
    [[ -f "$h/cgroup.procs" ]] || continue
    dir="${h%/}$NODE_CGROUP_ROOT"
    mkdir -p "$dir"
    if [[ -f "$dir/cpuset.cpus" ]]; then
      [[ -n "$(cat "$dir/cpuset.cpus")" ]] || cat "$h/cpuset.cpus" >"$dir/cpuset.cpus"
      [[ -n "$(cat "$dir/cpuset.mems")" ]] || cat "$h/cpuset.mems" >"$dir/cpuset.mems"
    fi
  done
}

kubelet_config() {
  cat >"$NODE_STATE/kubelet/config.yaml" <<EOF
# Written by scripts/node/up.sh: a standalone kubelet (no API server) for AuthStack's node.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 0.0.0.0
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
staticPodPath: $NODE_STATE/manifests
fileCheckFrequency: 2s
podLogsDir: $NODE_STATE/pod-logs
volumePluginDir: $NODE_STATE/kubelet/volume-plugins
containerRuntimeEndpoint: unix://$CONTAINERD_SOCKET
cgroupDriver: cgroupfs
cgroupRoot: $NODE_CGROUP_ROOT
cgroupsPerQOS: true
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
# Without CAP_SYS_RESOURCE (this sandbox) the kubelet cannot lower its own OOM score.
oomScoreAdj: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
resolvConf: /etc/resolv.conf
clusterDomain: $NODE_CLUSTER_DOMAIN
clusterDNS: [$NODE_IP]
serializeImagePulls: false
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
}

start_kubelet() {
  if running kubelet; then
    node_log "kubelet already running (pid $(cat "$NODE_STATE/run/kubelet.pid"))"
    return 0
  fi
  mkdir -p "$NODE_STATE/kubelet" "$NODE_STATE/pod-logs"
  cgroups
  kubelet_config
  local join=()
  if [[ -n "$join_kubeconfig" ]]; then
    node_log "starting kubelet v$K8S_VERSION (joining $(server_of "$join_kubeconfig") as $NODE_NAME)"
    join=(--kubeconfig="$NODE_STATE/kubeconfig")
  else
    node_log "starting kubelet v$K8S_VERSION (standalone, static pods from $NODE_STATE/manifests)"
  fi
  start kubelet "$K8S_BIN_DIR/kubelet" \
    --config="$NODE_STATE/kubelet/config.yaml" "${join[@]}" \
    --root-dir="$NODE_STATE/kubelet" \
    --cert-dir="$NODE_STATE/kubelet/pki" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" \
    --v=2
  wait_for 120 kubelet in_node curl -sf "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
}

server_of() { sed -n 's/^ *server: *//p' "$1" | head -1; }
kubectl_() { "$("$REPO_ROOT/scripts/k8s-tools.sh" --print-path kubectl)" --kubeconfig "$NODE_STATE/kubeconfig" "$@"; }

# The cluster's kubeconfig, for the kubelet, kube-proxy and CoreDNS (admin credentials: a
# local cluster for trying AuthStack, not a multi-tenant one).
join_config() {
  cp "$join_kubeconfig" "$NODE_STATE/kubeconfig"
  chmod 600 "$NODE_STATE/kubeconfig"
  ip route replace "$NODE_SERVICE_CIDR" via "$NODE_IP" dev "$NODE_HOST_VETH"
}

start_kube_proxy() {
  running kube-proxy && return 0
  mkdir -p "$NODE_STATE/kube-proxy"
  cat >"$NODE_STATE/kube-proxy/config.yaml" <<EOF
# Written by scripts/node/up.sh: kube-proxy of AuthStack's node; its rules live in the node's
# network namespace only.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $NODE_STATE/kubeconfig
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $NODE_POD_CIDR
nodePortAddresses: ["$NODE_IP/32"]
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:10249
# nf_conntrack_max is the machine's, not the namespace's: leave it alone.
conntrack:
  maxPerCore: 0
  min: 0
# Without CAP_SYS_RESOURCE (this sandbox) no process can lower its OOM score.
oomScoreAdj: 0
EOF
  node_log "starting kube-proxy v$K8S_VERSION (iptables, Services of $NODE_SERVICE_CIDR)"
  start kube-proxy "$K8S_BIN_DIR/kube-proxy" --config="$NODE_STATE/kube-proxy/config.yaml" --v=1
  wait_for 60 kube-proxy in_node curl -sf "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz"
}

start_coredns() {
  running coredns && return 0
  mkdir -p "$NODE_STATE/coredns"
  local context
  context="$(sed -n 's/^current-context: *//p' "$NODE_STATE/kubeconfig")"
  cat >"$NODE_STATE/coredns/Corefile" <<EOF
# Written by scripts/node/up.sh: the cluster DNS of AuthStack's node (kubelet's clusterDNS).
.:53 {
    errors
    health 127.0.0.1:8080
    ready 127.0.0.1:$COREDNS_READY_PORT
    kubernetes $NODE_CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $NODE_STATE/kubeconfig $context
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
}
EOF
  node_log "starting CoreDNS $COREDNS_VERSION on $NODE_IP:53 ($NODE_CLUSTER_DOMAIN)"
  start coredns "$COREDNS_DIR/bin/coredns" -conf "$NODE_STATE/coredns/Corefile"
  wait_for 60 CoreDNS in_node curl -sf "http://127.0.0.1:$COREDNS_READY_PORT/ready"
}

# The default StorageClass: local volumes (directories of the node's state), bound when a pod
# is scheduled; unlike hostPath volumes, the kubelet gives them to the pod's fsGroup.
local_volumes() {
  local i dir docs
  docs="apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $NODE_STORAGE_CLASS
  annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
"
  for ((i = 0; i < NODE_VOLUMES; i++)); do
    dir="$NODE_STATE/volumes/pv-$i"
    mkdir -p "$dir"
    docs+="---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $NODE_NAME-pv-$i
  labels: {app.kubernetes.io/managed-by: authstack-node}
spec:
  capacity: {storage: $NODE_VOLUME_SIZE}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: $NODE_STORAGE_CLASS
  local: {path: $dir}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [$NODE_NAME]}]
"
  done
  printf '%s' "$docs" | kubectl_ apply -f - >/dev/null
  node_log "StorageClass $NODE_STORAGE_CLASS (default): $NODE_VOLUMES local volumes of $NODE_VOLUME_SIZE"
}

network
pause_image
start_containerd
import_images
if [[ -n "$join_kubeconfig" ]]; then
  join_config
fi
if $with_kubelet; then
  start_kubelet
fi
if [[ -n "$join_kubeconfig" ]]; then
  start_kube_proxy
  start_coredns
  wait_for 120 "node $NODE_NAME Ready" kubectl_ wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
  local_volumes
fi
node_log "up: containerd $CONTAINERD_SOCKET$($with_kubelet && echo ", kubelet https://$NODE_IP:$KUBELET_PORT (in netns $NODE_NETNS)")"

echo "export CRI_CONFIG_FILE=$NODE_STATE/crictl.yaml  # for crictl"
