#!/usr/bin/env bash
# Removes everything scripts/node/up.sh started or created, even after a crash: the kubelet,
# the pods (through the CRI, so CNI releases their addresses), containerd and its shims, the
# containers' processes, every mount under $NODE_STATE, the node's network namespace (with the
# pod bridge and any iptables rules in it) and the host's veth and route, the pods' cgroups,
# the kubelet's log links in /var/log/containers, and $NODE_STATE itself.
# Only what carries this node's paths or names is touched.
#
# Usage: scripts/node/down.sh [--keep-state]   (--keep-state: stop everything, keep the files)
set -euo pipefail
# shellcheck source=scripts/node/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

keep_state=false
[[ "${1:-}" == --keep-state ]] && keep_state=true
[[ "$(id -u)" == 0 ]] || node_die "the node needs root"

# stop <name>: TERM, then KILL after 20 s, the process of run/<name>.pid.
stop() {
  local pidfile="$NODE_STATE/run/$1.pid" pid i
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    node_log "stopping $1 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# Processes whose command line names this node's state directory (shims, containerd, kubelet).
state_processes() {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$NODE_STATE/" && echo "${p#/proc/}"
  done
  return 0
}

stop kube-proxy
stop coredns
stop kubelet
if [[ -S "$CONTAINERD_SOCKET" && -f "$NODE_STATE/crictl.yaml" ]] && node_crictl_ok; then
  node_log "removing the pods through the CRI"
  crictl=("$CRICTL_DIR/bin/crictl" --config "$NODE_STATE/crictl.yaml")
  mapfile -t pods < <("${crictl[@]}" pods -q 2>/dev/null)
  ((${#pods[@]} == 0)) || "${crictl[@]}" stopp "${pods[@]}" >/dev/null 2>&1 || true
  "${crictl[@]}" rmp -a -f >/dev/null 2>&1 || true
fi
stop containerd

# What survived: the containers (runc's state is ours), then any process of ours.
if node_runc_ok && [[ -d "$NODE_STATE/runc" ]]; then
  for root in "$NODE_STATE"/runc/*/; do
    [[ -d "$root" ]] || continue
    for id in $("$RUNC_DIR/bin/runc" --root "$root" list -q 2>/dev/null); do
      "$RUNC_DIR/bin/runc" --root "$root" kill "$id" KILL 2>/dev/null || true
      "$RUNC_DIR/bin/runc" --root "$root" delete -f "$id" 2>/dev/null || true
    done
  done
fi
leftover="$(state_processes)"
if [[ -n "$leftover" ]]; then
  node_log "killing leftover processes: ${leftover//$'\n'/ }"
  # shellcheck disable=SC2086 # one pid per word
  kill -KILL $leftover 2>/dev/null || true
  sleep 1
fi

# Mounts under the state directory, deepest first (overlay roots, netns files, volumes).
if [[ -d "$NODE_STATE" ]]; then
  while read -r target; do
    umount -l "$target" 2>/dev/null || true
  done < <(awk -v s="$NODE_STATE/" 'index($5, s) == 1 || $5 == substr(s, 1, length(s) - 1) {print $5}' \
    /proc/self/mountinfo | sort -r)
fi

if ip netns list | grep -q "^$NODE_NETNS\b"; then
  node_log "deleting the network namespace $NODE_NETNS (bridge, veths, rules in it)"
  ip netns del "$NODE_NETNS"
fi
ip link del "$NODE_HOST_VETH" 2>/dev/null || true
ip route del "$NODE_POD_CIDR" 2>/dev/null || true
ip route del "$NODE_SERVICE_CIDR" via "$NODE_IP" 2>/dev/null || true

# Pod cgroups, leaves first; a cgroup still holding a process stays (and is reported).
for h in /sys/fs/cgroup/*/; do
  dir="${h%/}$NODE_CGROUP_ROOT"
  [[ -d "$dir" ]] || continue
  find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  [[ -d "$dir" ]] && node_log "warning: $dir is still in use"
done

# The kubelet's /var/log/containers links into this node's pod logs.
for link in /var/log/containers/*.log; do
  [[ -L "$link" ]] && [[ "$(readlink "$link")" == "$NODE_STATE/"* ]] && rm -f "$link"
done

if ! $keep_state; then
  rm -rf "$NODE_STATE"
fi
node_log "down"
