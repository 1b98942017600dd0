#!/usr/bin/env python3
"""Semantic checks of rendered chart output (what schemas cannot see).

Usage: chart_assertions.py CASE FILE
  default        helm template with default values (release authstack-operator): a Role in
                 the release namespace, nothing cluster-wide on namespaced kinds
  all-options    ci/all-options-values.yaml with monitoring.coreos.com/v1 available
                 (watchNamespaces team-a and team-b: a Role in each)
  cluster-wide   clusterWide=true: a ClusterRole and ClusterRoleBinding
  single         replicaCount=1, leaderElection.enabled=false
  no-monitoring  serviceMonitor enabled, but the cluster has no monitoring.coreos.com/v1
  install        manifests/install.yaml
  values-doc     charts/authstack-operator (every value in values.yaml has a README row, and
                 every README row is a value)

The operator's RBAC is compared with EXPECTED_RULES: the exact (group, resource, verb) set that
the operator code needs. Changing the operator's API calls means changing both the chart and
this list, on purpose.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import yaml
except ImportError as e:  # pragma: no cover
    sys.exit(f"chart_assertions.py: {e}; run it with .cache/venv/bin/python")

# What operator/src uses (see the comments in templates/rbac.yaml).
EXPECTED_RULES = {
    ("authstack.io", "authstacks"): {"get", "list", "watch"},
    ("authstack.io", "authstacks/status"): {"patch"},
    ("authstack.io", "authstacks/finalizers"): {"update"},
    ("", "secrets"): {"get", "list", "watch", "create", "update", "patch", "delete"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "delete"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("apps", "statefulsets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "serviceaccounts"): {"get", "list", "watch", "create", "patch", "delete"},
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("networking.k8s.io", "networkpolicies"): {"get", "list", "watch", "create", "patch", "delete"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
LEASE_RULES = {("coordination.k8s.io", "leases", None): {"create"}}
CRD_NAME = "authstacks.authstack.io"
STANDARD_LABELS = ["helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/version", "app.kubernetes.io/managed-by"]
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}

failures: list[str] = []


def check(cond: bool, message: str) -> None:
    if not cond:
        failures.append(message)


def load(path: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def find(docs, kind, name=None):
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs, kind, name=None) -> dict:
    found = find(docs, kind, name)
    check(len(found) == 1, f"expected one {kind}{' ' + name if name else ''}, found {len(found)}")
    return found[0] if found else {"metadata": {}, "spec": {}, "rules": []}


def permissions(role: dict) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role.get("rules", []):
        for field in ("apiGroups", "resources", "verbs"):
            check("*" not in rule.get(field, []), f"{role['kind']} {role['metadata']['name']}: wildcard in {field}")
        check(not rule.get("resourceNames"), f"{role['kind']} {role['metadata']['name']}: unexpected resourceNames")
        for g in rule.get("apiGroups", []):
            for r in rule.get("resources", []):
                out.setdefault((g, r), set()).update(rule.get("verbs", []))
    return out


def check_operator_role(role: dict) -> None:
    got = permissions(role)
    check(got == EXPECTED_RULES,
          f"{role['kind']} {role['metadata']['name']} differs from the operator's needs:\n"
          f"  extra:   {sorted((k, sorted(v - EXPECTED_RULES.get(k, set()))) for k, v in got.items() if v - EXPECTED_RULES.get(k, set()))}\n"
          f"  missing: {sorted((k, sorted(v - got.get(k, set()))) for k, v in EXPECTED_RULES.items() if v - got.get(k, set()))}")


def check_lease_role(role: dict, lease: str) -> None:
    rules = role.get("rules", [])
    named = [r for r in rules if r.get("resourceNames")]
    unnamed = [r for r in rules if not r.get("resourceNames")]
    check(len(named) == 1 and named[0]["resourceNames"] == [lease] and set(named[0]["verbs"]) == {"get", "update"}
          and named[0]["resources"] == ["leases"] and named[0]["apiGroups"] == ["coordination.k8s.io"],
          f"leader-election Role: expected get/update on lease {lease} only, got {named}")
    check(len(unnamed) == 1 and unnamed[0]["verbs"] == ["create"] and unnamed[0]["resources"] == ["leases"],
          f"leader-election Role: expected create on leases, got {unnamed}")


def check_crd_role(role: dict) -> None:
    for rule in role.get("rules", []):
        check(rule.get("apiGroups") == ["apiextensions.k8s.io"] and rule.get("resources") == ["customresourcedefinitions"],
              f"CRD ClusterRole: unexpected rule {rule}")
        if rule.get("resourceNames"):
            check(rule["resourceNames"] == [CRD_NAME] and set(rule["verbs"]) == {"get", "list", "watch", "patch"},
                  f"CRD ClusterRole: unexpected named rule {rule}")
        else:
            check(rule["verbs"] == ["create"], f"CRD ClusterRole: only create may be unnamed, got {rule}")


def container(docs, name) -> dict:
    dep = one(docs, "Deployment", name)
    containers = dep.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])
    check(len(containers) == 1, "the operator Deployment must have one container")
    return containers[0]


def check_hardening(docs, name) -> None:
    dep = one(docs, "Deployment", name)
    pod = dep["spec"]["template"]["spec"]
    c = container(docs, name)
    psc, sc = pod.get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532, "pod must run as non-root uid 65532")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccomp must be RuntimeDefault")
    check(sc.get("readOnlyRootFilesystem") is True, "container root filesystem must be read-only")
    check(sc.get("allowPrivilegeEscalation") is False, "container must not escalate privileges")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "container must drop ALL capabilities")
    env = {e["name"]: e for e in c.get("env", [])}
    for var, path in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        check(env.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == path,
              f"env {var} must come from the downward API ({path})")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check("metrics" in ports, "the container must name its metrics port")
    check(c.get("livenessProbe", {}).get("httpGet") == {"path": "/healthz", "port": "metrics"}, "liveness probe on /healthz")
    check(c.get("readinessProbe", {}).get("httpGet") == {"path": "/readyz", "port": "metrics"}, "readiness probe on /readyz")
    check(f"--metrics-listen=0.0.0.0:{ports.get('metrics')}" in c.get("args", []), "--metrics-listen must match the metrics port")
    check(c.get("resources", {}).get("limits", {}).get("memory"), "the container needs a memory limit")


def check_labels_and_namespaces(docs, namespace) -> None:
    for d in docs:
        md = d["metadata"]
        what = f"{d['kind']} {md['name']}"
        if d["kind"] != "CustomResourceDefinition" and d["kind"] != "Namespace":
            for label in STANDARD_LABELS:
                check(label in (md.get("labels") or {}), f"{what}: label {label} is missing")
        if d["kind"] in CLUSTER_SCOPED:
            check("namespace" not in md, f"{what}: cluster-scoped object with a namespace")
        elif d["kind"] not in ("Role", "RoleBinding"):
            check(md.get("namespace") == namespace, f"{what}: namespace {md.get('namespace')!r}, want {namespace!r}")


def args_of(docs, name) -> list[str]:
    return container(docs, name).get("args", [])


def check_namespaced_roles(docs, name, namespace, watched) -> None:
    """The operator's rules are a Role and RoleBinding in each watched namespace, nothing else."""
    check(not find(docs, "ClusterRole", name), "namespaced by default: no operator ClusterRole")
    check(not find(docs, "ClusterRoleBinding", name), "namespaced by default: no ClusterRoleBinding")
    for d in find(docs, "ClusterRole"):
        for rule in d.get("rules", []):
            check(not ({"secrets", "deployments", "statefulsets", "services", "serviceaccounts"}
                       & set(rule.get("resources", []))),
                  f"ClusterRole {d['metadata']['name']} grants namespaced resources cluster-wide")
    roles = [r for r in find(docs, "Role", name)]
    check(sorted(r["metadata"].get("namespace") for r in roles) == sorted(watched),
          f"operator Roles must live in {watched}, got {[r['metadata'].get('namespace') for r in roles]}")
    for role in roles:
        check_operator_role(role)
    bindings = find(docs, "RoleBinding", name)
    check(sorted(b["metadata"].get("namespace") for b in bindings) == sorted(watched),
          f"operator RoleBindings must live in {watched}")
    for rb in bindings:
        check(rb.get("roleRef", {}).get("kind") == "Role" and rb.get("roleRef", {}).get("name") == name
              and rb["subjects"][0]["namespace"] == namespace,
              "each RoleBinding binds the operator's Role to the ServiceAccount of the release namespace")
    check(f"--namespace={','.join(watched)}" in args_of(docs, name),
          f"--namespace must list the watched namespaces {watched}")


def case_default(docs, name="authstack-operator", namespace="authstack-system") -> None:
    check_labels_and_namespaces(docs, namespace)
    check_namespaced_roles(docs, name, namespace, [namespace])
    check_lease_role(one(docs, "Role", f"{name}-leader-election"), name)
    check(not find(docs, "ClusterRole", f"{name}-crd"), "no CRD permissions without installCRD")
    check(not any("apiextensions.k8s.io" in r.get("apiGroups", []) for d in docs
                  if d["kind"] in ("ClusterRole", "Role") for r in d.get("rules", [])),
          "no apiextensions rule without installCRD")
    check(not find(docs, "ServiceMonitor"), "no ServiceMonitor by default")
    check(one(docs, "PodDisruptionBudget", name).get("spec", {}).get("maxUnavailable") == 1, "PDB maxUnavailable 1")
    dep = one(docs, "Deployment", name)
    check(dep["spec"]["replicas"] == 2, "2 replicas by default")
    check(dep["spec"]["strategy"]["type"] == "RollingUpdate", "RollingUpdate with leader election")
    c = container(docs, name)
    check(c.get("image") == "ghcr.io/authstack/operator:0.1.0", f"image defaults to the appVersion tag, got {c.get('image')}")
    a = args_of(docs, name)
    for flag in (f"--namespace={namespace}", "--leader-election=true", f"--lease-name={name}", "--install-crd=false"):
        check(flag in a, f"default args must contain {flag} (got {a})")
    check(not any(x.startswith(("--auth-svc-image", "--gateway-image", "--postgres-image", "--rabbitmq-image"))
                  for x in a),
          "no image overrides by default (the operator's built-in defaults apply)")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    check(env.get("LOG_FORMAT") == "json", "LOG_FORMAT must default to json")
    check_hardening(docs, name)
    svc = one(docs, "Service", f"{name}-metrics")
    check(svc.get("spec", {}).get("ports", [{}])[0].get("targetPort") == "metrics", "metrics Service targets the metrics port")
    for d in find(docs, "ClusterRole"):
        if d["metadata"]["name"] != name:
            check(d["metadata"]["name"] in (f"{name}-view", f"{name}-edit"), f"unexpected ClusterRole {d['metadata']['name']}")


def case_all_options(docs, name="authstack-operator-all", namespace="authstack-system",
                     watch=("team-a", "team-b")) -> None:
    check_labels_and_namespaces(docs, namespace)
    check_namespaced_roles(docs, name, namespace, list(watch))
    check_lease_role(one(docs, "Role", f"{name}-leader-election"), "authstack-operator-lease")
    check(one(docs, "Role", f"{name}-leader-election")["metadata"].get("namespace") == namespace,
          "the Lease Role lives in the release namespace")
    check_crd_role(one(docs, "ClusterRole", f"{name}-crd"))
    one(docs, "ClusterRoleBinding", f"{name}-crd")
    sm = one(docs, "ServiceMonitor", name)
    check(sm.get("spec", {}).get("endpoints", [{}])[0].get("port") == "metrics", "ServiceMonitor scrapes the metrics port")
    one(docs, "PodDisruptionBudget", name)
    a = args_of(docs, name)
    for flag in ("--install-crd=true", "--leader-election=true",
                 "--lease-name=authstack-operator-lease", "--lease-duration=20s",
                 "--auth-svc-image=registry.example.com/authstack/auth-svc:0.1.0",
                 "--gateway-image=registry.example.com/authstack/gateway:0.1.0",
                 "--postgres-image=registry.example.com/authstack/postgres:17",
                 "--rabbitmq-image=registry.example.com/authstack/rabbitmq:4.0",
                 "--metrics-listen=0.0.0.0:9090"):
        check(flag in a, f"all-options args must contain {flag} (got {a})")
    c = container(docs, name)
    check("@sha256:" in c.get("image", ""), "a digest wins over the tag")
    check_hardening(docs, name)


def case_cluster_wide(docs, name="authstack-operator", namespace="authstack-system") -> None:
    check_labels_and_namespaces(docs, namespace)
    check_operator_role(one(docs, "ClusterRole", name))
    crb = one(docs, "ClusterRoleBinding", name)
    check(crb.get("roleRef", {}).get("name") == name and crb["subjects"][0]["namespace"] == namespace,
          "ClusterRoleBinding must bind the operator's ClusterRole to its ServiceAccount")
    check(not find(docs, "Role", name) and not find(docs, "RoleBinding", name),
          "clusterWide: no namespaced operator Role")
    check("--namespace=" in args_of(docs, name), "clusterWide: --namespace= (every namespace)")


def case_single(docs, name="authstack-operator", namespace="authstack-system") -> None:
    check_labels_and_namespaces(docs, namespace)
    check(not find(docs, "PodDisruptionBudget"), "no PodDisruptionBudget with one replica")
    check(not find(docs, "Role", f"{name}-leader-election"), "no Lease Role without leader election")
    dep = one(docs, "Deployment", name)
    check(dep["spec"]["strategy"]["type"] == "Recreate", "Recreate strategy without leader election")
    a = args_of(docs, name)
    check("--leader-election=false" in a and not any(x.startswith("--lease-") for x in a),
          f"no lease flags without leader election (got {a})")


def case_no_monitoring(docs, name="authstack-operator", namespace="authstack-system") -> None:
    check(not find(docs, "ServiceMonitor"), "no ServiceMonitor when monitoring.coreos.com/v1 is not served")


def case_install(docs, namespace="authstack-system") -> None:
    check(docs and docs[0]["kind"] == "Namespace" and docs[0]["metadata"]["name"] == namespace,
          f"install.yaml must start with Namespace {namespace}")
    check(len(find(docs, "CustomResourceDefinition", CRD_NAME)) == 1, "install.yaml must contain the CRD")
    kinds = [d["kind"] for d in docs]
    check(kinds.index("CustomResourceDefinition") < kinds.index("Deployment"), "the CRD comes before the Deployment")
    case_default([d for d in docs if d["kind"] not in ("Namespace", "CustomResourceDefinition")])


# Values whose content is free-form Kubernetes (or string maps): documented as a whole.
FREEFORM = {"resources", "podSecurityContext", "securityContext", "nodeSelector", "affinity",
            "podAnnotations", "podLabels", "serviceAccount.annotations",
            "metrics.service.annotations", "metrics.serviceMonitor.labels"}


def value_paths(values: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in FREEFORM:
            out |= value_paths(value, f"{path}.")
        else:
            out.add(path)
    return out


def case_values_doc(chart_dir: str) -> None:
    import re
    chart = Path(chart_dir)
    values = yaml.safe_load((chart / "values.yaml").read_text())
    readme = (chart / "README.md").read_text()
    section = re.search(r"^## Values\n(.*?)(?=^## )", readme, re.M | re.S)
    if not section:
        failures.append("README.md has no '## Values' section")
        return
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", section.group(1), re.M))
    paths = value_paths(values)
    for missing in sorted(paths - documented):
        failures.append(f"value {missing} is not documented in README.md (a `| `{missing}` | default | ... |` row)")
    for extra in sorted(documented - paths):
        failures.append(f"README.md documents {extra}, which is not in values.yaml")


CASES = {
    "default": case_default,
    "cluster-wide": case_cluster_wide,
    "all-options": case_all_options,
    "single": case_single,
    "no-monitoring": case_no_monitoring,
    "install": case_install,
}
DIRECTORY_CASES = {"values-doc": case_values_doc}


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in {**CASES, **DIRECTORY_CASES}:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join([*CASES, *DIRECTORY_CASES])}}} FILE")
    case, path = sys.argv[1], sys.argv[2]
    if case in DIRECTORY_CASES:
        docs = []
        DIRECTORY_CASES[case](path)
    else:
        docs = load(path)
        CASES[case](docs)
    if failures:
        print(f"FAIL chart assertions ({case}, {path}):", file=sys.stderr)
        for f in failures:
            print(f"       {f}", file=sys.stderr)
        return 1
    print(f"ok   chart assertions: {case}" + (f" ({len(docs)} objects)" if docs else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
