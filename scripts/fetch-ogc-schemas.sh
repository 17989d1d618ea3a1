#!/usr/bin/env bash
# Fetch the official OGC XML schemas (WMS 1.1.1 DTD, WMS 1.3.0, WMTS 1.0, OWS 1.1,
# xlink, SLD 1.1 capabilities, INSPIRE view service) for the offline validation in
# tests/integration/test_capabilities_schema.py.
#
# Source: the upstream MapProxy 7.0.0 wheel on PyPI ships unmodified copies of the
# OGC schema trees as data files under mapproxy/test/schemas/ (schemas.opengis.net
# layout, relative imports). Only those schema/DTD files are extracted; no code.
# (The npm package ogc-schemas only has Jsonix mappings, no .xsd files.)
#
# Target: $MAPPROXY_OGC_SCHEMAS (default: ${XDG_CACHE_HOME:-~/.cache}/mapproxy-ogc-schemas),
# outside the repository. Idempotent: does nothing when the tree is already there.
#
# Usage: scripts/fetch-ogc-schemas.sh
#   PYTHON  interpreter with pip (default: .venv/bin/python of the repo, else python3)
set -euo pipefail

WHEEL_SPEC="MapProxy==7.0.0"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${MAPPROXY_OGC_SCHEMAS:-${XDG_CACHE_HOME:-$HOME/.cache}/mapproxy-ogc-schemas}"
MARKER="$DEST/.complete-mapproxy-7.0.0"

if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO_ROOT/.venv/bin/python" ]; then
    PYTHON="$REPO_ROOT/.venv/bin/python"
  else
    PYTHON=python3
  fi
fi

if [ -f "$MARKER" ]; then
  echo "fetch-ogc-schemas: schemas already in $DEST"
  exit 0
fi

download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT

echo "fetch-ogc-schemas: downloading $WHEEL_SPEC (wheel only, no dependencies)"
"$PYTHON" -m pip download -q --no-deps --only-binary :all: --dest "$download" "$WHEEL_SPEC"

mkdir -p "$DEST"
"$PYTHON" - "$download" "$DEST" <<'PY'
import sys
import zipfile
from pathlib import Path, PurePosixPath

download, dest = Path(sys.argv[1]), Path(sys.argv[2])
wheels = sorted(download.glob("*.whl"))
if not wheels:
    sys.exit("fetch-ogc-schemas: no wheel downloaded")
prefix = PurePosixPath("mapproxy/test/schemas")
count = 0
with zipfile.ZipFile(wheels[0]) as archive:
    for name in archive.namelist():
        path = PurePosixPath(name)
        if prefix not in path.parents or path.suffix not in (".xsd", ".dtd", ".txt"):
            continue
        rel = path.relative_to(prefix)
        if ".." in rel.parts:
            continue
        target = dest.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(archive.read(name))
        count += 1
needed = (
    "wms/1.1.1/WMS_MS_Capabilities.dtd",
    "wms/1.3.0/capabilities_1_3_0.xsd",
    "wmts/1.0/wmtsGetCapabilities_response.xsd",
    "ows/1.1.0/owsExceptionReport.xsd",
    "xlink/1.0.0/xlinks.xsd",
    "xml.xsd",
)
missing = [n for n in needed if not (dest / n).is_file()]
if missing:
    sys.exit(f"fetch-ogc-schemas: missing in {wheels[0].name}: {missing}")
print(f"fetch-ogc-schemas: extracted {count} files from {wheels[0].name} to {dest}")
PY
touch "$MARKER"
