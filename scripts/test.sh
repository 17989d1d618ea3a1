#!/usr/bin/env bash
# Install what the tests need (Python packages, MapServer from Debian) and run every test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/bootstrap.sh" test
"$root/scripts/install-system-deps.sh"
# Official OGC schemas for tests/integration/test_capabilities_schema.py (user cache dir).
"$root/scripts/fetch-ogc-schemas.sh"
# Reference MapProxy 7.0.0 for tests/integration/test_reference_compat.py, in a venv outside
# the repository (a user cache directory where /work is not writable, e.g. in CI).
if [ -z "${MAPPROXY_REF_VENV:-}" ]; then
  MAPPROXY_REF_VENV=/work/ref-venv
  if [ ! -x "$MAPPROXY_REF_VENV/bin/python" ] && ! { mkdir -p /work 2>/dev/null && [ -w /work ]; }; then
    MAPPROXY_REF_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/mapproxy-ref-venv"
  fi
fi
export MAPPROXY_REF_VENV
"$root/scripts/install-reference.sh"
.venv/bin/ruff check src tests
.venv/bin/ruff format --check --quiet src tests
.venv/bin/mypy
.venv/bin/lint-imports --no-cache > /dev/null || .venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
