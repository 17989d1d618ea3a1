from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.fake_upstream import (  # tests/ is on sys.path (tests/conftest.py)
    FakeUpstream,
    image_handler,
    png_bytes,
    service_exception_handler,
    status_handler,
)
from mapproxy.errors import ConfigurationError, SourceError
from mapproxy.grid import TileCoord, TileGrid
from mapproxy.http import HTTPClient
from mapproxy.source.base import MapQuery
from mapproxy.source.tile import TileSource, quadkey, tile_url
from mapproxy.srs import get_srs

EPSG3857 = get_srs("EPSG:3857")
MERC_BBOX = (-20037508.342789244, -20037508.342789244, 20037508.342789244, 20037508.342789244)
MERC_RES = [156543.03392804097 / 2**z for z in range(20)]


def merc_grid(origin: str = "nw") -> TileGrid:
    return TileGrid(EPSG3857, MERC_BBOX, MERC_RES, origin=origin)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def make_source(
    upstream: FakeUpstream, template: str, grid: TileGrid | None = None, **kwargs: object
) -> TileSource:
    return TileSource(
        HTTPClient(timeout_seconds=5),
        upstream.url + template,
        grid or merc_grid(),
        **kwargs,  # type: ignore[arg-type]
    )


def tile_query(grid: TileGrid, coord: TileCoord, **kwargs: object) -> MapQuery:
    return MapQuery(grid.tile_bbox(coord), grid.tile_size, grid.srs, **kwargs)  # type: ignore[arg-type]


COORD = TileCoord(5, 3, 4)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("/%(z)s/%(x)s/%(y)s.%(format)s", "/4/5/3.png"),
        ("/tms/%(tms_path)s.png", "/tms/4/5/3.png"),
        ("/tc/%(tc_path)s.png", "/tc/04/000/000/005/000/000/003.png"),
        ("/arcgis/%(arcgiscache_path)s.png", "/arcgis/L04/R00000003/C00000005.png"),
        ("/bing/%(quadkey)s", "/bing/" + quadkey(5, 3, 4)),
    ],
)
def test_template_variables_in_requested_url(
    upstream: FakeUpstream, template: str, expected: str
) -> None:
    grid = merc_grid()
    source = make_source(upstream, template, grid)
    result = source.get_map(tile_query(grid, COORD))
    assert upstream.requests == [(expected, {})]
    assert result.as_bytes() == png_bytes()


def test_tile_url_function_expands_all_variables() -> None:
    coord = TileCoord(1234, 56789, 12)
    bbox = (1.0, 2.5, 3.0, 4.0)
    template = (
        "x=%(x)s y=%(y)s z=%(z)s f=%(format)s q=%(quadkey)s tc=%(tc_path)s "
        "tms=%(tms_path)s arc=%(arcgiscache_path)s bbox=%(bbox)s keep=%2C"
    )
    assert tile_url(template, coord, "jpeg", bbox=bbox) == (
        "x=1234 y=56789 z=12 f=jpeg q=" + quadkey(1234, 56789, 12) + " "
        "tc=12/000/001/234/000/056/789 tms=12/1234/56789 arc=L12/R0000ddd5/C000004d2 "
        "bbox=1.00000000,2.50000000,3.00000000,4.00000000 keep=%2C"
    )


def test_quadkey_values() -> None:
    assert quadkey(0, 0, 0) == ""
    assert quadkey(1, 0, 1) == "1"
    assert quadkey(0, 1, 1) == "2"
    assert quadkey(3, 5, 3) == "213"


def test_bbox_variable_is_the_tile_bbox(upstream: FakeUpstream) -> None:
    grid = merc_grid()
    source = make_source(upstream, "/wms?bbox=%(bbox)s&size=256")
    source.get_map(tile_query(grid, TileCoord(0, 0, 1)))
    (_, query) = upstream.requests[0]
    values = [float(v) for v in query["bbox"].split(",")]
    assert values == pytest.approx(grid.tile_bbox(TileCoord(0, 0, 1)))
    assert values == pytest.approx((MERC_BBOX[0], 0.0, 0.0, MERC_BBOX[3]), abs=1e-6)


def test_sw_grid_uses_sw_numbering_and_quadkey_is_flipped(upstream: FakeUpstream) -> None:
    grid = merc_grid(origin="sw")
    source = make_source(upstream, "/%(z)s/%(x)s/%(y)s/%(quadkey)s", grid)
    # the north-western tile of level 1: sw numbering y=1, quadkey counts from the top
    bbox = (MERC_BBOX[0], 0.0, 0.0, MERC_BBOX[3])
    source.get_map(MapQuery(bbox, (256, 256), EPSG3857))
    assert upstream.requests[0][0] == "/1/0/1/" + quadkey(0, 0, 1)


def test_nw_grid_numbering(upstream: FakeUpstream) -> None:
    source = make_source(upstream, "/%(z)s/%(x)s/%(y)s.png")
    bbox = (MERC_BBOX[0], 0.0, 0.0, MERC_BBOX[3])
    source.get_map(MapQuery(bbox, (256, 256), EPSG3857))
    assert upstream.requests[0][0] == "/1/0/0.png"


def test_format_variable_uses_extension(upstream: FakeUpstream) -> None:
    upstream.handler = image_handler(format="JPEG", color=(1, 2, 3))
    grid = merc_grid()
    source = make_source(upstream, "/%(z)s/%(x)s/%(y)s.%(format)s", grid, format="image/jpeg")
    result = source.get_tile(TileCoord(0, 0, 0))
    assert upstream.requests[0][0] == "/0/0/0.jpeg"
    assert result.format == "image/jpeg"


def test_get_tile_loads_directly(upstream: FakeUpstream) -> None:
    source = make_source(upstream, "/%(z)s/%(x)s/%(y)s.png", transparent=True)
    result = source.get_tile(TileCoord(2, 1, 3))
    assert upstream.requests == [("/3/2/1.png", {})]
    assert result.transparent
    assert result.as_image().size == (256, 256)


@pytest.mark.parametrize(
    "query",
    [
        MapQuery((0.0, 0.0, 1000.0, 1000.0), (256, 256), EPSG3857),  # not a tile bbox
        MapQuery((MERC_BBOX[0], 0.0, 0.0, MERC_BBOX[3]), (512, 512), EPSG3857),  # wrong size
        MapQuery((-180.0, -90.0, 180.0, 90.0), (256, 256), get_srs("EPSG:4326")),  # wrong srs
        MapQuery((MERC_BBOX[0], 0.0, 0.0, MERC_BBOX[3]), (256, 128), EPSG3857),
    ],
)
def test_non_tile_queries_are_rejected(upstream: FakeUpstream, query: MapQuery) -> None:
    source = make_source(upstream, "/%(z)s/%(x)s/%(y)s.png")
    with pytest.raises(SourceError, match="invalid tile request"):
        source.get_map(query)
    assert upstream.requests == []


def test_404_is_an_error_by_default(upstream: FakeUpstream) -> None:
    upstream.handler = status_handler(404)
    source = make_source(upstream, "/%(z)s/%(x)s/%(y)s.png")
    with pytest.raises(SourceError, match=r"^HTTP Error \(see logs for URL and reason\)\.$"):
        source.get_tile(TileCoord(0, 0, 0))


def test_404_with_on_error_gives_transparent_uncached_tile(upstream: FakeUpstream) -> None:
    upstream.handler = status_handler(404)
    source = make_source(
        upstream, "/%(z)s/%(x)s/%(y)s.png", on_error={404: {"response": "transparent"}}
    )
    result = source.get_tile(TileCoord(0, 0, 0))
    assert not result.cacheable
    assert result.as_image().size == (256, 256)
    assert result.as_image().convert("RGBA").getpixel((0, 0))[3] == 0


def test_non_image_response_is_error_or_on_error_other(upstream: FakeUpstream) -> None:
    upstream.handler = service_exception_handler("no tile here", content_type="text/html")
    source = make_source(upstream, "/%(z)s/%(x)s/%(y)s.png")
    with pytest.raises(SourceError, match="No image returned from tile source"):
        source.get_tile(TileCoord(0, 0, 0))
    with_fallback = make_source(
        upstream,
        "/%(z)s/%(x)s/%(y)s.png",
        on_error={"other": {"response": [10, 20, 30], "cache": True}},
    )
    result = with_fallback.get_tile(TileCoord(0, 0, 0))
    assert result.cacheable
    assert result.as_image().convert("RGBA").getpixel((1, 1)) == (10, 20, 30, 255)


def test_unknown_template_variable_is_a_configuration_error(upstream: FakeUpstream) -> None:
    with pytest.raises(ConfigurationError, match="unknown variable"):
        make_source(upstream, "/%(zoom)s/%(x)s/%(y)s.png")


def test_source_attributes(upstream: FakeUpstream) -> None:
    source = make_source(upstream, "/%(tms_path)s.png")
    assert source.supports_meta_tiles is False
    assert source.transparent is False
    assert source.extent is None


def test_deprecated_origin_option_flips_url_rows() -> None:
    from mapproxy.grid import TileCoord, TileGrid
    from mapproxy.http.client import HTTPClient
    from mapproxy.source.tile import TileSource
    from mapproxy.srs import get_srs

    extent = 20037508.342789244
    grid = TileGrid(
        get_srs("EPSG:900913"),
        (-extent, -extent, extent, extent),
        [2 * extent / 256 / 2**z for z in range(5)],
        origin="sw",
    )
    url = "http://127.0.0.1:9/%(z)s/%(x)s/%(y)s.png"
    plain = TileSource(HTTPClient(), url, grid)
    flipped = TileSource(HTTPClient(), url, grid, url_origin="nw")
    same = TileSource(HTTPClient(), url, grid, url_origin="ll")
    assert plain.tile_url(TileCoord(1, 0, 2)) == "http://127.0.0.1:9/2/1/0.png"
    assert flipped.tile_url(TileCoord(1, 0, 2)) == "http://127.0.0.1:9/2/1/3.png"
    assert same.tile_url(TileCoord(1, 0, 2)) == "http://127.0.0.1:9/2/1/0.png"
