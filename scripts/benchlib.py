"""Measurement helpers shared by `make bench` (scripts/bench.sh) and `make bench-peers`
(scripts/peers/bench_peers.py): independent load generators (wrk closed loop, oha open loop),
CPU and RSS of process trees from /proc, and small process utilities. Standard library only.

As a command (used by bench.sh; `benchlib.py SUBCOMMAND --help` for the options):
  benchlib.py cpu --db DB NAME=PID,..  cumulative CPU seconds per component (JSON)
  benchlib.py rss NAME=PID[,PID]...    resident set size of each group, MiB (JSON)
  benchlib.py wrk NAME URL [options]   wrk closed loop; its JSON report with "name" added
  benchlib.py oha NAME URL RATE [...]  oha open loop at RATE requests/s; its JSON report
"""
import base64
import json
import resource
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRK_DIR = os.path.join(ROOT, "bench", "wrk")
TICK = os.sysconf("SC_CLK_TCK")
CACHE = os.environ.get("AUTHSTACK_CACHE", os.path.expanduser("~/.cache/authstack"))
PEERS_CACHE = os.environ.get("PEERS_CACHE", os.path.join(CACHE, "peers"))


# ---------------------------------------------------------------- /proc


def _stat(pid):
    """(comm, ppid, cpu seconds) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1: stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def tree(pid):
    """The pids of a process and all its descendants."""
    children = {}
    for p in _all_pids():
        s = _stat(p)
        if s:
            children.setdefault(s[1], []).append(p)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids):
    """CPU seconds (user + system, all threads) used so far by the given processes."""
    return sum(s[2] for s in (_stat(p) for p in pids) if s)


def rss_kib(pids):
    """Resident set size of the given processes together, KiB."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def postgres_backends(database):
    """Pids of the PostgreSQL backends serving `database` (their title names it)."""
    return [p for p in _all_pids() if f" {database} " in _cmdline(p) and "postgres:" in _cmdline(p)]


def rabbitmq_pids():
    return [p for p in _all_pids() if (_stat(p) or ("",))[0] == "beam.smp" and "rabbit" in _cmdline(p)]


def component_cpu(groups, database):
    """Cumulative CPU seconds per component: each `groups` entry (name -> pids), the PostgreSQL
    backends serving `database`, and RabbitMQ (shared: other work on the machine counts too)."""
    out = {name: cpu_seconds(pids) for name, pids in groups.items()}
    out["postgres"] = cpu_seconds(postgres_backends(database))
    out["rabbitmq"] = cpu_seconds(rabbitmq_pids())
    return out


class RssSampler:
    """Samples the RSS of a set of processes every `interval` seconds; `.peak` is the maximum."""

    def __init__(self, pids_fn, interval=0.5):
        self.pids_fn, self.interval, self.peak = pids_fn, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pids_fn()))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_exc):
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- load generators


def _run_child(cmd):
    """Runs a load generator; returns (CompletedProcess, CPU seconds it used)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 3)


def oha_binary():
    found = shutil.which("oha")
    cached = os.path.join(CACHE, "tools", "oha", "bin", "oha")
    return found or (cached if os.access(cached, os.X_OK) else None)


def wrk(url, *, duration, connections, threads=2, script="get.lua", script_args=(), headers=(),
        timeout=10):
    """Closed loop: `connections` keep-alive connections, each sending its next request when the
    previous answer arrived. Returns the JSON report of bench/wrk/report.lua (rps counts only
    2xx/3xx answers; failed = non-2xx + socket errors)."""
    threads = max(1, min(threads, connections))
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
           "--timeout", f"{timeout}s", "-s", os.path.join(WRK_DIR, script)]
    for h in headers:
        cmd += ["-H", h]
    cmd += [url, "--", *script_args]
    done, cpu = _run_child(cmd)
    if done.stderr.strip():
        sys.stderr.write(done.stderr)
    out = done.stdout
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            r = json.loads(line)
            r["tool"], r["loadgen_cpu_s"] = "wrk", cpu
            return r
    raise RuntimeError(f"wrk printed no report:\n{out}")


def oha(url, *, rate, duration, connections=32, method="GET", headers=(), body=None):
    """Open loop: requests scheduled at a fixed `rate` per second, latency measured from each
    request's scheduled time (`--latency-correction`), so a stall counts against every request
    that should have been sent during it (no coordinated omission)."""
    binary = oha_binary()
    if not binary:
        raise RuntimeError("oha is not installed: run scripts/load-tools.sh")
    cmd = [binary, "--no-tui", "--output-format", "json", "-z", f"{duration}s", "-c", str(connections),
           "-q", str(rate), "--latency-correction", "-m", method]
    for h in headers:
        cmd += ["-H", h]
    if body is not None:
        cmd += ["-d", body]
    cmd.append(url)
    done, cpu = _run_child(cmd)
    r = json.loads(done.stdout)
    summary, pct = r["summary"], r.get("latencyPercentiles", {})
    codes = r.get("statusCodeDistribution", {})
    ok = sum(n for code, n in codes.items() if code.startswith("2"))
    # requests still in flight when the duration ends are not failures
    errors = {k: n for k, n in r.get("errorDistribution", {}).items() if "aborted due to deadline" not in k}
    total = sum(codes.values()) + sum(errors.values())
    seconds = summary.get("total") or duration
    failures = {**{code: n for code, n in codes.items() if not code.startswith("2")}, **errors}
    return {"tool": "oha", "target_rps": rate, "requests": total, "rps": ok / seconds,
            "failed": total - ok, "failures": failures, "p50_ms": pct.get("p50", 0) * 1000,
            "p90_ms": pct.get("p90", 0) * 1000, "p99_ms": pct.get("p99", 0) * 1000,
            "max_ms": (summary.get("slowest") or 0) * 1000, "seconds": seconds, "loadgen_cpu_s": cpu}


# ---------------------------------------------------------------- processes and HTTP


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, *, body=None, headers=None, timeout=30):
    """(status, body bytes) of one request; never raises for HTTP error statuses."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metric_sums(urls, names):
    """The sum over Prometheus endpoints `urls` of each sample named in `names` (no labels)."""
    sums = dict.fromkeys(names, 0.0)
    for url in urls:
        status, body = http("GET", url, timeout=10)
        if status != 200:
            raise RuntimeError(f"{url}: HTTP {status}")
        for line in body.decode().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in sums:
                sums[parts[0]] += float(parts[1])
    return sums


def jwt_header(token):
    """The decoded JSON header of a compact JWS."""
    head = token.split(".", 1)[0]
    return base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode()


def wait_until(check, timeout, what):
    """Polls `check()` every 50 ms until it is true; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout} s")


def _peaks(specs):
    """RssSamplers for `NAME=PID[,PID...]` specs."""
    return {name: RssSampler(lambda pids=[int(p) for p in pids.split(",")]: pids)
            for name, pids in (spec.split("=", 1) for spec in specs)}


def _main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    cpu = sub.add_parser("cpu")
    cpu.add_argument("--db", required=True, help="database whose PostgreSQL backends count")
    cpu.add_argument("spec", nargs="*", help="NAME=PID[,PID...]")
    hashing = sub.add_parser("hash-cpu", help="argon2 CPU seconds and hashes so far, summed over auth-svc replicas")
    hashing.add_argument("url", nargs="+", help="auth-svc /metrics URLs")
    sums = sub.add_parser("sums", help="sums of Prometheus samples without labels")
    sums.add_argument("url")
    sums.add_argument("metric", nargs="+")
    rss = sub.add_parser("rss")
    rss.add_argument("spec", nargs="+", help="NAME=PID[,PID...]")
    for tool in ("wrk", "oha"):
        p = sub.add_parser(tool)
        p.add_argument("name")
        p.add_argument("url")
        if tool == "oha":
            p.add_argument("rate", type=float)
            p.add_argument("-m", dest="method", default="GET")
            p.add_argument("-b", dest="body")
        else:
            p.add_argument("-s", dest="script", default="get.lua")
            p.add_argument("-a", dest="script_args", action="append", default=[], help="script argument")
        p.add_argument("-d", dest="duration", type=int, default=10)
        p.add_argument("-c", dest="connections", type=int, default=64)
        p.add_argument("-H", dest="headers", action="append", default=[])
        p.add_argument("--rss", action="append", default=[], help="NAME=PID[,PID...]: peak RSS during the run")
    a = ap.parse_args(argv)
    if a.cmd == "cpu":
        groups = {name: [int(p) for p in pids.split(",")] for name, pids in (x.split("=", 1) for x in a.spec)}
        print(json.dumps(component_cpu(groups, a.db)))
        return 0
    if a.cmd == "hash-cpu":
        m = metric_sums(a.url, ["authstack_password_hash_cpu_seconds_sum", "authstack_password_hash_cpu_seconds_count"])
        print(json.dumps({"cpu_s": m["authstack_password_hash_cpu_seconds_sum"],
                          "hashes": m["authstack_password_hash_cpu_seconds_count"]}))
        return 0
    if a.cmd == "sums":
        print(json.dumps(metric_sums([a.url], a.metric)))
        return 0
    if a.cmd == "rss":
        print(json.dumps({name: rss_kib([int(p) for p in pids.split(",")]) / 1024
                          for name, pids in (spec.split("=", 1) for spec in a.spec)}))
        return 0
    samplers = _peaks(a.rss)
    for sampler in samplers.values():
        sampler.__enter__()
    try:
        if a.cmd == "wrk":
            r = wrk(a.url, duration=a.duration, connections=a.connections, script=a.script,
                    script_args=a.script_args, headers=a.headers)
        else:
            r = oha(a.url, rate=a.rate, duration=a.duration, connections=a.connections, method=a.method,
                    headers=a.headers, body=a.body)
    finally:
        for sampler in samplers.values():
            sampler.__exit__()
    r["name"] = a.name
    if samplers:
        r["rss_peak_mib"] = {name: round(s.peak / 1024, 1) for name, s in samplers.items()}
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
