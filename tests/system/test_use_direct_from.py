"""Cache options ``use_direct_from_level`` / ``use_direct_from_res`` end to end.

At and below the threshold resolution WMS GetMap requests go to the cache's source with
the client's own bbox and size (nothing is stored); above it tiles are fetched and cached.
Tile services always use the cache. Expected requests were observed on the reference
MapProxy 7.0.0 (tests/integration/test_reference_direct.py compares them side by side).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.fake_upstream import FakeUpstream, image_handler
from mapproxy.errors import ConfigurationError

RES_0 = 156543.03392804097  # GLOBAL_WEBMERCATOR level 0
RES_5 = RES_0 / 32
RES_6 = RES_0 / 64
METRES_PER_DEGREE = 111319.4907932736


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(image_handler((255, 0, 0, 255))) as fake:
        yield fake


CONFIG = """
services:
  wms:
    srs: ['EPSG:3857', 'EPSG:4326']
  wmts:
layers:
  - name: c
    title: c
    sources: [c]
caches:
  c:
    grids: [{grids}]
    sources: [w]
    meta_size: [1, 1]
    meta_buffer: 0
{options}
sources:
  w:
    type: wms
    supported_srs: ['EPSG:3857']
    req:
      url: {url}/service
      layers: foo
grids:
  coarse:
    srs: 'EPSG:3857'
    bbox: [-20037508.342789244, -20037508.342789244, 20037508.342789244, 20037508.342789244]
    origin: nw
    res: [100000, 50000, 25000, 12500, 6250, 3125, 1562.5]
"""


def make(make_app, upstream: FakeUpstream, options: str, grids: str = "GLOBAL_WEBMERCATOR"):
    return make_app(CONFIG.format(url=upstream.url, options=options, grids=grids))


def getmap(
    bbox: tuple[float, float, float, float],
    size: tuple[int, int] = (256, 256),
    srs: str = "EPSG:3857",
    format: str = "image/png",
) -> str:
    return (
        "/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&STYLES=&LAYERS=c"
        f"&SRS={srs}&FORMAT={format}&WIDTH={size[0]}&HEIGHT={size[1]}"
        f"&BBOX={','.join(repr(v) for v in bbox)}"
    )


def square(x: float, y: float, res: float, pixels: int = 256) -> tuple[float, float, float, float]:
    return (x, y, x + res * pixels, y + res * pixels)


def stored_tiles(base: Path) -> list[str]:
    root = base / "cache_data"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.png")) if root.exists() else []


def assert_direct(
    upstream: FakeUpstream, bbox: tuple[float, ...], size=(256, 256), srs="EPSG:3857"
):
    assert len(upstream.requests) == 1
    path, query = upstream.requests[0]
    assert path == "/service"
    assert query["request"] == "GetMap"
    assert [float(v) for v in query["bbox"].split(",")] == pytest.approx(list(bbox), abs=1e-6)
    assert (query["width"], query["height"]) == (str(size[0]), str(size[1]))
    assert query["srs"] == srs


def assert_tiles(upstream: FakeUpstream, count: int) -> None:
    """``count`` requests of single 256x256 tiles of the grid."""
    assert len(upstream.requests) == count
    for _, query in upstream.requests:
        assert (query["width"], query["height"]) == ("256", "256")
        x0, _, x1, _ = (float(v) for v in query["bbox"].split(","))
        # tile bounds: whole tile widths from the grid origin (-20037508.34)
        assert x0 / (x1 - x0) == pytest.approx(round(x0 / (x1 - x0)), abs=1e-6)


LEVEL_5 = "    use_direct_from_level: 5"


def test_request_at_the_threshold_level_goes_to_the_source(make_app, upstream, tmp_path):
    client = make(make_app, upstream, LEVEL_5)
    bbox = square(0.0, 0.0, RES_5)
    response = client.get(getmap(bbox))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert_direct(upstream, bbox)
    assert upstream.requests[0][1]["layers"] == "foo"
    assert stored_tiles(tmp_path) == []


def test_request_below_the_threshold_keeps_the_client_format(make_app, upstream, tmp_path):
    client = make(make_app, upstream, LEVEL_5)
    bbox = square(1e6, 2e6, RES_6 * 0.9, 300)
    response = client.get(getmap(bbox, (300, 300), format="image/jpeg"))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert_direct(upstream, bbox, (300, 300))
    assert upstream.requests[0][1]["format"] == "image/jpeg"
    assert stored_tiles(tmp_path) == []


def test_request_just_above_the_threshold_is_cached(make_app, upstream, tmp_path):
    client = make(make_app, upstream, LEVEL_5)
    response = client.get(getmap(square(0.0, 0.0, RES_5 * 1.001)))
    assert response.status_code == 200
    assert_tiles(upstream, 4)
    assert stored_tiles(tmp_path) == [
        f"c_EPSG3857/05/000/000/0{x}/000/000/0{y}.png" for x in (16, 17) for y in (14, 15)
    ]
    # the second time the tiles come from the cache
    assert client.get(getmap(square(0.0, 0.0, RES_5 * 1.001))).status_code == 200
    assert len(upstream.requests) == 4


def test_the_finer_of_x_and_y_resolution_decides(make_app, upstream, tmp_path):
    client = make(make_app, upstream, LEVEL_5)
    # x: twice the threshold, y: 0.8 of it
    bbox = (0.0, -9e6, RES_5 * 256, -8e6)
    assert client.get(getmap(bbox, (128, 256))).status_code == 200
    assert_direct(upstream, bbox, (128, 256))
    assert stored_tiles(tmp_path) == []


def test_geographic_requests_are_measured_in_the_grid_srs(make_app, upstream, tmp_path):
    client = make(make_app, upstream, LEVEL_5)
    # at 60N: 0.8 of the threshold in degrees, but above it in web mercator metres
    width = 1.5 * RES_5 * 256 / METRES_PER_DEGREE
    height = 0.8 * RES_5 * 256 / METRES_PER_DEGREE
    assert client.get(getmap((10, 60, 10 + width, 60 + height), srs="EPSG:4326")).status_code == 200
    assert len(upstream.requests) == 9
    assert all(q["srs"] == "EPSG:3857" and q["width"] == "256" for _, q in upstream.requests)
    assert len(stored_tiles(tmp_path)) == 9

    upstream.reset()
    side = 0.99 * RES_5 * 256 / METRES_PER_DEGREE
    assert client.get(getmap((20, 0, 20 + side, side), srs="EPSG:4326")).status_code == 200
    # the source only supports EPSG:3857: one request for the client's area
    assert len(upstream.requests) == 1
    query = upstream.requests[0][1]
    assert query["srs"] == "EPSG:3857"
    x0, y0, x1, _ = (float(v) for v in query["bbox"].split(","))
    assert (x0, y0) == pytest.approx((20 * METRES_PER_DEGREE, 0.0), abs=1e-3)
    assert x1 == pytest.approx((20 + side) * METRES_PER_DEGREE, abs=1e-3)
    assert len(stored_tiles(tmp_path)) == 9


def test_use_direct_from_res_includes_the_resolution_itself(make_app, upstream, tmp_path):
    client = make(make_app, upstream, "    use_direct_from_res: 1000")
    bbox = square(0.0, 0.0, 1000)
    assert client.get(getmap(bbox)).status_code == 200
    assert_direct(upstream, bbox)

    upstream.reset()
    assert client.get(getmap(square(1e6, 0.0, 1000 * 1.0000001))).status_code == 200
    assert_tiles(upstream, 6)
    assert len(stored_tiles(tmp_path)) == 6


def test_level_takes_precedence_over_res(make_app, upstream, tmp_path):
    options = "    use_direct_from_level: 5\n    use_direct_from_res: 1000"
    client = make(make_app, upstream, options)
    bbox = square(3e6, 0.0, RES_6 * 1.01)  # above 1000 but below level 5
    assert client.get(getmap(bbox)).status_code == 200
    assert_direct(upstream, bbox)
    assert stored_tiles(tmp_path) == []


def test_level_of_the_first_grid_is_the_threshold(make_app, upstream, tmp_path):
    # level 5 of "coarse" is 3125 m; GLOBAL_WEBMERCATOR's level 5 would be 4892 m
    client = make(make_app, upstream, LEVEL_5, grids="coarse, GLOBAL_WEBMERCATOR")
    assert client.get(getmap(square(0.0, 0.0, RES_5))).status_code == 200
    # cached, from the last grid in the SRS (as MapProxy): one GLOBAL_WEBMERCATOR tile
    assert_tiles(upstream, 1)
    assert [tile[:14] for tile in stored_tiles(tmp_path)] == ["c_EPSG3857/05/"]

    upstream.reset()
    bbox = square(0.0, 0.0, 3125)
    assert client.get(getmap(bbox)).status_code == 200
    assert_direct(upstream, bbox)


def test_tile_services_always_use_the_cache(make_app, upstream, tmp_path):
    client = make(make_app, upstream, LEVEL_5)
    response = client.get("/wmts/c/GLOBAL_WEBMERCATOR/6/32/31.png")
    assert response.status_code == 200
    assert_tiles(upstream, 1)
    assert stored_tiles(tmp_path) == ["c_EPSG3857/06/000/000/032/000/000/031.png"]


def test_layer_resolution_limits_keep_the_switch(make_app, upstream, tmp_path):
    config = CONFIG.format(url=upstream.url, options=LEVEL_5, grids="GLOBAL_WEBMERCATOR")
    config = config.replace("    sources: [c]\n", "    sources: [c]\n    min_res: 100000\n", 1)
    client = make_app(config)
    bbox = square(0.0, 0.0, RES_6)
    assert client.get(getmap(bbox)).status_code == 200
    assert_direct(upstream, bbox)

    upstream.reset()
    assert client.get(getmap(square(0.0, 0.0, RES_0 / 8))).status_code == 200
    assert_tiles(upstream, 1)


@pytest.mark.parametrize(
    ("sources", "options", "message"),
    [
        (
            "[w, w2]",
            LEVEL_5,
            r"caches\.c\.use_direct_from_level: only supported for caches with a single source",
        ),
        ("[base]", LEVEL_5, r"caches\.c\.use_direct_from_level: the source must not be a cache"),
        ("[t]", "    use_direct_from_res: 10", r"source 't' does not support un-tiled access"),
        ("[w]", "    use_direct_from_level: 30", r"level 30 is not a level of grid"),
        ("[w]", "    use_direct_from_level: -1", r"caches\.c\.use_direct_from_level: level -1"),
        (
            "{r: [{source: w, band: 0}], g: [{source: w, band: 1}], b: [{source: w, band: 2}]}",
            LEVEL_5,
            r"only supported for caches with a single source",
        ),
    ],
)
def test_invalid_use_direct_configs_are_reported(make_app, upstream, sources, options, message):
    config = CONFIG.format(url=upstream.url, options=options, grids="GLOBAL_WEBMERCATOR")
    config = config.replace("    sources: [w]\n", f"    sources: {sources}\n", 1)
    config = config.replace(
        "\nsources:\n",
        "\n  base:\n    grids: [GLOBAL_WEBMERCATOR]\n    sources: [w]\n"
        "sources:\n"
        f"  w2:\n    type: wms\n    req:\n      url: {upstream.url}/service\n      layers: bar\n"
        f"  t:\n    type: tile\n    url: {upstream.url}/tiles/%(z)s/%(x)s/%(y)s.png\n",
        1,
    )
    with pytest.raises(ConfigurationError, match=message):
        make_app(config)
