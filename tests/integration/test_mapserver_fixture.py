"""The MapServer WMS fixture itself works."""

from __future__ import annotations

import io
import urllib.parse
import urllib.request

import pytest
from PIL import Image

pytestmark = pytest.mark.integration

try:
    from .mapserver import (
        CYAN_TRIANGLE,
        MAGENTA_BOX,
        SRS_LIST,
        WHITE_DISK,
        raster_rgb_at,
    )
except ImportError:
    from mapserver import CYAN_TRIANGLE, MAGENTA_BOX, SRS_LIST, WHITE_DISK, raster_rgb_at


def _getmap_query(**kw: str) -> dict[str, str]:
    q = {
        "SERVICE": "WMS",
        "VERSION": "1.1.1",
        "REQUEST": "GetMap",
        "LAYERS": "raster",
        "STYLES": "",
        "SRS": "EPSG:4326",
        "BBOX": "-180,-90,180,90",
        "WIDTH": "360",
        "HEIGHT": "180",
        "FORMAT": "image/png",
    }
    q.update(kw)
    return q


def test_capabilities_with_owslib(mapserver):
    from owslib.wms import WebMapService

    wms = WebMapService(mapserver.url, version="1.1.1", timeout=60)
    names = set(wms.contents)
    assert {"raster", "vector", "vector_polygons", "vector_lines"} <= names
    assert "GetMap" in [op.name for op in wms.operations]
    raster = wms["raster"]
    for srs in SRS_LIST:
        assert srs in raster.crsOptions
    formats = wms.getOperationByName("GetMap").formatOptions
    assert "image/png" in formats
    assert "image/jpeg" in formats
    assert mapserver.count(request="GetCapabilities") == 1


def test_getmap_4326_png(mapserver):
    status, ctype, body = mapserver.get(_getmap_query())
    assert status == 200
    assert ctype == "image/png"
    img = Image.open(io.BytesIO(body))
    assert img.format == "PNG"
    assert img.size == (360, 180)
    rgb = img.convert("RGB")
    # one output pixel is one degree: pixel centre (col + .5 - 180, 90 - row - .5)
    for lon, lat in [(10.0, 50.0), (-75.0, 40.0), (135.0, -30.0), (-100.0, 70.0)]:
        col, row = int(lon + 180), int(90 - lat)
        assert rgb.getpixel((col, row)) == raster_rgb_at(lon + 0.25, lat - 0.25)
    assert rgb.getpixel((190, 40)) == WHITE_DISK["rgb"]
    assert rgb.getpixel((105, 50)) == MAGENTA_BOX["rgb"]
    assert rgb.getpixel((315, 120)) == CYAN_TRIANGLE["rgb"]


def test_getmap_3857_png(mapserver):
    half = 20037508.342789244
    query = _getmap_query(
        SRS="EPSG:3857", BBOX=f"{-half},{-half},{half},{half}", WIDTH="256", HEIGHT="256"
    )
    status, ctype, body = mapserver.get(query)
    assert status == 200, body[:500]
    assert ctype == "image/png"
    img = Image.open(io.BytesIO(body)).convert("RGB")
    assert img.size == (256, 256)
    # the white disk around 10E/50N lies at about x=135, y=86 in a 256px world tile
    assert img.getpixel((135, 86)) == WHITE_DISK["rgb"]


@pytest.mark.parametrize(
    "srs,bbox",
    [
        ("EPSG:900913", "-20037508.34,-20037508.34,20037508.34,20037508.34"),
        ("EPSG:25832", "200000,5200000,1000000,6200000"),
    ],
)
def test_getmap_other_srs(mapserver, srs, bbox):
    data = mapserver.getmap(SRS=srs, BBOX=bbox, WIDTH=200, HEIGHT=250)
    assert Image.open(io.BytesIO(data)).size == (200, 250)


def test_transparent_vector_and_jpeg(mapserver):
    status, ctype, body = mapserver.get(
        _getmap_query(LAYERS="vector", TRANSPARENT="TRUE", WIDTH="360", HEIGHT="180")
    )
    assert status == 200
    img = Image.open(io.BytesIO(body))
    assert img.mode == "RGBA"
    rgba = img.convert("RGBA")
    assert rgba.getpixel((0, 0))[3] == 0  # background transparent
    assert rgba.getpixel((90, 50)) == (255, 128, 0, 255)  # triangle at -90/40
    status, ctype, body = mapserver.get(_getmap_query(LAYERS="raster,vector", FORMAT="image/jpeg"))
    assert status == 200
    assert ctype == "image/jpeg"
    assert Image.open(io.BytesIO(body)).format == "JPEG"


def test_request_counter(mapserver):
    assert mapserver.requests == []
    mapserver.get(_getmap_query())
    mapserver.get(_getmap_query(WIDTH="10", HEIGHT="10"))
    assert len(mapserver.requests) == 2
    assert mapserver.count(request="getmap") == 2
    assert mapserver.requests[1]["width"] == "10"
    # direct rendering is not logged
    mapserver.getmap(WIDTH=20, HEIGHT=20)
    assert len(mapserver.requests) == 2
    mapserver.reset()
    assert mapserver.requests == []


def test_post_and_errors(mapserver):
    body = urllib.parse.urlencode(_getmap_query(WIDTH="30", HEIGHT="15")).encode()
    req = urllib.request.Request(
        mapserver.url,
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.headers["Content-Type"] == "image/png"
        assert Image.open(io.BytesIO(resp.read())).size == (30, 15)
    assert mapserver.requests[-1]["REQUEST"] == "GetMap"

    # WMS errors come back as service exceptions
    _status, _ctype, data = mapserver.get(_getmap_query(LAYERS="nosuchlayer"))
    assert b"ServiceException" in data

    # override hook
    mapserver.override = lambda q: (500, "text/plain", b"boom")
    status, _ctype, data = mapserver.get(_getmap_query())
    assert (status, data) == (500, b"boom")


def test_featureinfo(mapserver):
    status, _ctype, body = mapserver.get(
        _getmap_query(
            REQUEST="GetFeatureInfo",
            LAYERS="vector",
            QUERY_LAYERS="vector",
            INFO_FORMAT="text/plain",
            X="90",
            Y="50",
        )
    )
    assert status == 200
    assert b"triangle" in body
