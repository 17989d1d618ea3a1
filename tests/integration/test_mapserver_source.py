"""mapserver sources run the real ``mapserv`` binary with the MapServer fixture's mapfile."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image
from werkzeug.test import Client

try:
    from .mapserver import MapServerWMS
except ImportError:
    from mapserver import MapServerWMS

CONFIG = """
services:
  wms:
    md: {{title: t}}
    srs: ['EPSG:4326', 'EPSG:3857']
layers:
  - name: ms
    title: ms
    sources: [ms]
  - name: tagged
    title: tagged
    sources: ['ms:vector']
sources:
  ms:
    type: mapserver
    req:
      map: {mapfile}
      layers: raster,vector
    wms_opts:
      featureinfo: true
    mapserver:
      binary: {binary}
      working_dir: {workdir}
"""

GETMAP = (
    "/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&STYLES=&SRS=EPSG:4326"
    "&BBOX=-180,-90,180,90&WIDTH=360&HEIGHT=180&FORMAT=image/png"
)


@pytest.fixture
def client(
    make_app: Callable[..., Client], mapserver: MapServerWMS, monkeypatch: pytest.MonkeyPatch
) -> Client:
    # MapServer 8 needs its config file; the source passes the environment on
    monkeypatch.setenv("MAPSERVER_CONFIG_FILE", str(mapserver.config_file))
    monkeypatch.setenv("MS_MAP_PATTERN", ".*")
    return make_app(
        CONFIG.format(
            mapfile=mapserver.mapfile, binary=mapserver.mapserv, workdir=mapserver.workdir
        )
    )


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_getmap_pixels_equal_mapserver_over_http(client: Client, mapserver: MapServerWMS) -> None:
    response = client.get(GETMAP + "&LAYERS=ms")
    assert response.status_code == 200, response.data[:500]
    expected = mapserver.getmap(
        LAYERS="raster,vector", WIDTH=360, HEIGHT=180, BBOX="-180,-90,180,90"
    )
    assert np.array_equal(_pixels(response.data), _pixels(expected))
    # the white disk of the raster at 10E 50N
    assert tuple(_pixels(response.data)[40, 190]) == (255, 255, 255)
    assert mapserver.requests == []  # no HTTP: the binary ran directly


def test_tagged_layers(client: Client, mapserver: MapServerWMS) -> None:
    response = client.get(GETMAP + "&LAYERS=tagged")
    assert response.status_code == 200
    expected = mapserver.getmap(LAYERS="vector", WIDTH=360, HEIGHT=180)
    assert np.array_equal(_pixels(response.data), _pixels(expected))


def test_featureinfo_through_mapserv(client: Client) -> None:
    response = client.get(
        GETMAP.replace("GetMap", "GetFeatureInfo")
        + "&LAYERS=ms&QUERY_LAYERS=ms&X=190&Y=40&INFO_FORMAT=text/plain"
    )
    assert response.status_code == 200
    assert b"raster" in response.data


def test_missing_binary_is_a_configuration_error(
    make_app: Callable[..., Client], mapserver: MapServerWMS
) -> None:
    from mapproxy.errors import ConfigurationError

    config = CONFIG.format(
        mapfile=mapserver.mapfile, binary="/nonexistent/mapserv", workdir=mapserver.workdir
    )
    with pytest.raises(ConfigurationError, match=r"sources\.ms\.mapserver\.binary"):
        make_app(config)
