#!/usr/bin/env bash
# Debian packages the test suite and benchmarks need: redis-server (scale-out cache), wrk (bench),
# nginx (deploy config check), chromium + chromium-driver (CORS and pages in a real browser). Installs only what is missing, so a warm machine pays nothing.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v node >/dev/null || need+=(nodejs npm)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  echo "[system-deps] apt-get install ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
