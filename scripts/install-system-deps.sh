#!/usr/bin/env bash
# Installs the Debian packages fieldops needs when they are missing: mosquitto, PostgreSQL server,
# npm (front-end assets at build time) and chromium (the browser tests drive it headless).
set -euo pipefail

need=()
have_pg() {
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
have_mosquitto() {
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]
}
have_pg || need+=(postgresql)
have_mosquitto || need+=(mosquitto)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ -x /usr/bin/chromium ] || need+=(chromium)
for pkg in ${FIELDOPS_EXTRA_DEBS:-}; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "fieldops: missing Debian packages: ${need[*]} (run as root or install sudo)" >&2; exit 1
  fi
fi
echo "fieldops: installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged services; fieldops runs its own instances on its own ports.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  $sudo systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi
