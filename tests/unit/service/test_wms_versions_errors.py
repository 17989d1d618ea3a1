"""WMS exception documents element by element per version, feature info error codes,
the ``versions`` option and the 8-bit PNG output, through the service.

Messages, codes and statuses were compared with the reference MapProxy 7.0.0 (black
box); ``LayerNotQueryable`` and ``InvalidPoint`` are our additions
(docs/compatibility.md).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from lxml import etree
from PIL import Image
from werkzeug.test import Client
from werkzeug.wrappers import Request

from mapproxy.image.result import ImageResult
from mapproxy.layer.base import WMSLayer
from mapproxy.service.wms.service import WMSService
from mapproxy.source.base import MapExtent, MapQuery
from mapproxy.source.featureinfo import FeatureInfoQuery
from mapproxy.srs import get_srs

WORLD = MapExtent((-180.0, -90.0, 180.0, 90.0), get_srs("EPSG:4326"))
OGC = "http://www.opengis.net/ogc"


class Paint:
    def __init__(self) -> None:
        self.extent = WORLD
        self.transparent = False

    def get_map(self, query: MapQuery) -> ImageResult:
        image = Image.new("RGBA", query.size, (10, 120, 200, 255))
        return ImageResult(image, size=query.size)


class NoInfo:
    def get_feature_info(self, query: FeatureInfoQuery) -> None:
        return None


def make_service(**kwargs: Any) -> WMSService:
    root = WMSLayer(
        None,
        "Root",
        WORLD,
        children=[
            WMSLayer("base", "Base", WORLD, map_layers=[Paint()]),
            WMSLayer(
                "info", "Info", WORLD, map_layers=[Paint()], queryable=True, info_sources=[NoInfo()]
            ),
        ],
    )
    return WMSService(root, {"title": "T"}, **kwargs)


def make_client(service: WMSService) -> Client:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return service.handle(Request(environ))(environ, start_response)

    return Client(app)


@pytest.fixture
def client() -> Client:
    return make_client(make_service())


def map_params(version: str, **extra: str) -> dict[str, str]:
    params = {
        "SERVICE": "WMS",
        "REQUEST": "GetMap",
        "LAYERS": "base",
        "STYLES": "",
        "BBOX": "-180,-90,180,90",
        "WIDTH": "20",
        "HEIGHT": "10",
        "FORMAT": "image/png",
    }
    if version == "1.0.0":
        params.update(WMTVER="1.0.0", REQUEST="map", FORMAT="PNG", SRS="EPSG:4326")
    elif version == "1.3.0":
        params.update(VERSION=version, CRS="EPSG:4326", BBOX="-90,-180,90,180")
    else:
        params.update(VERSION=version, SRS="EPSG:4326")
    params.update(extra)
    return params


def info_params(version: str, **extra: str) -> dict[str, str]:
    params = map_params(version, REQUEST="GetFeatureInfo", LAYERS="info", QUERY_LAYERS="info")
    params["INFO_FORMAT"] = "text/plain"
    if version == "1.3.0":
        params.update(I="5", J="5")
    else:
        params.update(X="5", Y="5")
    params.update(extra)
    return params


def check_exception(response: Any, version: str, message: str, code: str | None) -> None:
    """The whole exception document of ``version``, element by element."""
    assert response.status_code == 500
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    body = response.data
    assert body.startswith(b'<?xml version="1.0"?>')
    root = etree.fromstring(body)
    if version == "1.0.0":
        assert response.headers["Content-Type"] == "text/xml"
        assert root.tag == "WMTException"
        assert dict(root.attrib) == {"version": "1.0.0"}
        assert len(root) == 0
        assert root.text == message
        return
    if version == "1.3.0":
        assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
        assert root.tag == f"{{{OGC}}}ServiceExceptionReport"
        assert root.get("version") == "1.3.0"
        location = root.get("{http://www.w3.org/2001/XMLSchema-instance}schemaLocation")
        assert location.split() == [
            OGC,
            "http://schemas.opengis.net/wms/1.3.0/exceptions_1_3_0.xsd",
        ]
        (exception,) = root
        assert exception.tag == f"{{{OGC}}}ServiceException"
    else:
        assert response.headers["Content-Type"] == "application/vnd.ogc.se_xml"
        tree = root.getroottree()
        assert tree.docinfo.doctype == (
            '<!DOCTYPE ServiceExceptionReport SYSTEM "http://schemas.opengis.net/wms/'
            f'{version}/exception_{version.replace(".", "_")}.dtd">'
        )
        assert root.tag == "ServiceExceptionReport"
        assert dict(root.attrib) == {"version": version}
        (exception,) = root
        assert exception.tag == "ServiceException"
    assert dict(exception.attrib) == ({"code": code} if code else {})
    assert exception.text == message
    assert len(exception) == 0


VERSIONS = ["1.0.0", "1.1.0", "1.1.1", "1.3.0"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("overrides", "message", "code"),
    [
        ({"LAYERS": "nope"}, "unknown layer: nope", "LayerNotDefined"),
        ({"STYLES": "fancy"}, "unsupported styles: fancy", "StyleNotDefined"),
        ({"FORMAT": "image/bmp"}, "unsupported image format: image/bmp", "InvalidFormat"),
        ({"BBOX": "10,10,0,0"}, "invalid bbox 10,10,0,0", None),
        ({"WIDTH": "5000", "HEIGHT": "5000"}, "image size too large", None),
    ],
)
def test_getmap_exception_documents(
    client: Client, version: str, overrides: dict[str, str], message: str, code: str | None
) -> None:
    response = client.get("/service", query_string=map_params(version, **overrides))
    check_exception(response, version, message, None if version == "1.0.0" else code)


@pytest.mark.parametrize("version", VERSIONS)
def test_unsupported_srs_per_version(client: Client, version: str) -> None:
    key = "CRS" if version == "1.3.0" else "SRS"
    response = client.get("/service", query_string=map_params(version, **{key: "EPSG:31467"}))
    if version == "1.3.0":
        check_exception(response, version, "unsupported crs: EPSG:31467", "InvalidCRS")
    else:
        code = None if version == "1.0.0" else "InvalidSRS"
        check_exception(response, version, "unsupported srs: EPSG:31467", code)


@pytest.mark.parametrize("version", ["1.1.1", "1.3.0"])
def test_missing_parameters(client: Client, version: str) -> None:
    params = map_params(version)
    del params["BBOX"], params["FORMAT"]
    response = client.get("/service", query_string=params)
    check_exception(response, version, "missing parameters ['bbox', 'format']", None)


@pytest.mark.parametrize("version", ["1.1.1", "1.3.0"])
def test_featureinfo_exception_documents(client: Client, version: str) -> None:
    x, y = ("I", "J") if version == "1.3.0" else ("X", "Y")
    response = client.get("/service", query_string=info_params(version, **{x: "500"}))
    check_exception(response, version, f"invalid point {x}=500, {y}=5", "InvalidPoint")
    response = client.get("/service", query_string=info_params(version, **{y: "-1"}))
    check_exception(response, version, f"invalid point {x}=5, {y}=-1", "InvalidPoint")
    params = info_params(version, LAYERS="base", QUERY_LAYERS="base")
    response = client.get("/service", query_string=params)
    check_exception(response, version, "layer base is not queryable", "LayerNotQueryable")
    response = client.get("/service", query_string=info_params(version, QUERY_LAYERS="zz"))
    check_exception(response, version, "unknown layer: zz", "LayerNotDefined")
    ok = client.get("/service", query_string=info_params(version))
    assert ok.status_code == 200
    assert ok.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("versions", "asked", "served"),
    [
        (["1.1.1", "1.3.0"], "1.0.0", "1.1.1"),  # below the minimum: the minimum
        (["1.1.1", "1.3.0"], "1.1.0", "1.1.1"),
        (["1.1.1", "1.3.0"], "1.2.0", "1.1.1"),  # between: highest supported below
        (["1.1.1", "1.3.0"], "9.0.0", "1.3.0"),  # above the maximum: the maximum
        (["1.1.1", "1.3.0"], None, "1.3.0"),  # none: the highest
        (["1.0.0", "1.1.1"], "1.3.0", "1.1.1"),
        (["1.0.0", "1.1.1"], "1.1.0", "1.0.0"),
    ],
)
def test_versions_option_negotiates(versions: list[str], asked: str | None, served: str) -> None:
    client = make_client(make_service(versions=versions))
    query = {"SERVICE": "WMS", "REQUEST": "GetCapabilities"}
    if asked:
        query["VERSION"] = asked
    response = client.get("/service", query_string=query)
    assert response.status_code == 200
    assert etree.fromstring(response.data).get("version") == served
    # errors come in the negotiated version too
    error = client.get(
        "/service",
        query_string={"SERVICE": "WMS", "REQUEST": "Nope", **({"VERSION": asked} if asked else {})},
    )
    root = etree.fromstring(error.data)
    assert root.get("version") == served


def test_png_8bit_output() -> None:
    service = make_service(image_formats=["image/png", "image/png; mode=8bit", "image/gif"])
    client = make_client(service)
    response = client.get(
        "/service", query_string=map_params("1.1.1", FORMAT="image/png; mode=8bit")
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(response.data))
    assert image.format == "PNG"
    assert image.mode == "P"
    caps = client.get(
        "/service",
        query_string={"SERVICE": "WMS", "REQUEST": "GetCapabilities", "VERSION": "1.1.1"},
    )
    formats = etree.fromstring(caps.data).xpath("//GetMap/Format/text()")
    assert formats == ["image/png", "image/png; mode=8bit", "image/gif"]
