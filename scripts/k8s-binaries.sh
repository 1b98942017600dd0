#!/usr/bin/env bash
# Builds the Kubernetes binaries AuthStack's tests and `make cluster-up` run, from the Go module
# proxy (no downloads from dl.k8s.io or GitHub are possible here), into a per-machine cache:
#
#   $AUTHSTACK_CACHE/k8s/v$K8S_VERSION/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,etcd}
#   plus kwok (sigs.k8s.io/kwok, the node stand-in that marks scheduled Pods Running/Ready) and
#   kwok-stages.yaml (kwok's own default Node and Pod stages, taken from its module);
#   and, for `node`, {kubelet,kube-proxy}
#
# k8s.io/kubernetes's go.mod pins every staging module (k8s.io/api, k8s.io/apiserver, ...) at
# v0.0.0, which the proxy does not serve, and `go install pkg@version` refuses modules with
# replace directives; so the build goes through a small wrapper module that requires
# k8s.io/kubernetes and replaces each staging module with its published v0.<minor>.<patch>.
# etcd is built in the same module at the version k/k itself requires (one dependency graph).
# Version ldflags make /version report the real version.
#
# Usage: scripts/k8s-binaries.sh [control-plane|node|all]
#   control-plane (default): kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok
#   node, all: kubelet, kube-proxy too
# Prints the bin directory on stdout as its last line. A second run is a cache hit (~0 s).
# Measured on a 2-core machine: cold 578 s for all six Kubernetes binaries (kube-apiserver
# 350 s, kube-controller-manager 146 s, the others 14-38 s), 479 MB of binaries, 714 MB of
# modules, 3.9 GB of Go build cache.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
KWOK_VERSION="${KWOK_VERSION:-0.8.0}"
CACHE_ROOT="${AUTHSTACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/authstack}"
K8S_DIR="$CACHE_ROOT/k8s/v$K8S_VERSION"
BIN_DIR="$K8S_DIR/bin"
SRC_DIR="$K8S_DIR/src"

log() { printf '[k8s-binaries] %s\n' "$*" >&2; }
die() { printf '[k8s-binaries] error: %s\n' "$*" >&2; exit 1; }

what="${1:-control-plane}"
case "$what" in
  control-plane) bins=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok kwok-stages.yaml) ;;
  node | all) bins=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok kwok-stages.yaml kubelet kube-proxy) ;;
  *) die "usage: $0 [control-plane|node|all]" ;;
esac

# Sets `missing` to the binaries asked for that are not there yet; when none is missing,
# prints the binary folder and exits.
exit_if_complete() {
  local b
  missing=()
  for b in "${bins[@]}"; do
    [[ -s "$BIN_DIR/$b" ]] || missing+=("$b")
  done
  ((${#missing[@]} > 0)) && return 0
  printf '%s\n' "$BIN_DIR"
  exit 0
}
exit_if_complete

command -v go >/dev/null 2>&1 || die "Go is needed to build the Kubernetes binaries (go.dev/dl or Debian's golang)"
mkdir -p "$BIN_DIR" "$SRC_DIR"

# One builder at a time: test binaries running in parallel all call this script.
exec 9>"$K8S_DIR/.lock"
if ! flock -n 9; then
  log "another build holds $K8S_DIR/.lock; waiting for it"
  flock 9
fi
# The other builder may have finished what we need.
exit_if_complete

minor="${K8S_VERSION#*.}"
minor="${minor%%.*}"
staging_version="v0.${K8S_VERSION#*.}"

# The wrapper module: k8s.io/kubernetes plus its staging modules at their published versions.
prepare_wrapper() {
  cd "$SRC_DIR"
  if [[ -f go.sum ]] && grep -q "k8s.io/kubernetes v$K8S_VERSION" go.mod 2>/dev/null; then
    return 0
  fi
  log "preparing the wrapper module for k8s.io/kubernetes v$K8S_VERSION (staging modules at $staging_version)"
  rm -f go.mod go.sum tools.go
  local kk_mod go_directive etcd_version
  kk_mod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
    sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [[ -f "$kk_mod" ]] || die "go mod download k8s.io/kubernetes@v$K8S_VERSION gave no go.mod (is the Go module proxy reachable?)"
  go_directive="$(awk '$1 == "go" {print $2; exit}' "$kk_mod")"
  etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2; exit}' "$kk_mod")"
  [[ -n "$etcd_version" ]] || die "k8s.io/kubernetes v$K8S_VERSION does not require go.etcd.io/etcd/server/v3"
  {
    printf 'module local/authstack-k8s-binaries\n\ngo %s\n' "$go_directive"
    # k/k's godebug defaults (e.g. `godebug default=go1.26`) apply to its main packages.
    grep -E '^godebug ' "$kk_mod" || true
  } >go.mod
  cat >tools.go <<'GO'
//go:build tools

// Package tools pins the main packages this module builds.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  # Every staging module k/k pins at v0.0.0, replaced by its published version.
  local replaces=() m
  while read -r m; do
    replaces+=("-replace=$m=$m@$staging_version")
  done < <(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$kk_mod" | sort -u)
  ((${#replaces[@]} > 0)) || die "found no staging modules in k8s.io/kubernetes's go.mod"
  go mod edit "${replaces[@]}" -require="k8s.io/kubernetes@v$K8S_VERSION" \
    -require="go.etcd.io/etcd/server/v3@$etcd_version"
  log "resolving dependencies (go mod tidy; first time: a few hundred MB of modules)"
  go mod tidy
}

ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

declare -A pkg=(
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
  [kubelet]=k8s.io/kubernetes/cmd/kubelet
  [kube-proxy]=k8s.io/kubernetes/cmd/kube-proxy
  [etcd]=go.etcd.io/etcd/server/v3
)

# kwok is its own module (no replace directives, its own k8s.io/* versions): `go install`.
# Its default stages (what `kwokctl` configures: node-initialize, node-heartbeat-with-lease,
# pod-ready, pod-complete, pod-delete of the "fast" set) are read from the same module.
build_kwok() {
  local tmp
  tmp="$(mktemp -d "$K8S_DIR/kwok.XXXXXX")"
  GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
  mv "$tmp/kwok" "$BIN_DIR/kwok"
  rm -rf "$tmp"
}

write_kwok_stages() {
  local dir
  dir="$(go mod download -json "sigs.k8s.io/kwok@v$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  [[ -d "$dir/kustomize/stage" ]] || die "sigs.k8s.io/kwok@v$KWOK_VERSION has no kustomize/stage"
  local f out="$BIN_DIR/kwok-stages.yaml.tmp"
  printf '# kwok v%s default stages, from its module (kustomize/stage).\n' "$KWOK_VERSION" >"$out"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [[ -f "$dir/kustomize/stage/$f" ]] || die "kwok v$KWOK_VERSION: kustomize/stage/$f not found"
    printf -- '---\n' >>"$out"
    cat "$dir/kustomize/stage/$f" >>"$out"
  done
  mv "$out" "$BIN_DIR/kwok-stages.yaml"
}

start=$(date +%s)
for b in "${missing[@]}"; do
  t0=$(date +%s)
  case "$b" in
    kwok)
      log "building kwok v$KWOK_VERSION (a separate Go module)"
      build_kwok
      ;;
    kwok-stages.yaml) write_kwok_stages ;;
    *)
      prepare_wrapper
      log "building $b (cold: several minutes each on 2 cores; later builds reuse the Go build cache)"
      (cd "$SRC_DIR" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/$b.tmp" "${pkg[$b]}")
      mv "$BIN_DIR/$b.tmp" "$BIN_DIR/$b"
      ;;
  esac
  log "built $b in $(($(date +%s) - t0)) s"
done
for b in "${bins[@]}"; do
  [[ -s "$BIN_DIR/$b" ]] || die "$b is still missing from $BIN_DIR after the build"
done
log "done in $(($(date +%s) - start)) s; binaries in $BIN_DIR ($(du -sh "$BIN_DIR" | cut -f1))"
printf '%s\n' "$BIN_DIR"
