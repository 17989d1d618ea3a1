"""Polygon coverages on sources and caches: no upstream requests outside, clipping, loaders.

The triangle coverage is the south-west half of the web mercator world (below the
diagonal x + y = 0), so at level 2 the north-east corner tile lies inside the coverage's
bbox but outside the polygon, the south-west corner tile inside and tile 1/1 crosses it.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image
from werkzeug.test import Client

from fakes.fake_upstream import FakeUpstream
from mapproxy.errors import ConfigurationError

W = 20037508.342789244
TRIANGLE_WKT = f"POLYGON(({-W} {-W}, {W} {-W}, {-W} {W}, {-W} {-W}))\n"
NE, CROSSING, SW = "2/3/0", "2/1/1", "2/0/3"  # WMTS z/x/y, y from the top

CONFIG = """
services:
  wms:
    srs: ['EPSG:3857', 'EPSG:4326']
  wmts:
    restful: true
    kvp: false
layers:
  - name: tri
    title: Triangle coverage
    sources: [tri_cache]
  - name: tri_clip
    title: Triangle coverage, clipped
    sources: [clip_cache]
  - name: tri_direct
    title: Triangle coverage, uncached
    sources: [tri_wms_clip]
  - name: cache_cov
    title: Cache coverage
    sources: [cov_cache]
caches:
  tri_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [tri_wms]
    meta_size: [1, 1]
    meta_buffer: 0
  clip_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [tri_wms_clip]
    meta_size: [1, 1]
    meta_buffer: 0
  cov_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [plain_wms]
    meta_size: [1, 1]
    meta_buffer: 0
    cache:
      type: file
      coverage:
        datasource: triangle.wkt
        srs: 'EPSG:3857'
sources:
  tri_wms:
    type: wms
    req: {url: "{url}/service", layers: a, transparent: true}
    coverage:
      datasource: triangle.wkt
      srs: 'EPSG:3857'
  tri_wms_clip:
    type: wms
    req: {url: "{url}/service", layers: a, transparent: true}
    coverage:
      datasource: triangle.wkt
      srs: 'EPSG:3857'
      clip: true
  plain_wms:
    type: wms
    req: {url: "{url}/service", layers: a, transparent: true}
"""


def image_from(response) -> Image.Image:  # type: ignore[no-untyped-def]
    """Decode a response body as an image."""
    image = Image.open(io.BytesIO(response.data))
    image.load()
    return image


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:  # opaque red images of the requested size
        yield fake


@pytest.fixture
def app(make_app, upstream: FakeUpstream) -> Client:  # type: ignore[no-untyped-def]
    return make_app(  # type: ignore[no-any-return]
        CONFIG.replace("{url}", upstream.url), **{"triangle.wkt": TRIANGLE_WKT}
    )


def tile(app: Client, layer: str, zxy: str) -> np.ndarray:
    response = app.get(f"/wmts/{layer}/GLOBAL_WEBMERCATOR/{zxy}.png")
    assert response.status_code == 200
    assert response.content_type == "image/png"
    return np.asarray(image_from(response).convert("RGBA"))


def bboxes(upstream: FakeUpstream) -> list[list[float]]:
    return [[float(v) for v in query["bbox"].split(",")] for _, query in upstream.requests]


@pytest.mark.parametrize("layer", ["tri", "cache_cov"])
def test_tile_inside_coverage_bbox_but_outside_polygon_is_not_requested(
    app: Client, upstream: FakeUpstream, layer: str
) -> None:
    pixels = tile(app, layer, NE)
    assert upstream.requests == []
    assert (pixels[:, :, 3] == 0).all()


@pytest.mark.parametrize("layer", ["tri", "cache_cov"])
def test_tile_crossing_the_polygon_edge_is_requested_once(
    app: Client, upstream: FakeUpstream, layer: str
) -> None:
    pixels = tile(app, layer, CROSSING)
    assert len(upstream.requests) == 1
    assert bboxes(upstream) == [pytest.approx([-W / 2, 0, 0, W / 2])]
    assert upstream.requests[0][1]["srs"] == "EPSG:3857"
    # not clipped: the whole upstream image is kept
    assert tuple(pixels[10, 200]) == (255, 0, 0, 255)
    tile(app, layer, SW)
    assert bboxes(upstream)[1] == pytest.approx([-W, -W, -W / 2, -W / 2])


def test_clip_makes_pixels_outside_the_polygon_transparent(
    app: Client, upstream: FakeUpstream
) -> None:
    pixels = tile(app, "tri_clip", CROSSING)
    assert len(upstream.requests) == 1
    assert tuple(pixels[200, 10]) == (255, 0, 0, 255)  # south-west of the diagonal
    assert tuple(pixels[10, 200]) == (255, 255, 255, 0)  # north-east of it
    inside = tile(app, "tri_clip", SW)
    assert (inside == (255, 0, 0, 255)).all()


def test_direct_wms_layer_skips_and_clips_by_coverage(app: Client, upstream: FakeUpstream) -> None:
    params = {
        "SERVICE": "WMS",
        "VERSION": "1.1.1",
        "REQUEST": "GetMap",
        "LAYERS": "tri_direct",
        "STYLES": "",
        "SRS": "EPSG:3857",
        "FORMAT": "image/png",
        "TRANSPARENT": "true",
        "WIDTH": "100",
        "HEIGHT": "100",
    }
    outside = app.get(
        "/service", query_string=params | {"BBOX": f"{W / 4},{W / 4},{W / 2},{W / 2}"}
    )
    assert outside.status_code == 200
    assert upstream.requests == []
    assert (np.asarray(image_from(outside).convert("RGBA"))[:, :, 3] == 0).all()
    crossing = app.get("/service", query_string=params | {"BBOX": f"{-W / 2},0,0,{W / 2}"})
    assert len(upstream.requests) == 1
    pixels = np.asarray(image_from(crossing).convert("RGBA"))
    assert tuple(pixels[90, 10]) == (255, 0, 0, 255)
    assert pixels[10, 90, 3] == 0


GEO_CONFIG = """
services:
  wmts:
    restful: true
    kvp: false
layers:
  - name: geo
    title: GeoJSON or OGR coverage
    sources: [geo_cache]
caches:
  geo_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [geo_wms]
    meta_size: [1, 1]
    meta_buffer: 0
sources:
  geo_wms:
    type: wms
    req: {url: "{url}/service", layers: a, transparent: true}
    coverage:
      {coverage}
"""


def make_geo_app(make_app, upstream: FakeUpstream, coverage: str, **files: str) -> Client:  # type: ignore[no-untyped-def]
    text = GEO_CONFIG.replace("{url}", upstream.url).replace("{coverage}", coverage)
    return make_app(text, **files)  # type: ignore[no-any-return]


def lonlat_triangle_and_square() -> tuple[shapely.Polygon, shapely.Polygon]:
    # in EPSG:4326: the south-west triangle up to +-85 deg and a square in tile 2/3/0
    triangle = shapely.Polygon([(-180, -85), (180, -85), (-180, 85)])
    square = shapely.box(100, 70, 110, 80)
    return triangle, square


def test_geojson_coverage(make_app, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    triangle, _ = lonlat_triangle_and_square()
    feature = {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(triangle)}
    app = make_geo_app(
        make_app,
        upstream,
        "datasource: area.geojson",
        **{"area.geojson": json.dumps({"type": "FeatureCollection", "features": [feature]})},
    )
    assert (tile(app, "geo", NE)[:, :, 3] == 0).all()
    assert upstream.requests == []
    tile(app, "geo", CROSSING)
    assert len(upstream.requests) == 1


def test_ogr_coverage_with_where(make_app, upstream: FakeUpstream, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pyogrio = pytest.importorskip("pyogrio")
    triangle, square = lonlat_triangle_and_square()
    pyogrio.raw.write(
        str(tmp_path / "areas.shp"),
        geometry=shapely.to_wkb([triangle, square]),
        field_data=[np.array(["tri", "square"], dtype=object)],
        fields=["name"],
        geometry_type="Polygon",
        crs="EPSG:4326",
        driver="ESRI Shapefile",
    )
    app = make_geo_app(
        make_app,
        upstream,
        "{datasource: areas.shp, where: \"name = 'tri'\", srs: 'EPSG:4326'}",
    )
    assert (tile(app, "geo", NE)[:, :, 3] == 0).all()
    assert upstream.requests == []
    tile(app, "geo", CROSSING)
    assert len(upstream.requests) == 1
    # without the filter the square makes the north-east tile a candidate
    shutil.rmtree(tmp_path / "cache_data")
    unfiltered = make_geo_app(make_app, upstream, "{datasource: areas.shp}")
    tile(unfiltered, "geo", NE)
    assert len(upstream.requests) == 2


@pytest.mark.parametrize(
    ("coverage", "files", "message"),
    [
        (
            "{datasource: missing.wkt, srs: 'EPSG:3857'}",
            {},
            r"^sources\.geo_wms\.coverage\.datasource: file not found: .*missing\.wkt$",
        ),
        (
            "{datasource: bad.wkt, srs: 'EPSG:3857'}",
            {"bad.wkt": TRIANGLE_WKT + "POLYGON((0 0, 1\n"},
            r"^sources\.geo_wms\.coverage\.datasource: invalid WKT in .*bad\.wkt line 2",
        ),
        (
            "{datasource: area.wkt, srs: 'EPSG:999999'}",
            {"area.wkt": TRIANGLE_WKT},
            r"^sources\.geo_wms\.coverage\.srs: unknown srs 'EPSG:999999'",
        ),
        (
            "{union: [{bbox: [0, 0, 1, 1]}, {polygons: nothere.txt}]}",
            {},
            r"^sources\.geo_wms\.coverage\.union\[1\]\.polygons: file not found",
        ),
    ],
)
def test_coverage_errors_name_the_key_path(  # type: ignore[no-untyped-def]
    make_app, upstream: FakeUpstream, coverage: str, files: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_geo_app(make_app, upstream, coverage, **files)
