"""GDAL (rasterio's bundled build) as a real client: WMTS, WMS and TMS/XYZ drivers.

The server runs over real HTTP (ThreadServer) with a cache fed by the MapServer
fixture; every window GDAL reads is compared with MapServer's own rendering of the
bounds GDAL computed for it, so a wrong capabilities document or tile addressing shows.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

try:
    from .serving import ThreadServer
except ImportError:
    from serving import ThreadServer

rasterio = pytest.importorskip("rasterio")
from rasterio.windows import Window  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    # rasterio's own window arithmetic, not ours
    pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning"),
]

HALF_WORLD = 20037508.342789244

CONFIG = """
services:
  wms:
    srs: ['EPSG:4326', 'EPSG:3857']
    md: {{title: GDAL client test}}
  wmts:
  tms:
layers:
  - name: cached
    title: Cached MapServer raster
    sources: [ms_cache]
caches:
  ms_cache:
    grids: [GLOBAL_WEBMERCATOR, GLOBAL_GEODETIC]
    sources: [ms_wms]
    meta_size: [4, 4]
    meta_buffer: 0
sources:
  ms_wms:
    type: wms
    supported_srs: ['EPSG:4326', 'EPSG:3857']
    req:
      url: {url}
      layers: raster
globals:
  cache:
    base_dir: {base_dir}
  image:
    paletted: false
  http:
    client_timeout: 20
"""

GDAL_OPTIONS = {
    "GDAL_HTTP_TIMEOUT": "20",
    "GDAL_HTTP_MAX_RETRY": "0",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".xml,.png",
    "GDAL_HTTP_PROXY": "",
}


def check_drivers() -> None:
    with rasterio.Env() as env:
        drivers = env.drivers()
    missing = {"WMS", "WMTS"} - set(drivers)
    assert not missing, f"rasterio's GDAL lacks the {missing} driver(s)"


@pytest.fixture
def server(tmp_path: Path, mapserver) -> Iterator[ThreadServer]:  # type: ignore[no-untyped-def]
    check_drivers()
    config = tmp_path / "mapproxy.yaml"
    config.write_text(
        textwrap.dedent(CONFIG.format(url=mapserver.url, base_dir=tmp_path / "cache_data"))
    )
    with ThreadServer(config) as running, rasterio.Env(**GDAL_OPTIONS):
        yield running


def mapserver_rgb(mapserver, srs: str, bounds, width: int, height: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """MapServer's own rendering of ``bounds`` (left, bottom, right, top) as RGB."""
    bbox = ",".join(repr(float(v)) for v in bounds)
    data = mapserver.getmap(SRS=srs, BBOX=bbox, WIDTH=width, HEIGHT=height)
    image = Image.open(io.BytesIO(data))
    return np.asarray(image.convert("RGB")).astype(float)


def read_rgb(dataset, window: Window) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The first three bands of ``window`` as (rows, cols, RGB)."""
    data = dataset.read([1, 2, 3], window=window)
    return np.transpose(data, (1, 2, 0)).astype(float)


def mean_difference(left: np.ndarray, right: np.ndarray) -> float:
    assert left.shape == right.shape
    return float(np.abs(left - right).mean())


def assert_not_uniform(pixels: np.ndarray) -> None:
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20


# --- WMTS -------------------------------------------------------------------------------


def test_gdal_wmts_driver_reads_tiles_matching_mapserver(server: ThreadServer, mapserver) -> None:  # type: ignore[no-untyped-def]
    url = (
        f"WMTS:{server.url}/wmts/1.0.0/WMTSCapabilities.xml,"
        "layer=cached,tilematrixset=GLOBAL_WEBMERCATOR"
    )
    with rasterio.open(url) as full:
        assert full.crs.to_epsg() == 3857
        assert full.bounds.left == pytest.approx(-HALF_WORLD)
        assert full.bounds.top == pytest.approx(HALF_WORLD)
        assert full.bounds.right == pytest.approx(HALF_WORLD, rel=1e-9)
        assert full.count >= 3
        levels = len(full.overviews(1)) + 1
    assert levels == 20  # GLOBAL_WEBMERCATOR has 20 tile matrices

    # overview_level n is tile matrix (levels - 2 - n): zoom level 3 is 2048 px wide
    with rasterio.open(url, overview_level=levels - 2 - 3) as level3:
        assert (level3.width, level3.height) == (2048, 2048)
        window = Window(1024, 512, 200, 150)  # east of 0, north of the equator
        bounds = level3.window_bounds(window)
        resolution = 2 * HALF_WORLD / 2048
        assert bounds == pytest.approx(
            (0.0, HALF_WORLD - 662 * resolution, 200 * resolution, HALF_WORLD - 512 * resolution),
            abs=1e-3,
        )
        pixels = read_rgb(level3, window)
    assert pixels.shape == (150, 200, 3)
    assert_not_uniform(pixels)
    reference = mapserver_rgb(mapserver, "EPSG:3857", bounds, 200, 150)
    assert mean_difference(pixels, reference) < 10


# --- WMS --------------------------------------------------------------------------------


def gdal_wms_xml(server_url: str, version: str) -> str:
    srs_tag = "SRS" if version == "1.1.1" else "CRS"
    # WMS 1.3.0 uses the latitude/longitude axis order of EPSG:4326; GDAL needs telling
    bbox_order = "xyXY" if version == "1.1.1" else "yxYX"
    return textwrap.dedent(
        f"""\
        <GDAL_WMS>
          <Service name="WMS">
            <Version>{version}</Version>
            <ServerUrl>{server_url}/service?</ServerUrl>
            <{srs_tag}>EPSG:4326</{srs_tag}>
            <ImageFormat>image/png</ImageFormat>
            <Layers>cached</Layers>
            <Styles></Styles>
            <BBoxOrder>{bbox_order}</BBoxOrder>
          </Service>
          <DataWindow>
            <UpperLeftX>-180.0</UpperLeftX>
            <UpperLeftY>90.0</UpperLeftY>
            <LowerRightX>180.0</LowerRightX>
            <LowerRightY>-90.0</LowerRightY>
            <SizeX>1440</SizeX>
            <SizeY>720</SizeY>
          </DataWindow>
          <Projection>EPSG:4326</Projection>
          <BandsCount>3</BandsCount>
          <BlockSizeX>256</BlockSizeX>
          <BlockSizeY>256</BlockSizeY>
        </GDAL_WMS>
        """
    )


@pytest.mark.parametrize("version", ["1.1.1", "1.3.0"])
def test_gdal_wms_driver_reads_a_window_matching_mapserver(
    server: ThreadServer, mapserver, tmp_path: Path, version: str
) -> None:  # type: ignore[no-untyped-def]
    description = tmp_path / f"wms-{version}.xml"
    description.write_text(gdal_wms_xml(server.url, version))
    with rasterio.open(description) as dataset:
        assert (dataset.width, dataset.height) == (1440, 720)
        # 0.25 degree pixels: columns 768..1024 are 12..76 E, rows 160..288 are 50..18 N
        window = Window(768, 160, 256, 128)
        bounds = dataset.window_bounds(window)
        assert bounds == pytest.approx((12.0, 18.0, 76.0, 50.0))
        pixels = read_rgb(dataset, window)
    assert_not_uniform(pixels)
    reference = mapserver_rgb(mapserver, "EPSG:4326", bounds, 256, 128)
    assert mean_difference(pixels, reference) < 10


def test_gdal_wms_connection_string(server: ThreadServer, mapserver) -> None:  # type: ignore[no-untyped-def]
    url = (
        f"WMS:{server.url}/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetMap&LAYERS=cached"
        "&SRS=EPSG:4326&BBOX=-180,-90,180,90&FORMAT=image/png"
    )
    with rasterio.open(url) as dataset:
        assert dataset.crs.to_epsg() == 4326
        assert dataset.bounds == pytest.approx((-180.0, -90.0, 180.0, 90.0))
        # the whole world at 512 x 256: GDAL picks one of its overview levels
        data = dataset.read([1, 2, 3], out_shape=(3, 256, 512))
    pixels = np.transpose(data, (1, 2, 0)).astype(float)
    assert_not_uniform(pixels)
    reference = mapserver_rgb(mapserver, "EPSG:4326", (-180, -90, 180, 90), 512, 256)
    assert mean_difference(pixels, reference) < 12


# --- TMS and XYZ through GDAL_WMS -------------------------------------------------------------


def gdal_tiles_xml(url_template: str, tile_count: int, y_origin: str, level: int) -> str:
    return textwrap.dedent(
        f"""\
        <GDAL_WMS>
          <Service name="TMS">
            <ServerUrl>{url_template}</ServerUrl>
          </Service>
          <DataWindow>
            <UpperLeftX>{-HALF_WORLD}</UpperLeftX>
            <UpperLeftY>{HALF_WORLD}</UpperLeftY>
            <LowerRightX>{HALF_WORLD}</LowerRightX>
            <LowerRightY>{-HALF_WORLD}</LowerRightY>
            <TileLevel>{level}</TileLevel>
            <TileCountX>{tile_count}</TileCountX>
            <TileCountY>{tile_count}</TileCountY>
            <YOrigin>{y_origin}</YOrigin>
          </DataWindow>
          <Projection>EPSG:3857</Projection>
          <BlockSizeX>256</BlockSizeX>
          <BlockSizeY>256</BlockSizeY>
          <BandsCount>3</BandsCount>
        </GDAL_WMS>
        """
    )


@pytest.mark.parametrize(
    ("name", "path", "tile_count", "y_origin", "level"),
    [
        # TMS: level 0 has 2x2 tiles (global-mercator profile), rows from the south
        ("tms", "/tms/1.0.0/cached/EPSG3857/${z}/${x}/${y}.png", 2, "bottom", 2),
        # XYZ: internal levels (one tile at 0), rows from the north with ?origin=nw
        ("xyz", "/tiles/cached/EPSG3857/${z}/${x}/${y}.png?origin=nw", 1, "top", 3),
    ],
)
def test_gdal_tms_service_reads_tiles_matching_mapserver(
    server: ThreadServer,
    mapserver,
    tmp_path: Path,
    name: str,
    path: str,
    tile_count: int,
    y_origin: str,
    level: int,
) -> None:  # type: ignore[no-untyped-def]
    description = tmp_path / f"{name}.xml"
    description.write_text(
        gdal_tiles_xml(server.url + path.replace("&", "&amp;"), tile_count, y_origin, level)
    )
    with rasterio.open(description) as dataset:
        # both describe web mercator zoom level 3 at full resolution
        assert (dataset.width, dataset.height) == (2048, 2048)
        # south-west of the centre: rows 1100.. are south of the equator
        window = Window(700, 1100, 160, 120)
        bounds = dataset.window_bounds(window)
        resolution = 2 * HALF_WORLD / 2048
        assert bounds == pytest.approx(
            (
                -HALF_WORLD + 700 * resolution,
                HALF_WORLD - 1220 * resolution,
                -HALF_WORLD + 860 * resolution,
                HALF_WORLD - 1100 * resolution,
            )
        )
        pixels = read_rgb(dataset, window)
    assert_not_uniform(pixels)
    reference = mapserver_rgb(mapserver, "EPSG:3857", bounds, 160, 120)
    assert mean_difference(pixels, reference) < 10
