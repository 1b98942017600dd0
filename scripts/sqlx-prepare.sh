#!/usr/bin/env bash
# Regenerates sqlx's offline data (`.sqlx/`, one JSON file per statement checked at compile
# time) against a throwaway database: create it, apply the migrations of every crate that uses
# the query macros, build those crates with the macros online (they describe each statement to
# PostgreSQL and write its file), drop the database. Files of statements that no longer exist
# are removed. Then builds once more offline, as every other build does.
#
#   scripts/sqlx-prepare.sh          rewrite .sqlx/ (make sqlx-prepare)
#   scripts/sqlx-prepare.sh --check  fail when .sqlx/ differs from what the code needs
#
# PG_ADMIN_URL: a role that may create databases (default: postgres on 127.0.0.1:5432).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
pg_admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# Each crate using the query macros: cargo package, directory (sources in src/, migrations in
# migrations/), schema.
crates=(
  "auth-svc auth-svc auth"
  "authstack-chat chat chat"
)

db="authstack_sqlx_prepare_$(date +%s)_$$"
work=$(mktemp -d)
cleanup() {
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

psql "$pg_admin" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $db"
url="${pg_admin%/*}/$db"
packages=()
for entry in "${crates[@]}"; do
  read -r package dir schema <<<"$entry"
  packages+=(-p "$package")
  files=("$dir"/migrations/*.sql)
  psql "$url" -v ON_ERROR_STOP=1 -q -c "CREATE SCHEMA $schema" "${files[@]/#/-f}" >/dev/null
  # The macros only compile again when their crate does: mark its sources changed.
  find "$dir/src" -name '*.rs' -exec touch {} +
done

# Written aside first: a build that fails leaves .sqlx/ as it was.
out="$work/sqlx"
mkdir -p "$out"
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$out" DATABASE_URL="$url" \
  cargo check --locked --all-targets "${packages[@]}"
count=$(find "$out" -name 'query-*.json' | wc -l)

if [ "$check" -eq 1 ]; then
  if ! diff -r "$root/.sqlx" "$out" >"$work/diff"; then
    cat "$work/diff" >&2
    echo "[sqlx-prepare] .sqlx/ is stale: run make sqlx-prepare and commit .sqlx/" >&2
    exit 1
  fi
  echo "[sqlx-prepare] .sqlx/ is up to date ($count statements)"
else
  mkdir -p "$root/.sqlx"
  rm -f "$root"/.sqlx/query-*.json
  cp "$out"/query-*.json "$root/.sqlx/"
  echo "[sqlx-prepare] wrote $count statements to .sqlx/; checking an offline build"
  cargo check --locked --all-targets "${packages[@]}"
fi
