#!/usr/bin/env python3
"""The per-component RabbitMQ users of libs/protocol/broker-acl.json on the local broker.

  broker-users.py ensure              create or update the users and their permissions
                                      (idempotent: one `rabbitmqctl import_definitions`)
  broker-users.py url COMPONENT [HOST:PORT]
                                      print the AMQP URL of a component's user (auth-svc, gateway)
  broker-users.py env [SUFFIX]        print shell `export`s for a run: the broker names
                                      (AUTH_RPC_QUEUE, AUTH_RPC_EXCHANGE, AUTH_EVENTS_EXCHANGE;
                                      <default>.<SUFFIX> with a suffix) and each component's URL
                                      (AUTH_SVC_AMQP_URL, GATEWAY_AMQP_URL)
  broker-users.py env-json [SUFFIX]   the same as one JSON object (for Python scripts)
  broker-users.py passwords           print every password, one per line (for the log scan)

Passwords are generated once per machine and kept in $AUTHSTACK_CACHE_DIR/broker-users.json
(default ~/.cache/authstack, mode 0600); the tests read the same file.
"""
import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACL = os.path.join(ROOT, "libs", "protocol", "broker-acl.json")


def cache_file():
    base = os.environ.get("AUTHSTACK_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "authstack")
    return os.path.join(base, "broker-users.json")


def load_acl():
    with open(ACL) as f:
        return json.load(f)


def passwords(acl):
    """{user: password}, generating (and saving) what is missing."""
    path = cache_file()
    known = {}
    if os.path.exists(path):
        with open(path) as f:
            known = json.load(f)
    changed = False
    for spec in acl["users"].values():
        if not known.get(spec["user"]):
            known[spec["user"]] = secrets.token_urlsafe(24)
            changed = True
    if changed:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(known, f, indent=2)
        os.replace(path + ".tmp", path)
    return known


def password_hash(password):
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt || sha256(salt || password))."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def ensure():
    acl = load_acl()
    pw = passwords(acl)
    definitions = {
        "users": [
            {
                "name": spec["user"],
                "password_hash": password_hash(pw[spec["user"]]),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": [],
            }
            for spec in acl["users"].values()
        ],
        "permissions": [
            {
                "user": spec["user"],
                "vhost": acl["vhost"],
                "configure": spec["configure"],
                "write": spec["write"],
                "read": spec["read"],
            }
            for spec in acl["users"].values()
        ],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(definitions, f)
        tmp = f.name
    try:
        os.chmod(tmp, 0o644)  # rabbitmqctl runs the import in the broker's own process
        cmd = ["rabbitmqctl", "-q", "import_definitions", tmp]
        if os.geteuid() != 0:
            cmd = ["sudo"] + cmd
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    finally:
        os.unlink(tmp)
    users = ", ".join(spec["user"] for spec in acl["users"].values())
    print(f"[services] broker users up to date: {users}")


def url(component, address="127.0.0.1:5672"):
    acl = load_acl()
    spec = acl["users"][component]
    password = passwords(acl)[spec["user"]]
    quote = lambda s: urllib.parse.quote(s, safe="")
    return f"amqp://{quote(spec['user'])}:{quote(password)}@{address}/{quote(acl['vhost'])}"


def env_pairs(suffix=None):
    """The broker names (scoped by `suffix`) and the components' broker URLs of one run."""
    names = load_acl()["names"]
    scoped = lambda n: f"{n}.{suffix}" if suffix else n
    return {
        "AUTH_RPC_QUEUE": scoped(names["rpc_queue"]),
        "AUTH_RPC_EXCHANGE": scoped(names["rpc_exchange"]),
        "AUTH_EVENTS_EXCHANGE": scoped(names["events_exchange"]),
        "AUTH_SVC_AMQP_URL": url("auth-svc"),
        "GATEWAY_AMQP_URL": url("gateway"),
    }


def env(suffix=None):
    return "\n".join(f"export {k}='{v}'" for k, v in env_pairs(suffix).items())


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if argv[1] == "ensure":
        ensure()
    elif argv[1] == "url" and len(argv) in (3, 4):
        print(url(*argv[2:]))
    elif argv[1] == "env" and len(argv) in (2, 3):
        print(env(*argv[2:]))
    elif argv[1] == "env-json" and len(argv) in (2, 3):
        print(json.dumps(env_pairs(*argv[2:])))
    elif argv[1] == "passwords":
        for p in passwords(load_acl()).values():
            print(p)
    else:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
