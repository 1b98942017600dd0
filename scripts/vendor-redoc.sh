#!/usr/bin/env bash
# Refreshes the ReDoc bundle the gateway compiles into its binary (gateway/assets/redoc/), from
# npm's `redoc` package (MIT). The gateway serves it at /redoc/redoc.standalone.js, so /redoc
# works without internet access. Usage: scripts/vendor-redoc.sh [VERSION]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=${1:-2.5.4}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "redoc@$version" >/dev/null && tar xzf redoc-*.tgz)
dest="$root/gateway/assets/redoc"
mkdir -p "$dest"
cp "$work/package/bundles/redoc.standalone.js" "$work/package/bundles/redoc.standalone.js.LICENSE.txt" "$dest/"
cp "$work/package/LICENSE" "$dest/LICENSE"
echo "$version" >"$dest/VERSION"
echo "vendored redoc $version into $dest"
