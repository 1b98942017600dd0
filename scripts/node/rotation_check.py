#!/usr/bin/env python3
"""Key rotation on the real node, under load, from outside the pods: the stack of
`cluster_check.py` (AuthStack `demo` in namespace `auth`, Ready) serves steady traffic through
the gateway's Service (ClusterIP, kube-proxy) while

  1. `kubectl authstack rotate` requests a rotation; the real kubelet propagates the signing
     Secret to the auth-svc pods by itself; a prober logs in every second and uses each new
     token at once (/users/me), until tokens carry the new key id;
  2. after the load, `kubectl authstack revoke` revokes the key that signed before the
     rotation: a token it signed must be refused by the gateway (401) within the stack's
     propagation delay.

Reports requests served and failed, p50/p99 before, during and after the rotation (loadgen
phases), the time from the request to the first token of the new key, and the time from the
revoke to the refusal. Exits non-zero on any failed request, on a token of the new key that
does not verify, or when the revoked key's token is still accepted after the propagation delay.

  rotation_check.py --loadgen BIN --plugin BIN [--before S] [--after S] [--connections N]
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from checks import CheckFailed, check, http, log
from cluster_check import NAMESPACE_STACK, STACK, get

USER = {"email": "rotation@example.com", "username": "rotationprobe", "password": "rotation probe password 1"}


def kid_of(token: str) -> str:
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]


def seconds(duration: str) -> float:
    """A Go duration of the AuthStack's spec (`2m`, `90s`, `1m30s`)."""
    total, number = 0.0, ""
    units = {"h": 3600, "m": 60, "s": 1}
    for ch in duration:
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units:
            total += float(number) * units[ch]
            number = ""
        else:
            raise CheckFailed(f"unexpected duration {duration!r}")
    return total


class Prober(threading.Thread):
    """Logs in every second (under auth-svc's per-address login limit) and verifies each new
    token at once through the gateway; records when tokens carry a new key id."""

    def __init__(self, base: str, old_kid: str):
        super().__init__(daemon=True)
        self.base, self.old_kid = base, old_kid
        self.stop = threading.Event()
        self.logins = self.failures = 0
        self.first_new_kid_at: float | None = None
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            status, body = http("POST", f"{self.base}/api/v1/auth/login",
                                {"login": USER["email"], "password": USER["password"]})
            self.logins += 1
            if status != 200 or not isinstance(body, dict):
                self.failures += 1
                self.errors.append(f"login {status}")
            else:
                token = body["access_token"]
                me_status, _ = http("GET", f"{self.base}/api/v1/users/me", token=token)
                if me_status != 200:
                    self.failures += 1
                    self.errors.append(f"/users/me {me_status} with a token of {kid_of(token)}")
                if kid_of(token) != self.old_kid and self.first_new_kid_at is None:
                    self.first_new_kid_at = time.monotonic()
            self.stop.wait(1.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loadgen", required=True, help="the loadgen binary (crate authstack-bench)")
    p.add_argument("--plugin", required=True, help="the kubectl-authstack binary")
    p.add_argument("--before", type=float, default=20, help="seconds of load before the rotation")
    p.add_argument("--after", type=float, default=20, help="seconds of load after the new key signs")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--users", type=int, default=8, help="loadgen's users (auth-svc limits registrations per address)")
    args = p.parse_args()

    svc = get("service", NAMESPACE_STACK, f"{STACK}-gateway")
    base = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
    stack = get("authstack", NAMESPACE_STACK, STACK)
    delay = seconds(stack["spec"].get("keys", {}).get("propagationDelay", "2m"))
    old_kid = stack["status"]["keys"]["activeKid"]
    try:
        http("POST", f"{base}/api/v1/auth/register", USER)
        status, body = http("POST", f"{base}/api/v1/auth/login", {"login": USER["email"], "password": USER["password"]})
        check(status == 200 and kid_of(body["access_token"]) == old_kid, f"a token of the active key {old_kid}")
        old_token = body["access_token"]

        # The rotation completes within the propagation delay plus a kubelet sync (~1 min).
        during = delay + 90
        total = args.before + during + args.after
        log(f"{total:.0f} s of load (/users/me, {args.connections} connections) through {base}; "
            f"rotation at {args.before:.0f} s, propagation delay {delay:.0f} s")
        load = subprocess.Popen(
            [args.loadgen, "--base", base, "--scenario", "me", "--connections", str(args.connections),
             "--users", str(args.users), "--user-prefix", "rot", "--warmup", "2", "--duration", str(total),
             "--phase", f"before=0-{args.before}", "--phase", f"during={args.before}-{args.before + during}",
             "--phase", f"after={args.before + during}-{total}"],
            # One line per failed request on stderr: counted in its report instead.
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        prober = Prober(base, old_kid)
        prober.start()
        time.sleep(2 + args.before)
        requested = time.monotonic()
        subprocess.run([args.plugin, "-n", NAMESPACE_STACK, "rotate", STACK], check=True)
        out, _ = load.communicate(timeout=total + 120)
        prober.stop.set()
        prober.join()
        phases = {r["name"]: r for r in map(json.loads, filter(lambda l: l.startswith("{"), out.splitlines()))}

        print(f'{"phase":<8} {"req/s":>8} {"p50 ms":>8} {"p99 ms":>8} {"served":>8} {"failed":>7}')
        for name in ("before", "during", "after"):
            r = phases[f"phase:{name}"]
            print(f'{name:<8} {r["rps"]:>8.0f} {r["p50_ms"]:>8.2f} {r["p99_ms"]:>8.2f} {r["ok"]:>8} {r["failed"]:>7}')
        overall = next(r for n, r in phases.items() if not n.startswith("phase:"))
        ratio = phases["phase:during"]["p99_ms"] / max(phases["phase:before"]["p99_ms"], 1e-9)
        new_after = None if prober.first_new_kid_at is None else prober.first_new_kid_at - requested
        print(f"served {overall['ok']}, failed {overall['failed']}; p99 during/before {ratio:.2f}; "
              f"prober: {prober.logins} logins, {prober.failures} failures; "
              f"rotate -> first token of the new key: {'never' if new_after is None else f'{new_after:.0f} s'}")
        check(overall["failed"] == 0, f"no failed request under load ({overall['ok']} served)")
        check(prober.failures == 0, f"every prober login and /users/me succeeded ({prober.errors[:3]})")
        check(new_after is not None, "tokens carry the new key after the rotation")

        # Revoke the key that signed before the rotation (now retiring): its tokens go.
        status, _ = http("GET", f"{base}/api/v1/users/me", token=old_token)
        check(status == 200, "a token of the retiring key still verifies before the revoke")
        revoked = time.monotonic()
        subprocess.run([args.plugin, "-n", NAMESPACE_STACK, "revoke", STACK, old_kid], check=True)
        while http("GET", f"{base}/api/v1/users/me", token=old_token)[0] != 401:
            if time.monotonic() - revoked > delay:
                raise CheckFailed(f"a token of the revoked key {old_kid} still verifies after {delay:.0f} s")
            time.sleep(0.5)
        check(True, f"the revoked key's token is refused {time.monotonic() - revoked:.1f} s after the revoke")
    except CheckFailed as e:
        log(f"FAILED: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
