#!/usr/bin/env bash
# Install the upstream MapProxy 7.0.0 release from PyPI into a virtual
# environment OUTSIDE this repository, as a black-box reference to compare
# behaviour against (run its commands, send it requests; do not read or copy
# its code).
#
# Usage: scripts/install-reference.sh
#   MAPPROXY_REF_VENV  target venv (default: /work/ref-venv)
#   PYTHON             interpreter to create the venv with (default: python3)
set -euo pipefail

VENV="${MAPPROXY_REF_VENV:-/work/ref-venv}"
PYTHON="${PYTHON:-python3}"
REF_VERSION="7.0.0"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "$(cd "$(dirname "$VENV")" 2>/dev/null && pwd)/$(basename "$VENV")/" in
  "$REPO_ROOT"/*)
    echo "install-reference: refusing to create the venv inside the repo ($VENV)" >&2
    exit 1
    ;;
esac

if [ -x "$VENV/bin/python" ] \
  && "$VENV/bin/python" - "$REF_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
want = sys.argv[1]
assert version("MapProxy") == want
for dist in ("Pillow", "pyproj", "PyYAML", "Werkzeug", "gunicorn"):
    version(dist)
PY
then
  echo "install-reference: MapProxy $REF_VERSION already in $VENV"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "install-reference: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  "MapProxy==$REF_VERSION" Pillow pyproj PyYAML werkzeug gunicorn </dev/null

echo "install-reference: installed $("$VENV/bin/mapproxy-util" --version 2>&1)"
