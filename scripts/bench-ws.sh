#!/usr/bin/env bash
# `make bench-ws` (part of `make bench`): the gateway's WebSocket under load, with the
# WebSocket client bench/src/bin/ws-load.rs (tokio-tungstenite):
#   1. idle sockets held at once (WS_IDLE_SOCKETS, 10000), and the gateway's RSS per socket;
#   2. publish→client latency (p50/p99) of events published on the events exchange at a steady
#      rate with WS_LATENCY_SOCKETS (1000) subscribed sockets: each event to one socket's
#      account (WS_EVENT_RATE, 200/s), and `keys.rotated` to every socket (WS_BROADCAST_RATE,
#      10/s, i.e. 10,000 deliveries/s).
# Tokens are minted with PyJWT from the platform's key ring (one account per token), so no
# password logins are needed. BENCH_PROFILE=debug uses the debug binaries; BENCH_BUILD=0 skips
# the build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PLATFORM_PROFILE=${BENCH_PROFILE:-release}
idle=${WS_IDLE_SOCKETS:-10000}
subscribed=${WS_LATENCY_SOCKETS:-1000}
rate=${WS_EVENT_RATE:-200}
broadcast=${WS_BROADCAST_RATE:-10}
seconds=${WS_SECONDS:-10}
scripts/ensure-services.sh >/dev/null
if [ "${BENCH_BUILD:-1}" != 0 ]; then
  flags=(--locked -q -p auth-svc -p gateway -p authstack-dev -p authstack-bench)
  [ "$PLATFORM_PROFILE" = release ] && flags+=(--release)
  cargo build "${flags[@]}"
fi
venv=$(scripts/python-clients.sh)
# Every socket is a file descriptor, in the gateway and in the client (each its own limit):
# raise the soft limit as far as the hard one allows.
want=$(( idle + 1000 )); hard=$(ulimit -Hn)
[ "$hard" != unlimited ] && [ "$hard" -lt "$want" ] && want=$hard
ulimit -n "$want"
# shellcheck source=scripts/test-platform.sh
source scripts/test-platform.sh
# Logs at each binary's default level (info), as deployed: a caller's RUST_LOG does not apply.
unset RUST_LOG
export GATEWAY_WS_MAX_SOCKETS=$(( idle * 2 ))
start_platform bench-ws
work=$(mktemp -d)
trap 'stop_platform; rm -rf "$work"' EXIT
ws_url="${PLATFORM_URL/http:/ws:}/api/v1/ws"
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$PLATFORM_GATEWAY_PID/status"; }

"$venv/bin/python" scripts/mint_tokens.py "$PLATFORM_KEYS" "$PLATFORM_URL" authstack "$(( subscribed > 0 ? subscribed : 1 ))" >"$work/tokens.txt"
# A first socket warms the token cache and the key set.
"$bin/ws-load" --url "$ws_url" --tokens "$work/tokens.txt" idle --count 1 --hold 0 >/dev/null

echo "[bench-ws] $idle idle sockets" >&2
before=$(rss_kib)
"$bin/ws-load" --url "$ws_url" --tokens "$work/tokens.txt" idle --count "$idle" --hold 15 \
  --ready-file "$work/ready" >"$work/idle.json" &
loader=$!
for _ in $(seq 1 600); do [ -f "$work/ready" ] && break; sleep 0.5; done
sleep 3
held=$(rss_kib)
wait "$loader"
sleep 5
after=$(rss_kib)

# WS_LATENCY_SOCKETS=0 measures the idle sockets only.
if [ "$subscribed" -gt 0 ]; then
  echo "[bench-ws] latency: $subscribed sockets, $rate events/s to one socket each" >&2
  "$bin/ws-load" --url "$ws_url" --tokens "$work/tokens.txt" latency --count "$subscribed" \
    --amqp "$AUTH_SVC_AMQP_URL" --exchange "$AUTH_EVENTS_EXCHANGE" --rate "$rate" \
    --seconds "$seconds" --target one >"$work/one.json"
  echo "[bench-ws] latency: $subscribed sockets, $broadcast keys.rotated/s to every socket" >&2
  "$bin/ws-load" --url "$ws_url" --tokens "$work/tokens.txt" latency --count "$subscribed" \
    --amqp "$AUTH_SVC_AMQP_URL" --exchange "$AUTH_EVENTS_EXCHANGE" --rate "$broadcast" \
    --seconds "$seconds" --target all >"$work/all.json"
fi

python3 - "$work" "$before" "$held" "$after" "$PLATFORM_PROFILE" <<'PY'
import json, os, sys
work, before, held, after, profile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
idle = json.load(open(f"{work}/idle.json"))
per = (held - before) * 1024 / max(idle["opened"], 1)
print(f"\nWebSocket /api/v1/ws ({profile} build)")
print(f"  idle sockets held: {idle['opened']} (failed {idle['failed']}, closed early {idle['closed_early']}), "
      f"opened in {idle['connect_seconds']:.1f} s")
print(f"  gateway RSS: {before/1024:.1f} MiB before, {held/1024:.1f} MiB holding them "
      f"= {per/1024:.1f} KiB per socket; {after/1024:.1f} MiB after they closed")
for name, file in (("one socket per event", "one"), ("every socket (keys.rotated)", "all")):
    if not os.path.exists(f"{work}/{file}.json"):
        print(f"  events to {name}: not measured (WS_LATENCY_SOCKETS=0)")
        continue
    r = json.load(open(f"{work}/{file}.json"))
    print(f"  {r['sockets']} sockets, {r['rate']} events/s to {name}: {r['deliveries']}/{r['expected']} delivered, "
          f"publish->client p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.1f} ms")
PY
