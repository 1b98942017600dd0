#!/usr/bin/env bash
# Checks the Helm chart, manifests/install.yaml and the sample AuthStacks (`make chart-check`):
#   1. the chart's CRD copy equals crds/authstack.yaml;
#   2. every value of values.yaml documented in the chart README; helm lint --strict with
#      default values and with every option on;
#   3. helm template of several value sets, semantic assertions on the output (RBAC equals what
#      the operator needs, hardening, flags), and value sets the chart must refuse;
#   4. every rendered object, manifests/install.yaml, manifests/chat/ and the samples' non-AuthStack objects
#      validated with kubernetes-validate --strict for each Kubernetes minor version from 1.29
#      to the newest the installed kubernetes-validate ships; known-bad objects rejected;
#   5. manifests/install.yaml is not stale.
# The AuthStacks themselves (samples, edge cases, known-bad ones) are judged by the real API
# server in `cargo test` (operator/tests/e2e.rs, the_api_server_validates_authstacks).
# Tools are installed into .cache/ on first use (scripts/k8s-tools.sh).
set -euo pipefail
# shellcheck source=scripts/k8s-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/k8s-env.sh"

started=$SECONDS
"$K8S_SCRIPTS/k8s-tools.sh" all

out="$CACHE_DIR/chart-check"
rm -rf "$out"
mkdir -p "$out"
all_values="$CHART_DIR/ci/all-options-values.yaml"
testdata="$K8S_SCRIPTS/testdata"
shopt -s nullglob
samples=("$SAMPLES_DIR"/*.yaml)
shopt -u nullglob
((${#samples[@]})) || k8s_die "no samples in manifests/samples/"

step() { printf '\n--- %s\n' "$*"; }

step "CRD copy in the chart"
[[ -f "$CRD_FILE" ]] || k8s_die "crds/authstack.yaml is missing (cargo run -p authstack-operator --bin crdgen > crds/authstack.yaml)"
if ! cmp -s "$CRD_FILE" "$CHART_CRD_FILE"; then
  diff -u "$CRD_FILE" "$CHART_CRD_FILE" | head -40 >&2 || true
  k8s_die "charts/authstack-operator/crds/authstack.yaml differs from crds/authstack.yaml: copy it (cp crds/authstack.yaml charts/authstack-operator/crds/)"
fi
echo "ok   charts/authstack-operator/crds/authstack.yaml == crds/authstack.yaml"

step "values documented"
"$VENV_PY" "$K8S_SCRIPTS/chart_assertions.py" values-doc "$CHART_DIR"

step "helm lint --strict"
"$HELM" lint --strict --quiet "$CHART_DIR"
"$HELM" lint --strict --quiet "$CHART_DIR" --values "$all_values"
echo "ok   helm lint --strict (default values, ci/all-options-values.yaml)"
"$HELM" package "$CHART_DIR" --destination "$out" >/dev/null
pkg="$out/authstack-operator-$(sed -n 's/^version: *//p' "$CHART_DIR/Chart.yaml").tgz"
[[ -f "$pkg" ]] || k8s_die "helm package did not produce $pkg"
listing="$(tar -tzf "$pkg")"
if grep -q '/ci/' <<<"$listing"; then
  k8s_die "the packaged chart contains ci/ (check .helmignore)"
fi
grep -qx 'authstack-operator/crds/authstack.yaml' <<<"$listing" || k8s_die "the packaged chart lacks crds/authstack.yaml"
echo "ok   helm package ($(basename "$pkg"), with crds/, without ci/)"

step "helm template"
tpl() { "$HELM" template "$RELEASE_NAME" "$CHART_DIR" --namespace "$INSTALL_NAMESPACE" "$@"; }
tpl >"$out/default.yaml"
tpl --include-crds --values "$all_values" --api-versions monitoring.coreos.com/v1 >"$out/all-options.yaml"
tpl --set replicaCount=1 --set leaderElection.enabled=false >"$out/single.yaml"
tpl --set metrics.serviceMonitor.enabled=true >"$out/no-monitoring.yaml"
tpl --set clusterWide=true >"$out/cluster-wide.yaml"
for f in default all-options single no-monitoring cluster-wide; do
  "$VENV_PY" "$K8S_SCRIPTS/chart_assertions.py" "$f" "$out/$f.yaml"
done

# Value sets the chart must refuse, each with the reason it must give.
refuse() {
  local why="$1"
  shift
  local err
  if err="$(tpl "$@" 2>&1 >/dev/null)"; then
    k8s_die "helm template $* was accepted, but must fail ($why)"
  fi
  if ! grep -qF -- "$why" <<<"$err"; then
    printf '%s\n' "$err" >&2
    k8s_die "helm template $* failed, but not with \"$why\""
  fi
  echo "ok   refused: $* ($why)"
}
refuse "needs leaderElection.enabled=true" --set replicaCount=2 --set leaderElection.enabled=false
refuse "logFormat must be one of" --set logFormat=xml
refuse "leave watchNamespaces empty" --set clusterWide=true --set 'watchNamespaces={team-a}'
refuse "watchNamespaces.0: Does not match pattern" --set 'watchNamespaces={Team_A}'
refuse "Additional property replicas is not allowed" --set replicas=3
refuse "image.pullPolicy must be one of" --set image.pullPolicy=Sometimes
refuse "leaderElection.leaseDuration: Invalid type" --set leaderElection.leaseDuration=15
refuse "leaderElection.renewInterval: Does not match pattern" --set leaderElection.renewInterval=5sec

step "kubernetes-validate --strict (upstream schemas)"
"$VENV_PY" "$K8S_SCRIPTS/k8s_validate.py" --min "$K8S_MIN_VERSION" \
  "$out/default.yaml" "$out/all-options.yaml" "$out/single.yaml" "$out/cluster-wide.yaml" \
  "$INSTALL_YAML" "${samples[@]}" "$REPO_ROOT"/manifests/chat/*.yaml
"$VENV_PY" "$K8S_SCRIPTS/k8s_validate.py" --min "$K8S_MIN_VERSION" --expect-invalid "$testdata/invalid-k8s.yaml"

step "manifests/install.yaml"
"$K8S_SCRIPTS/render-manifests.sh" --check
"$VENV_PY" "$K8S_SCRIPTS/chart_assertions.py" install "$INSTALL_YAML"

printf '\nchart-check passed in %ss (rendered output in .cache/chart-check/)\n' "$((SECONDS - started))"
