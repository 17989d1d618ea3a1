#!/usr/bin/env bash
# Set everything up and serve the bundled offline example (Natural Earth world raster)
# at http://localhost:8080/demo/ . Extra arguments go to `mapproxy-util serve-develop`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/bootstrap.sh" raster,fast
cd "$root/examples/world"
exec "$root/.venv/bin/mapproxy-util" serve-develop -b 127.0.0.1:8080 "$@" mapproxy.yaml
