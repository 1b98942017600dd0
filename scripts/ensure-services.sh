#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432, user postgres, trust auth on loopback) and RabbitMQ
# (127.0.0.1:5672, guest/guest) answer. Starts them when installed but stopped; installs them
# from Debian packages when absent. Idempotent; prints what it does.
set -euo pipefail

log() { printf '[services] %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else log "need root for: $*"; return 1; fi; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { # name, seconds, command...
  local name=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 4))); do "$@" && return 0; sleep 0.25; done
  log "$name did not come up within ${secs}s"; return 1
}
apt_updated=0
apt_install() {
  if [ $apt_updated -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_ready() { port_open 5432 && { ! command -v pg_isready >/dev/null || pg_isready -q -h 127.0.0.1 -p 5432; }; }
ensure_postgres() {
  if pg_ready; then log "PostgreSQL is up"; return; fi
  local installed_now=0
  if ! command -v pg_ctlcluster >/dev/null; then
    log "installing PostgreSQL from Debian packages"
    apt_install postgresql
    installed_now=1
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  if [ $installed_now -eq 1 ]; then
    # A fresh development cluster: trust loopback connections, like the project's machines.
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  fi
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL 60 pg_ready
  log "PostgreSQL is up"
}

rabbit_ready() { port_open 5672 && { ! command -v rabbitmq-diagnostics >/dev/null || as_root rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1; }; }
ensure_rabbitmq() {
  if port_open 5672; then log "RabbitMQ is up"; return; fi
  if ! command -v rabbitmq-server >/dev/null; then
    log "installing RabbitMQ from Debian packages"
    apt_install rabbitmq-server
  fi
  log "starting RabbitMQ"
  as_root rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_for RabbitMQ 120 rabbit_ready
  log "RabbitMQ is up"
}

ensure_postgres
ensure_rabbitmq
