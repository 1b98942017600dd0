#!/usr/bin/env python3
"""Key rotation on the real node, under load, from outside the pods: the stack of
`cluster_check.py` (AuthStack `demo` in namespace `auth`, Ready) serves steady traffic through
the gateway's Service (ClusterIP, kube-proxy) while

  1. `kubectl authstack rotate` requests a rotation; the real kubelet propagates the signing
     Secret to the auth-svc pods by itself; a prober logs in every second and uses each new
     token at once (/users/me), until tokens carry the new key id;
  2. after the load, `kubectl authstack revoke` revokes the key that signed before the
     rotation: a token it signed must be refused by the gateway (401) within the stack's
     propagation delay;
  3. a rotation by schedule: the check patches `spec.keys.rotationInterval` to the shortest
     whole number of minutes that puts the next scheduled rotation (the last rotation plus the
     interval, as the operator's status reports it) at least `--before` seconds plus a margin
     ahead, then runs the same load and prober with no `rotate` request at all. The operator's
     own timer starts the rotation; the check asserts that neither the rotation counter nor
     the ring's observed counter moved, that the rotation started at the scheduled moment
     (status `lastRotationTime`) with the operator's event saying `scheduled`, and that tokens
     carry the new key.

Reports, for each rotation, requests served and failed, p50/p99 before, during and after
(loadgen phases) and the time from the rotation's start (the request, or the scheduled moment)
to the first token of the new key; and the time from the revoke to the refusal. Exits non-zero
on any failed request, on a token of the new key that does not verify, on a key that does not
rotate, when the revoked key's token is still accepted after the propagation delay, or when
p99 during a rotation exceeds P99_DURING_OVER_BEFORE_MAX times p99 before (checked after both
rotations are measured, so one run reports every figure).

  rotation_check.py --loadgen BIN --plugin BIN [--before S] [--after S] [--connections N]
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from checks import CheckFailed, check, http, log
from cluster_check import NAMESPACE_STACK, STACK, get, kubectl, wait

USER = {"email": "rotation@example.com", "username": "rotationprobe", "password": "rotation probe password 1"}
# docs/performance.md: p99 during a rotation at most this many times p99 before.
P99_DURING_OVER_BEFORE_MAX = 1.2
# Seconds between the interval patch and the load's start: the operator reconciles the patch
# (status shows the new next rotation) well before the scheduled moment.
SCHEDULE_LEAD = 15
# loadgen's unmeasured start (seconds), before its phases.
WARMUP = 2


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


def wall_time(timestamp: str) -> float:
    """Seconds since the epoch of a Kubernetes timestamp (`2026-12-05T22:10:00Z`)."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def monotonic_of(wall: float) -> float:
    """The `time.monotonic()` reading of a wall-clock moment (same machine, same clock)."""
    return time.monotonic() - (time.time() - wall)


class Prober(threading.Thread):
    """Logs in every second (under auth-svc's per-address login limit) and verifies each new
    token at once through the gateway; records when tokens carry a new key id."""

    def __init__(self, base: str, old_kid: str):
        super().__init__(daemon=True)
        self.base, self.old_kid = base, old_kid
        self.stop = threading.Event()
        self.logins = self.failures = 0
        self.first_new_kid_at: float | None = None
        self.new_kid: str | None = None
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
                    self.new_kid = kid_of(token)
            self.stop.wait(1.0)


@dataclass
class Measured:
    """One rotation under load: loadgen's phases and overall figures, and the prober's."""

    name: str
    phases: dict[str, dict]
    overall: dict
    p99_ratio: float
    new_key_after: float | None
    new_kid: str | None
    prober: Prober


def rotation_under_load(name: str, args: argparse.Namespace, base: str, old_kid: str, delay: float,
                        before: float, start_rotation: Callable[[], float]) -> Measured:
    """Load for `before` seconds, then `start_rotation()` (returns the monotonic moment the
    rotation began), load until the new key must sign (the propagation delay plus a kubelet
    sync, ~1 min) and `--after` seconds more. Asserts no failed request and that tokens carry
    a new key; returns the figures."""
    during = delay + 90
    total = before + during + args.after
    log(f"{name}: {total:.0f} s of load (/users/me, {args.connections} connections) through {base}; "
        f"rotation at {before:.0f} s, propagation delay {delay:.0f} s")
    load = subprocess.Popen(
        [args.loadgen, "--base", base, "--scenario", "me", "--connections", str(args.connections),
         "--users", str(args.users), "--user-prefix", "rot", "--warmup", str(WARMUP), "--duration", str(total),
         "--phase", f"before=0-{before}", "--phase", f"during={before}-{before + during}",
         "--phase", f"after={before + during}-{total}"],
        # One line per failed request on stderr: counted in its report instead.
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    prober = Prober(base, old_kid)
    prober.start()
    time.sleep(WARMUP + before)
    started = start_rotation()
    out, _ = load.communicate(timeout=total + 120)
    prober.stop.set()
    prober.join()
    phases = {r["name"]: r for r in map(json.loads, filter(lambda l: l.startswith("{"), out.splitlines()))}

    print(f"{name}")
    print(f'{"phase":<8} {"req/s":>8} {"p50 ms":>8} {"p99 ms":>8} {"served":>8} {"failed":>7}')
    for phase in ("before", "during", "after"):
        r = phases[f"phase:{phase}"]
        print(f'{phase:<8} {r["rps"]:>8.0f} {r["p50_ms"]:>8.2f} {r["p99_ms"]:>8.2f} {r["ok"]:>8} {r["failed"]:>7}')
    overall = next(r for n, r in phases.items() if not n.startswith("phase:"))
    ratio = phases["phase:during"]["p99_ms"] / max(phases["phase:before"]["p99_ms"], 1e-9)
    new_after = None if prober.first_new_kid_at is None else prober.first_new_kid_at - started
    print(f"served {overall['ok']}, failed {overall['failed']}; p99 during/before {ratio:.2f}; "
          f"prober: {prober.logins} logins, {prober.failures} failures; "
          f"start -> first token of the new key: {'never' if new_after is None else f'{new_after:.0f} s'}",
          flush=True)
    check(overall["failed"] == 0, f"{name}: no failed request under load ({overall['ok']} served)")
    check(prober.failures == 0, f"{name}: every prober login and /users/me succeeded ({prober.errors[:3]})")
    check(new_after is not None, f"{name}: tokens carry the new key {prober.new_kid}")
    return Measured(name, phases, overall, ratio, new_after, prober.new_kid, prober)


def requested_rotation(args: argparse.Namespace, base: str, old_kid: str, delay: float) -> Measured:
    def rotate() -> float:
        requested = time.monotonic()
        subprocess.run([args.plugin, "-n", NAMESPACE_STACK, "rotate", STACK], check=True)
        return requested

    return rotation_under_load("rotation by `kubectl authstack rotate`", args, base, old_kid, delay,
                               args.before, rotate)


def revoke(args: argparse.Namespace, base: str, kid: str, token: str, delay: float) -> None:
    """Revokes `kid` (retiring): its token must be refused within the propagation delay."""
    status, _ = http("GET", f"{base}/api/v1/users/me", token=token)
    check(status == 200, "a token of the retiring key still verifies before the revoke")
    revoked = time.monotonic()
    subprocess.run([args.plugin, "-n", NAMESPACE_STACK, "revoke", STACK, kid], check=True)
    while http("GET", f"{base}/api/v1/users/me", token=token)[0] != 401:
        if time.monotonic() - revoked > delay:
            raise CheckFailed(f"a token of the revoked key {kid} still verifies after {delay:.0f} s")
        time.sleep(0.5)
    check(True, f"the revoked key's token is refused {time.monotonic() - revoked:.1f} s after the revoke")


def scheduled_rotation(args: argparse.Namespace, base: str, delay: float) -> Measured:
    """Sets `spec.keys.rotationInterval` so that the next scheduled rotation comes a little
    after `--before` seconds of load, and measures it without any rotate request."""
    stack = get("authstack", NAMESPACE_STACK, STACK)
    keys = stack["status"]["keys"]
    check(not keys.get("pendingKids"), "no rotation under way before the scheduled one")
    old_kid = keys["activeKid"]
    counter = stack["spec"].get("keys", {}).get("rotationCounter", 0)
    observed = keys.get("observedRotationCounter", 0)
    check(observed == counter, f"the ring has seen every rotation request ({counter})")
    last = wall_time(keys["lastRotationTime"])
    ahead = SCHEDULE_LEAD + WARMUP + args.before
    minutes = max(math.ceil((time.time() - last + ahead) / 60), math.floor(delay / 60) + 1)
    interval = f"{minutes}m"  # CEL: longer than the propagation delay
    scheduled_at = last + minutes * 60
    kubectl("-n", NAMESPACE_STACK, "patch", "authstack", STACK, "--type", "merge",
            "-p", json.dumps({"spec": {"keys": {"rotationInterval": interval}}}))
    took = wait("the operator reports the next scheduled rotation", 60, lambda: abs(wall_time(
        get("authstack", NAMESPACE_STACK, STACK)["status"]["keys"].get("nextRotationTime") or "1970-01-01T00:00:00Z")
        - scheduled_at) < 1)
    check(True, f"rotationInterval {interval}: the operator schedules the next rotation "
                f"{scheduled_at - time.time():.0f} s from now ({took:.0f} s after the patch)")
    # The load starts so that its `before` phase ends at the scheduled moment.
    time.sleep(max(0.0, scheduled_at - time.time() - WARMUP - args.before))
    before = scheduled_at - time.time() - WARMUP
    check(before >= args.before / 2, f"{before:.0f} s of load before the scheduled rotation")

    measured = rotation_under_load(f"rotation by schedule (rotationInterval {interval})", args, base, old_kid,
                                   delay, before, lambda: monotonic_of(scheduled_at))
    stack = get("authstack", NAMESPACE_STACK, STACK)
    keys = stack["status"]["keys"]
    check(stack["spec"].get("keys", {}).get("rotationCounter", 0) == counter
          and keys.get("observedRotationCounter", 0) == observed,
          f"spec.keys.rotationCounter and the ring's observed counter still {counter}: nobody requested this rotation")
    started = wall_time(keys["lastRotationTime"])
    check(abs(started - scheduled_at) <= 5,
          f"the rotation started {started - scheduled_at:+.0f} s from the scheduled moment")
    check(keys.get("activeKid") == measured.new_kid, f"the new key {measured.new_kid} is the active key")
    events = json.loads(kubectl("-n", NAMESPACE_STACK, "get", "events", "--field-selector",
                                f"involvedObject.name={STACK},reason=KeyRotated", "-o", "json"))["items"]
    started_events = [e.get("message", "") for e in events if e.get("action") == f"StartRotation {measured.new_kid}"]
    check(any("Rotation started (scheduled)" in m for m in started_events),
          f"the operator's event for {measured.new_kid}: {started_events}")
    return measured


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loadgen", required=True, help="the loadgen binary (crate authstack-bench)")
    p.add_argument("--plugin", required=True, help="the kubectl-authstack binary")
    p.add_argument("--before", type=float, default=20, help="seconds of load before each rotation")
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

        requested = requested_rotation(args, base, old_kid, delay)
        # Revoke the key that signed before the rotation (now retiring): its tokens go.
        revoke(args, base, old_kid, old_token, delay)
        scheduled = scheduled_rotation(args, base, delay)

        for m in (requested, scheduled):
            check(m.p99_ratio <= P99_DURING_OVER_BEFORE_MAX,
                  f"{m.name}: p99 during/before {m.p99_ratio:.2f} <= {P99_DURING_OVER_BEFORE_MAX}")
    except CheckFailed as e:
        log(f"FAILED: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
