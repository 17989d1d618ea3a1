#!/usr/bin/env bash
# Run the benchmark suite against MapProxy 7.0.0 (see docs/performance.md).
#
# Installs what it needs when missing: Debian's wrk and nginx (apt, as root or via sudo),
# the reference MapProxy 7.0.0 with gunicorn in its own venv (scripts/install-reference.sh,
# MAPPROXY_REF_VENV, default /work/ref-venv) and the project's `bench` extra (gunicorn,
# matplotlib, py-spy) in .venv. Then runs `python -m benchmarks` with the arguments given.
#
# Usage: benchmarks/run.sh [--quick] [--reps N] [--duration S] [--only W1,W3] ...
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(wrk nginx)
missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo -n"
  fi
  echo "benchmarks: installing ${missing[*]}"
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi

scripts/install-reference.sh

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import matplotlib, mapproxy" 2>/dev/null \
  || [ ! -x .venv/bin/gunicorn ] || [ ! -x .venv/bin/py-spy ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[bench]' </dev/null
fi

exec .venv/bin/python -m benchmarks "$@"
