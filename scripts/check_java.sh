#!/usr/bin/env bash
# Spark 4 needs Java 17 or newer; say how to get it rather than fail deep inside Spark.
set -u
if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ]; then
  echo "nbtune: Java not found. Spark 4 needs Java 17+: 'apt-get install openjdk-17-jre-headless' (Debian/Ubuntu) or set JAVA_HOME." >&2
  exit 1
fi
java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
version=$("$java_bin" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
major=${version%%.*}
[ "$major" = "1" ] && major=$(echo "$version" | cut -d. -f2)
if [ -z "$major" ] || [ "$major" -lt 17 ] 2>/dev/null; then
  echo "nbtune: Java $version found, but Spark 4 needs Java 17+: install openjdk-17 and point JAVA_HOME at it." >&2
  exit 1
fi
