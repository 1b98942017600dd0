#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432, user postgres, trust auth on loopback) and RabbitMQ
# (127.0.0.1:5672, guest/guest) answer. Starts them when installed but stopped; installs them
# from Debian packages when absent. Then creates (or updates) the per-component broker users of
# libs/protocol/broker-acl.json (scripts/broker-users.py). Idempotent; prints what it does.
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
# Development clusters trust loopback connections (user postgres, no password), like the
# project's machines. Checked on every run, not only right after installing: a machine may
# come with the server installed but never configured.
pg_trusts_loopback() { psql -w -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; }
trust_loopback() {
  local version=$1 hba
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  [ -f "$hba" ] || { log "no $hba: configure loopback trust for user postgres yourself"; return 1; }
  log "PostgreSQL $version: trusting loopback connections in $hba (development setting)"
  as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
}
ensure_postgres() {
  local version
  if ! pg_ready; then
    if ! command -v pg_ctlcluster >/dev/null; then
      log "installing PostgreSQL from Debian packages"
      apt_install postgresql
    fi
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for PostgreSQL 60 pg_ready
  fi
  if ! pg_trusts_loopback; then
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
    [ -n "$version" ] && trust_loopback "$version"
    wait_for "PostgreSQL (loopback trust)" 20 pg_trusts_loopback
  fi
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
python3 "$(dirname "$0")/broker-users.py" ensure
