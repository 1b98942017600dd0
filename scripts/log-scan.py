#!/usr/bin/env python3
"""Scans every log of a test run for secrets; exits 1 (listing file:line and what) if any.

  log-scan.py [DIR]      (default: $AUTHSTACK_TEST_LOGS or .test-logs)

Looked for in every line of every file under DIR except the `*.secrets` lists:
- any JWT (three base64url segments starting with `eyJ`): access tokens never belong in logs;
- any PEM private key;
- every secret the tests recorded in `*.secrets` (passwords they sent, access and refresh tokens
  they received) and the local broker users' passwords (scripts/broker-users.py).
A run that produced no log lines at all fails too: the scan would prove nothing.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|PRIVATE KEY-----")
WORD = re.compile(r"[A-Za-z0-9_-]{8,}")


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "AUTHSTACK_TEST_LOGS", os.path.join(ROOT, ".test-logs"))
    secrets = set()
    logs = []
    for base, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(base, name)
            if name.endswith(".secrets"):
                with open(path, errors="replace") as f:
                    secrets.update(line.rstrip("\n") for line in f if len(line.strip()) >= 8)
            else:
                logs.append(path)
    try:
        out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "broker-users.py"), "passwords"],
                             capture_output=True, text=True, check=True).stdout
        secrets.update(p for p in out.split() if len(p) >= 8)
    except (subprocess.CalledProcessError, OSError):
        pass
    # Secrets made of base64url characters (refresh tokens, generated passwords) are found by
    # splitting each line into such words; JWTs by their own pattern; the rest (passwords with
    # spaces or punctuation) by substring search.
    words = {s for s in secrets if WORD.fullmatch(s)}
    phrases = [s for s in secrets if s not in words and not JWT.fullmatch(s)]
    found, lines = [], 0
    for path in sorted(logs):
        with open(path, errors="replace") as f:
            for number, line in enumerate(f, 1):
                lines += 1
                what = None
                if JWT.search(line):
                    what = "a JWT"
                elif PEM.search(line):
                    what = "a private key"
                elif any(w in words for w in WORD.findall(line)) or any(p in line for p in phrases):
                    what = "a recorded password or token"
                if what:
                    found.append(f"{os.path.relpath(path, directory)}:{number}: {what}")
    rel = os.path.relpath(directory)
    print(f"[log-scan] {lines} lines in {len(logs)} files under {rel}, "
          f"checked against {len(secrets)} recorded secrets, JWTs and private keys")
    if lines == 0:
        print("[log-scan] no log lines at all: nothing was proven")
        return 1
    if found:
        print("[log-scan] secrets in the logs:\n  " + "\n  ".join(found[:50]))
        return 1
    print("[log-scan] clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
