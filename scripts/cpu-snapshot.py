"""Prints cumulative CPU seconds per component (gateway, auth-svc, postgres, rabbitmq, loadgen)
as JSON, read from /proc. The bench diffs two snapshots around a scenario."""
import json, os, sys

TICK = os.sysconf("SC_CLK_TCK")
groups = {"gateway": 0.0, "auth-svc": 0.0, "postgres": 0.0, "rabbitmq": 0.0, "loadgen": 0.0}
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        continue
    comm = stat[stat.index("(") + 1: stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    if comm == "gateway":
        groups["gateway"] += cpu
    elif comm == "auth-svc":
        groups["auth-svc"] += cpu
    elif comm.startswith("postgres") or "postgres:" in cmd:
        groups["postgres"] += cpu
    elif comm == "beam.smp" or "rabbit" in cmd and comm.startswith(("beam", "erl")):
        groups["rabbitmq"] += cpu
    elif comm == "loadgen":
        groups["loadgen"] += cpu
print(json.dumps(groups))
