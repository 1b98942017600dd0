"""What the node's checks (kubelet_check.py, cluster_check.py, rotation_check.py,
fault_check.py) share: a failed check, log lines named after the running script, and HTTP
calls with JSON bodies (standard library only)."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

# Log lines start with the running script's name, e.g. "[cluster_check]".
PREFIX = f"[{Path(sys.argv[0]).stem}]"


class CheckFailed(Exception):
    """A check that did not hold (the message says which)."""


def log(msg: str) -> None:
    print(f"{PREFIX} {msg}", file=sys.stderr, flush=True)


def check(ok: bool, what: str) -> None:
    """Raises CheckFailed(what) unless ok; logs it as passed otherwise."""
    if not ok:
        raise CheckFailed(what)
    log(f"ok: {what}")


def http(method: str, url: str, body: dict | None = None, token: str | None = None,
         timeout: float = 30) -> tuple[int, dict | str]:
    """Status and body (parsed when it is JSON); `token` goes in a Bearer header."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text
