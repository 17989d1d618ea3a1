"""The whole stack against a real MapServer WMS: clients, images, meta tile requests."""

from __future__ import annotations

import io
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from owslib.wms import WebMapService
from owslib.wmts import WebMapTileService
from PIL import Image

try:
    from .serving import ProcessServer, ThreadServer, fetch
except ImportError:
    from serving import ProcessServer, ThreadServer, fetch

pytestmark = pytest.mark.integration

CONFIG = """
services:
  wms:
    srs: ['EPSG:4326', 'EPSG:3857', 'EPSG:25832']
    md: {{title: Integration WMS}}
  wmts:
  tms:
  demo:
layers:
  - name: cached
    title: Cached MapServer raster
    sources: [ms_cache]
  - name: direct
    title: MapServer raster, uncached
    sources: [ms_wms]
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
  http:
    client_timeout: 20
"""


def write_config(tmp_path: Path, mapserver_url: str) -> Path:
    path = tmp_path / "mapproxy.yaml"
    path.write_text(
        textwrap.dedent(CONFIG.format(url=mapserver_url, base_dir=tmp_path / "cache_data"))
    )
    return path


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    left = np.asarray(a.convert("RGB"), dtype=np.float64)
    right = np.asarray(b.convert("RGB"), dtype=np.float64)
    return float(np.abs(left - right).mean())


@pytest.fixture
def config(tmp_path: Path, mapserver) -> Path:  # type: ignore[no-untyped-def]
    return write_config(tmp_path, mapserver.url)


def test_owslib_reads_wms_capabilities_and_gets_maps(config: Path, mapserver) -> None:  # type: ignore[no-untyped-def]
    with ThreadServer(config) as server:
        for version in ("1.1.1", "1.3.0"):
            wms = WebMapService(server.url + "/service", version=version)
            assert wms.identification.title == "Integration WMS"
            assert {"cached", "direct"} <= set(wms.contents)
            bbox = (5.0, 45.0, 15.0, 55.0)
            response = wms.getmap(
                layers=["cached"],
                srs="EPSG:4326",
                bbox=bbox,
                size=(400, 400),
                format="image/png",
            )
            image = decode(response.read())
            assert image.size == (400, 400)
            reference = decode(mapserver.getmap(BBOX="5,45,15,55", WIDTH=400, HEIGHT=400))
            assert mean_difference(image, reference) < 5


@pytest.mark.parametrize("layer", ["cached", "direct"])
def test_getmap_in_utm_matches_mapserver_rendering(config: Path, mapserver, layer: str) -> None:  # type: ignore[no-untyped-def]
    bbox = "300000,5000000,900000,5600000"
    with ThreadServer(config) as server:
        status, headers, body = fetch(
            f"{server.url}/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetMap&LAYERS={layer}"
            f"&STYLES=&SRS=EPSG:25832&BBOX={bbox}&WIDTH=300&HEIGHT=300&FORMAT=image/jpeg"
        )
    assert status == 200
    assert headers["Content-Type"] == "image/jpeg"
    image = decode(body)
    assert image.format == "JPEG"
    assert image.size == (300, 300)
    reference = decode(mapserver.getmap(SRS="EPSG:25832", BBOX=bbox, WIDTH=300, HEIGHT=300))
    assert mean_difference(image, reference) < 10


def test_owslib_reads_wmts_capabilities_and_tiles_match_mapserver(config: Path, mapserver) -> None:  # type: ignore[no-untyped-def]
    with ThreadServer(config) as server:
        wmts = WebMapTileService(server.url + "/wmts/1.0.0/WMTSCapabilities.xml")
        assert "cached" in wmts.contents
        assert "GLOBAL_WEBMERCATOR" in wmts.tilematrixsets
        tile = wmts.gettile(
            layer="cached",
            tilematrixset="GLOBAL_WEBMERCATOR",
            tilematrix="02",
            row=1,
            column=2,
            format="image/png",
        )
        image = decode(tile.read())
        assert image.size == (256, 256)
        # tile 2/2/1 (nw numbering) of web mercator covers x 0..10018754, y 0..10018754
        extent = 20037508.342789244
        reference = decode(
            mapserver.getmap(
                SRS="EPSG:3857", BBOX=f"0,0,{extent / 2},{extent / 2}", WIDTH=256, HEIGHT=256
            )
        )
        assert mean_difference(image, reference) < 10
        kvp = WebMapTileService(server.url + "/service?SERVICE=WMTS&REQUEST=GetCapabilities")
        assert "cached" in kvp.contents


def test_tms_tile_and_tiles_url_agree(config: Path, mapserver) -> None:  # type: ignore[no-untyped-def]
    with ThreadServer(config) as server:
        # TMS level 1 = internal level 2 for global-mercator; TMS rows count from the south.
        status_tms, _, tms_body = fetch(f"{server.url}/tms/1.0.0/cached/EPSG3857/1/2/2.png")
        status_xyz, _, xyz_body = fetch(f"{server.url}/tiles/cached/EPSG3857/2/2/1.png")
    assert status_tms == status_xyz == 200
    assert mean_difference(decode(tms_body), decode(xyz_body)) == 0


def test_meta_tile_is_requested_once_for_its_16_tiles(config: Path, mapserver) -> None:  # type: ignore[no-untyped-def]
    urls = [f"/wmts/cached/GLOBAL_WEBMERCATOR/04/{x}/{y}.png" for x in range(4) for y in range(4)]
    with ThreadServer(config) as server:
        for url in urls:
            status, _, _ = fetch(server.url + url)
            assert status == 200
    assert mapserver.count(request="GetMap") == 1


def test_concurrent_requests_share_one_meta_tile(config: Path, mapserver) -> None:  # type: ignore[no-untyped-def]
    urls = [
        f"/wmts/cached/GLOBAL_WEBMERCATOR/04/{x}/{y}.png" for x in range(4, 8) for y in range(4)
    ]
    with ThreadServer(config) as server, ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda url: fetch(server.url + url), urls))
    assert [status for status, _, _ in results] == [200] * 16
    assert mapserver.count(request="GetMap") == 1


def test_two_server_processes_share_one_meta_tile(config: Path, mapserver) -> None:  # type: ignore[no-untyped-def]
    mapserver.delay = 0.5  # keep the first request in flight while the others arrive
    urls = [
        f"/wmts/cached/GLOBAL_WEBMERCATOR/04/{x}/{y}.png" for x in range(8, 12) for y in range(4)
    ]
    with ProcessServer(config) as first, ProcessServer(config) as second:
        targets = [(first if i % 2 else second).url + url for i, url in enumerate(urls)]
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(fetch, targets))
    assert [status for status, _, _ in results] == [200] * 16
    assert mapserver.count(request="GetMap") == 1
    cache_dir = config.parent / "cache_data" / "ms_cache_EPSG3857" / "04"
    assert len(list(cache_dir.rglob("*.png"))) == 16


def test_upstream_down_gives_clean_errors_and_server_keeps_serving(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/")  # nothing listens on port 9
    with ThreadServer(config) as server:
        status, headers, body = fetch(
            f"{server.url}/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetMap&LAYERS=direct"
            "&STYLES=&SRS=EPSG:4326&BBOX=0,0,10,10&WIDTH=100&HEIGHT=100&FORMAT=image/png"
        )
        assert status == 500
        assert headers["Content-Type"] == "application/vnd.ogc.se_xml"
        assert b"ServiceException" in body
        assert b"No response from URL" in body
        status, _, body = fetch(f"{server.url}/wmts/cached/GLOBAL_WEBMERCATOR/01/0/0.png")
        assert status == 500
        assert b"ExceptionReport" in body
        status, _, body = fetch(f"{server.url}/")
        assert status == 200
