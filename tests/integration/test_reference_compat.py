"""Side by side with the reference MapProxy 7.0.0 on one config and one real MapServer WMS.

Both implementations serve the same config text (each from its own directory, so each
has its own cache_data) in front of the MapServer fixture. The tests send identical
requests to both and compare what a client or an operator can observe: cache trees,
upstream requests, images, status codes, headers and capabilities documents.

Differences that are allowed are listed in the ``ALLOWED_*`` tables below, each with
its reason: a deliberate improvement from docs/compatibility.md or a reference bug.
Anything else that differs fails a test. Allow-list entries that no longer match a
difference fail as well, so the tables stay accurate.

The reference comes from scripts/install-reference.sh (see reference.py).
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from lxml import etree
from owslib.wms import WebMapService
from owslib.wmts import WebMapTileService
from PIL import Image

try:
    from .mapserver import MapServerWMS
    from .reference import ReferenceMissing, ReferenceServer, reference_python
    from .serving import ThreadServer, fetch
except ImportError:
    from mapserver import MapServerWMS
    from reference import ReferenceMissing, ReferenceServer, reference_python
    from serving import ThreadServer, fetch

pytestmark = pytest.mark.integration

# Everything MapServer serves, behind caches on four grids and three directory layouts,
# plus uncached and reprojecting layers. No `debug` sources: their renderings differ by
# design.
CONFIG = """
services:
  wms:
    srs: ['EPSG:4326', 'EPSG:3857', 'EPSG:25832', 'EPSG:900913']
    md:
      title: Compat WMS
      abstract: Side-by-side comparison with the reference
      online_resource: http://example.org/compat
      access_constraints: Only for tests
      fees: None at all
      keyword_list:
        - vocabulary: Test
          keywords: [compat, reference]
      contact:
        person: Jane Doe
        position: Tester
        organization: Example Org
        address: Main Street 1
        city: Oldenburg
        postcode: '26122'
        country: Germany
        phone: '+49 441 0000'
        email: jane@example.org
  wmts:
  tms:
layers:
  - name: group
    title: Group of cached layers
    layers:
      - name: tc
        title: Cache in tc layout
        sources: [cache_tc]
        md:
          abstract: All four grids
          keyword_list:
            - keywords: [raster, tc]
          attribution:
            title: Test data
            url: http://example.org/attribution
          identifier:
            - url: http://example.org/authority
              name: exampleorg
              value: tc-layer
          metadata:
            - url: http://example.org/metadata.xml
              type: TC211
              format: text/xml
      - name: tms_layout
        title: Cache in tms layout
        sources: [cache_tms]
  - name: mp_layout
    title: Cache in mp layout (JPEG)
    sources: [cache_mp]
  - name: direct
    title: MapServer raster, uncached
    sources: [ms_raster]
  - name: reprojected
    title: MapServer raster, reprojected from EPSG:4326
    sources: [ms_4326]
  - name: limited
    title: Only between two resolutions
    sources: [ms_raster]
    min_res: 10000
    max_res: 100
caches:
  cache_tc:
    grids: [GLOBAL_WEBMERCATOR, GLOBAL_MERCATOR, GLOBAL_GEODETIC, utm32]
    sources: [ms_raster]
  cache_tms:
    grids: [GLOBAL_WEBMERCATOR, utm32]
    sources: [ms_raster]
    meta_size: [2, 2]
    meta_buffer: 0
    cache:
      type: file
      directory_layout: tms
  cache_mp:
    grids: [GLOBAL_GEODETIC, GLOBAL_MERCATOR]
    sources: [ms_raster]
    format: image/jpeg
    meta_size: [3, 2]
    meta_buffer: 10
    cache:
      type: file
      directory_layout: mp
grids:
  utm32:
    srs: 'EPSG:25832'
    bbox: [200000, 5000000, 1000000, 6200000]
    origin: nw
    num_levels: 10
sources:
  ms_raster:
    type: wms
    req:
      url: {url}
      layers: raster
  ms_4326:
    type: wms
    supported_srs: ['EPSG:4326']
    req:
      url: {url}
      layers: raster
globals:
  http:
    client_timeout: 30
"""

# Mean absolute difference per RGBA channel (0..255) allowed between the two answers.
# Observed with MapProxy 7.0.0: tiles 0.0 (pixel identical); GetMaps, which resample
# cached tiles or reproject, 0.0-1.4.
TILE_MAX_MEAN_DIFFERENCE = 0.5
GETMAP_MAX_MEAN_DIFFERENCE = 2.0

WMS = "/service?SERVICE=WMS&VERSION=1.1.1&STYLES="
WMS130 = "/service?SERVICE=WMS&VERSION=1.3.0&STYLES="


def getmap(layers: str, srs: str, bbox: str, size: tuple[int, int], fmt: str = "image/png") -> str:
    """A WMS 1.1.1 GetMap path."""
    width, height = size
    return (
        f"{WMS}&REQUEST=GetMap&LAYERS={layers}&SRS={srs}&BBOX={bbox}"
        f"&WIDTH={width}&HEIGHT={height}&FORMAT={urllib.parse.quote(fmt)}"
    )


def wmts_kvp(layer: str, matrix_set: str, matrix: str, row: int, col: int, fmt: str) -> str:
    """A WMTS KVP GetTile path."""
    return (
        "/service?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&STYLE="
        f"&LAYER={layer}&TILEMATRIXSET={matrix_set}&TILEMATRIX={matrix}"
        f"&TILEROW={row}&TILECOL={col}&FORMAT={urllib.parse.quote(fmt)}"
    )


# Tile requests per cache; each sequence also contains WMS GetMaps served from the cache.
TILE_SEQUENCES: dict[str, list[str]] = {
    "cache_tc": [
        "/wmts/tc/GLOBAL_WEBMERCATOR/02/1/1.png",
        "/wmts/tc/GLOBAL_WEBMERCATOR/03/4/2.png",
        "/wmts/tc/GLOBAL_MERCATOR/03/4/2.png",
        "/wmts/tc/utm32/03/2/3.png",
        "/wmts/tc/utm32/02/2/1.png",  # the grid bbox ends inside this column
        "/wmts/tc/utm32/03/5/6.png",
        wmts_kvp("tc", "utm32", "04", 5, 5, "image/png"),
        wmts_kvp("tc", "GLOBAL_WEBMERCATOR", "05", 10, 17, "image/png"),
        "/tms/1.0.0/tc/EPSG4326/1/2/1.png",
        "/tms/1.0.0/tc/EPSG3857/3/4/5.png",
        "/tms/1.0.0/tc/EPSG900913/1/0/1.png",
        "/tms/1.0.0/tc/EPSG25832/3/1/2.png",
        "/tiles/tc/EPSG4326/3/3/1.png",
        "/tiles/tc/EPSG4326/0/0/0.png",  # half of this tile is north of the grid bbox
        "/tiles/tc/EPSG3857/4/8/5.png",
        "/tiles/tc/EPSG25832/4/6/6.png",
        "/tiles/1.0.0/tc/EPSG900913/2/1/1.png?origin=nw",
        getmap("tc", "EPSG:4326", "5,45,15,55", (400, 400)),
        getmap("tc", "EPSG:3857", "0,5000000,2000000,7000000", (256, 256)),
    ],
    "cache_tms": [
        "/wmts/tms_layout/GLOBAL_WEBMERCATOR/03/2/2.png",
        "/wmts/tms_layout/utm32/04/3/3.png",
        "/wmts/tms_layout/utm32/01/1/0.png",  # without meta_buffer: not cut at the grid bbox
        "/tms/1.0.0/tms_layout/EPSG3857/2/1/2.png",
        "/tms/1.0.0/tms_layout/EPSG25832/5/9/20.png",
        "/tiles/tms_layout/EPSG25832/5/10/10.png",
        getmap("tms_layout", "EPSG:4326", "-20,30,40,70", (300, 200)),
        getmap("tms_layout", "EPSG:3857", "-1000000,6000000,1000000,7000000", (400, 200)),
    ],
    "cache_mp": [
        "/tms/1.0.0/mp_layout/EPSG4326/2/3/1.jpeg",
        "/tiles/mp_layout/EPSG4326/3/3/3.jpeg",
        "/tiles/mp_layout/EPSG900913/3/3/3.jpeg",
        "/wmts/mp_layout/GLOBAL_MERCATOR/04/8/5.jpeg",
        getmap("mp_layout", "EPSG:4326", "-90,-45,0,0", (360, 180), "image/jpeg"),
        getmap("mp_layout", "EPSG:900913", "0,0,5000000,5000000", (256, 256), "image/png"),
    ],
}

# WMS GetMaps compared as images: cached, reprojected from a cache, reprojected from
# an EPSG:4326-only source, and uncached.
GETMAP_CASES: dict[str, str] = {
    "tc-4326": getmap("tc", "EPSG:4326", "-10,35,30,65", (400, 300)),
    "tc-3857": getmap("tc", "EPSG:3857", "-2000000,4000000,4000000,9000000", (300, 250)),
    "tc-25832": getmap("tc", "EPSG:25832", "300000,5200000,900000,6000000", (300, 400)),
    "tms-25832-130": (
        f"{WMS130}&REQUEST=GetMap&LAYERS=tms_layout&CRS=EPSG:25832"
        "&BBOX=250000,5100000,950000,6100000&WIDTH=280&HEIGHT=400&FORMAT=image/png"
    ),
    "mp-25832": getmap("mp_layout", "EPSG:25832", "300000,5000000,900000,6000000", (240, 400)),
    "reprojected-3857": getmap(
        "reprojected", "EPSG:3857", "-5000000,0,5000000,8000000", (400, 320)
    ),
    "reprojected-25832": getmap(
        "reprojected", "EPSG:25832", "300000,5200000,900000,6000000", (300, 400), "image/jpeg"
    ),
    "direct-25832": getmap("direct", "EPSG:25832", "300000,5200000,900000,6000000", (300, 400)),
    "direct-4326-130": (
        f"{WMS130}&REQUEST=GetMap&LAYERS=direct,tc&CRS=EPSG:4326"
        "&BBOX=30,-30,60,30&WIDTH=400&HEIGHT=200&FORMAT=image/png&TRANSPARENT=TRUE"
    ),
}

# Requests whose status, Content-Type, cache headers and body are compared.
RESPONSE_CASES: dict[str, str] = {
    "root": "/",
    "not-found": "/nothing/here",
    "tile-wmts": "/wmts/tc/GLOBAL_WEBMERCATOR/01/0/0.png",
    "tile-wmts-kvp": wmts_kvp("tc", "GLOBAL_WEBMERCATOR", "01", 0, 1, "image/png"),
    "tile-tms": "/tms/1.0.0/tc/EPSG3857/0/0/0.png",
    "tile-tiles": "/tiles/tc/EPSG3857/1/1/0.png",
    "tile-jpeg": "/tiles/mp_layout/EPSG4326/1/1/0.jpeg",
    "wms-getmap": getmap("direct", "EPSG:4326", "0,40,20,60", (200, 200)),
    "wms-getmap-jpeg": getmap(
        "tc", "EPSG:3857", "0,5000000,1000000,6000000", (100, 100), "image/jpeg"
    ),
    "wms-unknown-layer": getmap("nope", "EPSG:4326", "-180,-90,180,90", (256, 256)),
    "wms-bad-srs": getmap("tc", "EPSG:12345", "-180,-90,180,90", (256, 256)),
    "wms-unsupported-srs": getmap(
        "tc", "EPSG:31467", "3400000,5200000,3500000,5300000", (256, 256)
    ),
    "wms-bad-format": getmap("tc", "EPSG:4326", "-180,-90,180,90", (256, 256), "image/foo"),
    "wms-missing-params": f"{WMS}&REQUEST=GetMap&LAYERS=tc&SRS=EPSG:4326&WIDTH=256&HEIGHT=256",
    "wms-invalid-bbox": getmap("tc", "EPSG:4326", "180,-90,-180,90", (256, 256)),
    "wms-malformed-bbox": getmap("tc", "EPSG:4326", "1,2,3", (256, 256)),
    "wms-bad-style": "/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetMap&LAYERS=tc"
    "&STYLES=fancy&SRS=EPSG:4326&BBOX=0,0,10,10&WIDTH=10&HEIGHT=10&FORMAT=image/png",
    # the mp cache has no EPSG:3857 grid (only EPSG:900913 and EPSG:4326)
    "wms-getmap-srs-without-grid": getmap(
        "mp_layout", "EPSG:3857", "0,0,5000000,5000000", (256, 256)
    ),
    "wms-130-unknown-layer": (
        f"{WMS130}&REQUEST=GetMap&LAYERS=nope&CRS=EPSG:4326&BBOX=-90,-180,90,180"
        "&WIDTH=256&HEIGHT=256&FORMAT=image/png"
    ),
    "wms-130-bad-crs": (
        f"{WMS130}&REQUEST=GetMap&LAYERS=tc&CRS=EPSG:12345&BBOX=-90,-180,90,180"
        "&WIDTH=256&HEIGHT=256&FORMAT=image/png"
    ),
    "wms-unknown-request": f"{WMS}&REQUEST=GetSomething",
    "ows-missing-service": "/service?REQUEST=GetCapabilities",
    "ows-unknown-service": "/service?SERVICE=WFS&REQUEST=GetCapabilities",
    "wmts-unknown-layer": "/wmts/nope/GLOBAL_WEBMERCATOR/01/0/0.png",
    "wmts-unknown-matrix-set": "/wmts/tc/nope/01/0/0.png",
    "wmts-out-of-range": "/wmts/tc/GLOBAL_WEBMERCATOR/01/5/0.png",
    "wmts-level-out-of-range": "/wmts/tc/utm32/12/0/0.png",
    "wmts-bad-format": "/wmts/tc/GLOBAL_WEBMERCATOR/01/0/0.jpeg",
    "wmts-kvp-unknown-layer": wmts_kvp("nope", "GLOBAL_WEBMERCATOR", "01", 0, 0, "image/png"),
    "wmts-kvp-out-of-range": wmts_kvp("tc", "GLOBAL_WEBMERCATOR", "01", 7, 0, "image/png"),
    "wmts-kvp-missing-params": "/service?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=tc",
    "tms-unknown-layer": "/tms/1.0.0/nope/EPSG3857/1/0/0.png",
    "tms-unknown-tilemap": "/tms/1.0.0/nope/EPSG3857",
    "tms-out-of-range": "/tms/1.0.0/tc/EPSG3857/1/9/0.png",
    "tms-bad-format": "/tms/1.0.0/tc/EPSG3857/1/0/0.jpeg",
    "tiles-unknown-layer": "/tiles/nope/EPSG3857/1/0/0.png",
    "tiles-out-of-range": "/tiles/tc/EPSG3857/1/0/9.png",
    "tiles-level-out-of-range": "/tiles/tc/EPSG3857/40/0/0.png",
}

# The headers compared by value; for ETag and Last-modified only their presence is
# compared (they depend on file times).
COMPARED_HEADERS = (
    "content-type",
    "cache-control",
    "pragma",
    "expires",
    "access-control-allow-origin",
    "vary",
)
PRESENCE_HEADERS = ("etag", "last-modified")


@dataclass(frozen=True)
class Allowed:
    """A difference we accept: which cases, which aspect (regex on the difference key)."""

    cases: str  # regex, full match on the case id
    key: str  # regex, full match on the difference key
    reason: str


# Response differences (keys: status, header:<name>, body, body:<xml path>).
ALLOWED_RESPONSE_DIFFERENCES = (
    # docs/compatibility.md "Malformed requests get protocol errors": a malformed BBOX
    # gets a ServiceExceptionReport; the reference answers 500 text/plain "internal error".
    Allowed(
        "wms-malformed-bbox",
        r"header:(content-type|cache-control|pragma|expires)|body",
        "malformed BBOX: ServiceExceptionReport instead of a plain-text internal error",
    ),
    # Reference bug: a GetMap in EPSG:3857 on a cache with an EPSG:900913 grid but no
    # EPSG:3857 grid fails with KeyError: SRS('EPSG:3857') -> 500 "internal error".
    # We reproject from the cache like for any other SRS.
    Allowed(
        "wms-getmap-srs-without-grid",
        r"status|header:(content-type|vary)|body",
        "GetMap in an SRS only equivalent to a cache grid's SRS: image, not internal error",
    ),
)

# Differences for a tile that the request itself created (cache miss).
ALLOWED_FRESH_TILE_DIFFERENCES = (
    # Reference bug: a tile created by the request is answered without Last-modified and
    # with the ETag md5("NoneNone") (c7485dcc8d256a6f197ed7802687f252) -- the same for every
    # fresh tile, so If-None-Match can match a different tile. We send the tile's
    # creation time and a per-tile ETag, as for cached tiles.
    Allowed(".*", "header:last-modified", "reference omits Last-modified on cache misses"),
)

# Capabilities differences (keys: xml paths without sibling indexes).
ALLOWED_DOCUMENT_DIFFERENCES = (
    # Reference bug: MapProxy 7.0 never writes MetadataURL into WMS 1.1.1 capabilities,
    # although WMS 1.1.1 defines it for TC211/FGDC metadata (we write it for those types).
    Allowed(
        "wms-111",
        r"/WMT_MS_Capabilities/Capability(/Layer)+/MetadataURL(/.*)?",
        "WMS 1.1.1 MetadataURL (TC211/FGDC) is omitted by the reference",
    ),
    # Reference bug: the service KeywordList from `md.keyword_list` is dropped from WMS
    # 1.1.1 capabilities (it appears in 1.3.0); WMS 1.1.1 defines Service/KeywordList.
    Allowed(
        "wms-111",
        r"/WMT_MS_Capabilities/Service/KeywordList(/.*)?",
        "WMS 1.1.1 Service KeywordList is omitted by the reference",
    ),
)

NAMESPACE_PREFIXES = {
    "http://www.opengis.net/wms": "wms",
    "http://www.opengis.net/wmts/1.0": "wmts",
    "http://www.opengis.net/ows/1.1": "ows",
    "http://www.w3.org/1999/xlink": "xlink",
    "http://www.w3.org/2001/XMLSchema-instance": "xsi",
    "http://www.opengis.net/ogc": "ogc",
    "http://www.opengis.net/sld": "sld",
    "http://www.opengis.net/gml": "gml",
}


# -------------------------------------------------------------------------------------
# servers


@dataclass(frozen=True)
class Response:
    """An HTTP answer with lower-cased header names."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@dataclass
class Side:
    """One implementation: its base URL and config directory."""

    name: str
    url: str
    directory: Path

    def get(self, path: str) -> Response:
        status, headers, body = fetch(self.url + path)
        return Response(status, {k.lower(): v for k, v in headers.items()}, body)

    def cache_files(self, prefix: str = "") -> set[str]:
        """Relative paths of the files under cache_data (without tile_locks)."""
        root = self.directory / "cache_data"
        if not root.exists():
            return set()
        files = set()
        for path in root.rglob("*"):
            relative = path.relative_to(root).as_posix()
            is_lock = relative.startswith("tile_locks/")
            if path.is_file() and not is_lock and relative.startswith(prefix):
                files.add(relative)
        return files


@dataclass
class Pair:
    """The reference and our implementation on the same config and MapServer."""

    reference: Side
    ours: Side
    mapserver: MapServerWMS

    def get(self, path: str) -> tuple[Response, Response]:
        return self.reference.get(path), self.ours.get(path)

    def run_counted(
        self, side: Side, paths: Sequence[str]
    ) -> tuple[list[Response], list[Mapping[str, str]]]:
        """Send ``paths`` to one side; returns the responses and the upstream requests."""
        self.mapserver.reset()
        responses = [side.get(path) for path in paths]
        upstream = list(self.mapserver.requests)
        self.mapserver.reset()
        return responses, upstream


@pytest.fixture(scope="session")
def reference_interpreter() -> Path:
    """The reference venv's Python; fails (never skips) when it is not installed."""
    try:
        return reference_python()
    except ReferenceMissing as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory,
    mapserver_wms: MapServerWMS,
    reference_interpreter: Path,
) -> Iterator[Pair]:
    config = CONFIG.replace("{url}", mapserver_wms.url)
    directories = {}
    for name in ("reference", "ours"):
        directory = tmp_path_factory.mktemp(f"compat-{name}")
        (directory / "mapproxy.yaml").write_text(config)
        directories[name] = directory
    mapserver_wms.reset()
    with (
        ReferenceServer(directories["reference"] / "mapproxy.yaml", reference_interpreter) as ref,
        ThreadServer(directories["ours"] / "mapproxy.yaml") as ours,
    ):
        yield Pair(
            Side("reference", ref.url, directories["reference"]),
            Side("ours", ours.url, directories["ours"]),
            mapserver_wms,
        )
    mapserver_wms.reset()


# -------------------------------------------------------------------------------------
# comparison helpers


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def mode_family(image: Image.Image) -> str:
    """palette, gray, rgb or rgba."""
    if image.mode in ("P", "PA"):
        return "palette"
    if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return "gray"
    return "rgba" if "A" in image.mode else "rgb"


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per RGBA channel, 0..255."""
    left = np.asarray(a.convert("RGBA"), dtype=np.float64)
    right = np.asarray(b.convert("RGBA"), dtype=np.float64)
    return float(np.abs(left - right).mean())


def compare_images(reference: bytes, ours: bytes) -> float:
    """Asserts equal format, size and mode family; returns the mean difference."""
    ref_image, our_image = decode(reference), decode(ours)
    assert (our_image.format, our_image.size, mode_family(our_image)) == (
        ref_image.format,
        ref_image.size,
        mode_family(ref_image),
    )
    return mean_difference(ref_image, our_image)


def short_name(name: str) -> str:
    qname = etree.QName(name)
    if qname.namespace is None:
        return qname.localname
    prefix = NAMESPACE_PREFIXES.get(qname.namespace, "{" + qname.namespace + "}")
    return f"{prefix}:{qname.localname}"


def normalize_text(value: str | None, base_url: str) -> str:
    """Whitespace collapsed; the server's own base URL replaced by ``{base}``."""
    return " ".join((value or "").replace(base_url, "{base}").split())


def flatten_xml(body: bytes, base_url: str) -> dict[str, str]:
    """Element paths (``/a[1]/b[2]``) to text, and ``path/@attr`` to attribute values."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True
    )
    root = etree.fromstring(body, parser)
    flat: dict[str, str] = {}

    def walk(element: etree._Element, path: str) -> None:
        flat[path] = normalize_text(element.text, base_url)
        for name, value in sorted(element.attrib.items()):
            flat[f"{path}/@{short_name(name)}"] = normalize_text(value, base_url)
        seen: Counter[str] = Counter()
        for child in element:
            if not isinstance(child.tag, str):
                continue  # processing instructions
            tag = short_name(child.tag)
            seen[tag] += 1
            walk(child, f"{path}/{tag}[{seen[tag]}]")

    walk(root, f"/{short_name(root.tag)}")
    return flat


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def same_value(left: str, right: str) -> bool:
    """Equal text, where numbers written as floats may differ by rounding noise."""
    if left == right:
        return True
    left_tokens, right_tokens = re.split(r"[\s,]+", left), re.split(r"[\s,]+", right)
    if len(left_tokens) != len(right_tokens):
        return False
    for a, b in zip(left_tokens, right_tokens, strict=True):
        if a == b:
            continue
        is_float = any(c in a + b for c in ".eE")
        if not (is_float and _NUMBER.fullmatch(a) and _NUMBER.fullmatch(b)):
            return False
        if not math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9):
            return False
    return True


def generic_path(path: str) -> str:
    return re.sub(r"\[\d+\]", "", path)


def xml_differences(
    reference: bytes, ours: bytes, reference_url: str, our_url: str
) -> dict[str, str]:
    """Path -> description of every element/attribute that differs."""
    ref_flat = flatten_xml(reference, reference_url)
    our_flat = flatten_xml(ours, our_url)
    differences = {}
    for path in list(ref_flat) + [p for p in our_flat if p not in ref_flat]:
        left, right = ref_flat.get(path), our_flat.get(path)
        if left is None or right is None or not same_value(left, right):
            differences[path] = f"reference {left!r}, ours {right!r}"
    return differences


def filter_allowed(
    case: str, differences: Mapping[str, str], allowed: Sequence[Allowed], keyed_by_path: bool
) -> tuple[dict[str, str], set[Allowed]]:
    """Differences not covered by ``allowed``, and the entries that covered some."""
    applicable = [entry for entry in allowed if re.fullmatch(entry.cases, case)]
    used: set[Allowed] = set()
    left = {}
    for key, description in differences.items():
        match_key = generic_path(key) if keyed_by_path else key
        entry = next((e for e in applicable if re.fullmatch(e.key, match_key)), None)
        if entry is None:
            left[key] = description
        else:
            used.add(entry)
    return left, used


def assert_only_allowed(
    case: str,
    differences: Mapping[str, str],
    allowed: Sequence[Allowed],
    keyed_by_path: bool = False,
) -> None:
    """Fails on differences outside the allow-list and on allow-list entries never hit."""
    left, used = filter_allowed(case, differences, allowed, keyed_by_path)
    assert not left, f"{case}: unexpected differences:\n" + "\n".join(
        f"  {key}: {text}" for key, text in left.items()
    )
    unused = [e.reason for e in allowed if re.fullmatch(e.cases, case) and e not in used]
    assert not unused, f"{case}: allowed differences no longer observed: {unused}"


def response_differences(
    reference: Response, ours: Response, pair: Pair, with_body: bool = True
) -> dict[str, str]:
    """Differences in status, compared headers and body (XML structure or exact text)."""
    differences = {}
    if reference.status != ours.status:
        differences["status"] = f"reference {reference.status}, ours {ours.status}"
    for name in COMPARED_HEADERS:
        left, right = reference.headers.get(name), ours.headers.get(name)
        if left != right:
            differences[f"header:{name}"] = f"reference {left!r}, ours {right!r}"
    for name in PRESENCE_HEADERS:
        left, right = reference.headers.get(name), ours.headers.get(name)
        if (left is None) != (right is None):
            differences[f"header:{name}"] = f"reference {left!r}, ours {right!r}"
    if not with_body or reference.content_type.startswith("image/"):
        return differences
    if _is_xml(reference) and _is_xml(ours):
        for path, text in xml_differences(
            reference.body, ours.body, pair.reference.url, pair.ours.url
        ).items():
            differences[f"body:{path}"] = text
    else:
        left = normalize_text(reference.body.decode("utf-8", "replace"), pair.reference.url)
        right = normalize_text(ours.body.decode("utf-8", "replace"), pair.ours.url)
        if left != right:
            differences["body"] = f"reference {left[:300]!r}, ours {right[:300]!r}"
    return differences


def _is_xml(response: Response) -> bool:
    return "xml" in response.content_type and response.body.lstrip().startswith(b"<")


def getmap_requests(requests: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """Upstream GetMap requests with upper-cased parameter names."""
    return [
        {key.upper(): value for key, value in query.items()}
        for query in requests
        if query.get("REQUEST", "").lower() == "getmap"
    ]


def same_getmap(left: Mapping[str, str], right: Mapping[str, str]) -> bool:
    """Equal parameters; BBOX values may differ by float noise (1e-6 units)."""
    if left.keys() != right.keys():
        return False
    for key in left:
        if key != "BBOX":
            if left[key] != right[key]:
                return False
            continue
        left_bbox, right_bbox = left[key].split(","), right[key].split(",")
        if len(left_bbox) != 4 or len(right_bbox) != 4:
            return False
        for a, b in zip(left_bbox, right_bbox, strict=True):
            if not math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6):
                return False
    return True


def unmatched_getmaps(
    reference: Sequence[Mapping[str, str]], ours: Sequence[Mapping[str, str]]
) -> tuple[list[Mapping[str, str]], list[Mapping[str, str]]]:
    """Requests of each side without an equal request on the other side."""
    left_over = list(ours)
    missing = []
    for request in reference:
        match = next((i for i, other in enumerate(left_over) if same_getmap(request, other)), None)
        if match is None:
            missing.append(request)
        else:
            del left_over[match]
    return missing, left_over


# -------------------------------------------------------------------------------------
# tests


@pytest.mark.parametrize("cache", sorted(TILE_SEQUENCES))
def test_tile_requests_fill_the_same_cache_with_the_same_upstream_requests(
    pair: Pair, cache: str
) -> None:
    paths = TILE_SEQUENCES[cache]
    ref_responses, ref_upstream = pair.run_counted(pair.reference, paths)
    our_responses, our_upstream = pair.run_counted(pair.ours, paths)

    ref_maps, our_maps = getmap_requests(ref_upstream), getmap_requests(our_upstream)
    assert len(our_maps) == len(ref_maps), (ref_maps, our_maps)
    only_reference, only_ours = unmatched_getmaps(ref_maps, our_maps)
    assert only_reference == only_ours == [], (
        f"upstream requests only by the reference: {only_reference}; only by us: {only_ours}"
    )

    for path, ref, ours in zip(paths, ref_responses, our_responses, strict=True):
        assert (ours.status, ours.content_type) == (ref.status, ref.content_type), path
        assert ref.status == 200, (path, ref.body[:300])
        difference = compare_images(ref.body, ours.body)
        is_tile = "REQUEST=GetMap" not in path
        limit = TILE_MAX_MEAN_DIFFERENCE if is_tile else GETMAP_MAX_MEAN_DIFFERENCE
        assert difference < limit, (path, difference)

    ref_files = pair.reference.cache_files(f"{cache}_")
    our_files = pair.ours.cache_files(f"{cache}_")
    assert ref_files, "the reference stored no tiles"
    assert sorted(our_files ^ ref_files) == [], (
        f"only reference: {sorted(ref_files - our_files)}; "
        f"only ours: {sorted(our_files - ref_files)}"
    )


@pytest.mark.parametrize("case", sorted(GETMAP_CASES))
def test_wms_getmap_images_match(pair: Pair, case: str) -> None:
    path = GETMAP_CASES[case]
    ref, ours = pair.get(path)
    assert ref.status == 200, ref.body[:500]
    assert (ours.status, ours.content_type) == (ref.status, ref.content_type)
    difference = compare_images(ref.body, ours.body)
    assert difference < GETMAP_MAX_MEAN_DIFFERENCE


@pytest.mark.parametrize("case", sorted(RESPONSE_CASES))
def test_responses_match(pair: Pair, case: str) -> None:
    path = RESPONSE_CASES[case]
    ref, ours = pair.get(path)
    if ref.content_type.startswith("image/") and "SERVICE=WMS" not in path:
        # A tile the request may have created: compare the answer from the cache
        # (test_fresh_tile_responses_match covers cache misses).
        assert ours.status == ref.status
        ref, ours = pair.get(path)
        assert compare_images(ref.body, ours.body) < TILE_MAX_MEAN_DIFFERENCE
    assert_only_allowed(case, response_differences(ref, ours, pair), ALLOWED_RESPONSE_DIFFERENCES)


@pytest.mark.parametrize(
    "path",
    [
        "/wmts/tc/GLOBAL_WEBMERCATOR/07/3/3.png",
        "/tms/1.0.0/tms_layout/EPSG3857/6/1/1.png",
        "/tiles/mp_layout/EPSG4326/6/2/2.jpeg",
    ],
)
def test_fresh_tile_responses_match(pair: Pair, path: str) -> None:
    ref, ours = pair.get(path)
    assert compare_images(ref.body, ours.body) < TILE_MAX_MEAN_DIFFERENCE
    assert_only_allowed(
        "fresh-tile", response_differences(ref, ours, pair), ALLOWED_FRESH_TILE_DIFFERENCES
    )
    # the reason for the allowed difference: one ETag for every fresh reference tile
    assert ref.headers.get("etag") == "c7485dcc8d256a6f197ed7802687f252"
    assert ours.headers.get("etag") != ref.headers.get("etag")


DOCUMENTS = {
    "wms-111": f"{WMS}&REQUEST=GetCapabilities",
    "wms-130": f"{WMS130}&REQUEST=GetCapabilities",
    "wms-111-via-wms": "/wms?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetCapabilities",
    "wmts-rest": "/wmts/1.0.0/WMTSCapabilities.xml",
    "wmts-kvp": "/service?SERVICE=WMTS&REQUEST=GetCapabilities",
    "tms-root": "/tms/",
    "tms-service": "/tms/1.0.0/",
    "tms-tilemap-3857": "/tms/1.0.0/tc/EPSG3857",
    "tms-tilemap-900913": "/tms/1.0.0/mp_layout/EPSG900913",
    "tms-tilemap-4326": "/tms/1.0.0/tc/EPSG4326",
    "tms-tilemap-25832": "/tms/1.0.0/tms_layout/EPSG25832",
}


@pytest.mark.parametrize("document", sorted(DOCUMENTS))
def test_capabilities_documents_have_the_same_structure(pair: Pair, document: str) -> None:
    ref, ours = pair.get(DOCUMENTS[document])
    assert ref.status == 200
    assert_only_allowed(document, response_differences(ref, ours, pair, with_body=False), ())
    differences = xml_differences(ref.body, ours.body, pair.reference.url, pair.ours.url)
    case = "wms-111" if document == "wms-111-via-wms" else document
    assert_only_allowed(case, differences, ALLOWED_DOCUMENT_DIFFERENCES, keyed_by_path=True)


@pytest.mark.parametrize("version", ["1.1.1", "1.3.0"])
def test_owslib_reads_the_same_wms_layers(pair: Pair, version: str) -> None:
    path = f"/service?SERVICE=WMS&VERSION={version}&REQUEST=GetCapabilities"
    services = [
        WebMapService(side.url + "/service", version=version, xml=side.get(path).body)
        for side in (pair.reference, pair.ours)
    ]
    ref, ours = services
    assert list(ours.contents) == list(ref.contents)
    for name, ref_layer in ref.contents.items():
        our_layer = ours.contents[name]
        assert our_layer.title == ref_layer.title
        assert sorted(our_layer.crsOptions) == sorted(ref_layer.crsOptions), name
        assert np.allclose(our_layer.boundingBoxWGS84, ref_layer.boundingBoxWGS84), name
    assert [op.name for op in ours.operations] == [op.name for op in ref.operations]
    assert ours.getOperationByName("GetMap").formatOptions == (
        ref.getOperationByName("GetMap").formatOptions
    )


@pytest.mark.parametrize(
    "path", ["/wmts/1.0.0/WMTSCapabilities.xml", "/service?SERVICE=WMTS&REQUEST=GetCapabilities"]
)
def test_owslib_reads_the_same_wmts_layers_and_tile_matrix_sets(pair: Pair, path: str) -> None:
    ref, ours = (
        WebMapTileService(side.url + path, xml=side.get(path).body)
        for side in (pair.reference, pair.ours)
    )
    assert list(ours.contents) == list(ref.contents)
    for name, ref_layer in ref.contents.items():
        our_layer = ours.contents[name]
        assert list(our_layer.tilematrixsetlinks) == list(ref_layer.tilematrixsetlinks)
        assert our_layer.formats == ref_layer.formats
        assert np.allclose(our_layer.boundingBoxWGS84, ref_layer.boundingBoxWGS84), name
        assert [
            (u["format"], u["template"].replace(pair.ours.url, "")) for u in our_layer.resourceURLs
        ] == [
            (u["format"], u["template"].replace(pair.reference.url, ""))
            for u in ref_layer.resourceURLs
        ]
    assert list(ours.tilematrixsets) == list(ref.tilematrixsets)
    for name, ref_set in ref.tilematrixsets.items():
        our_set = ours.tilematrixsets[name]
        assert our_set.crs == ref_set.crs
        assert list(our_set.tilematrix) == list(ref_set.tilematrix)
        for matrix_id, ref_matrix in ref_set.tilematrix.items():
            our_matrix = our_set.tilematrix[matrix_id]
            assert math.isclose(our_matrix.scaledenominator, ref_matrix.scaledenominator)
            assert np.allclose(our_matrix.topleftcorner, ref_matrix.topleftcorner)
            assert (our_matrix.matrixwidth, our_matrix.matrixheight) == (
                ref_matrix.matrixwidth,
                ref_matrix.matrixheight,
            )


def test_caches_hold_the_same_tiles_after_all_requests(pair: Pair) -> None:
    # Every test sent the same requests to both sides, so both caches must agree on
    # every tile, also on tiles stored for WMS requests.
    ref_files, our_files = pair.reference.cache_files(), pair.ours.cache_files()
    assert sorted(our_files ^ ref_files) == []
    root_ref = pair.reference.directory / "cache_data"
    root_ours = pair.ours.directory / "cache_data"
    differences = {}
    for name in sorted(ref_files):
        difference = compare_images((root_ref / name).read_bytes(), (root_ours / name).read_bytes())
        if difference >= TILE_MAX_MEAN_DIFFERENCE:
            differences[name] = difference
    assert differences == {}, f"{len(differences)} of {len(ref_files)} tiles differ"


# -------------------------------------------------------------------------------------
# WMS-C capabilities (tiled=true)


@pytest.mark.parametrize("version", ["1.1.1", "1.1.0"])
def test_wmsc_capabilities_have_the_same_structure(pair: Pair, version: str) -> None:
    path = f"/service?SERVICE=WMS&VERSION={version}&REQUEST=GetCapabilities&tiled=true"
    ref, ours = pair.get(path)
    assert ref.status == 200
    case = f"wmsc-{version}"
    assert_only_allowed(case, response_differences(ref, ours, pair, with_body=False), ())
    # the internal DOCTYPE subset declares the TileSet elements
    head = b"<WMT_MS_Capabilities"
    assert ours.body.split(head)[0] == ref.body.split(head)[0]
    assert b"<!ELEMENT TileSet " in ref.body
    differences = xml_differences(ref.body, ours.body, pair.reference.url, pair.ours.url)
    tile_sets = "/WMT_MS_Capabilities/Capability/VendorSpecificCapabilities"
    ref_paths = {generic_path(path) for path in flatten_xml(ref.body, "")}
    assert f"{tile_sets}/TileSet/Resolutions" in ref_paths
    if version == "1.1.1":
        # the 1.1.1 allow-list (MetadataURL, Service KeywordList) applies to both
        assert_only_allowed("wms-111", differences, ALLOWED_DOCUMENT_DIFFERENCES, True)
    else:
        tile_set_differences = {
            path: text for path, text in differences.items() if tile_sets in generic_path(path)
        }
        assert tile_set_differences == {}


# -------------------------------------------------------------------------------------
# INSPIRE view service metadata (WMS 1.3.0)

INSPIRE_MD = {
    "linked": {
        "type": "linked",
        "metadata_url": {
            "media_type": "application/vnd.iso.19139+xml",
            "url": "http://example.org/metadata?id=1&x=<y>",
        },
        "languages": {"default": "eng"},
    },
    "embedded": {
        "type": "embedded",
        "resource_locators": [
            {"url": "http://example.org/metadata", "media_type": "application/vnd.iso.19139+xml"}
        ],
        "temporal_reference": {
            "date_of_creation": "2015-05-01",
            "date_of_last_revision": "2016-01-02",
        },
        "metadata_points_of_contact": [{"organisation_name": "Acme", "email": "acme@example.org"}],
        "conformities": [
            {
                "title": "COMMISSION REGULATION (EU) No 1089/2010",
                "date_of_publication": "2010-12-08",
                "uris": ["OJ:L:2010:323:0011:0102:EN:PDF"],
                "resource_locators": [
                    {"url": "http://eur-lex.europa.eu/x", "media_type": "application/pdf"}
                ],
                "degree": "notEvaluated",
            }
        ],
        "mandatory_keywords": ["infoMapAccessService", "humanGeographicViewer"],
        "keywords": [
            {"title": "Thesaurus", "date_of_creation": "2015-05-01", "keyword_value": "Beispiel"}
        ],
        "metadata_date": "2015-07-23",
        "languages": {"default": "ger"},
    },
}


def inspire_config(inspire_md: Mapping[str, object]) -> str:
    """A small WMS with INSPIRE metadata (JSON is YAML); a debug source, no upstream.

    The SRS list is explicit: the reference's default list comes out in a varying order.
    """
    import json

    config = {
        "services": {
            "wms": {
                "srs": ["EPSG:4326", "EPSG:3857"],
                "md": {"title": "INSPIRE compat", "abstract": "INSPIRE side by side"},
                "inspire_md": inspire_md,
            }
        },
        "layers": [
            {
                "name": "group",
                "title": "Group",
                "layers": [{"name": "cached", "title": "Cached", "sources": ["cache"]}],
            },
            {"name": "other", "title": "Same cache", "sources": ["cache"]},
        ],
        "caches": {"cache": {"grids": ["GLOBAL_WEBMERCATOR"], "sources": ["dbg"]}},
        "sources": {"dbg": {"type": "debug"}},
    }
    return json.dumps(config, indent=2)


@pytest.fixture(scope="module")
def inspire_pairs(
    tmp_path_factory: pytest.TempPathFactory, reference_interpreter: Path
) -> Iterator[dict[str, tuple[Side, Side]]]:
    """Reference and ours for each INSPIRE metadata type (``linked``, ``embedded``)."""
    with contextlib.ExitStack() as stack:
        pairs = {}
        for kind, inspire_md in INSPIRE_MD.items():
            sides = []
            for name in ("reference", "ours"):
                directory = tmp_path_factory.mktemp(f"inspire-{kind}-{name}")
                config = directory / "mapproxy.yaml"
                config.write_text(inspire_config(inspire_md))
                server: ReferenceServer | ThreadServer = (
                    ReferenceServer(config, reference_interpreter)
                    if name == "reference"
                    else ThreadServer(config)
                )
                stack.enter_context(server)
                sides.append(Side(name, server.url, directory))
            pairs[kind] = (sides[0], sides[1])
        yield pairs


@pytest.mark.parametrize("kind", sorted(INSPIRE_MD))
def test_inspire_capabilities_have_the_same_structure(
    inspire_pairs: dict[str, tuple[Side, Side]], kind: str
) -> None:
    reference, ours = inspire_pairs[kind]
    path = f"{WMS130}&REQUEST=GetCapabilities"
    ref, our = reference.get(path), ours.get(path)
    assert ref.status == our.status == 200
    assert our.content_type == ref.content_type
    differences = xml_differences(ref.body, our.body, reference.url, ours.url)
    assert differences == {}
    extended = "/wms:WMS_Capabilities/wms:Capability/{http://inspire.ec.europa.eu/schemas"
    ref_paths = {generic_path(path) for path in flatten_xml(ref.body, reference.url)}
    assert any(path.startswith(extended) for path in ref_paths)
    # the same namespace declarations and schema locations
    ref_root, our_root = etree.fromstring(ref.body), etree.fromstring(our.body)
    assert our_root.nsmap == ref_root.nsmap
