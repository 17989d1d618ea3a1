"""The tile pipeline end to end: WMTS/TMS/WMS requests -> cache -> upstream (FakeUpstream).

The fake WMS paints every pixel by its geographic position (5 degree cells), so the
tests can tell where each served pixel came from.
"""

from __future__ import annotations

import io
import math
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from lxml import etree
from PIL import Image
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, image_handler, service_exception_handler

EARTH_RADIUS = 6378137.0
HALF_WORLD = math.pi * EARTH_RADIUS  # 20037508.342789244
CELL = 5.0  # degrees per colour cell of the fake WMS


# --- the deterministic fake WMS ---------------------------------------------------------


def cell_colors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """RGB (uint8, shape (..., 3)) the fake WMS paints at lon/lat."""
    col = np.floor((lon + 180.0) / CELL).astype(int)
    row = np.floor((lat + 90.0) / CELL).astype(int)
    red = col * 3
    green = row * 7
    blue = 100 + 100 * ((col + row) % 2)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def mercator_to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon = np.degrees(x / EARTH_RADIUS)
    lat = np.degrees(np.arctan(np.sinh(y / EARTH_RADIUS)))
    return lon, lat


def geo_wms_handler(request: Request) -> Response:
    """A WMS GetMap answer in EPSG:3857 painted by geographic position."""
    args = {key.lower(): value for key, value in request.args.items()}
    if args.get("srs", args.get("crs")) != "EPSG:3857":
        return Response("unexpected srs", status=400, content_type="text/plain")
    minx, miny, maxx, maxy = (float(v) for v in args["bbox"].split(","))
    width, height = int(args["width"]), int(args["height"])
    xs = minx + (np.arange(width) + 0.5) * (maxx - minx) / width
    ys = maxy - (np.arange(height) + 0.5) * (maxy - miny) / height
    lon, lat = mercator_to_lonlat(*np.meshgrid(xs, ys))
    out = io.BytesIO()
    Image.fromarray(cell_colors(lon, lat), "RGB").save(out, "PNG")
    return Response(out.getvalue(), content_type="image/png")


def assert_geo_colors(
    image: Image.Image, lon: np.ndarray, lat: np.ndarray, margin: tuple[float, float]
) -> None:
    """Every pixel away from cell borders (``margin`` = lon, lat degrees) has its cell's colour.

    ``lon``/``lat`` are the geographic coordinates of the pixel centres.
    """
    pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[:2] == lon.shape
    lon_off = np.abs((lon + 180.0) / CELL - np.round((lon + 180.0) / CELL)) * CELL
    lat_off = np.abs((lat + 90.0) / CELL - np.round((lat + 90.0) / CELL)) * CELL
    inside = (lon_off > margin[0]) & (lat_off > margin[1])
    assert inside.mean() > 0.3
    expected = cell_colors(lon, lat)
    diff = np.abs(pixels.astype(int) - expected.astype(int)).max(axis=-1)
    wrong = inside & (diff > 2)
    assert not wrong.any(), (
        f"{int(wrong.sum())} pixels differ, first at row/col {np.argwhere(wrong)[0].tolist()}"
    )


# --- helpers ---------------------------------------------------------------------------


def image_from(response) -> Image.Image:  # type: ignore[no-untyped-def]
    image = Image.open(io.BytesIO(response.data))
    image.load()
    return image


def tile_resolution(z: int) -> float:
    return 2 * HALF_WORLD / 256 / 2**z


def tc_path(base: Path, cache: str, z: int, x: int, y: int, ext: str = "png") -> Path:
    xs, ys = f"{x:09d}", f"{y:09d}"
    return (
        base
        / f"{cache}_EPSG3857"
        / f"{z:02d}"
        / xs[:3]
        / xs[3:6]
        / xs[6:]
        / ys[:3]
        / ys[3:6]
        / f"{ys[6:]}.{ext}"
    )


def stored_files(base: Path) -> set[Path]:
    return {p for p in base.rglob("*") if p.is_file() and p.suffix != ".lck"}


def decode_bbox(value: str) -> list[float]:
    return [float(v) for v in value.split(",")]


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(geo_wms_handler) as fake:
        yield fake


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache_data"


WMS_CACHE_CONFIG = """
services:
  wms:
    srs: ['EPSG:4326', 'EPSG:3857', 'EPSG:25832']
  wmts:
  tms:
layers:
  - name: geo
    title: Geo
    sources: [geo_cache]
  - name: geo_nostore
    title: Geo, not stored
    sources: [nostore_cache]
caches:
  geo_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [geo_wms]
    format: image/png
    meta_size: [4, 4]
    meta_buffer: 8
  nostore_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [geo_wms]
    disable_storage: true
sources:
  geo_wms:
    type: wms
    req:
      url: {url}/service?map=/data/world.map
      layers: base,roads
      transparent: true
globals:
  cache:
    base_dir: ./cache_data
  image:
    # keep the exact colours (no 8-bit palette) so pixels can be compared exactly
    paletted: false
"""


@pytest.fixture
def wms_cache_app(make_app: Callable[..., Client], upstream: FakeUpstream) -> Client:
    return make_app(WMS_CACHE_CONFIG.replace("{url}", upstream.url))


# --- meta tiles from a WMS source --------------------------------------------------------


def expected_meta_query(
    z: int, first_x: int, first_y: int, buffer: tuple[int, int, int, int], tiles: int = 4
) -> tuple[tuple[float, float, float, float], int, int]:
    """Bbox and size of the meta tile of ``tiles`` x ``tiles`` from (first_x, first_y).

    Rows count from the north; ``buffer`` is the pixel buffer added on the left,
    bottom, right and top.
    """
    res = tile_resolution(z)
    left, bottom, right, top = buffer
    minx = -HALF_WORLD + first_x * 256 * res - left * res
    maxx = -HALF_WORLD + (first_x + tiles) * 256 * res + right * res
    maxy = HALF_WORLD - first_y * 256 * res + top * res
    miny = HALF_WORLD - (first_y + tiles) * 256 * res - bottom * res
    size = tiles * 256
    return (minx, miny, maxx, maxy), size + left + right, size + bottom + top


def check_getmap_query(
    query: dict[str, str], bbox: tuple[float, ...], width: int, height: int
) -> None:
    query = dict(query)
    assert decode_bbox(query.pop("bbox")) == pytest.approx(bbox, rel=0, abs=1e-6)
    assert query.pop("transparent").upper() == "TRUE"
    assert query == {
        "map": "/data/world.map",
        "service": "WMS",
        "request": "GetMap",
        "version": "1.1.1",
        "layers": "base,roads",
        "styles": "",
        "srs": "EPSG:3857",
        "format": "image/png",
        "width": str(width),
        "height": str(height),
    }


def test_wmts_tile_fetches_one_buffered_meta_tile(
    wms_cache_app: Client, upstream: FakeUpstream, cache_dir: Path
) -> None:
    response = wms_cache_app.get("/wmts/geo/GLOBAL_WEBMERCATOR/4/5/6.png")
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert image_from(response).size == (256, 256)

    assert len(upstream.requests) == 1
    path, query = upstream.requests[0]
    assert path == "/service"
    bbox, width, height = expected_meta_query(4, 4, 4, (8, 8, 8, 8))
    assert (width, height) == (1040, 1040)
    check_getmap_query(query, bbox, width, height)

    expected = {tc_path(cache_dir, "geo_cache", 4, x, y) for x in range(4, 8) for y in range(4, 8)}
    assert stored_files(cache_dir) == expected
    assert tc_path(cache_dir, "geo_cache", 4, 5, 6).read_bytes() == response.data


def test_meta_buffer_is_clipped_at_the_grid_edge(
    wms_cache_app: Client, upstream: FakeUpstream
) -> None:
    response = wms_cache_app.get("/wmts/geo/GLOBAL_WEBMERCATOR/3/1/1.png")
    assert response.status_code == 200
    assert len(upstream.requests) == 1
    # meta tile 0..3/0..3 of level 3 touches the west and north edges of the grid
    bbox, width, height = expected_meta_query(3, 0, 0, (0, 8, 8, 0))
    assert (width, height) == (1032, 1032)
    check_getmap_query(upstream.requests[0][1], bbox, width, height)


def test_cached_tile_is_served_without_upstream_requests(
    wms_cache_app: Client, upstream: FakeUpstream
) -> None:
    first = wms_cache_app.get("/wmts/geo/GLOBAL_WEBMERCATOR/4/5/6.png")
    assert len(upstream.requests) == 1
    second = wms_cache_app.get("/wmts/geo/GLOBAL_WEBMERCATOR/4/5/6.png")
    third = wms_cache_app.get("/wmts/geo/GLOBAL_WEBMERCATOR/4/5/6.png")
    neighbour = wms_cache_app.get("/wmts/geo/GLOBAL_WEBMERCATOR/4/7/4.png")
    assert len(upstream.requests) == 1
    assert second.status_code == third.status_code == neighbour.status_code == 200
    assert second.data == first.data == third.data
    assert neighbour.data != first.data

    etag = second.headers["ETag"]
    assert etag == third.headers["ETag"]
    assert len(etag) == 32 and int(etag, 16) >= 0
    assert second.headers["Last-modified"].endswith(" GMT")
    assert second.headers["Cache-control"] == "public, max-age=259200, s-maxage=259200"

    not_modified = wms_cache_app.get(
        "/wmts/geo/GLOBAL_WEBMERCATOR/4/5/6.png", headers={"If-None-Match": etag}
    )
    assert not_modified.status_code == 304
    assert not_modified.data == b""
    assert not_modified.headers["ETag"] == etag
    assert "Content-Type" not in not_modified.headers

    other_etag = wms_cache_app.get(
        "/wmts/geo/GLOBAL_WEBMERCATOR/4/5/6.png", headers={"If-None-Match": "0" * 32}
    )
    assert other_etag.status_code == 200
    assert other_etag.data == first.data
    assert len(upstream.requests) == 1


def test_tms_and_tiles_urls_share_the_cached_tiles(
    wms_cache_app: Client, upstream: FakeUpstream
) -> None:
    wmts = wms_cache_app.get("/wmts/geo/GLOBAL_WEBMERCATOR/4/5/6.png")
    # TMS: level 0 is internal level 1 for global-mercator, rows count from the south
    tms = wms_cache_app.get("/tms/1.0.0/geo/EPSG3857/3/5/9.png")
    tiles = wms_cache_app.get("/tiles/geo/EPSG3857/4/5/6.png", query_string={"origin": "nw"})
    kvp = wms_cache_app.get(
        "/service",
        query_string={
            "SERVICE": "WMTS",
            "REQUEST": "GetTile",
            "VERSION": "1.0.0",
            "LAYER": "geo",
            "STYLE": "default",
            "TILEMATRIXSET": "GLOBAL_WEBMERCATOR",
            "TILEMATRIX": "4",
            "TILEROW": "6",
            "TILECOL": "5",
            "FORMAT": "image/png",
        },
    )
    for response in (tms, tiles, kvp):
        assert response.status_code == 200
        assert response.data == wmts.data
    assert len(upstream.requests) == 1


def test_tms_request_creates_the_meta_tile_in_grid_rows(
    wms_cache_app: Client, upstream: FakeUpstream, cache_dir: Path
) -> None:
    response = wms_cache_app.get("/tms/1.0.0/geo/EPSG3857/3/5/9.png")
    assert response.status_code == 200
    assert len(upstream.requests) == 1
    bbox, width, height = expected_meta_query(4, 4, 4, (8, 8, 8, 8))
    check_getmap_query(upstream.requests[0][1], bbox, width, height)
    assert tc_path(cache_dir, "geo_cache", 4, 5, 6).read_bytes() == response.data


def test_tile_content_matches_its_position(wms_cache_app: Client) -> None:
    z, x, y = 4, 9, 5
    response = wms_cache_app.get(f"/wmts/geo/GLOBAL_WEBMERCATOR/{z}/{x}/{y}.png")
    res = tile_resolution(z)
    xs = -HALF_WORLD + (x * 256 + np.arange(256) + 0.5) * res
    ys = HALF_WORLD - (y * 256 + np.arange(256) + 0.5) * res
    lon, lat = mercator_to_lonlat(*np.meshgrid(xs, ys))
    assert_geo_colors(image_from(response), lon, lat, margin=(0.1, 0.1))


def test_disable_storage_writes_nothing(
    wms_cache_app: Client, upstream: FakeUpstream, cache_dir: Path
) -> None:
    first = wms_cache_app.get("/wmts/geo_nostore/GLOBAL_WEBMERCATOR/4/5/6.png")
    assert first.status_code == 200
    assert image_from(first).size == (256, 256)
    assert len(upstream.requests) == 1
    second = wms_cache_app.get("/wmts/geo_nostore/GLOBAL_WEBMERCATOR/4/5/6.png")
    assert second.status_code == 200
    assert second.data == first.data
    assert len(upstream.requests) == 2
    assert stored_files(cache_dir) == set()


# --- WMS GetMap from the cache, reprojected ---------------------------------------------


def getmap(srs: str, bbox: str, width: int, height: int, version: str = "1.1.1") -> dict:  # type: ignore[type-arg]
    return {
        "SERVICE": "WMS",
        "REQUEST": "GetMap",
        "VERSION": version,
        "LAYERS": "geo",
        "STYLES": "",
        "SRS" if version == "1.1.1" else "CRS": srs,
        "BBOX": bbox,
        "WIDTH": str(width),
        "HEIGHT": str(height),
        "FORMAT": "image/png",
    }


def test_wms_getmap_in_epsg4326_places_pixels_correctly(
    wms_cache_app: Client, upstream: FakeUpstream
) -> None:
    response = wms_cache_app.get(
        "/service", query_string=getmap("EPSG:4326", "-180,-80,180,80", 360, 160)
    )
    assert response.status_code == 200, response.text[:300]
    assert response.mimetype == "image/png"
    image = image_from(response)
    assert image.size == (360, 160)
    lon, lat = np.meshgrid(-180 + np.arange(360) + 0.5, 80 - np.arange(160) - 0.5)
    assert_geo_colors(image, lon, lat, margin=(1.0, 1.0))
    # 1 deg/px on the finer (x) axis is 111 km/px: level 1 (78 km/px) is the coarsest
    # level within the stretch factor; its single 2x2 meta tile is the whole world
    assert len(upstream.queries) == 1
    bbox, width, height = expected_meta_query(1, 0, 0, (0, 0, 0, 0), tiles=2)
    check_getmap_query(upstream.queries[0], bbox, width, height)

    # WMS 1.3.0 uses lat/lon axis order for EPSG:4326; the image must be the same
    response_130 = wms_cache_app.get(
        "/service", query_string=getmap("EPSG:4326", "-80,-180,80,180", 360, 160, "1.3.0")
    )
    assert response_130.status_code == 200
    assert np.array_equal(
        np.asarray(image.convert("RGB")), np.asarray(image_from(response_130).convert("RGB"))
    )


def test_wms_getmap_in_epsg25832_places_pixels_correctly(
    wms_cache_app: Client, upstream: FakeUpstream
) -> None:
    from pyproj import Transformer

    minx, miny, maxx, maxy = 150_000, 5_200_000, 950_000, 6_000_000
    width, height = 800, 800  # 1 km pixels
    response = wms_cache_app.get(
        "/service",
        query_string=getmap("EPSG:25832", f"{minx},{miny},{maxx},{maxy}", width, height),
    )
    assert response.status_code == 200, response.text[:300]
    image = image_from(response)
    assert image.size == (width, height)
    xs = minx + (np.arange(width) + 0.5) * 1000.0
    ys = maxy - (np.arange(height) + 0.5) * 1000.0
    east, north = np.meshgrid(xs, ys)
    to_lonlat = Transformer.from_crs("EPSG:25832", "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(east, north)
    # the area spans the cell borders at 5/10/15 E and 50 N: pixels next to them must
    # be right to within a few kilometres
    assert lon.min() < 5 < 10 < 15 < lon.max() and lat.min() < 50 < lat.max()
    assert_geo_colors(image, lon, lat, margin=(0.06, 0.04))  # about 4 km

    # level 7 (1.2 km/px in EPSG:3857) with four buffered 4x4 meta tiles
    assert len(upstream.queries) == 4
    seen = sorted(upstream.queries, key=lambda query: decode_bbox(query["bbox"])[:2])
    expected_tiles = [(64, 44), (64, 40), (68, 44), (68, 40)]
    for query, (first_x, first_y) in zip(seen, expected_tiles, strict=True):
        bbox, width, height = expected_meta_query(7, first_x, first_y, (8, 8, 8, 8))
        check_getmap_query(query, bbox, width, height)


# --- tile sources ------------------------------------------------------------------------


class TileServer:
    """Answers every tile URL with a PNG of its own colour and remembers what it sent."""

    def __init__(self) -> None:
        self.sent: dict[str, bytes] = {}

    def __call__(self, request: Request) -> Response:
        full_path = request.full_path.rstrip("?")
        seed = zlib.crc32(full_path.encode())
        color = (seed & 0xFF, (seed >> 8) & 0xFF, (seed >> 16) & 0xFF, 255)
        data = image_handler(color)(request).get_data()
        self.sent[full_path] = data
        return Response(data, content_type="image/png")


TILE_SOURCE_CONFIG = """
services:
  wms:
  wmts:
  tms:
layers:
  - {name: xyz, title: XYZ, sources: [xyz_cache]}
  - {name: tms_path, title: TMS path, sources: [tms_path_cache]}
  - {name: quadkey, title: Quadkey, sources: [quadkey_cache]}
caches:
  xyz_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [xyz_tiles]
  tms_path_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [tms_path_tiles]
  quadkey_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [quadkey_tiles]
sources:
  xyz_tiles:
    type: tile
    grid: GLOBAL_WEBMERCATOR
    url: {url}/xyz/%(z)s/%(x)s/%(y)s.png
  tms_path_tiles:
    type: tile
    url: {url}/tms/%(tms_path)s.%(format)s
  quadkey_tiles:
    type: tile
    grid: GLOBAL_WEBMERCATOR
    url: {url}/bing/a%(quadkey)s.png?g=1
globals:
  cache:
    base_dir: ./cache_data
"""


@pytest.fixture
def tile_server(upstream: FakeUpstream) -> TileServer:
    server = TileServer()
    upstream.handler = server
    return server


@pytest.fixture
def tile_app(
    make_app: Callable[..., Client], upstream: FakeUpstream, tile_server: TileServer
) -> Client:
    return make_app(TILE_SOURCE_CONFIG.replace("{url}", upstream.url))


@pytest.mark.parametrize(
    ("layer", "expected_url"),
    [
        # WMTS 3/1/2: column 1, row 2 from the north
        ("xyz", "/xyz/3/1/2.png"),
        # the default source grid GLOBAL_MERCATOR counts rows from the south: 7 - 2 = 5
        ("tms_path", "/tms/3/1/5.png"),
        ("quadkey", "/bing/a021.png?g=1"),
    ],
)
def test_tile_source_requests_exactly_the_tile_url(
    tile_app: Client,
    upstream: FakeUpstream,
    tile_server: TileServer,
    cache_dir: Path,
    layer: str,
    expected_url: str,
) -> None:
    response = tile_app.get(f"/wmts/{layer}/GLOBAL_WEBMERCATOR/3/1/2.png")
    assert response.status_code == 200
    assert list(tile_server.sent) == [expected_url]
    upstream_bytes = tile_server.sent[expected_url]
    assert response.data == upstream_bytes
    assert stored_files(cache_dir) == {tc_path(cache_dir, f"{layer}_cache", 3, 1, 2)}
    assert tc_path(cache_dir, f"{layer}_cache", 3, 1, 2).read_bytes() == upstream_bytes

    again = tile_app.get(f"/wmts/{layer}/GLOBAL_WEBMERCATOR/3/1/2.png")
    assert again.data == upstream_bytes
    assert len(upstream.requests) == 1


def test_tile_source_fetches_one_request_per_tile(
    tile_app: Client, upstream: FakeUpstream, tile_server: TileServer
) -> None:
    # a 512x512 WMS GetMap exactly on the four tiles 2/1/1, 2/2/1, 2/1/2 and 2/2/2
    quarter = HALF_WORLD / 2
    response = tile_app.get(
        "/service",
        query_string={
            "SERVICE": "WMS",
            "REQUEST": "GetMap",
            "VERSION": "1.1.1",
            "LAYERS": "xyz",
            "STYLES": "",
            "SRS": "EPSG:3857",
            "BBOX": f"{-quarter},{-quarter},{quarter},{quarter}",
            "WIDTH": "512",
            "HEIGHT": "512",
            "FORMAT": "image/png",
        },
    )
    assert response.status_code == 200, response.text[:300]
    assert sorted(tile_server.sent) == [
        "/xyz/2/1/1.png",
        "/xyz/2/1/2.png",
        "/xyz/2/2/1.png",
        "/xyz/2/2/2.png",
    ]
    assert len(upstream.requests) == 4
    # each quarter of the map is the upstream tile for that place
    image = image_from(response).convert("RGBA")
    for (x, y), (left, top) in {
        (1, 1): (0, 0),
        (2, 1): (256, 0),
        (1, 2): (0, 256),
        (2, 2): (256, 256),
    }.items():
        tile = Image.open(io.BytesIO(tile_server.sent[f"/xyz/2/{x}/{y}.png"])).convert("RGBA")
        assert image.getpixel((left + 128, top + 128)) == tile.getpixel((128, 128))


def test_tile_source_via_tms_request(
    tile_app: Client, tile_server: TileServer, cache_dir: Path
) -> None:
    # TMS level 2 = internal level 3; TMS row 5 from the south = row 2 from the north
    response = tile_app.get("/tms/1.0.0/xyz/EPSG3857/2/1/5.png")
    assert response.status_code == 200
    assert list(tile_server.sent) == ["/xyz/3/1/2.png"]
    assert tc_path(cache_dir, "xyz_cache", 3, 1, 2).read_bytes() == response.data


# --- HTTP options towards the upstream ---------------------------------------------------

HEADERS_CONFIG = """
services:
  wmts:
layers:
  - {name: plain, title: Plain, sources: [plain_cache]}
  - {name: own, title: Own headers, sources: [own_cache]}
caches:
  plain_cache: {grids: [GLOBAL_WEBMERCATOR], sources: [plain_wms]}
  own_cache: {grids: [GLOBAL_WEBMERCATOR], sources: [own_wms]}
sources:
  plain_wms:
    type: wms
    req: {url: {url}/plain, layers: a}
  own_wms:
    type: wms
    http:
      headers: {X-Source-Token: secret, X-Shared: from-source}
    req: {url: {url}/own, layers: b}
globals:
  cache: {base_dir: ./cache_data}
  http:
    headers: {X-Global-Token: global, X-Shared: from-globals}
"""


def test_configured_http_headers_reach_the_upstream(
    make_app: Callable[..., Client], upstream: FakeUpstream
) -> None:
    client = make_app(HEADERS_CONFIG.replace("{url}", upstream.url))
    assert client.get("/wmts/plain/GLOBAL_WEBMERCATOR/1/0/0.png").status_code == 200
    assert client.get("/wmts/own/GLOBAL_WEBMERCATOR/1/0/0.png").status_code == 200
    by_path = {record.path: record.headers for record in upstream.recorded}
    assert set(by_path) == {"/plain", "/own"}
    plain, own = by_path["/plain"], by_path["/own"]
    assert plain["X-Global-Token"] == "global"
    assert plain["X-Shared"] == "from-globals"
    assert "X-Source-Token" not in plain
    # as in MapProxy, a source's own headers replace the global headers
    assert own["X-Source-Token"] == "secret"
    assert own["X-Shared"] == "from-source"
    assert "X-Global-Token" not in own


# --- upstream failures ---------------------------------------------------------------------

FAILURE_CONFIG = """
services:
  wms:
  wmts:
  tms:
layers:
  - {name: slow, title: Slow, sources: [slow_cache]}
  - {name: fast, title: Fast, sources: [fast_cache]}
caches:
  slow_cache: {grids: [GLOBAL_WEBMERCATOR], sources: [slow_wms]}
  fast_cache: {grids: [GLOBAL_WEBMERCATOR], sources: [fast_wms]}
sources:
  slow_wms:
    type: wms
    http: {client_timeout: 0.5}
    req: {url: {slow}/service, layers: a}
  fast_wms:
    type: wms
    req: {url: {fast}/service, layers: b}
globals:
  cache: {base_dir: ./cache_data}
"""

OWS = "{http://www.opengis.net/ows/1.1}"


@pytest.fixture
def slow_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def failure_app(
    make_app: Callable[..., Client], slow_upstream: FakeUpstream, upstream: FakeUpstream
) -> Client:
    return make_app(
        FAILURE_CONFIG.replace("{slow}", slow_upstream.url).replace("{fast}", upstream.url)
    )


def check_wmts_exception(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 500
    assert response.mimetype == "text/xml"
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    root = etree.fromstring(response.data)
    assert root.tag == f"{OWS}ExceptionReport"
    exception = root.find(f"{OWS}Exception")
    assert exception is not None
    assert exception.get("exceptionCode") == "NoApplicableCode"
    return str(exception.findtext(f"{OWS}ExceptionText"))


def check_wms_exception(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 500
    assert response.mimetype == "application/vnd.ogc.se_xml"
    root = etree.fromstring(response.data)
    assert root.tag == "ServiceExceptionReport"
    assert root.get("version") == "1.1.1"
    return str(root.findtext("ServiceException"))


def test_client_timeout_gives_clean_errors_in_bounded_time(
    failure_app: Client, slow_upstream: FakeUpstream, upstream: FakeUpstream, cache_dir: Path
) -> None:
    slow_upstream.handler = slow_upstream.sleep_handler(10)

    started = time.monotonic()
    text = check_wmts_exception(failure_app.get("/wmts/slow/GLOBAL_WEBMERCATOR/1/0/0.png"))
    assert time.monotonic() - started < 3
    assert "(see logs for URL and reason)" in text
    assert slow_upstream.url not in text

    started = time.monotonic()
    wms = failure_app.get(
        "/service",
        query_string={
            "SERVICE": "WMS",
            "REQUEST": "GetMap",
            "VERSION": "1.1.1",
            "LAYERS": "slow",
            "STYLES": "",
            "SRS": "EPSG:4326",
            "BBOX": "-10,-10,10,10",
            "WIDTH": "100",
            "HEIGHT": "100",
            "FORMAT": "image/png",
        },
    )
    assert time.monotonic() - started < 3
    text = check_wms_exception(wms)
    assert "(see logs for URL and reason)" in text

    fast = failure_app.get("/wmts/fast/GLOBAL_WEBMERCATOR/1/0/0.png")
    assert fast.status_code == 200
    assert fast.mimetype == "image/png"
    assert [path for path, _ in upstream.requests] == ["/service"]
    assert {p for p in stored_files(cache_dir) if "slow_cache" in str(p)} == set()


def test_upstream_service_exception_gives_clean_error_and_stores_nothing(
    failure_app: Client, slow_upstream: FakeUpstream, cache_dir: Path
) -> None:
    slow_upstream.handler = service_exception_handler("layer a is not defined")

    text = check_wmts_exception(failure_app.get("/wmts/slow/GLOBAL_WEBMERCATOR/2/1/1.png"))
    assert "no image returned from source wms" in text.lower()

    tms = failure_app.get("/tms/1.0.0/slow/EPSG3857/1/0/0.png")
    assert tms.status_code == 500
    assert etree.fromstring(tms.data).tag == "TileMapServerError"

    assert stored_files(cache_dir) == set()
    assert len(slow_upstream.requests) == 2

    # the error is not cached: once the upstream recovers, the tile is created
    slow_upstream.handler = image_handler((0, 0, 255, 255))
    response = failure_app.get("/wmts/slow/GLOBAL_WEBMERCATOR/2/1/1.png")
    assert response.status_code == 200
    assert image_from(response).convert("RGBA").getpixel((10, 10)) == (0, 0, 255, 255)
    assert tc_path(cache_dir, "slow_cache", 2, 1, 1).exists()
