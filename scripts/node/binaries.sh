#!/usr/bin/env bash
# Builds the container runtime of AuthStack's node from the Go module proxy (nothing can be
# downloaded from GitHub here) into a per-machine cache, once:
#
#   $AUTHSTACK_CACHE/node/containerd-$CONTAINERD_VERSION/bin/{containerd,containerd-shim-runc-v2,ctr}
#   $AUTHSTACK_CACHE/node/runc-$RUNC_VERSION/bin/runc          (cgo, libseccomp)
#   $AUTHSTACK_CACHE/node/cni-plugins-$CNI_PLUGINS_VERSION/bin/{bridge,host-local,loopback}
#   $AUTHSTACK_CACHE/node/crictl-$CRICTL_VERSION/bin/crictl      (the CRI client, for checks)
#   $AUTHSTACK_CACHE/node/coredns-$COREDNS_VERSION/bin/coredns   (cluster DNS: scripts/node/coredns,
#                                                                 only the plugins it needs)
#
# containerd ≥ 2.0 because kubelet ≥ 1.36 asks the runtime for its cgroup driver (the CRI
# RuntimeConfig call), which Debian's containerd 1.6 lacks. Debian packages the node needs
# are installed when missing: libseccomp-dev (runc's build), iptables (CNI bridge masquerade,
# kube-proxy).
#
# Usage: scripts/node/binaries.sh
set -euo pipefail
# shellcheck source=scripts/node/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

ensure_debian_packages() {
  local missing=()
  [[ -f /usr/include/seccomp.h ]] || missing+=(libseccomp-dev)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  ((${#missing[@]} == 0)) && return 0
  [[ "$(id -u)" == 0 ]] || node_die "install ${missing[*]} (Debian packages) and re-run"
  node_log "installing ${missing[*]} from Debian"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# go_install <bin dir> <cgo 0|1> <tags> <ldflags> <package@version>...
go_install() {
  local dir="$1" cgo="$2" tags="$3" ldflags="$4"
  shift 4
  mkdir -p "$dir"
  GOBIN="$dir.tmp" CGO_ENABLED="$cgo" go install -trimpath -tags "$tags" -ldflags "$ldflags" "$@"
  mv "$dir.tmp"/* "$dir"/
  rmdir "$dir.tmp"
}

build_all() {
  command -v go >/dev/null 2>&1 || node_die "Go is needed to build containerd, runc and the CNI plugins"
  local t0
  if ! node_containerd_ok; then
    t0=$(date +%s)
    node_log "building containerd $CONTAINERD_VERSION (cold: several minutes on 2 cores)"
    local pkg=github.com/containerd/containerd/v2
    go_install "$CONTAINERD_DIR/bin" 0 "no_btrfs" \
      "-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Revision=module-proxy" \
      "$pkg/cmd/containerd@$CONTAINERD_VERSION" \
      "$pkg/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
      "$pkg/cmd/ctr@$CONTAINERD_VERSION"
    node_log "built containerd in $(($(date +%s) - t0)) s"
  fi
  if ! node_runc_ok; then
    t0=$(date +%s)
    node_log "building runc $RUNC_VERSION (cgo, seccomp)"
    go_install "$RUNC_DIR/bin" 1 "seccomp urfave_cli_no_docs" \
      "-s -w -X main.version=${RUNC_VERSION#v} -X main.gitCommit=module-proxy" \
      "github.com/opencontainers/runc@$RUNC_VERSION"
    node_log "built runc in $(($(date +%s) - t0)) s"
  fi
  if ! node_cni_ok; then
    t0=$(date +%s)
    node_log "building the CNI plugins $CNI_PLUGINS_VERSION (${CNI_PLUGINS[*]})"
    local pkgs=()
    for p in "${CNI_PLUGINS[@]}"; do
      case "$p" in
        host-local) pkgs+=("github.com/containernetworking/plugins/plugins/ipam/$p@$CNI_PLUGINS_VERSION") ;;
        *) pkgs+=("github.com/containernetworking/plugins/plugins/main/$p@$CNI_PLUGINS_VERSION") ;;
      esac
    done
    go_install "$CNI_DIR/bin" 0 "" \
      "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" \
      "${pkgs[@]}"
    node_log "built the CNI plugins in $(($(date +%s) - t0)) s"
  fi
  if ! node_crictl_ok; then
    t0=$(date +%s)
    node_log "building crictl $CRICTL_VERSION"
    go_install "$CRICTL_DIR/bin" 0 "" "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
      "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
    node_log "built crictl in $(($(date +%s) - t0)) s"
  fi
  if ! node_coredns_ok; then
    t0=$(date +%s)
    node_log "building CoreDNS $COREDNS_VERSION (cache, errors, forward, health, kubernetes, log, ready)"
    mkdir -p "$COREDNS_DIR/bin"
    (cd "$COREDNS_MODULE_DIR" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$COREDNS_DIR/bin/coredns.tmp" .)
    mv "$COREDNS_DIR/bin/coredns.tmp" "$COREDNS_DIR/bin/coredns"
    node_log "built CoreDNS in $(($(date +%s) - t0)) s"
  fi
}

ensure_debian_packages
if ! node_containerd_ok || ! node_runc_ok || ! node_cni_ok || ! node_crictl_ok || ! node_coredns_ok; then
  mkdir -p "$NODE_CACHE"
  exec 9>"$NODE_CACHE/.build-lock"
  flock 9
  build_all
fi
"$CONTAINERD_DIR/bin/containerd" --version >&2
"$RUNC_DIR/bin/runc" --version | sed -n 1p >&2
node_log "CNI plugins $CNI_PLUGINS_VERSION in $CNI_DIR/bin; $("$CRICTL_DIR/bin/crictl" --version); $("$COREDNS_DIR/bin/coredns" -version | head -1)"
