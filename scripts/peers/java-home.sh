#!/usr/bin/env bash
# Prints the JAVA_HOME Keycloak runs on: $KEYCLOAK_JAVA_HOME if set, else the newest JDK of
# release 21 or later under /usr/lib/jvm (Keycloak 26.7 supports OpenJDK 17, 21 and 25 and
# recommends the newest), else the default `java`'s home (Debian 12 has only 17).
set -euo pipefail
if [ -n "${KEYCLOAK_JAVA_HOME:-}" ]; then echo "$KEYCLOAK_JAVA_HOME"; exit 0; fi
best=""; best_major=0
for home in /usr/lib/jvm/*/; do
  home=${home%/}
  if [ ! -x "$home/bin/java" ] || [ -L "$home" ]; then continue; fi
  major=$("$home/bin/java" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
  [[ "$major" =~ ^[0-9]+$ ]] || continue
  if [ "$major" -ge 21 ] && [ "$major" -gt "$best_major" ]; then best=$home; best_major=$major; fi
done
if [ -n "$best" ]; then echo "$best"; exit 0; fi
dirname "$(dirname "$(readlink -f "$(command -v java)")")"
