#!/usr/bin/env bash
# Spark 4 needs Java 17 or newer: install Debian's when there is none (as `make` does for chromium),
# and say what to do rather than fail deep inside Spark when an older one is chosen.
set -u
java_major() {
  local version major
  version=$("$1" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
  major=${version%%.*}
  [ "$major" = "1" ] && major=$(echo "$version" | cut -d. -f2)
  echo "${major:-0}"
}
if [ -n "${JAVA_HOME:-}" ]; then
  if [ ! -x "$JAVA_HOME/bin/java" ] || [ "$(java_major "$JAVA_HOME/bin/java")" -lt 17 ]; then
    echo "nbtune: JAVA_HOME=$JAVA_HOME is not a Java 17+ (Spark 4 needs it): point it at one or unset it." >&2
    exit 1
  fi
  exit 0
fi
if ! command -v java >/dev/null 2>&1 || [ "$(java_major java)" -lt 17 ]; then
  echo "nbtune: installing Java 17 (openjdk-17-jre-headless) with apt-get: Spark 4 needs it"
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless \
    || { echo "nbtune: could not install Java 17; install openjdk-17-jre-headless or set JAVA_HOME" >&2; exit 1; }
  if [ "$(java_major java)" -lt 17 ]; then  # an older java still first on PATH
    echo "nbtune: Java 17 is installed but 'java' on PATH is older: set JAVA_HOME=/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture)" >&2
    exit 1
  fi
fi
