#!/usr/bin/env bash
# Installs the peers of `make bench-peers` from the package registries into a cache outside the
# clone (nothing of theirs is committed):
#   - Keycloak: org.keycloak:keycloak-quarkus-dist (zip) from Maven Central, through mvn;
#     pre-built (`kc.sh build`) for PostgreSQL, a local cache and health endpoints;
#   - Dex: github.com/dexidp/dex (cmd/dex) at a pseudo-version from the Go module proxy, built
#     in a wrapper module, plus `bcrypt-tool` (hashes for Dex's static passwords, and the raw
#     bcrypt verification rate, the login baseline of Dex);
#   - the load generators (scripts/load-tools.sh).
# Prints the cache directory. Idempotent: what is installed is kept.
#
# Knobs (environment): PEERS_CACHE (~/.cache/authstack/peers), KEYCLOAK_VERSION (26.7.3),
# DEX_VERSION (a Go pseudo-version of github.com/dexidp/dex).
set -euo pipefail
cache=${PEERS_CACHE:-${AUTHSTACK_CACHE:-$HOME/.cache/authstack}/peers}
keycloak_version=${KEYCLOAK_VERSION:-26.7.3}
# Dex tags are v2.x while its go.mod says `module github.com/dexidp/dex` (no /v2), so the proxy
# serves no v2 release of the module: a pseudo-version of a master commit is what resolves.
dex_version=${DEX_VERSION:-v0.0.0-20260806151424-ab64ed778070}
mkdir -p "$cache"
log() { echo "[peers-install] $*" >&2; }

install_keycloak() {
  local home="$cache/keycloak-$keycloak_version"
  if [ ! -x "$home/bin/kc.sh" ]; then
    log "Keycloak $keycloak_version from Maven Central"
    mvn -q -B dependency:copy -Dartifact="org.keycloak:keycloak-quarkus-dist:$keycloak_version:zip" \
      -DoutputDirectory="$cache" >&2
    (cd "$cache" && unzip -q -o "keycloak-quarkus-dist-$keycloak_version.zip" && rm -f "keycloak-quarkus-dist-$keycloak_version.zip")
  fi
  if [ ! -e "$home/.authstack-built" ]; then
    log "Keycloak: kc.sh build (postgres, local cache, health)"
    JAVA_HOME=$(scripts/peers/java-home.sh) "$home/bin/kc.sh" build --db=postgres --cache=local \
      --health-enabled=true >&2
    touch "$home/.authstack-built"
  fi
}

install_dex() {
  local dir="$cache/dex-$dex_version"
  [ -x "$dir/bin/dex" ] && [ -x "$dir/bin/bcrypt-tool" ] && return 0
  log "Dex $dex_version from the Go module proxy (go build; a few minutes)"
  rm -rf "$dir/src" && mkdir -p "$dir/src/cmd/bcrypt-tool" "$dir/src/cmd/dex"
  cat >"$dir/src/go.mod" <<MOD
module authstack.local/peers/dex

go 1.25.8

require github.com/dexidp/dex $dex_version
MOD
  cp scripts/peers/bcrypt-tool.go "$dir/src/cmd/bcrypt-tool/main.go"
  (cd "$dir/src" && GOFLAGS=-mod=mod go mod download github.com/dexidp/dex >&2)
  # Dex's go.mod replaces github.com/dexidp/dex/api/v2 with its own ./api/v2, which is a separate
  # module left out of the module zip, and the proxy serves api/v2 only up to v2.4.0, older than
  # this commit needs. Only the gRPC management API (server/apiserver) uses it, so cmd/dex is
  # built from a copy of its own files with that API left out (grpc.addr is then refused); the
  # OAuth2/OIDC server, storage and signer are Dex's code unchanged.
  local src
  src=$(cd "$dir/src" && go list -m -f '{{.Dir}}' github.com/dexidp/dex)
  for f in "$src"/cmd/dex/*.go; do
    case "$f" in *_test.go) ;; *) cp "$f" "$dir/src/cmd/dex/" && chmod u+w "$dir/src/cmd/dex/$(basename "$f")" ;; esac
  done
  python3 - "$dir/src/cmd/dex/serve.go" <<'PY'
import sys
path = sys.argv[1]
s = open(path).read()
edits = [
    ('\t"github.com/dexidp/dex/api/v2"\n', ''),
    ('\t"github.com/dexidp/dex/server/apiserver"\n', ''),
    ('\t\tapi.RegisterDexServer(grpcSrv, apiserver.NewAPI(serverConfig.Storage, logger, version, serv.Connectors(), serv.Discovery(), serv.Backchannel()))\n',
     '\t\treturn fmt.Errorf("this Dex build has no gRPC API (github.com/dexidp/dex/api/v2 is not served by the module proxy at this commit)")\n'),
]
for old, new in edits:
    if s.count(old) != 1:
        sys.exit(f"patching {path}: expected text not found once: {old!r}")
    s = s.replace(old, new)
open(path, "w").write(s)
PY
  (cd "$dir/src" && GOFLAGS=-mod=mod go mod tidy >&2 \
    && go build -trimpath -o "$dir/bin/dex" ./cmd/dex >&2 \
    && go build -trimpath -o "$dir/bin/bcrypt-tool" ./cmd/bcrypt-tool >&2)
}

cd "$(dirname "$0")/../.."
case "${1:-all}" in
  keycloak) install_keycloak ;;
  dex) install_dex ;;
  all) scripts/load-tools.sh; install_keycloak; install_dex ;;
  *) echo "usage: $0 [all|keycloak|dex]" >&2; exit 2 ;;
esac
echo "$cache"
