"""`make bench-peers`: AuthStack, Keycloak and Dex on this machine, one after the other, doing
the same work under the same independent load generators, in one table.

Each system gets a fresh PostgreSQL database on the shared server, reached over plain TCP by all
three (this machine's server offers TLS, which AuthStack's and Keycloak's drivers would take by
default and Dex's config turns off), the same token lifetime
(900 s), its strongest password hash at a stated cost, and 64 users. Operations:
  login     password login (peers: the resource-owner password grant), wrk closed loop, each
            user's logins one at a time (Dex's storage fails concurrent logins of one user);
  refresh   single-use refresh tokens, each wrk connection following its own chain;
  verify    an access token verified at the edge: the same verifier for all three
            (bench/src/bin/jwt-edge.rs: signature checked from the issuer's JWKS on every
            request, no cache), plus AuthStack's own gateway `/api/v1/auth/session`; wrk
            closed loop, and oha at a fixed rate (open loop, latency corrected for
            coordinated omission);
  rotation  the system's own key-rotation mechanism under refresh load, with a probe that
            verifies every freshly issued token at the edge; failed requests are counted.
Figures: rate, p50/p99, CPU per operation (service processes + the PostgreSQL backends of its
database, + RabbitMQ for AuthStack), RSS idle and peak under each load, start-up time (launch
to serving, on an empty database). Writes the table to stdout and all figures as JSON to
$PEERS_REPORT (default: target/bench-peers.json).
"""
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import benchlib as bl  # noqa: E402

ROOT = bl.ROOT
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.path.join(TARGET, "release")
PG_ADMIN = os.environ.get("PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PG_BASE = PG_ADMIN.rsplit("/", 1)[0]
_PG = urllib.parse.urlsplit(PG_ADMIN)
PG_HOST, PG_PORT, PG_USER = _PG.hostname or "127.0.0.1", _PG.port or 5432, _PG.username or "postgres"

DURATION = int(os.environ.get("PEERS_DURATION", "10"))
# Unmeasured load before each measured run of the same kind (the JVM's JIT, pools, caches).
WARMUP = int(os.environ.get("PEERS_WARMUP", "5"))
CONNS = int(os.environ.get("PEERS_CONNECTIONS", "64"))
LOGIN_CONNS = int(os.environ.get("PEERS_LOGIN_CONNECTIONS", "16"))
# Every refresh chain is a different user's session: Dex keeps one refresh token per user and
# client (a new login invalidates the previous one), so chains of one user would break.
ROTATION_CHAINS = 16
USERS = max(int(os.environ.get("PEERS_USERS", "64")), CONNS, ROTATION_CHAINS + 1)
RATE_VERIFY = int(os.environ.get("PEERS_RATE_VERIFY", "2000"))
ROTATION_SECONDS = int(os.environ.get("PEERS_ROTATION_SECONDS", "40"))
ONLY = os.environ.get("PEERS_ONLY", "authstack,keycloak,dex").split(",")
REPORT = os.environ.get("PEERS_REPORT", os.path.join(TARGET, "bench-peers.json"))

PASSWORD = "bench password 123"
TOKEN_LIFETIME_S = 900
ARGON2 = {"memory_kib": 19456, "iterations": 2, "parallelism": 1}
BCRYPT_COST = 10
CLIENT_ID, CLIENT_SECRET = "bench", "bench-client-secret"
KEYCLOAK_VERSION = os.environ.get("KEYCLOAK_VERSION", "26.7.3")
DEX_VERSION = os.environ.get("DEX_VERSION", "v0.0.0-20260806151424-ab64ed778070")
KEYCLOAK_HEAP = os.environ.get("KEYCLOAK_HEAP", "-Xms128m -Xmx1g")
DEX_DB_CONNECTIONS = int(os.environ.get("DEX_DB_CONNECTIONS", str(CONNS + 8)))


def log(msg):
    print(f"[bench-peers] {msg}", file=sys.stderr, flush=True)


def psql(sql):
    subprocess.run(["psql", PG_ADMIN, "-qc", sql], check=True, capture_output=True)


def form(**fields):
    return urllib.parse.urlencode(fields)


class System:
    """One identity provider under test. Subclasses start it and know its endpoints."""

    name = ""
    label = ""
    hash_desc = ""
    alg = ""

    def __init__(self, work):
        self.work = work
        self.id = uuid.uuid4().hex[:10]
        self.db = f"authstack_peer_{self.name}_{self.id}"
        self.procs = []
        self.logs = []

    # -- lifecycle
    def spawn(self, name, cmd, env=None):
        # Each server in a session of its own (its process group stopped as one); with autogroup
        # scheduling every system's servers then share the cores with wrk alike
        # (bench/README.md).
        path = os.path.join(self.work, f"{self.name}-{name}.log")
        out = open(path, "w")
        self.logs.append(path)
        # Each binary at its default log level, whatever the caller's RUST_LOG.
        base = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**base, **(env or {})},
                             start_new_session=True)
        self.procs.append(p)
        return p

    def pids(self):
        return [pid for p in self.procs if p.poll() is None for pid in bl.tree(p.pid)]

    def cost_pids(self):
        """Processes whose CPU counts for this system's requests."""
        return self.pids() + bl.postgres_backends(self.db)

    def start(self):
        """Starts the system on an empty database; returns seconds from launch to serving."""
        psql(f"CREATE DATABASE {self.db}")
        t0 = time.monotonic()
        self.launch()
        # A process that exited fails the start at once (ready() raises while nothing listens).
        bl.wait_until(lambda: self.check_alive() or self.ready(), 300, self.label)
        return time.monotonic() - t0

    def check_alive(self):
        for p in self.procs:
            if p.poll() is not None:
                tail = "".join(open(self.logs[self.procs.index(p)]).readlines()[-30:])
                raise RuntimeError(f"{self.label} exited ({p.returncode}):\n{tail}")
        return False

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.procs = []
        try:
            psql(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        except subprocess.CalledProcessError:
            pass

    # -- what subclasses provide
    def launch(self):
        raise NotImplementedError

    def ready(self):
        raise NotImplementedError

    def create_users(self, n):
        pass

    def login_call(self, user):
        """(url, content type, body) of a password login of user `user`."""
        raise NotImplementedError

    def refresh_call(self):
        """(url, content type, body template with {token})."""
        raise NotImplementedError

    def rotate(self):
        """Triggers a key rotation with the system's own mechanism; returns how."""
        raise NotImplementedError

    jwks_url = issuer = ""

    # -- shared
    def username(self, i):
        return f"bench{i}"

    def login(self, user):
        """A new session of user `user`. Retries 5xx answers (Dex on PostgreSQL fails concurrent
        logins with serialization errors): this prepares runs, it is not measured."""
        url, ctype, body = self.login_call(user)
        for _ in range(10):
            status, raw = bl.http("POST", url, body=body.encode(), headers={"content-type": ctype})
            if status < 500:
                break
            time.sleep(0.1)
        if status != 200:
            raise RuntimeError(f"{self.label} login of user {user}: {status} {raw[:300]!r}")
        return json.loads(raw)

    def logins(self, n):
        """`n` new sessions (logins of users 0, 1, ... in turn, 8 at a time)."""
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda i: self.login(i % USERS), range(n)))

    def refresh(self, refresh_token):
        url, ctype, template = self.refresh_call()
        token = refresh_token if template.startswith("{") else urllib.parse.quote(refresh_token, safe="")
        status, raw = bl.http("POST", url, body=template.replace("{token}", token).encode(),
                              headers={"content-type": ctype})
        return status, (json.loads(raw) if status == 200 else raw)


def broker_env(suffix):
    """The broker names and users of one run (`scripts/broker-users.py env-json`), as a dict."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts/broker-users.py"), "env-json", suffix],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


class AuthStack(System):
    name, label = "authstack", "AuthStack"
    hash_desc = f"argon2id m={ARGON2['memory_kib']} KiB t={ARGON2['iterations']} p={ARGON2['parallelism']}"
    alg = "EdDSA"

    def launch(self):
        keys = os.path.join(self.work, "authstack-keys")
        subprocess.run([f"{BIN}/authstack-dev", "keygen", "--dir", keys, "--force"], check=True, capture_output=True)
        self.keys = keys
        self.port = bl.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.jwks_url, self.issuer = f"{self.base}/.well-known/jwks.json", self.base
        cpus = os.cpu_count() or 2
        # Broker names and users within the broker's permissions (libs/protocol/broker-acl.json).
        self.broker = broker_env(f"peers-{self.id}")
        # Logs at the binaries' default level, as deployed (`spawn` drops the caller's RUST_LOG).
        env = {"DATABASE_URL": f"{PG_BASE}/{self.db}?sslmode=disable", "AUTH_KEY_DIR": keys, "LOG_FORMAT": "json",
               **self.broker, "AUTH_ISSUER": self.base,
               "GATEWAY_LISTEN": f"127.0.0.1:{self.port}", "AUTH_ACCESS_TOKEN_TTL": str(TOKEN_LIFETIME_S),
               "AUTH_ARGON2_MEMORY_KIB": str(ARGON2["memory_kib"]),
               "AUTH_ARGON2_ITERATIONS": str(ARGON2["iterations"]),
               "AUTH_ARGON2_PARALLELISM": str(ARGON2["parallelism"]),
               # One load generator is one client address: per-address rate limits would
               # measure themselves (the peers have none on by default either).
               "AUTH_LOGIN_RATE_PER_ADDRESS": "0", "AUTH_REGISTER_RATE_PER_ADDRESS": "0",
               # two replicas, as `make run`: together as many hashing threads as cores
               "AUTH_HASHING_THREADS": str(max(1, cpus // 2)), "AUTH_KEY_POLL_MS": "500"}
        for i in (1, 2):
            self.spawn(f"auth-svc-{i}", [f"{BIN}/auth-svc"],
                       {**env, "AMQP_URL": self.broker["AUTH_SVC_AMQP_URL"],
                        "AUTH_HTTP_LISTEN": f"127.0.0.1:{bl.free_port()}", "AUTH_INSTANCE_NAME": f"peers-auth-{i}"})
        # Its metrics listener on a free port too: the default (9090) may be taken, e.g. by a
        # `make run` on the same machine.
        self.spawn("gateway", [f"{BIN}/gateway"], {**env, "AMQP_URL": self.broker["GATEWAY_AMQP_URL"],
                                                    "GATEWAY_METRICS_LISTEN": f"127.0.0.1:{bl.free_port()}"})

    def ready(self):
        if bl.http("GET", f"{self.base}/readyz", timeout=2)[0] != 200:
            return False
        # the RPC path answers (not 503) once an auth-svc consumes the queue
        status, _ = bl.http("POST", f"{self.base}/api/v1/auth/login", body=b'{"login":"","password":""}',
                            headers={"content-type": "application/json"}, timeout=2)
        return status != 503

    def create_users(self, n):
        for i in range(n):
            u = self.username(i)
            body = json.dumps({"email": f"{u}@bench.example", "username": u, "password": PASSWORD}).encode()
            status, raw = bl.http("POST", f"{self.base}/api/v1/auth/register", body=body,
                                  headers={"content-type": "application/json"})
            if status not in (201, 409):
                raise RuntimeError(f"register {u}: {status} {raw[:200]!r}")

    def login_call(self, user):
        return (f"{self.base}/api/v1/auth/login", "application/json",
                json.dumps({"login": self.username(user), "password": PASSWORD}))

    def refresh_call(self):
        return f"{self.base}/api/v1/auth/refresh", "application/json", '{"refresh_token":"{token}"}'

    def session_url(self):
        return f"{self.base}/api/v1/auth/session"

    def rotate(self):
        dev = f"{BIN}/authstack-dev"
        subprocess.run([dev, "rotate", "--dir", self.keys, "--start", "--propagation-delay", "5"],
                       check=True, capture_output=True)
        deadline = time.monotonic() + 20
        before = subprocess.run([dev, "show", "--dir", self.keys], capture_output=True, text=True).stdout
        while time.monotonic() < deadline:
            time.sleep(1)
            subprocess.run([dev, "rotate", "--dir", self.keys, "--propagation-delay", "5"], check=True,
                           capture_output=True)
            now = subprocess.run([dev, "show", "--dir", self.keys], capture_output=True, text=True).stdout
            if now.count("active") == 1 and now != before and "pending" not in now:
                break
        return "authstack-dev rotate: new key pending 5 s (published), then active (the operator's state machine)"

    def cost_pids(self):
        return super().cost_pids() + bl.rabbitmq_pids()

    def stop(self):
        super().stop()
        b = getattr(self, "broker", None)
        if b:
            subprocess.run([f"{BIN}/authstack-dev", "amqp-delete", "--queue", b["AUTH_RPC_QUEUE"],
                            "--exchange", b["AUTH_RPC_EXCHANGE"], "--exchange", b["AUTH_EVENTS_EXCHANGE"]],
                           capture_output=True)


class Keycloak(System):
    name, label = "keycloak", f"Keycloak {KEYCLOAK_VERSION}"
    hash_desc = f"argon2id m={ARGON2['memory_kib']} KiB t={ARGON2['iterations']} p={ARGON2['parallelism']}"
    alg = "EdDSA"
    admin_password = "bench-admin-password"

    def launch(self):
        home = os.path.join(bl.PEERS_CACHE, f"keycloak-{KEYCLOAK_VERSION}")
        java_home = subprocess.run([os.path.join(ROOT, "scripts/peers/java-home.sh")], check=True,
                                   capture_output=True, text=True).stdout.strip()
        self.java = java_home
        self.port, mgmt = bl.free_port(), bl.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.mgmt = f"http://127.0.0.1:{mgmt}"
        self.realm = f"{self.base}/realms/bench"
        self.jwks_url, self.issuer = f"{self.realm}/protocol/openid-connect/certs", self.realm
        env = {"JAVA_HOME": java_home, "JAVA_OPTS_KC_HEAP": KEYCLOAK_HEAP,
               "KC_DB_URL": f"jdbc:postgresql://{PG_HOST}:{PG_PORT}/{self.db}?sslmode=disable", "KC_DB_USERNAME": PG_USER,
               "KC_DB_PASSWORD": "unused-trust-auth", "KC_HTTP_ENABLED": "true", "KC_HTTP_HOST": "127.0.0.1",
               "KC_HTTP_PORT": str(self.port), "KC_HTTP_MANAGEMENT_PORT": str(mgmt),
               "KC_HOSTNAME_STRICT": "false", "KC_BOOTSTRAP_ADMIN_USERNAME": "admin",
               "KC_BOOTSTRAP_ADMIN_PASSWORD": self.admin_password, "KC_LOG_LEVEL": "warn",
               "KC_SPI_PASSWORD_HASHING__ARGON2__MEMORY": str(ARGON2["memory_kib"]),
               "KC_SPI_PASSWORD_HASHING__ARGON2__ITERATIONS": str(ARGON2["iterations"]),
               "KC_SPI_PASSWORD_HASHING__ARGON2__PARALLELISM": str(ARGON2["parallelism"]),
               "KC_SPI_PASSWORD_HASHING__ARGON2__CPU_CORES": str(os.cpu_count() or 2)}
        self.spawn("server", [os.path.join(home, "bin", "kc.sh"), "start", "--optimized"], env)

    def ready(self):
        return (bl.http("GET", f"{self.mgmt}/health/ready", timeout=2)[0] == 200
                and bl.http("GET", f"{self.base}/realms/master/.well-known/openid-configuration", timeout=2)[0] == 200)

    def admin_token(self):
        status, raw = bl.http("POST", f"{self.base}/realms/master/protocol/openid-connect/token",
                              body=form(grant_type="password", client_id="admin-cli", username="admin",
                                        password=self.admin_password).encode(),
                              headers={"content-type": "application/x-www-form-urlencoded"})
        if status != 200:
            raise RuntimeError(f"Keycloak admin token: {status} {raw[:200]!r}")
        return json.loads(raw)["access_token"]

    def admin(self, method, path, doc):
        status, raw = bl.http(method, f"{self.base}/admin/realms{path}", body=json.dumps(doc).encode(),
                              headers={"content-type": "application/json",
                                       "authorization": f"Bearer {self.admin_token()}"}, timeout=120)
        if status not in (200, 201, 204):
            raise RuntimeError(f"Keycloak admin {method} {path}: {status} {raw[:300]!r}")

    def create_users(self, n):
        users = [{"username": self.username(i), "enabled": True, "email": f"{self.username(i)}@bench.example",
                  "emailVerified": True, "firstName": "Bench", "lastName": str(i),
                  "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}]}
                 for i in range(n)]
        self.admin("POST", "", {
            "realm": "bench", "enabled": True,
            "accessTokenLifespan": TOKEN_LIFETIME_S,
            # single-use refresh tokens, as AuthStack's and Dex's
            "revokeRefreshToken": True, "refreshTokenMaxReuse": 0,
            "defaultSignatureAlgorithm": self.alg,
            "passwordPolicy": "hashAlgorithm(argon2)",
            "clients": [{"clientId": CLIENT_ID, "enabled": True, "publicClient": False, "secret": CLIENT_SECRET,
                         "directAccessGrantsEnabled": True, "standardFlowEnabled": False}],
            "users": users,
        })
        self.add_eddsa_key()  # the realm's default keys stay (RS256, and HS512 for refresh tokens)

    def login_call(self, user):
        return (f"{self.realm}/protocol/openid-connect/token", "application/x-www-form-urlencoded",
                form(grant_type="password", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                     username=self.username(user), password=PASSWORD))

    def refresh_call(self):
        return (f"{self.realm}/protocol/openid-connect/token", "application/x-www-form-urlencoded",
                form(grant_type="refresh_token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
                + "&refresh_token={token}")

    eddsa_keys = 0

    def add_eddsa_key(self):
        """A new generated Ed25519 key of higher priority than every key before it."""
        self.eddsa_keys += 1
        self.admin("POST", "/bench/components", {
            "name": f"eddsa-{self.eddsa_keys}", "providerId": "eddsa-generated",
            "providerType": "org.keycloak.keys.KeyProvider", "parentId": self.realm_id(),
            "config": {"priority": [str(100 + 100 * self.eddsa_keys)], "eddsaEllipticCurveKey": ["Ed25519"]}})

    def rotate(self):
        self.add_eddsa_key()
        return "admin API: a new eddsa-generated key provider of higher priority (signs at once; the old key stays published)"

    def realm_id(self):
        status, raw = bl.http("GET", f"{self.base}/admin/realms/bench",
                              headers={"authorization": f"Bearer {self.admin_token()}"})
        return json.loads(raw)["id"]


class Dex(System):
    name, label = "dex", "Dex"
    hash_desc = f"bcrypt cost {BCRYPT_COST}"
    alg = "ES256"
    rotation_period = "6h"

    def launch(self):
        home = os.path.join(bl.PEERS_CACHE, f"dex-{DEX_VERSION}", "bin")
        self.port = bl.free_port()
        self.base = f"http://127.0.0.1:{self.port}/dex"
        self.jwks_url, self.issuer = f"{self.base}/keys", self.base
        hashed = subprocess.run([os.path.join(home, "bcrypt-tool"), "-hash", PASSWORD, "-cost", str(BCRYPT_COST)],
                                check=True, capture_output=True, text=True).stdout.strip()
        config = {
            "issuer": self.base,
            # Dex's default pool of 5 connections deadlocks under 5+ concurrent refreshes (each
            # holds a transaction and waits for a second connection): one per client connection
            "storage": {"type": "postgres", "config": {"host": PG_HOST, "port": PG_PORT, "database": self.db,
                                                       "user": PG_USER, "ssl": {"mode": "disable"},
                                                       "maxOpenConns": DEX_DB_CONNECTIONS,
                                                       "maxIdleConns": DEX_DB_CONNECTIONS}},
            "web": {"http": f"127.0.0.1:{self.port}"},
            "logger": {"level": "warn"},
            "oauth2": {"passwordConnector": "local", "skipApprovalScreen": True},
            "enablePasswordDB": True,
            "staticPasswords": [{"email": f"{self.username(i)}@bench.example", "hash": hashed,
                                 "username": self.username(i), "userID": str(uuid.uuid4())} for i in range(USERS)],
            "staticClients": [{"id": CLIENT_ID, "secret": CLIENT_SECRET, "name": "bench",
                               "redirectURIs": ["http://127.0.0.1/callback"]}],
            "expiry": {"idTokens": f"{TOKEN_LIFETIME_S}s"},
            "signer": {"type": "local", "config": {"keysRotationPeriod": self.rotation_period, "algorithm": self.alg}},
        }
        path = os.path.join(self.work, f"dex-{self.id}.yaml")
        with open(path, "w") as f:
            json.dump(config, f)  # JSON is YAML
        self.spawn("server", [os.path.join(home, "dex"), "serve", path])

    def ready(self):
        return (bl.http("GET", f"{self.base}/.well-known/openid-configuration", timeout=2)[0] == 200
                and b'"keys"' in bl.http("GET", self.jwks_url, timeout=2)[1])

    def login_call(self, user):
        return (f"{self.base}/token", "application/x-www-form-urlencoded",
                form(grant_type="password", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                     username=f"{self.username(user)}@bench.example", password=PASSWORD,
                     scope="openid offline_access"))

    def refresh_call(self):
        return (f"{self.base}/token", "application/x-www-form-urlencoded",
                form(grant_type="refresh_token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
                + "&refresh_token={token}")

    def rotate(self):
        return (f"its own schedule: signer keysRotationPeriod {self.rotation_period}, "
                "checked every 30 s (a fresh instance for this phase)")


class DexRotating(Dex):
    """Dex with a short signing-key period, for the rotation phase only (its period is read
    from the storage at start, so the main instance cannot be switched)."""
    rotation_period = "10s"


# ---------------------------------------------------------------- measurements


class EdgeVerifier:
    """bench/src/bin/jwt-edge.rs pointed at one issuer's JWKS."""

    def __init__(self, system, work):
        self.port = bl.free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        log_path = os.path.join(work, f"jwt-edge-{system.name}.log")
        self.proc = subprocess.Popen([f"{BIN}/jwt-edge", "--listen", f"127.0.0.1:{self.port}",
                                      "--jwks-url", system.jwks_url, "--issuer", system.issuer],
                                     stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
        bl.wait_until(lambda: bl.http("GET", self.url, timeout=1)[0] == 401, 30, "jwt-edge")

    def verify(self, token):
        return bl.http("GET", self.url, headers={"authorization": f"Bearer {token}"}, timeout=5)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def measured(system, pids_fn, run, prepare=lambda: None):
    """Runs `run(WARMUP, prepare())` unmeasured, then `run(DURATION, prepare())` (a load run
    returning a report dict) and adds CPU per request (µs) of `pids_fn()` and the peak RSS of
    the system's own processes during the measured run (`prepare` is not measured)."""
    if WARMUP > 0:
        run(WARMUP, prepare())
    prepared = prepare()
    before_pids = pids_fn()
    cpu0 = bl.cpu_seconds(before_pids)
    with bl.RssSampler(system.pids) as rss:
        r = run(DURATION, prepared)
    pids = set(before_pids) | set(pids_fn())
    cpu = bl.cpu_seconds(pids) - cpu0
    ok = max(1, r["requests"] - r["failed"])
    r["cpu_us_per_req"] = cpu / ok * 1e6
    r["rss_peak_mib"] = rss.peak / 1024
    return r


def write_lines(work, name, lines):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def bench_ops(system, work, results):
    users = USERS
    log(f"{system.label}: creating {users} users")
    system.create_users(users)
    time.sleep(2)
    results["rss_idle_mib"] = bl.rss_kib(system.pids()) / 1024
    access = system.login(0)["access_token"]

    url, ctype, _ = system.login_call(0)
    # every user once, split between wrk's two threads: no concurrent logins of one user
    bodies = write_lines(work, f"{system.name}-logins.txt", [system.login_call(i)[2] for i in range(users)])
    log(f"{system.label}: login, {LOGIN_CONNS} connections, {DURATION} s (wrk)")
    results["login"] = measured(system, system.cost_pids, lambda d, _: bl.wrk(
        url, duration=d, connections=LOGIN_CONNS, script="cycle.lua", script_args=[bodies, "body", "2"],
        headers=[f"content-type: {ctype}"]))

    rurl, rtype, template = system.refresh_call()

    def fresh_chains():  # a run leaves its chains' last tokens unknown: new sessions each run
        return write_lines(work, f"{system.name}-refresh.txt",
                           [s["refresh_token"] for s in system.logins(CONNS)])
    log(f"{system.label}: refresh, {CONNS} connections, {DURATION} s (wrk)")
    results["refresh"] = measured(system, system.cost_pids, lambda d, tokens: bl.wrk(
        rurl, duration=d, connections=CONNS, script="refresh.lua",
        script_args=[tokens, template, "2"], headers=[f"content-type: {rtype}"]), fresh_chains)

    edge = EdgeVerifier(system, work)
    try:
        bearer = [f"authorization: Bearer {access}"]
        status, raw = edge.verify(access)
        if status != 200:
            raise RuntimeError(f"jwt-edge rejects a fresh {system.label} token: {raw[:300]!r}")
        log(f"{system.label}: verify at the edge (jwt-edge), {CONNS} connections (wrk), then {RATE_VERIFY}/s (oha)")
        results["verify"] = measured(system, lambda: [edge.proc.pid], lambda d, _: bl.wrk(
            edge.url, duration=d, connections=CONNS, headers=bearer))
        results["verify_open"] = bl.oha(edge.url, rate=RATE_VERIFY, duration=DURATION, connections=CONNS,
                                        headers=bearer)
        if isinstance(system, AuthStack):
            log(f"{system.label}: gateway /api/v1/auth/session (wrk, then oha)")
            results["session"] = measured(system, system.pids, lambda d, _: bl.wrk(
                system.session_url(), duration=d, connections=CONNS, headers=bearer))
            results["session_open"] = bl.oha(system.session_url(), rate=RATE_VERIFY, duration=DURATION,
                                             connections=CONNS, headers=bearer)
    finally:
        edge.stop()


def rotation_under_load(system, work):
    """Refresh load (wrk) for ROTATION_SECONDS while a probe refreshes its own chain and verifies
    each new access token, and a token from before the rotation, at the edge. The rotation is
    triggered a quarter into the run (Dex rotates on its own schedule)."""
    sessions = system.logins(ROTATION_CHAINS + 1)
    probe_session, chains = sessions[0], sessions[1:]
    tokens = write_lines(work, f"{system.name}-rot-refresh.txt", [s["refresh_token"] for s in chains])
    rurl, rtype, template = system.refresh_call()
    edge = EdgeVerifier(system, work)
    verify = edge.verify if not isinstance(system, AuthStack) else (
        lambda t: bl.http("GET", system.session_url(), headers={"authorization": f"Bearer {t}"}, timeout=5))
    old_access = probe_session["access_token"]
    probe = {"checks": 0, "failed": 0, "verify_failed": 0, "kids": [], "errors": []}
    stop = threading.Event()

    def run_probe():
        refresh = probe_session["refresh_token"]
        while not stop.is_set():
            status, body = system.refresh(refresh)
            probe["checks"] += 1
            if status != 200:  # the chain is dead: count it, start a new one
                probe["failed"] += 1
                probe["errors"].append(f"refresh {status} {body[:120]!r}")
                refresh = system.login(0)["refresh_token"]
                continue
            refresh = body["refresh_token"]
            for token in (body["access_token"], old_access):
                s, raw = verify(token)
                probe["checks"] += 1
                if s != 200:
                    probe["failed"] += 1
                    probe["verify_failed"] += 1
                    probe["errors"].append(f"verify {s} {raw[:120]!r}")
            kid = json.loads(bl.jwt_header(body["access_token"]))["kid"]
            if not probe["kids"] or probe["kids"][-1] != kid:
                probe["kids"].append(kid)
            time.sleep(0.05)

    out = {}
    wrk_thread = threading.Thread(target=lambda: out.update(bl.wrk(
        rurl, duration=ROTATION_SECONDS, connections=len(chains), script="refresh.lua",
        script_args=[tokens, template, "2"], headers=[f"content-type: {rtype}"])))
    probe_thread = threading.Thread(target=run_probe)
    try:
        wrk_thread.start()
        probe_thread.start()
        time.sleep(ROTATION_SECONDS / 4)
        how = system.rotate()
        wrk_thread.join()
    finally:
        stop.set()
        probe_thread.join()
        edge.stop()
    return {"mechanism": how, "refresh_rps": out.get("rps", 0), "refresh_p99_ms": out.get("p99_ms", 0),
            "failed": out.get("failed", 0) + probe["failed"], "load_requests": out.get("requests", 0),
            "load_failed": out.get("failed", 0), "verify_failed": probe["verify_failed"],
            "probe_checks": probe["checks"], "kids_seen": probe["kids"], "probe_errors": probe["errors"][:5]}


def baselines():
    """Raw hash rates of this machine: argon2id (Rust, the parameters above) and bcrypt (Go,
    Dex's library), both on all cores."""
    log("raw argon2id and bcrypt verification rates (baselines for login)")
    argon = json.loads(subprocess.run(
        [f"{BIN}/argon2-rate", "--seconds", str(DURATION), "--memory-kib", str(ARGON2["memory_kib"]),
         "--iterations", str(ARGON2["iterations"]), "--parallelism", str(ARGON2["parallelism"])],
        check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    tool = os.path.join(bl.PEERS_CACHE, f"dex-{DEX_VERSION}", "bin", "bcrypt-tool")
    bcrypt = json.loads(subprocess.run([tool, "-bench", "-cost", str(BCRYPT_COST), "-seconds", str(DURATION)],
                                       check=True, capture_output=True, text=True).stdout)
    return {"argon2id": argon, "bcrypt": bcrypt}


SYSTEMS = {"authstack": AuthStack, "keycloak": Keycloak, "dex": Dex}


def run_system(cls, work):
    system = cls(work)
    r = {"label": system.label, "hash": system.hash_desc, "alg": system.alg}
    try:
        log(f"{system.label}: starting on an empty database")
        r["startup_s"] = system.start()
        bench_ops(system, work, r)
        if cls is not Dex:
            r["rotation"] = rotation_under_load(system, work)
    finally:
        system.stop()
    if cls is Dex:
        rotating = DexRotating(work)
        try:
            log("Dex: a fresh instance with a 10 s signing-key period for the rotation phase")
            r["startup_2_s"] = rotating.start()
            r["rotation"] = rotation_under_load(rotating, work)
        finally:
            rotating.stop()
    return r


def main():
    missing = [p for p in (f"{BIN}/jwt-edge", f"{BIN}/gateway", f"{BIN}/argon2-rate") if not os.path.exists(p)]
    if missing or not shutil.which("wrk") or not bl.oha_binary():
        sys.exit(f"missing {missing or 'wrk/oha'}: run `make bench-peers` (it builds and installs them)")
    work = tempfile.mkdtemp(prefix="bench-peers-")
    report = {"duration_s": DURATION, "connections": CONNS, "login_connections": LOGIN_CONNS,
              "rate_verify": RATE_VERIFY, "cpus": os.cpu_count(), "systems": {}}
    try:
        report["baselines"] = baselines()
        for name in ONLY:
            report["systems"][name] = run_system(SYSTEMS[name], work)
    finally:
        os.makedirs(os.path.dirname(REPORT), exist_ok=True)
        with open(REPORT, "w") as f:
            json.dump(report, f, indent=1)
        if os.environ.get("PEERS_KEEP_WORK") != "1":
            shutil.rmtree(work, ignore_errors=True)
    print(table(report))


def table(report):
    """The comparison table (markdown) of a report."""
    systems = report["systems"]
    names = [n for n in ("authstack", "keycloak", "dex") if n in systems]
    a = systems.get("authstack")
    lines = [f"| | {' | '.join(systems[n]['label'] for n in names)} |",
             "|---|" + "---|" * len(names)]

    def row(title, fmt, ratio_of=None, higher_better=True):
        cells = []
        for n in names:
            try:
                v = fmt(systems[n])
            except (KeyError, TypeError, ZeroDivisionError):
                v = None
            if v is None:
                cells.append("—")
                continue
            text, num = v
            if n != "authstack" and a and ratio_of:
                try:
                    mine, theirs = ratio_of(a), ratio_of(systems[n])
                    text += f" ({mine / theirs:.2f}×)"
                except (KeyError, TypeError, ZeroDivisionError):
                    pass
            cells.append(text)
        lines.append(f"| {title} | {' | '.join(cells)} |")

    def lat(op):
        return lambda s: (f"{s[op]['p50_ms']:.2f} / {s[op]['p99_ms']:.2f}", 0)

    def rate(op):
        return lambda s: (f"{s[op]['rps']:,.0f}/s", s[op]['rps'])

    def cpu(op):
        return lambda s: (f"{s[op]['cpu_us_per_req']:,.0f} µs", 0)

    b = report.get("baselines", {})
    row("password hash", lambda s: (s["hash"], 0))
    row("signature", lambda s: (s["alg"], 0))
    row("start-up, empty database", lambda s: (f"{s['startup_s']:.1f} s", 0), lambda s: 1 / s["startup_s"])
    row("RSS idle", lambda s: (f"{s['rss_idle_mib']:.0f} MiB", 0), lambda s: 1 / s["rss_idle_mib"])
    row(f"login, closed loop ({report['login_connections']} conns)", rate("login"), lambda s: s["login"]["rps"])
    row("  failed", lambda s: (f"{s['login']['failed']:,} of {s['login']['requests']:,}", 0))
    row("  p50 / p99 ms", lat("login"))
    row("  CPU per login", cpu("login"), lambda s: 1 / s["login"]["cpu_us_per_req"])
    row("  RSS peak", lambda s: (f"{s['login']['rss_peak_mib']:.0f} MiB", 0))
    row(f"refresh, closed loop ({report['connections']} conns)", rate("refresh"), lambda s: s["refresh"]["rps"])
    row("  failed", lambda s: (f"{s['refresh']['failed']:,} of {s['refresh']['requests']:,}", 0))
    row("  p50 / p99 ms", lat("refresh"))
    row("  CPU per refresh", cpu("refresh"), lambda s: 1 / s["refresh"]["cpu_us_per_req"])
    row("  RSS peak", lambda s: (f"{s['refresh']['rss_peak_mib']:.0f} MiB", 0))
    row("verify at the edge (jwt-edge, JWKS, no cache)", rate("verify"), lambda s: s["verify"]["rps"])
    row("  p50 / p99 ms", lat("verify"))
    row(f"  open loop {report['rate_verify']}/s: p50 / p99 ms", lat("verify_open"))
    row("  CPU per verification", cpu("verify"))
    row("AuthStack gateway /session (its cache)", rate("session"))
    row("  p50 / p99 ms", lat("session"))
    row(f"  open loop {report['rate_verify']}/s: p50 / p99 ms", lat("session_open"))
    row("key rotation: failed verifications (probe)", lambda s: (
        f"{s['rotation'].get('verify_failed', 0)} of {s['rotation']['probe_checks']} checks", 0))
    row("  failed refreshes (probe + wrk)", lambda s: (
        f"{s['rotation']['failed'] - s['rotation'].get('verify_failed', 0):,} of "
        f"{s['rotation']['load_requests'] + s['rotation']['probe_checks']:,}", 0))
    row("  keys seen by the probe", lambda s: (str(len(s["rotation"]["kids_seen"])), 0))
    row("  refresh rate during rotation (ok)", lambda s: (f"{s['rotation']['refresh_rps']:,.0f}/s", 0))
    out = "\n".join(lines)
    out += (f"\n\nRaw hash rates on {report['cpus']} cores: argon2id {b.get('argon2id', {}).get('rate', 0):.0f}/s, "
            f"bcrypt cost {BCRYPT_COST} {b.get('bcrypt', {}).get('rate', 0):.0f}/s. Ratios in brackets: "
            "AuthStack ÷ peer (above 1 = AuthStack better: faster, less CPU, less memory, quicker start). "
            "Rates count successful requests only; a refresh chain whose request fails is lost, and "
            "the requests after it on that connection fail too.")
    for n in names:
        rot = systems[n].get("rotation")
        if rot:
            out += f"\n{systems[n]['label']} rotation: {rot['mechanism']}."
    return out


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "table":
        with open(sys.argv[2]) as f:
            print(table(json.load(f)))
    else:
        main()
