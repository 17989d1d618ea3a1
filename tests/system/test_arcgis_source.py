"""arcgis sources: exact export/exportImage/identify requests (as the reference sends them)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator

import pytest
from PIL import Image
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, image_handler

CONFIG = """
services:
  wms:
    md: {{title: t}}
    srs: ['EPSG:4326', 'EPSG:3857']
layers:
  - name: a
    title: a
    sources: [arc]
  - name: b
    title: b
    sources: [arc2]
  - name: c
    title: c
    sources: [img]
sources:
  arc:
    type: arcgis
    req:
      url: {url}/arcgis/rest/services/X/MapServer
      layers: show:0,1
      transparent: true
      dpi: 96
      time: "2020"
      foo: bar
    opts:
      featureinfo: true
      featureinfo_return_geometries: true
      featureinfo_tolerance: 7
    supported_srs: ['EPSG:3857']
  arc2:
    type: arcgis
    req:
      url: {url}/arcgis/rest/services/Y/MapServer
    supported_formats: ['image/jpeg']
    opts:
      featureinfo: true
  img:
    type: arcgis
    req:
      url: {url}/arcgis/rest/services/Z/ImageServer/
"""

GETMAP = "SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&STYLES=&WIDTH=200&HEIGHT=100"
INFO = "SERVICE=WMS&REQUEST=GetFeatureInfo&VERSION=1.1.1&STYLES=&WIDTH=200&HEIGHT=100&X=10&Y=20"
IDENTIFY = {"results": [{"layerId": 0, "attributes": {"a": 1}}]}


def _handle(request: Request) -> Response:
    if request.path.endswith("/identify"):
        return Response(json.dumps(IDENTIFY), content_type="application/json")
    return image_handler((0, 128, 255, 255))(request)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(_handle) as server:
        yield server


@pytest.fixture
def client(make_app: Callable[..., Client], upstream: FakeUpstream) -> Client:
    return make_app(CONFIG.format(url=upstream.url))


def test_export_sends_req_params_first_then_map_params(
    client: Client, upstream: FakeUpstream
) -> None:
    query = f"{GETMAP}&LAYERS=a&SRS=EPSG:3857&BBOX=0,0,100000,100000&FORMAT=image/png"
    response = client.get("/service?" + query)
    assert response.status_code == 200
    assert image_from(response).convert("RGBA").getpixel((5, 5)) == (0, 128, 255, 255)
    [recorded] = upstream.recorded
    assert recorded.path == "/arcgis/rest/services/X/MapServer/export"
    assert recorded.raw_query == (
        "layers=show%3A0,1&transparent=True&dpi=96&time=2020&foo=bar&format=png"
        "&bbox=0.0,0.0,100000.0,100000.0&size=200,100&bboxSR=3857&imageSR=3857&f=image"
    )


def test_supported_formats_pick_the_upstream_format(client: Client, upstream: FakeUpstream) -> None:
    query = f"{GETMAP}&LAYERS=b&SRS=EPSG:4326&BBOX=0,0,10,10&FORMAT=image/png&TRANSPARENT=true"
    response = client.get("/service?" + query)
    assert response.status_code == 200
    assert response.content_type == "image/png"
    [recorded] = upstream.recorded
    assert recorded.path == "/arcgis/rest/services/Y/MapServer/export"
    assert recorded.raw_query == (
        "format=jpeg&bbox=0.0,0.0,10.0,10.0&size=200,100&bboxSR=4326&imageSR=4326&f=image"
    )


def test_image_server_uses_export_image(client: Client, upstream: FakeUpstream) -> None:
    query = GETMAP.replace("1.1.1", "1.3.0") + "&LAYERS=c&CRS=EPSG:4326&BBOX=0,0,10,10"
    response = client.get("/service?" + query + "&FORMAT=image/jpeg")
    assert response.status_code == 200
    [recorded] = upstream.recorded
    assert recorded.path == "/arcgis/rest/services/Z/ImageServer/exportImage"
    assert recorded.raw_query == (
        "format=jpeg&bbox=0.0,0.0,10.0,10.0&size=200,100&bboxSR=4326&imageSR=4326&f=image"
    )


def test_featureinfo_sends_identify(client: Client, upstream: FakeUpstream) -> None:
    query = (
        f"{INFO}&LAYERS=a&QUERY_LAYERS=a&SRS=EPSG:3857&BBOX=0,0,100000,100000"
        "&INFO_FORMAT=application/json"
    )
    response = client.get("/service?" + query)
    assert response.status_code == 200
    assert json.loads(response.data) == IDENTIFY
    [recorded] = upstream.recorded
    assert recorded.path == "/arcgis/rest/services/X/MapServer/identify"
    assert recorded.raw_query == (
        "layers=show%3A0,1&transparent=True&dpi=96&time=2020&foo=bar"
        "&mapExtent=0.0,0.0,100000.0,100000.0&imageDisplay=200,100,96"
        "&geometry=5000.000000,80000.000000&sr=3857&f=json&tolerance=7"
        "&returnGeometry=true&geometryType=esriGeometryPoint"
    )


def test_featureinfo_defaults(client: Client, upstream: FakeUpstream) -> None:
    query = f"{INFO}&LAYERS=b&QUERY_LAYERS=b&SRS=EPSG:4326&BBOX=0,0,10,10&INFO_FORMAT=text/plain"
    response = client.get("/service?" + query)
    assert response.status_code == 200
    [recorded] = upstream.recorded
    assert recorded.raw_query == (
        "mapExtent=0.0,0.0,10.0,10.0&imageDisplay=200,100,96&geometry=0.500000,8.000000"
        "&sr=4326&f=json&tolerance=5&returnGeometry=false&geometryType=esriGeometryPoint"
    )


def test_missing_url_is_a_configuration_error(make_app: Callable[..., Client]) -> None:
    from mapproxy.errors import ConfigurationError

    config = """
    layers:
      - {name: a, title: a, sources: [arc]}
    sources:
      arc: {type: arcgis, req: {layers: 'show:1'}}
    """
    with pytest.raises(ConfigurationError, match=r"sources\.arc\.req\.url"):
        make_app(config)


def image_from(response) -> Image.Image:  # type: ignore[no-untyped-def]
    """The decoded image of a response."""
    return Image.open(io.BytesIO(response.data))
