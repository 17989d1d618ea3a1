#!/usr/bin/env bash
# Start upstream MapProxy 7.0.0 (installed by scripts/install-reference.sh)
# on a configuration and save its answers to a set of requests, as
# reference fixtures for comparison with our implementation.
#
# Usage: scripts/capture-reference.sh [CONFIG] [OUTDIR]
#   CONFIG  default tests/fixtures/reference/config.yaml
#   OUTDIR  default: /tmp/mapproxy-reference-capture (kept out of the repository: the
#           documents are the reference's output, used for looking, not committed)
#   MAPPROXY_REF_VENV  reference venv (default /work/ref-venv)
#   MAPPROXY_REF_PORT  port to serve on (default 18180; it shows up in URLs)
#
# The config is copied to a temporary directory first, so the reference's
# cache_data never lands in the repository. Uses only 127.0.0.1.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MAPPROXY_REF_VENV:-/work/ref-venv}"
PORT="${MAPPROXY_REF_PORT:-18180}"
CONFIG="${1:-$REPO_ROOT/tests/fixtures/reference/config.yaml}"
OUT="${2:-/tmp/mapproxy-reference-capture}"
BASE="http://127.0.0.1:$PORT"

if [ ! -x "$VENV/bin/mapproxy-util" ]; then
  echo "capture-reference: no reference install in $VENV; run scripts/install-reference.sh" >&2
  exit 1
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

WORK="$(mktemp -d /tmp/mapproxy-ref.XXXXXX)"
cp "$CONFIG" "$WORK/mapproxy.yaml"

# own process group, so the reloader child is stopped together with it
setsid "$VENV/bin/mapproxy-util" serve-develop -b "127.0.0.1:$PORT" "$WORK/mapproxy.yaml" \
  >"$WORK/serve.log" 2>&1 </dev/null &
SERVER_PID=$!
cleanup() {
  kill -- "-$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  if curl -s -o /dev/null "$BASE/"; then break; fi
  sleep 0.1
done
curl -s -o /dev/null "$BASE/" || { cat "$WORK/serve.log" >&2; exit 1; }

# body only: NAME PATH
body() {
  curl -s -o "$OUT/$1" "$BASE$2"
  echo "captured $1"
}
# status line + headers (body dropped): NAME PATH [extra curl args...]
headers() {
  local name="$1" path="$2"
  shift 2
  {
    echo "# GET $path $*"
    curl -s -D - -o /dev/null "$@" "$BASE$path" | tr -d '\r'
  } >>"$OUT/$name"
}

body wms_111_capabilities.xml "/service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.1.1"
body wms_130_capabilities.xml "/service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0"
body wms_111_error_unknown_layer.xml \
  "/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&LAYERS=nope&STYLES=&SRS=EPSG:4326&BBOX=-180,-90,180,90&WIDTH=256&HEIGHT=256&FORMAT=image/png"
body wmts_capabilities.xml "/wmts/1.0.0/WMTSCapabilities.xml"
body wmts_kvp_capabilities.xml "/service?SERVICE=WMTS&REQUEST=GetCapabilities"
body tms_services.xml "/tms/"
body tms_root.xml "/tms/1.0.0/"
body tms_tilemap.xml "/tms/1.0.0/cached/EPSG3857"
body tms_error_unknown_layer.xml "/tms/1.0.0/nope/EPSG3857"
body index.html "/"
body demo.html "/demo/"
body demo_wms_layer.html "/demo/?wms_layer=cached&format=png&srs=EPSG%3A3857"
body demo_wmts_layer.html "/demo/?wmts_layer=cached&format=png&srs=EPSG%3A3857"
body demo_tms_layer.html "/demo/?tms_layer=cached&format=png&srs=EPSG%3A3857"
body kml_0_0_0.kml "/kml/cached/EPSG3857/0/0/0.kml"
body ogcapi_landing.json "/ogcapi?f=json"

rm -f "$OUT/response_headers.txt"
TILE=/tiles/1.0.0/cached/EPSG3857/1/0/0.png
headers response_headers.txt "$TILE"
headers response_headers.txt "$TILE"
ETAG="$(curl -s -D - -o /dev/null "$BASE$TILE" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p')"
LASTMOD="$(curl -s -D - -o /dev/null "$BASE$TILE" | tr -d '\r' | sed -n 's/^[Ll]ast-[Mm]odified: //p')"
if [ -n "$ETAG" ]; then headers response_headers.txt "$TILE" -H "If-None-Match: $ETAG"; fi
if [ -n "$LASTMOD" ]; then headers response_headers.txt "$TILE" -H "If-Modified-Since: $LASTMOD"; fi
headers response_headers.txt "/tiles/1.0.0/cached/EPSG3857/99/0/0.png"
headers response_headers.txt "/wmts/cached/GLOBAL_WEBMERCATOR/1/0/0.png"
headers response_headers.txt \
  "/service?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=cached&STYLE=&TILEMATRIXSET=GLOBAL_WEBMERCATOR&TILEMATRIX=01&TILEROW=0&TILECOL=0&FORMAT=image/png"
headers response_headers.txt \
  "/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&LAYERS=cached&STYLES=&SRS=EPSG:4326&BBOX=-180,-90,180,90&WIDTH=256&HEIGHT=128&FORMAT=image/png"
headers response_headers.txt "/service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.1.1"
headers response_headers.txt "/demo/"
echo "captured response_headers.txt"
