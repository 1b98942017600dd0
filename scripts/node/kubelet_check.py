#!/usr/bin/env python3
"""The operator's pod specs on a real kubelet: renders a sample AuthStack with
`authstack-render` (the images of `make images`), runs PostgreSQL, RabbitMQ, auth-svc and the
gateway as static pods of a standalone kubelet on AuthStack's node (containerd, runc, CNI),
and checks, from outside the pods:

  - every pod becomes Ready by the operator's own probes (the kubelet's status);
  - each container runs as the builders say (runc's spec: uid/gid, no_new_privs, no
    capabilities, read-only root where claimed, a seccomp filter);
  - PostgreSQL answers psql over TCP as the superuser and as auth-svc's least-privilege role
    (created by the postStart hook); RabbitMQ answers AMQP;
  - auth-svc and the gateway answer /healthz and /readyz; a user registers and logs in
    through the gateway (gateway -> RabbitMQ -> auth-svc -> PostgreSQL).

Expects the node up with its kubelet (scripts/node/up.sh --kubelet). Run by
`make node-check`, which starts and removes the node around it.

  kubelet_check.py --render BIN --sample FILE --work DIR
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml
from checks import CheckFailed, check, http, log

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def env(name: str) -> str:
    """A setting of scripts/node/env.sh."""
    out = subprocess.run(["bash", "-c", f'source "{HERE}/env.sh" && printf %s "${name}"'],
                         capture_output=True, text=True, check=True)
    return out.stdout


NETNS, STATE = env("NODE_NETNS"), Path(env("NODE_STATE"))
KUBELET_PORT = env("KUBELET_PORT")
CRICTL = [f"{env('CRICTL_DIR')}/bin/crictl", "--config", f"{STATE}/crictl.yaml"]
REGISTRY, TAG = "ghcr.io/authstack", "0.1.0"


def kubelet_pods() -> list[dict]:
    """The kubelet's pods with their status (a standalone kubelet reports static pods' status
    on /pods)."""
    out = subprocess.run(["nsenter", f"--net=/var/run/netns/{NETNS}", "curl", "-sfk",
                          f"https://127.0.0.1:{KUBELET_PORT}/pods"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout).get("items") or []


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def wait_ready(names: list[str], timeout: float) -> dict[str, dict]:
    """Waits until the kubelet reports every named pod Ready; returns them by name."""
    deadline, last = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        pods = {p["metadata"]["name"].removesuffix(f"-{env('NODE_NAME')}"): p for p in kubelet_pods()}
        last = {n: pods.get(n) for n in names}
        if all(p and ready(p) for p in last.values()):
            return last
        time.sleep(2)
    states = {n: (p or {}).get("status", {}).get("containerStatuses") for n, p in last.items()}
    raise CheckFailed(f"pods not Ready within {timeout:.0f}s: {json.dumps(states, indent=1)[:3000]}")


def static_pods(rendered: Path, only: list[str], hosts: dict[str, str]) -> None:
    cmd = [sys.executable, str(HERE / "static_pods.py"), str(rendered),
           "--manifests", str(STATE / "manifests"), "--volumes", str(STATE / "volumes"),
           "--only", *only]
    for svc, ip in hosts.items():
        cmd += ["--host", f"{svc}={ip}"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def secret(objects: list[dict], name: str, key: str) -> str:
    for o in objects:
        if o["kind"] == "Secret" and o["metadata"]["name"] == name:
            return base64.b64decode(o["data"][key]).decode()
    raise CheckFailed(f"no Secret {name}")


def container_of(objects: list[dict], workload: str) -> dict:
    for o in objects:
        if o["kind"] in ("StatefulSet", "Deployment") and o["metadata"]["name"] == workload:
            return o["spec"]["template"]["spec"]["containers"][0]
    raise CheckFailed(f"no workload {workload}")


def runtime_spec(container_id: str) -> dict:
    out = subprocess.run([*CRICTL, "inspect", container_id], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["info"]["runtimeSpec"]


def check_security(objects: list[dict], workload: str, pod: dict) -> None:
    """What runc was told matches the builder's securityContext."""
    want = container_of(objects, workload)["securityContext"]
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    spec = runtime_spec(cid)
    user, process = spec["process"]["user"], spec["process"]
    caps = process.get("capabilities") or {}
    check(user["uid"] == want["runAsUser"] and user["gid"] == want["runAsGroup"],
          f"{workload}: runs as {user['uid']}:{user['gid']}")
    check(process.get("noNewPrivileges") is True, f"{workload}: no_new_privs")
    check(not any(caps.get(k) for k in ("bounding", "effective", "permitted", "inheritable", "ambient")),
          f"{workload}: no capabilities")
    check(bool(spec["root"].get("readonly")) == want["readOnlyRootFilesystem"],
          f"{workload}: read-only root = {want['readOnlyRootFilesystem']}")
    seccomp = spec["linux"].get("seccomp") or {}
    check(seccomp.get("defaultAction") in ("SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS") and seccomp.get("syscalls"),
          f"{workload}: seccomp RuntimeDefault filter ({seccomp.get('defaultAction')})")


def psql(url: str, sql: str) -> str:
    out = subprocess.run(["psql", "-X", "-tA", url, "-c", sql], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise CheckFailed(f"psql {url.split('@')[-1]}: {out.stderr.strip()}")
    return out.stdout.strip()


def amqp_greeting(host: str, port: int = 5672) -> bytes:
    """The server's first frame after the AMQP 0-9-1 protocol header (Connection.Start)."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        return s.recv(7)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--render", required=True, help="the authstack-render binary")
    p.add_argument("--sample", type=Path, default=REPO / "manifests/samples/minimal.yaml")
    p.add_argument("--namespace", default="auth")
    p.add_argument("--work", type=Path, required=True, help="where the rendered objects are written")
    p.add_argument("--timeout", type=float, default=300)
    args = p.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    rendered = args.work / "rendered.yaml"
    images = ["--auth-svc-image", f"{REGISTRY}/auth-svc:{TAG}", "--gateway-image", f"{REGISTRY}/gateway:{TAG}",
              "--postgres-image", f"{REGISTRY}/postgres:17", "--rabbitmq-image", f"{REGISTRY}/rabbitmq:4.0"]
    with rendered.open("w") as f:
        subprocess.run([args.render, str(args.sample), "--namespace", args.namespace, *images],
                       stdout=f, check=True)
    objects = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    name = next(o for o in objects if o["kind"] == "StatefulSet")["metadata"]["labels"]["app.kubernetes.io/instance"]
    pg, mq, svc, gw = (f"{name}-{c}" for c in ("postgres", "rabbitmq", "auth-svc", "gateway"))

    try:
        t0 = time.monotonic()
        static_pods(rendered, [pg, mq], {})
        backing = wait_ready([f"{pg}-0", f"{mq}-0"], args.timeout)
        log(f"PostgreSQL and RabbitMQ Ready in {time.monotonic() - t0:.0f}s")
        ips = {pg: backing[f"{pg}-0"]["status"]["podIP"], mq: backing[f"{mq}-0"]["status"]["podIP"]}
        t1 = time.monotonic()
        static_pods(rendered, [svc, gw], ips)
        services = wait_ready([f"{svc}-static", f"{gw}-static"], args.timeout)
        log(f"auth-svc and the gateway Ready in {time.monotonic() - t1:.0f}s")
        pods = {**backing, **services}

        for workload, pod in ((pg, pods[f"{pg}-0"]), (mq, pods[f"{mq}-0"]),
                              (svc, pods[f"{svc}-static"]), (gw, pods[f"{gw}-static"])):
            check_security(objects, workload, pod)

        db = secret(objects, pg, "database")
        superuser = f"postgres://{secret(objects, pg, 'username')}:{secret(objects, pg, 'password')}@{ips[pg]}:5432/{db}"
        check(psql(superuser, "select 1") == "1", "PostgreSQL answers psql over TCP (superuser, scram)")
        role = f"postgres://{secret(objects, f'{name}-auth-svc-db', 'username')}:" \
               f"{secret(objects, f'{name}-auth-svc-db', 'password')}@{ips[pg]}:5432/{db}"
        check(psql(role, "select current_user") == "auth_svc", "auth-svc's role logs in (postStart hook ran)")
        check(psql(superuser, "select rolsuper from pg_roles where rolname = 'auth_svc'") == "f",
              "auth-svc's role is not a superuser")
        check(amqp_greeting(ips[mq])[:1] == b"\x01", "RabbitMQ answers AMQP 0-9-1 (Connection.Start)")

        svc_ip, gw_ip = pods[f"{svc}-static"]["status"]["podIP"], pods[f"{gw}-static"]["status"]["podIP"]
        for what, base in (("auth-svc", f"http://{svc_ip}:8081"), ("gateway", f"http://{gw_ip}:8080")):
            for path in ("/healthz", "/readyz"):
                status, _ = http("GET", base + path)
                check(status == 200, f"{what} {path} answers 200")
        user = {"email": "node-check@example.com", "username": "nodecheck", "password": "correct horse battery"}
        status, body = http("POST", f"http://{gw_ip}:8080/api/v1/auth/register", user)
        check(status == 201, f"register through the gateway: {status} {body}")
        status, body = http("POST", f"http://{gw_ip}:8080/api/v1/auth/login",
                            {"login": user["username"], "password": user["password"]})
        check(status == 200 and body.get("access_token"), f"login through the gateway: {status}")
        log(f"all checks passed ({time.monotonic() - t0:.0f}s)")
        return 0
    except (CheckFailed, subprocess.CalledProcessError) as e:
        log(f"FAILED: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
