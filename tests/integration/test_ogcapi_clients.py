"""Real OGC API clients against our /ogcapi over HTTP: OWSLib and GDAL's OGCAPI driver.

OWSLib (``owslib.ogcapi.maps.Maps``, built on ``API``/``Collections``) reads the landing
page, conformance, the OpenAPI document, collections and fetches a map. OWSLib has no
OGC API Tiles client, so tiles are fetched by following the tileset's own links.

GDAL: rasterio's bundled GDAL has no OGCAPI driver, so Debian's ``gdal_translate``
is used. Its ``API=MAP`` mode reads a small window of a collection's map. Its
``API=TILES`` mode cannot parse the tile matrix set documents (GDAL 3.6 fails with
"Invalid tiling matrix set name" against MapProxy 7 as well), so that mode is not
tested here.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from fakes.fake_upstream import FakeUpstream, image_handler

try:
    from .serving import ThreadServer
except ImportError:
    from serving import ThreadServer

pytestmark = pytest.mark.integration

RED = (255, 0, 0)

CONFIG = """
services:
  ogcapi:
    default_dataset_layers: [red]
layers:
  - name: red
    title: Red layer
    sources: [red_cache]
caches:
  red_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [red_wms]
sources:
  red_wms:
    type: wms
    req: {{url: "{url}/red", layers: red}}
globals:
  cache:
    base_dir: {base_dir}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    tmp = tmp_path_factory.mktemp("ogcapi_clients")
    with FakeUpstream(image_handler((255, 0, 0, 255))) as upstream:
        config = tmp / "mapproxy.yaml"
        text = CONFIG.format(url=upstream.url, base_dir=tmp / "cache")
        config.write_text(textwrap.dedent(text))
        with ThreadServer(config) as srv:
            yield srv


def _rgb(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGBA").convert("RGB")


def test_owslib_maps(server: ThreadServer) -> None:
    maps_module = pytest.importorskip("owslib.ogcapi.maps")
    client = maps_module.Maps(f"{server.url}/ogcapi")
    assert any(link["rel"] == "conformance" for link in client.links)
    conformance = client.conformance()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-maps-1/1.0/conf/core" in conformance
    assert client.api()["openapi"].startswith("3.0")
    assert [c["id"] for c in client.collections()["collections"]] == ["red"]
    assert client.maps() == ["red"]
    assert client.collection("red")["title"] == "Red layer"
    image = _rgb(client.map("red", bbox=[-10, -10, 10, 10], width=40, height=30).read())
    assert image.size == (40, 30)
    assert image.getpixel((20, 15)) == RED


def test_tile_through_tileset_links(server: ThreadServer) -> None:
    """No OWSLib tiles client: follow the collection's tilesets links like a client would."""
    pytest.importorskip("owslib.ogcapi.maps")
    from owslib.ogcapi.maps import Maps

    collection = Maps(f"{server.url}/ogcapi").collection("red")
    tilesets_href = next(
        link["href"]
        for link in collection["links"]
        if link["rel"].endswith("tilesets-map") and link["type"] == "application/json"
    )
    with urllib.request.urlopen(tilesets_href, timeout=30) as response:
        tilesets = json.load(response)["tilesets"]
    tileset = next(t for t in tilesets if t.get("tileMatrixSetURI", "").endswith("WebMercatorQuad"))
    template = next(link["href"] for link in tileset["links"] if link["rel"] == "item")
    url = template.format(tileMatrix=1, tileRow=0, tileCol=1)
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.headers["Content-Type"] == "image/png"
        image = _rgb(response.read())
    assert image.size == (256, 256)
    assert image.getpixel((128, 128)) == RED


@pytest.fixture
def gdal_env(tmp_path: Path) -> dict[str, str]:
    if shutil.which("gdal_translate") is None:
        pytest.fail(
            "gdal_translate not found: run scripts/install-system-deps.sh (gdal-bin)",
            pytrace=False,
        )
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    env.update(
        {
            "HOME": str(tmp_path),
            "GDAL_HTTP_TIMEOUT": "15",
            "GDAL_HTTP_MAX_RETRY": "0",
            "CPL_VSIL_CURL_USE_CACHE": "NO",
            "GDAL_DEFAULT_WMS_CACHE_PATH": str(tmp_path / "gdalwmscache"),
            "GDAL_ENABLE_WMS_CACHE": "NO",
            "GDAL_PAM_ENABLED": "NO",
        }
    )
    return env


def test_gdal_ogcapi_map_window(
    server: ThreadServer, gdal_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "window.png"
    args = [
        "gdal_translate",
        "-q",
        "-oo",
        "API=MAP",
        "-projwin",
        "-10",
        "10",
        "10",
        "-10",
        "-outsize",
        "32",
        "32",
        "-of",
        "PNG",
        f"OGCAPI:{server.url}/ogcapi/collections/red",
        str(out),
    ]
    proc = subprocess.run(
        args, env=gdal_env, cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    image = _rgb(out.read_bytes())
    assert image.size == (32, 32)
    assert image.getpixel((16, 16)) == RED
