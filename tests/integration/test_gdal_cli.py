"""GDAL's command-line clients (Debian's gdal-bin) against our server over real HTTP.

``gdalinfo`` opens our WMS (``WMS:`` GetMap URL) and WMTS (``WMTS:`` capabilities URL) and
must report the georeferencing the services advertise; ``gdal_translate -projwin -outsize``
then fetches small GeoTIFFs through both drivers, which are compared pixel by pixel with
MapServer's own rendering of the same bbox. The layer is a cache fed by the MapServer
fixture. GDAL's disk caches go to a temporary directory, never to $HOME.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

try:
    from .serving import ThreadServer
except ImportError:
    from serving import ThreadServer

pytestmark = pytest.mark.integration

HALF_WORLD = 20037508.342789244
INSTALL_HINT = (
    "GDAL's command-line tools ({missing}) were not found. Run "
    "`scripts/install-system-deps.sh` (as root) to install Debian's gdal-bin package."
)

CONFIG = """
services:
  wms:
    srs: ['EPSG:4326', 'EPSG:3857']
    md: {{title: GDAL CLI test}}
  wmts:
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


def gdal_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        missing = ", ".join(t for t in ("gdalinfo", "gdal_translate") if not shutil.which(t))
        pytest.fail(INSTALL_HINT.format(missing=missing or name), pytrace=False)
    return found


@pytest.fixture(scope="module")
def gdal_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for the GDAL tools: short timeouts, no retries, caches in a temp dir."""
    gdal_tool("gdalinfo")
    gdal_tool("gdal_translate")
    home = tmp_path_factory.mktemp("gdal_home")
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    env.update(
        {
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / "cache"),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "GDAL_HTTP_TIMEOUT": "15",
            "GDAL_HTTP_CONNECTTIMEOUT": "5",
            "GDAL_HTTP_MAX_RETRY": "0",
            "GDAL_DEFAULT_WMS_CACHE_PATH": str(home / "gdalwmscache"),
            "GDAL_ENABLE_WMS_CACHE": "NO",
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "CPL_VSIL_CURL_USE_CACHE": "NO",
            "GDAL_PAM_ENABLED": "NO",  # no .aux.xml files next to the outputs
        }
    )
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mapserver_wms: Any) -> Iterator[ThreadServer]:
    workdir = tmp_path_factory.mktemp("gdal_cli")
    config = workdir / "mapproxy.yaml"
    config.write_text(
        textwrap.dedent(CONFIG.format(url=mapserver_wms.url, base_dir=workdir / "cache_data"))
    )
    with ThreadServer(config) as running:
        yield running


def run(args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180, check=False)
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}", pytrace=False
        )
    return proc.stdout


def gdalinfo(dataset: str, env: dict[str, str]) -> dict[str, Any]:
    return json.loads(run([gdal_tool("gdalinfo"), "-json", "-nomd", dataset], env))


def epsg_of(info: dict[str, Any]) -> str:
    wkt = info["coordinateSystem"]["wkt"]
    # the last ID of the WKT2 string is the CRS's own
    tail = wkt[wkt.rfind('ID["EPSG",') :]
    return "EPSG:" + tail.split(",")[1].split("]")[0]


def wms_dataset(server: ThreadServer, bbox: str = "-180,-90,180,90") -> str:
    return (
        f"WMS:{server.url}/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetMap"
        f"&LAYERS=cached&SRS=EPSG:4326&BBOX={bbox}&FORMAT=image/png"
    )


def wmts_dataset(server: ThreadServer) -> str:
    return (
        f"WMTS:{server.url}/wmts/1.0.0/WMTSCapabilities.xml,"
        "layer=cached,tilematrixset=GLOBAL_WEBMERCATOR"
    )


def translate(
    dataset: str,
    projwin: tuple[float, float, float, float],
    size: int,
    out: Path,
    env: dict[str, str],
) -> Image.Image:
    """``gdal_translate -projwin ulx uly lrx lry -outsize`` to an RGB GeoTIFF, read with Pillow."""
    ulx, uly, lrx, lry = projwin
    run(
        [
            gdal_tool("gdal_translate"),
            "-q",
            "-of",
            "GTiff",
            "-co",
            "COMPRESS=NONE",
            "-co",
            "TILED=NO",
            "-b",
            "1",
            "-b",
            "2",
            "-b",
            "3",
            "-projwin",
            *(repr(v) for v in (ulx, uly, lrx, lry)),
            "-outsize",
            str(size),
            str(size),
            dataset,
            str(out),
        ],
        env,
    )
    image = Image.open(out)
    image.load()
    return image.convert("RGB")


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    left = np.asarray(a.convert("RGB"), dtype=np.float64)
    right = np.asarray(b.convert("RGB"), dtype=np.float64)
    assert left.shape == right.shape
    return float(np.abs(left - right).mean())


def mapserver_image(mapserver: Any, srs: str, bbox: tuple[float, ...], size: int) -> Image.Image:
    data = mapserver.getmap(SRS=srs, BBOX=",".join(repr(v) for v in bbox), WIDTH=size, HEIGHT=size)
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def test_gdalinfo_wms_georeferencing(server: ThreadServer, gdal_env: dict[str, str]) -> None:
    info = gdalinfo(wms_dataset(server), gdal_env)
    print("gdalinfo WMS:", info["size"], info["geoTransform"], info["cornerCoordinates"])
    assert info["driverShortName"] == "WMS"
    assert epsg_of(info) == "EPSG:4326"
    width, height = info["size"]
    assert width == 2 * height  # a 360 x 180 degree window
    origin_x, res_x, _, origin_y, _, res_y = info["geoTransform"]
    assert (origin_x, origin_y) == pytest.approx((-180.0, 90.0))
    assert res_x == pytest.approx(360.0 / width)
    assert res_y == pytest.approx(-180.0 / height)
    corners = info["cornerCoordinates"]
    assert corners["lowerRight"] == pytest.approx([180.0, -90.0])
    assert len(info["bands"]) >= 3
    assert info["bands"][0].get("overviews"), "GDAL builds overviews for WMS"


def test_gdalinfo_wmts_georeferencing(server: ThreadServer, gdal_env: dict[str, str]) -> None:
    info = gdalinfo(wmts_dataset(server), gdal_env)
    print("gdalinfo WMTS:", info["size"], info["geoTransform"], info["cornerCoordinates"])
    assert info["driverShortName"] == "WMTS"
    assert epsg_of(info) == "EPSG:3857"
    origin_x, res_x, _, origin_y, _, res_y = info["geoTransform"]
    width, height = info["size"]
    # the finest GLOBAL_WEBMERCATOR matrix: 256 px tiles, 2**level tiles per row
    level = (width // 256).bit_length() - 1
    assert width == 256 * 2**level
    assert res_x == pytest.approx(2 * HALF_WORLD / width, rel=1e-9)
    assert res_y == pytest.approx(-res_x, rel=1e-9)
    assert origin_x == pytest.approx(-HALF_WORLD, rel=1e-12)
    # GDAL takes the extent from ows:WGS84BoundingBox (+-85.0511287798066, as MapProxy 7
    # writes it) and rounds it outwards, so the top may gain one row; the pixel grid
    # still lies exactly on the TileMatrix grid.
    extra_rows = (origin_y - HALF_WORLD) / res_x
    assert extra_rows == pytest.approx(round(extra_rows), abs=1e-6)
    assert round(extra_rows) in (0, 1)
    assert height == width + round(extra_rows)
    lower_right = info["cornerCoordinates"]["lowerRight"]
    assert lower_right == pytest.approx([HALF_WORLD, -HALF_WORLD], abs=1e-3)
    overviews = info["bands"][0].get("overviews", [])
    assert len(overviews) == level  # one per coarser matrix


def test_gdal_translate_wms_matches_mapserver(
    server: ThreadServer, gdal_env: dict[str, str], mapserver: Any, tmp_path: Path
) -> None:
    projwin = (0.0, 60.0, 20.0, 40.0)  # the white disk at 10E 50N
    out = tmp_path / "wms.tif"
    image = translate(wms_dataset(server), projwin, 200, out, gdal_env)
    info = gdalinfo(str(out), gdal_env)
    assert info["size"] == [200, 200]
    assert epsg_of(info) == "EPSG:4326"
    assert info["geoTransform"] == pytest.approx([0.0, 0.1, 0.0, 60.0, 0.0, -0.1])
    reference = mapserver_image(mapserver, "EPSG:4326", (0.0, 40.0, 20.0, 60.0), 200)
    diff = mean_difference(image, reference)
    print(f"gdal_translate WMS vs MapServer: mean difference {diff:.3f}")
    assert diff < 2, diff  # observed: 0.000 (pixel-identical)
    assert image.getpixel((100, 100)) == (255, 255, 255)  # disk centre


def test_gdal_translate_wmts_matches_mapserver(
    server: ThreadServer, gdal_env: dict[str, str], mapserver: Any, tmp_path: Path
) -> None:
    # a 2**k tile-aligned window around the white disk: 1/16 of the world's width
    step = 2 * HALF_WORLD / 16
    minx, maxy = -HALF_WORLD + 8 * step, HALF_WORLD - 5 * step  # column 8, rows 5..6 at z4
    projwin = (minx, maxy, minx + 2 * step, maxy - 2 * step)
    out = tmp_path / "wmts.tif"
    image = translate(wmts_dataset(server), projwin, 256, out, gdal_env)
    info = gdalinfo(str(out), gdal_env)
    assert info["size"] == [256, 256]
    assert epsg_of(info) == "EPSG:3857"
    res = 2 * step / 256
    assert info["geoTransform"] == pytest.approx([minx, res, 0.0, maxy, 0.0, -res], abs=1e-3)
    reference = mapserver_image(
        mapserver, "EPSG:3857", (minx, maxy - 2 * step, minx + 2 * step, maxy), 256
    )
    diff = mean_difference(image, reference)
    print(f"gdal_translate WMTS vs MapServer: mean difference {diff:.3f}")
    assert diff < 2, diff  # observed: 0.000 (pixel-identical)
