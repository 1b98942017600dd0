#!/usr/bin/env python3
"""AuthStack for real on `make cluster-up NODE=real`, the way a cluster admin installs it:

  1. `helm install` of charts/authstack-operator with the images of `make images` (the
     operator's own, and the local PostgreSQL and RabbitMQ stand-ins as the managed defaults);
     the operator's Deployment becomes Available (it reaches kube-apiserver through the
     `kubernetes` Service, i.e. kube-proxy);
  2. `kubectl apply` of manifests/samples/minimal.yaml: the AuthStack becomes Ready, every pod
     of the stack Running and Ready under the operator's security contexts (the services find
     PostgreSQL and RabbitMQ through CoreDNS, their volumes are the node's local volumes);
  3. from the host, through the gateway's Service (its ClusterIP, kube-proxy's rules): a user
     registers and logs in, and the access token verifies on /api/v1/users/me.

Prints the time from `kubectl apply` to Ready. Run by `make test-node`, which starts and
removes the cluster around it; expects KUBECONFIG of that cluster.

  cluster_check.py [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from checks import CheckFailed, check, http, log

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NAMESPACE_OPERATOR = "authstack-system"
NAMESPACE_STACK = "auth"
STACK = "demo"  # metadata.name in manifests/samples/minimal.yaml
LOCAL_IMAGES = {  # what scripts/images/images.toml tags the stand-ins as
    "postgresImage": "ghcr.io/authstack/postgres:17",
    "rabbitmqImage": "ghcr.io/authstack/rabbitmq:4.0",
}


def tool(name: str) -> str:
    out = subprocess.run([str(REPO / "scripts/k8s-tools.sh"), "--print-path", name],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


KUBECTL = tool("kubectl")
HELM = tool("helm")


def run(*args: str, stdin: str | None = None) -> str:
    out = subprocess.run(list(args), input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        raise CheckFailed(f"{' '.join(args[:4])} ... failed: {out.stderr.strip()}")
    return out.stdout


def kubectl(*args: str) -> str:
    return run(KUBECTL, *args)


def get(kind: str, namespace: str, name: str = "") -> dict:
    return json.loads(kubectl("-n", namespace, "get", kind, *([name] if name else []), "-o", "json"))


def condition(obj: dict, kind: str) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c.get("status")
    return None


def wait(what: str, timeout: float, probe) -> float:
    """Polls `probe` until it returns true; the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            if probe():
                return time.monotonic() - started
        except CheckFailed:
            pass
        if time.monotonic() - started > timeout:
            raise CheckFailed(f"{what}: not within {timeout:.0f} s")
        time.sleep(2)


def pods_ready(namespace: str) -> list[dict]:
    return [p for p in get("pods", namespace)["items"] if condition(p, "Ready") == "True"]


def describe_pods(namespace: str) -> None:
    print(kubectl("-n", namespace, "get", "pods", "-o", "wide"), file=sys.stderr)
    print(kubectl("-n", namespace, "get", "events", "--sort-by=.lastTimestamp"), file=sys.stderr)


def install_operator(timeout: float) -> None:
    kubectl("create", "namespace", NAMESPACE_STACK)
    settings = [f"--set={k}={v}" for k, v in LOCAL_IMAGES.items()]
    settings.append(f"--set=watchNamespaces={{{NAMESPACE_STACK}}}")
    run(HELM, "install", "authstack-operator", str(REPO / "charts/authstack-operator"),
        "--namespace", NAMESPACE_OPERATOR, "--create-namespace", *settings)
    took = wait("the operator's Deployment Available", timeout, lambda: condition(
        get("deployment", NAMESPACE_OPERATOR, "authstack-operator"), "Available") == "True")
    check(True, f"helm install: the operator is Available after {took:.0f} s")


def apply_sample(timeout: float) -> float:
    kubectl("-n", NAMESPACE_STACK, "apply", "-f", str(REPO / "manifests/samples/minimal.yaml"))
    try:
        return wait(f"AuthStack {STACK} Ready", timeout, lambda: condition(
            get("authstack", NAMESPACE_STACK, STACK), "Ready") == "True")
    except CheckFailed:
        describe_pods(NAMESPACE_STACK)
        print(json.dumps(get("authstack", NAMESPACE_STACK, STACK).get("status"), indent=2), file=sys.stderr)
        raise


def check_pods() -> None:
    pods = get("pods", NAMESPACE_STACK)["items"]
    for p in pods:
        name, phase = p["metadata"]["name"], p["status"].get("phase")
        check(phase == "Running" and condition(p, "Ready") == "True", f"pod {name}: {phase}, Ready")
    names = " ".join(sorted(p["metadata"]["name"] for p in pods))
    for component in ("postgres", "rabbitmq", "auth-svc", "gateway"):
        check(f"{STACK}-{component}" in names, f"a {component} pod runs")


def check_gateway() -> None:
    svc = get("service", NAMESPACE_STACK, f"{STACK}-gateway")
    ip, port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["port"]
    base = f"http://{ip}:{port}"
    status, _ = http("GET", f"{base}/readyz")
    check(status == 200, f"gateway Service {ip}:{port} /readyz answers 200 from the host")
    user = {"email": "cluster-check@example.com", "username": "clustercheck",
            "password": "correct horse battery staple 9"}
    status, body = http("POST", f"{base}/api/v1/auth/register", user)
    check(status == 201, f"register through the gateway's Service: {status}")
    status, body = http("POST", f"{base}/api/v1/auth/login",
                        {"login": user["email"], "password": user["password"]})
    check(status == 200 and isinstance(body, dict), f"login through the gateway's Service: {status}")
    token = body.get("access_token") if isinstance(body, dict) else None
    status, me = http("GET", f"{base}/api/v1/users/me", token=token)
    check(status == 200 and isinstance(me, dict) and me.get("email") == user["email"],
          f"the access token verifies on /api/v1/users/me: {status}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timeout", type=float, default=600, help="seconds for each wait")
    args = p.parse_args()
    if not os.environ.get("KUBECONFIG"):
        log("error: KUBECONFIG is not set (make cluster-up NODE=real prints it)")
        return 2
    started = time.monotonic()
    try:
        install_operator(args.timeout)
        took = apply_sample(args.timeout)
        check(True, f"kubectl apply -> AuthStack Ready in {took:.0f} s")
        check_pods()
        check_gateway()
    except CheckFailed as e:
        log(f"FAILED: {e}")
        return 1
    log(f"all checks passed ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
