#!/usr/bin/env python3
"""Faults on the real node, under load: on the stack of `cluster_check.py` (AuthStack `demo`
Ready), with accounts registered beforehand and loadgen's /users/me traffic through the
gateway's Service, the PostgreSQL pod, the RabbitMQ pod and one auth-svc pod are deleted one
after the other. For each: the controller brings the pod back (a new pod, Running and Ready),
and a prober (/users/me and /api/v1/auth/session every 200 ms) sees the stack answer again.
At the end every account still logs in (PostgreSQL kept its volume) and no gateway container
restarted (it recovered by itself).

Reports, per deleted pod, the time until its replacement is Ready and until /users/me answers
again, the prober's failed requests, and loadgen's totals.

  fault_check.py --loadgen BIN [--accounts N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time

from checks import CheckFailed, check, http, log
from cluster_check import NAMESPACE_STACK, STACK, condition, get, kubectl

PASSWORD = "fault check password 1"
PROBE_EVERY = 0.2
RECOVERY_TIMEOUT = 300.0
# loadgen's run: long enough for the three faults on a warm node (it ends on its own).
LOAD_SECONDS = 180


class Prober(threading.Thread):
    """/users/me (RPC + PostgreSQL) and /session (the gateway alone) every 200 ms; the time
    of the last success of each."""

    def __init__(self, base: str, token: str):
        super().__init__(daemon=True)
        self.base, self.token = base, token
        self.stop = threading.Event()
        self.last_ok = {"me": 0.0, "session": 0.0}
        self.failed = {"me": 0, "session": 0}

    def run(self) -> None:
        paths = {"me": "/api/v1/users/me", "session": "/api/v1/auth/session"}
        while not self.stop.is_set():
            for name, path in paths.items():
                try:
                    ok = http("GET", self.base + path, token=self.token)[0] == 200
                except OSError:
                    ok = False
                if ok:
                    self.last_ok[name] = time.monotonic()
                else:
                    self.failed[name] += 1
            self.stop.wait(PROBE_EVERY)


def restarts(component: str) -> int:
    return sum(cs.get("restartCount", 0) for p in component_pods(component)
               for cs in p["status"].get("containerStatuses") or [])


def component_pods(component: str) -> list[dict]:
    return [p for p in get("pods", NAMESPACE_STACK)["items"]
            if p["metadata"]["name"].startswith(f"{STACK}-{component}-")]


def delete_and_recover(component: str, pod: str, prober: Prober) -> tuple[float, float]:
    """Deletes `pod` of `component`; seconds until a new pod of the component is Ready and
    until /users/me answers again."""
    before = {p["metadata"]["uid"] for p in component_pods(component)}
    deleted = time.monotonic()
    kubectl("-n", NAMESPACE_STACK, "delete", "pod", pod, "--wait=false")
    ready_after = me_after = None
    while ready_after is None or me_after is None:
        now = time.monotonic()
        if now - deleted > RECOVERY_TIMEOUT:
            raise CheckFailed(f"{pod}: no recovery within {RECOVERY_TIMEOUT:.0f} s")
        if ready_after is None:
            fresh = [p for p in component_pods(component)
                     if p["metadata"]["uid"] not in before and condition(p, "Ready") == "True"]
            if fresh:
                ready_after = now - deleted
        if me_after is None and prober.last_ok["me"] > deleted + 1 and ready_after is not None:
            me_after = prober.last_ok["me"] - deleted
        time.sleep(0.5)
    return ready_after, me_after


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loadgen", required=True, help="the loadgen binary (crate authstack-bench)")
    p.add_argument("--accounts", type=int, default=5, help="accounts that must survive (≤ 15: register limit)")
    p.add_argument("--connections", type=int, default=8)
    args = p.parse_args()
    svc = get("service", NAMESPACE_STACK, f"{STACK}-gateway")
    base = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
    try:
        emails = [f"fault{i}@example.com" for i in range(args.accounts)]
        for i, email in enumerate(emails):
            status, _ = http("POST", f"{base}/api/v1/auth/register",
                             {"email": email, "username": f"fault{i}", "password": PASSWORD})
            check(status in (201, 409), f"account {email} registered ({status})")
        status, body = http("POST", f"{base}/api/v1/auth/login", {"login": emails[0], "password": PASSWORD})
        check(status == 200, "the prober's login")
        gateway_restarts = restarts("gateway")

        auth_svc = sorted(p["metadata"]["name"] for p in component_pods("auth-svc"))[0]
        victims = [("postgres", f"{STACK}-postgres-0"), ("rabbitmq", f"{STACK}-rabbitmq-0"), ("auth-svc", auth_svc)]
        load = subprocess.Popen(
            [args.loadgen, "--base", base, "--scenario", "me", "--connections", str(args.connections),
             "--users", "4", "--user-prefix", "fault-load", "--warmup", "2", "--duration", str(LOAD_SECONDS)],
            # One line per failed request on stderr: counted in its report instead.
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        prober = Prober(base, body["access_token"])
        prober.start()
        time.sleep(10)
        print(f'{"deleted pod":<36} {"pod Ready s":>11} {"/users/me s":>11}')
        for component, victim in victims:
            ready_after, me_after = delete_and_recover(component, victim, prober)
            print(f"{victim:<36} {ready_after:>11.1f} {me_after:>11.1f}", flush=True)
            time.sleep(10)
        out, _ = load.communicate(timeout=LOAD_SECONDS + 60)
        prober.stop.set()
        prober.join()
        totals = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        if totals:
            log(f"loadgen: {totals[-1].get('ok')} served, {totals[-1].get('failed')} failed")
        log(f"prober failures: /users/me {prober.failed['me']}, /session {prober.failed['session']}")

        for email in emails:
            status, _ = http("POST", f"{base}/api/v1/auth/login", {"login": email, "password": PASSWORD})
            check(status == 200, f"{email} still logs in after the faults")
        check(restarts("gateway") == gateway_restarts, "no gateway container restarted")
    except CheckFailed as e:
        log(f"FAILED: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
