#!/usr/bin/env bash
# Fetch the OpenLayers npm package and copy its prebuilt browser build into
# the demo service's static files, so the demo page works offline (no CDN).
#
# Usage: scripts/update-openlayers.sh [VERSION_SPEC]   (default: 10, i.e. latest 10.x)
# Needs npm (registry access). The copied files are committed.
set -euo pipefail

SPEC="${1:-10}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$REPO_ROOT/src/mapproxy/service/demo/static/ol"

TMP="$(mktemp -d /tmp/ol-pack.XXXXXX)"
trap 'rm -rf "$TMP"' EXIT

(cd "$TMP" && npm pack --silent "ol@$SPEC" >pack.txt </dev/null)
TARBALL="$TMP/$(tail -n 1 "$TMP/pack.txt")"
tar -xzf "$TARBALL" -C "$TMP"
PKG="$TMP/package"
VERSION="$(node -p "require('$PKG/package.json').version")"

for f in dist/ol.js ol.css LICENSE.md; do
  [ -f "$PKG/$f" ] || { echo "update-openlayers: $f missing in ol@$VERSION" >&2; exit 1; }
done

mkdir -p "$DEST"
cp "$PKG/dist/ol.js" "$DEST/ol.js"
cp "$PKG/ol.css" "$DEST/ol.css"
rm -f "$DEST/LICENSE.md"
# saved as .txt so that the package-data globs in pyproject.toml ship it
cp "$PKG/LICENSE.md" "$DEST/LICENSE.txt"
cat >"$DEST/VERSION.txt" <<TXT
OpenLayers $VERSION (npm package "ol", BSD-2-Clause, see LICENSE.txt = package/LICENSE.md)
ol.js  = package/dist/ol.js (prebuilt UMD build, global "ol")
ol.css = package/ol.css
Updated with scripts/update-openlayers.sh
TXT
echo "update-openlayers: OpenLayers $VERSION -> $DEST"
