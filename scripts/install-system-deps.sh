#!/usr/bin/env bash
# Install the Debian packages the test suite needs (MapServer CGI for the
# integration tests; later also redis-server, nginx, ...).
#
# Idempotent and quick: when every package is already installed it does
# nothing; otherwise it runs `apt-get update` once and installs what is
# missing. Works non-interactively (CI, no stdin). Must run as root or via
# sudo.
#
# Usage: scripts/install-system-deps.sh [EXTRA_PACKAGE ...]
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# Packages to install. Add new ones here (one per line).
PACKAGES=(
  cgi-mapserver   # provides /usr/lib/cgi-bin/mapserv
  mapserver-bin   # mapserver command line tools (shp2img/map2img, ...)
  nginx                     # reverse proxy in tests/integration/test_nginx_proxy.py
  apache2                   # tests/integration/test_apache_mod_wsgi.py (own config, own port)
  libapache2-mod-wsgi-py3   # mod_wsgi for Debian's /usr/bin/python3
  python3-venv              # venv for mod_wsgi's Python (tests build it on first run)
  chromium                  # headless browser for tests/integration/test_demo_browser.py
  fonts-liberation          # readable text in its screenshots (a Recommends of chromium)
  gdal-bin                  # gdalinfo/gdal_translate in tests/integration/test_gdal_cli.py
  fonts-dejavu-core         # DejaVuSans.ttf: watermarks look like the reference's
  redis-server              # tests/integration/redis_server.py (own port, own temp dir)
)
PACKAGES+=("$@")

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
  else
    echo "install-system-deps: not root and no sudo available" >&2
    exit 1
  fi
fi

is_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! is_installed "$pkg"; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-system-deps: all present (${PACKAGES[*]})"
else
  echo "install-system-deps: installing ${missing[*]}"
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi

# The Debian package puts mapserv into the CGI directory, not onto PATH.
if ! command -v mapserv >/dev/null 2>&1 && [ -x /usr/lib/cgi-bin/mapserv ]; then
  echo "install-system-deps: mapserv is at /usr/lib/cgi-bin/mapserv (not on PATH)"
fi
