#!/bin/sh
# Entrypoint of AuthStack's PostgreSQL image: the part of docker.io/library/postgres's
# docker-entrypoint.sh that AuthStack relies on, in POSIX sh, never as root.
#
# On an empty $PGDATA: initdb as POSTGRES_USER (default postgres) with POSTGRES_PASSWORD,
# local socket connections trusted, TCP connections authenticated with
# POSTGRES_HOST_AUTH_METHOD (default scram-sha-256), listening on every address; then
# POSTGRES_DB (default: the user's name) is created and /docker-entrypoint-initdb.d/*.sql and
# *.sh run against a socket-only server. Extra initdb options: POSTGRES_INITDB_ARGS.
# Arguments starting with "-" are passed to postgres (`... -c shared_buffers=256MB`).
set -eu

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi
shift

if [ "$(id -u)" = 0 ]; then
  log "refusing to run PostgreSQL as root: run the container as uid 999 (the image's default)"
  exit 1
fi
: "${PGDATA:?PGDATA must name the data directory}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

mkdir -p "$PGDATA"
chmod 0700 "$PGDATA" 2>/dev/null || true

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    log "the database is uninitialized and POSTGRES_PASSWORD is empty: set it (or POSTGRES_HOST_AUTH_METHOD=trust)"
    exit 1
  fi
  log "initializing $PGDATA for user $POSTGRES_USER"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of options.
  printf '%s\n' "${POSTGRES_PASSWORD:-}" | initdb --username="$POSTGRES_USER" --pwfile=/dev/stdin \
    --auth-local=trust --auth-host="$auth" ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA" >&2
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  # A private server for the set-up: no TCP, its socket in the data directory (the root file
  # system may be read-only, and clients waiting on the usual socket must not see it).
  socket_dir="$PGDATA"
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c unix_socket_directories=$socket_dir" start >&2
  psql_init() { psql -X -v ON_ERROR_STOP=1 -h "$socket_dir" -U "$POSTGRES_USER" --no-password "$@"; }
  if [ "$POSTGRES_DB" != postgres ]; then
    psql_init -d postgres -q -v db="$POSTGRES_DB" <<'SQL'
CREATE DATABASE :"db";
SQL
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sql) log "running $f"; psql_init -d "$POSTGRES_DB" -f "$f" ;;
      *.sh) log "running $f"; PGHOST="$socket_dir" sh "$f" ;;
      */\*) ;;
      *) log "ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >&2
  log "initialization done"
fi

exec postgres "$@"
