"""The bundled example (examples/world): builds, and serves a plausible world map."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from werkzeug.test import Client

from mapproxy.wsgiapp import make_wsgi_app

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "world" / "mapproxy.yaml"
RASTER = REPO / "examples" / "data" / "natural-earth-world.tif"
HALF_WORLD = 20037508.342789244


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example, laid out as in the repository, so no cache lands there."""
    root = tmp_path_factory.mktemp("example")
    (root / "world").mkdir()
    (root / "data").mkdir()
    shutil.copy(EXAMPLE, root / "world" / "mapproxy.yaml")
    shutil.copy(RASTER, root / "data" / RASTER.name)
    return root


@pytest.fixture(scope="module")
def client(example_dir: Path) -> Client:
    return Client(make_wsgi_app(str(example_dir / "world" / "mapproxy.yaml")))


@pytest.fixture(scope="module")
def raster() -> np.ndarray:
    """The example raster as (rows, cols, RGB): 0.5 degree pixels from -180/90."""
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(RASTER) as dataset:
        return np.transpose(dataset.read(), (1, 2, 0))


def rgb(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(image.convert("RGB")).astype(int)


def is_ocean_blue(pixel: np.ndarray) -> bool:
    red, green, blue = (int(v) for v in pixel)
    return blue > red + 40 and blue > green


def getmap(srs: str, bbox: str, width: int, height: int) -> dict[str, str]:
    return {
        "SERVICE": "WMS",
        "REQUEST": "GetMap",
        "VERSION": "1.1.1",
        "LAYERS": "world",
        "STYLES": "",
        "SRS": srs,
        "BBOX": bbox,
        "WIDTH": str(width),
        "HEIGHT": str(height),
        "FORMAT": "image/png",
    }


def test_example_builds_with_all_its_services(client: Client) -> None:
    assert client.get("/").status_code == 200
    assert client.get("/demo/").status_code == 200
    caps = client.get("/service", query_string={"SERVICE": "WMS", "REQUEST": "GetCapabilities"})
    assert caps.status_code == 200
    assert b"MapProxy example: Natural Earth world" in caps.data
    assert client.get("/wmts/1.0.0/WMTSCapabilities.xml").status_code == 200
    assert client.get("/tms/1.0.0/world/webmercator").status_code == 200


def test_wms_world_map_shows_oceans_and_land(
    client: Client, example_dir: Path, raster: np.ndarray
) -> None:
    response = client.get("/service", query_string=getmap("EPSG:4326", "-180,-90,180,90", 720, 360))
    assert response.status_code == 200, response.text[:300]
    assert response.mimetype == "image/png"
    pixels = rgb(response.data)
    assert pixels.shape == (360, 720, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "uniform image"

    def at(lon: float, lat: float) -> np.ndarray:
        return pixels[int((90 - lat) / 0.5), int((lon + 180) / 0.5)]

    for lon, lat in [(-150, 0), (-140, -20), (-30, 30), (70, -30)]:  # Pacific, Atlantic, Indian
        assert is_ocean_blue(at(lon, lat)), (lon, lat, at(lon, lat))
    for lon, lat in [(10, 23), (20, 25), (133, -25)]:  # Sahara, Australia
        pixel = at(lon, lat)
        assert not is_ocean_blue(pixel) and pixel[0] >= pixel[2], (lon, lat, pixel)

    # same grid as the raster: the whole picture must match it, not just a few places
    assert np.abs(pixels - raster.astype(int)).mean() < 12
    # and the cache was filled below the example's own directory
    assert any((example_dir / "world" / "cache_data").rglob("*.png"))


def test_wmts_tms_tiles_and_wms_agree(client: Client) -> None:
    # north-west counted WMTS tile 2/0/1 covers the north Pacific and North America
    wmts = client.get("/wmts/world/webmercator/2/0/1.png")
    # TMS: use_grid_names, level 1 = internal level 2, rows from the south: 3 - 1 = 2
    tms = client.get("/tms/1.0.0/world/webmercator/1/0/2.png")
    # /tiles follows services.tms.origin (nw in the example) and internal levels
    tiles = client.get("/tiles/world/webmercator/2/0/1.png")
    for response in (wmts, tms, tiles):
        assert response.status_code == 200
        assert response.mimetype == "image/png"
    assert tms.data == wmts.data == tiles.data

    tile = rgb(wmts.data)
    assert tile.shape == (256, 256, 3)
    assert is_ocean_blue(tile[200, 20])  # about 168 W, 10 N: Pacific
    assert not is_ocean_blue(tile[60, 200])  # about 100 W, 60 N: Canada

    # WMS in the tile's own SRS and bbox gives the same picture
    minx, maxx = -HALF_WORLD, -HALF_WORLD / 2
    miny, maxy = 0.0, HALF_WORLD / 2
    response = client.get(
        "/service", query_string=getmap("EPSG:3857", f"{minx},{miny},{maxx},{maxy}", 256, 256)
    )
    assert response.status_code == 200
    assert np.abs(rgb(response.data) - tile).mean() < 3


def test_tiles_of_other_areas_differ(client: Client) -> None:
    first = client.get("/wmts/world/webmercator/2/0/1.png")
    second = client.get("/wmts/world/webmercator/2/2/1.png")
    assert first.status_code == second.status_code == 200
    assert np.abs(rgb(first.data) - rgb(second.data)).mean() > 5
