#!/usr/bin/env bash
# Install what the tests need (Python packages, MapServer from Debian) and run every test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/bootstrap.sh" test
"$root/scripts/install-system-deps.sh"
.venv/bin/ruff check src tests
.venv/bin/mypy
.venv/bin/lint-imports --no-cache > /dev/null || .venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
