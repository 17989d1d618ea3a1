"""WMS GetMap through the service: validation responses, rendering, stacking, errors."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from typing import Any

import pytest
from lxml import etree
from PIL import Image
from werkzeug.test import Client
from werkzeug.wrappers import Request

from mapproxy.errors import SourceError
from mapproxy.image.result import ImageResult
from mapproxy.layer.base import ResolutionRange, WMSLayer
from mapproxy.service.wms.service import WMSService
from mapproxy.source.base import MapExtent, MapQuery
from mapproxy.srs import get_srs

WORLD = MapExtent((-180.0, -90.0, 180.0, 90.0), get_srs("EPSG:4326"))

RED = (255, 0, 0, 255)
GREEN = (0, 255, 0, 255)
BLUE = (0, 0, 255, 255)
CLEAR = (0, 0, 0, 0)


class FakeLayer:
    """A map layer that paints ``color`` (optionally only its left half) and records queries."""

    def __init__(
        self,
        color: tuple[int, int, int, int] = RED,
        extent: MapExtent = WORLD,
        transparent: bool = False,
        left_half_only: bool = False,
        error: str | None = None,
    ) -> None:
        self.color = color
        self.extent = extent
        self.transparent = transparent
        self.left_half_only = left_half_only
        self.error = error
        self.queries: list[MapQuery] = []

    def get_map(self, query: MapQuery) -> ImageResult:
        self.queries.append(query)
        if self.error:
            raise SourceError(self.error)
        if self.left_half_only:
            image = Image.new("RGBA", query.size, CLEAR)
            image.paste(self.color, (0, 0, query.size[0] // 2, query.size[1]))
        else:
            image = Image.new("RGBA", query.size, self.color)
        return ImageResult(image, size=query.size, transparent=self.transparent)


def make_client(service: WMSService) -> Client:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return service.handle(Request(environ))(environ, start_response)

    return Client(app)


def layer(name: str | None, *map_layers: FakeLayer, **kwargs: Any) -> WMSLayer:
    return WMSLayer(name, (name or "group").title(), WORLD, map_layers=list(map_layers), **kwargs)


def getmap(**overrides: str) -> dict[str, str]:
    params = {
        "SERVICE": "WMS",
        "VERSION": "1.1.1",
        "REQUEST": "GetMap",
        "LAYERS": "base",
        "STYLES": "",
        "SRS": "EPSG:4326",
        "BBOX": "-180,-90,180,90",
        "WIDTH": "200",
        "HEIGHT": "100",
        "FORMAT": "image/png",
    }
    for key, value in overrides.items():
        if value is None:
            params.pop(key.upper(), None)
        else:
            params[key.upper()] = value
    return params


def image_of(response: Any) -> Image.Image:
    image = Image.open(io.BytesIO(response.data))
    image.load()
    return image


def exception_text(response: Any) -> tuple[str | None, str]:
    root = etree.fromstring(response.data)
    nodes = root.xpath("//*[local-name()='ServiceException']")
    if not nodes:
        return None, root.text or ""
    return nodes[0].get("code"), nodes[0].text or ""


@pytest.fixture
def layers() -> dict[str, FakeLayer]:
    return {
        "base": FakeLayer(RED),
        "overlay": FakeLayer(BLUE, transparent=True, left_half_only=True),
        "green": FakeLayer(GREEN),
        "clear": FakeLayer(CLEAR, transparent=True),
    }


@pytest.fixture
def service(layers: dict[str, FakeLayer]) -> WMSService:
    root = WMSLayer(
        None,
        "Root",
        WORLD,
        children=[
            layer("base", layers["base"]),
            layer("overlay", layers["overlay"]),
            layer("green", layers["green"]),
            layer("clear", layers["clear"]),
            WMSLayer(
                "group",
                "Group",
                WORLD,
                children=[
                    layer("g_base", FakeLayer(GREEN)),
                    layer("g_top", FakeLayer(BLUE, transparent=True, left_half_only=True)),
                ],
            ),
        ],
    )
    return WMSService(root, {"title": "Test"}, max_output_pixels=1000 * 1000)


@pytest.fixture
def client(service: WMSService) -> Client:
    return make_client(service)


# -- successful rendering --------------------------------------------------------------


def test_getmap_returns_png_of_requested_size(client: Client, layers: dict[str, FakeLayer]) -> None:
    response = client.get("/service", query_string=getmap())
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert "Cache-Control" not in response.headers
    image = image_of(response)
    assert image.format == "PNG"
    assert image.size == (200, 100)
    assert image.convert("RGBA").getpixel((10, 10)) == RED
    query = layers["base"].queries[0]
    assert query.bbox == (-180.0, -90.0, 180.0, 90.0)
    assert query.size == (200, 100)
    assert query.srs == get_srs("EPSG:4326")


def test_float_sizes_are_truncated(client: Client, layers: dict[str, FakeLayer]) -> None:
    response = client.get("/service", query_string=getmap(WIDTH="120.9", HEIGHT="60.2"))
    assert response.status_code == 200
    assert image_of(response).size == (120, 60)


@pytest.mark.parametrize(
    ("fmt", "content_type", "pil_format"),
    [
        ("image/jpeg", "image/jpeg", "JPEG"),
        ("image/gif", "image/gif", "GIF"),
        ("image/tiff", "image/tiff", "TIFF"),
        ("image/GeoTIFF", "image/geotiff", "TIFF"),
    ],
)
def test_output_formats(client: Client, fmt: str, content_type: str, pil_format: str) -> None:
    response = client.get("/service", query_string=getmap(FORMAT=fmt))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert image_of(response).format == pil_format


def test_130_epsg4326_bbox_reaches_layer_as_xy(
    client: Client, layers: dict[str, FakeLayer]
) -> None:
    params = getmap(VERSION="1.3.0", SRS=None, CRS="EPSG:4326", BBOX="40,-10,60,10")
    response = client.get("/service", query_string=params)
    assert response.status_code == 200
    assert layers["base"].queries[-1].bbox == (-10.0, 40.0, 10.0, 60.0)

    params = getmap(VERSION="1.3.0", SRS=None, CRS="CRS:84", BBOX="-10,40,10,60")
    client.get("/service", query_string=params)
    assert layers["base"].queries[-1].bbox == (-10.0, 40.0, 10.0, 60.0)

    params = getmap(SRS="EPSG:4326", BBOX="-10,40,10,60")
    client.get("/service", query_string=params)
    assert layers["base"].queries[-1].bbox == (-10.0, 40.0, 10.0, 60.0)


def test_layers_are_stacked_bottom_to_top(client: Client) -> None:
    response = client.get("/service", query_string=getmap(LAYERS="base,overlay"))
    image = image_of(response).convert("RGBA")
    assert image.getpixel((10, 50)) == BLUE
    assert image.getpixel((190, 50)) == RED


def test_group_layer_expands_children_in_order(client: Client) -> None:
    response = client.get("/service", query_string=getmap(LAYERS="group"))
    image = image_of(response).convert("RGBA")
    assert image.getpixel((10, 50)) == BLUE
    assert image.getpixel((190, 50)) == GREEN


def test_opaque_covering_layer_hides_earlier_layers(
    client: Client, layers: dict[str, FakeLayer]
) -> None:
    response = client.get("/service", query_string=getmap(LAYERS="overlay,base"))
    assert image_of(response).convert("RGBA").getpixel((10, 50)) == RED
    assert layers["overlay"].queries == []
    assert len(layers["base"].queries) == 1


def test_opaque_layer_not_covering_request_hides_nothing() -> None:
    small = FakeLayer(GREEN, extent=MapExtent((0, 0, 10, 10), get_srs("EPSG:4326")))
    below = FakeLayer(RED)
    root = WMSLayer(None, "Root", WORLD, children=[layer("below", below), layer("small", small)])
    client = make_client(WMSService(root, {}))
    client.get("/service", query_string=getmap(LAYERS="below,small"))
    assert len(below.queries) == 1
    assert len(small.queries) == 1


def test_transparent_request(client: Client) -> None:
    response = client.get("/service", query_string=getmap(LAYERS="clear", TRANSPARENT="TRUE"))
    image = image_of(response).convert("RGBA")
    assert image.getpixel((10, 10))[3] == 0


def test_bgcolor_fills_transparent_areas(client: Client) -> None:
    params = getmap(LAYERS="overlay", TRANSPARENT="false", BGCOLOR="0x00FF00")
    image = image_of(client.get("/service", query_string=params)).convert("RGBA")
    assert image.getpixel((10, 10)) == BLUE
    assert image.getpixel((190, 10)) == GREEN


def test_default_background_is_white(client: Client) -> None:
    image = image_of(client.get("/service", query_string=getmap(LAYERS="clear")))
    assert image.convert("RGB").getpixel((10, 10)) == (255, 255, 255)


def test_layer_outside_request_is_not_queried() -> None:
    small = FakeLayer(GREEN, extent=MapExtent((0, 0, 10, 10), get_srs("EPSG:4326")))
    root = WMSLayer(None, "Root", WORLD, children=[layer("small", small)])
    client = make_client(WMSService(root, {}))
    response = client.get("/service", query_string=getmap(LAYERS="small", BBOX="-50,-50,-40,-40"))
    assert response.status_code == 200
    assert small.queries == []
    assert image_of(response).convert("RGB").getpixel((5, 5)) == (255, 255, 255)


def test_layer_outside_res_range_is_not_queried() -> None:
    limited = FakeLayer(GREEN)
    root = WMSLayer(
        None,
        "Root",
        WORLD,
        children=[layer("limited", limited, res_range=ResolutionRange(min_res=1000.0))],
    )
    client = make_client(WMSService(root, {}))
    # whole world on 200 px: ~200 km per pixel, coarser than min_res
    response = client.get("/service", query_string=getmap(LAYERS="limited"))
    assert response.status_code == 200
    assert limited.queries == []
    # 0.001 degree over 200 px: ~0.5 m per pixel
    client.get("/service", query_string=getmap(LAYERS="limited", BBOX="0,0,0.001,0.0005"))
    assert len(limited.queries) == 1


def test_request_in_projected_srs(client: Client, layers: dict[str, FakeLayer]) -> None:
    params = getmap(SRS="EPSG:3857", BBOX="-1000000,-1000000,1000000,1000000", HEIGHT="200")
    response = client.get("/service", query_string=params)
    assert response.status_code == 200
    query = layers["base"].queries[-1]
    assert query.srs == get_srs("EPSG:3857")
    assert query.bbox == (-1000000.0, -1000000.0, 1000000.0, 1000000.0)


def test_dimensions_reach_layers(client: Client, layers: dict[str, FakeLayer]) -> None:
    client.get("/service", query_string=getmap(TIME="2020-01-01", DIM_BAND="nir"))
    # Spelled as sent (cache directories use the client's spelling, as in MapProxy).
    assert layers["base"].queries[-1].dimensions == {"TIME": "2020-01-01", "DIM_BAND": "nir"}


def test_wms_100_getmap(client: Client) -> None:
    params = getmap(VERSION=None, WMTVER="1.0.0", REQUEST="map", FORMAT="PNG", SERVICE=None)
    response = client.get("/service", query_string=params)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"


def test_attribution_is_drawn() -> None:
    root = WMSLayer(None, "Root", WORLD, children=[layer("base", FakeLayer(GREEN))])
    client = make_client(WMSService(root, {}, attribution="(c) Test"))
    image = image_of(client.get("/service", query_string=getmap())).convert("RGB")
    colors = {color for _, color in image.getcolors(10_000)}  # type: ignore[union-attr]
    assert len(colors) > 1
    assert image.getpixel((0, 0)) == (0, 255, 0)
    tiled = image_of(client.get("/service", query_string=getmap(TILED="true"))).convert("RGB")
    assert tiled.getcolors() == [(200 * 100, (0, 255, 0))]


# -- exceptions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "content_type", "root_tag"),
    [
        ("1.1.1", "application/vnd.ogc.se_xml", "ServiceExceptionReport"),
        ("1.1.0", "application/vnd.ogc.se_xml", "ServiceExceptionReport"),
        ("1.3.0", "text/xml; charset=utf-8", "{http://www.opengis.net/ogc}ServiceExceptionReport"),
    ],
)
def test_xml_exception_per_version(
    client: Client, version: str, content_type: str, root_tag: str
) -> None:
    params = getmap(VERSION=version, LAYERS="missing")
    if version == "1.3.0":
        params = getmap(VERSION=version, LAYERS="missing", SRS=None, CRS="EPSG:4326")
    response = client.get("/service", query_string=params)
    assert response.status_code == 500
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    root = etree.fromstring(response.data)
    assert root.tag == root_tag
    assert root.get("version") == version
    assert exception_text(response) == ("LayerNotDefined", "unknown layer: missing")
    if version != "1.3.0":
        assert f"exception_{version.replace('.', '_')}.dtd" in response.text


def test_xml_exception_100(client: Client) -> None:
    params = getmap(VERSION=None, WMTVER="1.0.0", REQUEST="map", LAYERS="missing")
    response = client.get("/service", query_string=params)
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "text/xml"
    root = etree.fromstring(response.data)
    assert root.tag == "WMTException"
    assert root.get("version") == "1.0.0"
    assert root.text == "unknown layer: missing"


def test_version_100_without_wmtver(client: Client) -> None:
    response = client.get("/service", query_string=getmap(VERSION="1.0.0"))
    assert etree.fromstring(response.data).text == "missing parameters ['wmtver']"


def test_validation_messages_in_order(client: Client) -> None:
    params = getmap(
        BBOX="10,10,0,0",
        STYLES="fancy",
        WIDTH="2000",
        HEIGHT="2000",
        LAYERS="base,nope",
        FORMAT="image/bmp",
        SRS="EPSG:9999",
    )
    expected = [
        ("BBOX", "0,0,10,10", (None, "invalid bbox 10,10,0,0")),
        ("STYLES", "", ("StyleNotDefined", "unsupported styles: fancy")),
        ("WIDTH", "100", (None, "image size too large")),
        ("LAYERS", "base", ("LayerNotDefined", "unknown layer: nope")),
        ("FORMAT", "image/png", ("InvalidFormat", "unsupported image format: image/bmp")),
        ("SRS", "EPSG:4326", ("InvalidSRS", "unsupported srs: EPSG:9999")),
    ]
    missing = client.get("/service", query_string={"REQUEST": "GetMap", "VERSION": "1.1.1"})
    assert exception_text(missing) == (
        None,
        "missing parameters ['layers', 'styles', 'srs', 'bbox', 'width', 'height', 'format']",
    )
    for name, fixed, error in expected:
        response = client.get("/service", query_string=params)
        assert response.status_code == 500
        assert exception_text(response) == error
        params[name] = fixed
    assert client.get("/service", query_string=params).status_code == 200


def test_130_invalid_crs(client: Client) -> None:
    params = getmap(VERSION="1.3.0", SRS=None, CRS="EPSG:1234")
    response = client.get("/service", query_string=params)
    assert exception_text(response) == ("InvalidCRS", "unsupported crs: EPSG:1234")


def test_unknown_request_type(client: Client) -> None:
    response = client.get("/service", query_string={"REQUEST": "Foo", "VERSION": "1.1.1"})
    assert response.status_code == 500
    assert exception_text(response) == (None, "unknown WMS request type 'foo'")


@pytest.mark.parametrize(
    ("request_name", "message"),
    [
        ("GetFeatureInfo", "missing parameters ['layers', 'srs', 'bbox', 'width', 'height']"),
        ("GetLegendGraphic", "missing parameters ['layer']"),
    ],
)
def test_featureinfo_and_legend_are_dispatched(
    client: Client, request_name: str, message: str
) -> None:
    query = {"REQUEST": request_name, "VERSION": "1.1.1", "FORMAT": "image/png"}
    response = client.get("/service", query_string=query)
    assert response.status_code == 500
    assert exception_text(response) == (None, message)


def test_inimage_exception(client: Client) -> None:
    params = getmap(LAYERS="nope", EXCEPTIONS="application/vnd.ogc.se_inimage", WIDTH="300")
    response = client.get("/service", query_string=params)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    image = image_of(response).convert("RGB")
    assert image.size == (300, 100)
    assert len(image.getcolors(100_000)) > 1  # type: ignore[arg-type]


def test_inimage_exception_honours_format_and_missing_size(client: Client) -> None:
    params = getmap(LAYERS="nope", EXCEPTIONS="INIMAGE", FORMAT="image/jpeg", WIDTH=None)
    response = client.get("/service", query_string=params)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert image_of(response).size == (256, 256)


def test_inimage_for_invalid_format_falls_back_to_png(client: Client) -> None:
    params = getmap(FORMAT="image/bmp", EXCEPTIONS="inimage")
    response = client.get("/service", query_string=params)
    assert response.headers["Content-Type"] == "image/png"
    assert image_of(response).size == (200, 100)


def test_blank_exception(client: Client) -> None:
    params = getmap(LAYERS="nope", EXCEPTIONS="application/vnd.ogc.se_blank", BGCOLOR="0x0000FF")
    response = client.get("/service", query_string=params)
    assert response.status_code == 200
    image = image_of(response).convert("RGB")
    assert image.size == (200, 100)
    assert image.getcolors() == [(200 * 100, (0, 0, 255))]
    params = getmap(LAYERS="nope", EXCEPTIONS="BLANK", TRANSPARENT="TRUE")
    image = image_of(client.get("/service", query_string=params)).convert("RGBA")
    assert image.getpixel((0, 0))[3] == 0


def test_too_large_is_always_xml(client: Client) -> None:
    params = getmap(WIDTH="1001", HEIGHT="1000", EXCEPTIONS="INIMAGE")
    response = client.get("/service", query_string=params)
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/vnd.ogc.se_xml"
    assert exception_text(response) == (None, "image size too large")


def test_exception_message_is_escaped(client: Client) -> None:
    response = client.get("/service", query_string=getmap(LAYERS="<a&b>\x01"))
    assert exception_text(response) == ("LayerNotDefined", "unknown layer: <a&b>")


# -- source errors ---------------------------------------------------------------------


def error_service(on_source_errors: str) -> WMSService:
    root = WMSLayer(
        None,
        "Root",
        WORLD,
        children=[
            layer("good", FakeLayer(GREEN)),
            layer("bad", FakeLayer(RED, transparent=True, error="upstream down")),
            layer("worse", FakeLayer(RED, transparent=True, error="timeout")),
            layer("bad_opaque", FakeLayer(RED, error="opaque down")),
        ],
    )
    return WMSService(root, {}, on_source_errors=on_source_errors)


def test_notify_draws_errors_on_partial_result() -> None:
    client = make_client(error_service("notify"))
    response = client.get("/service", query_string=getmap(LAYERS="good,bad"))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert response.headers["Expires"] == "-1"
    image = image_of(response).convert("RGB")
    colors = {color for _, color in image.getcolors(100_000)}  # type: ignore[union-attr]
    # the quantizer may shift the background green a little
    assert any(g > 240 and r < 16 and b < 16 for r, g, b in colors)
    assert len(colors) > 1


def test_notify_without_any_success_is_an_exception() -> None:
    client = make_client(error_service("notify"))
    response = client.get("/service", query_string=getmap(LAYERS="bad,worse"))
    assert response.status_code == 500
    assert exception_text(response) == (None, "Could not get any sources:\nupstream down\ntimeout")


def test_opaque_failing_layer_hides_good_layers() -> None:
    client = make_client(error_service("notify"))
    response = client.get("/service", query_string=getmap(LAYERS="good,bad_opaque"))
    assert response.status_code == 500
    assert exception_text(response) == (None, "Could not get any sources:\nopaque down")


def test_raise_turns_any_error_into_exception() -> None:
    client = make_client(error_service("raise"))
    response = client.get("/service", query_string=getmap(LAYERS="good,bad"))
    assert response.status_code == 500
    assert exception_text(response) == (None, "upstream down")
    params = getmap(LAYERS="good,bad", EXCEPTIONS="inimage")
    assert client.get("/service", query_string=params).headers["Content-Type"] == "image/png"


def test_concurrent_layer_rendering_keeps_order() -> None:
    root = WMSLayer(
        None,
        "Root",
        WORLD,
        children=[
            layer("base", FakeLayer(RED)),
            layer("overlay", FakeLayer(BLUE, transparent=True, left_half_only=True)),
        ],
    )
    client = make_client(WMSService(root, {}, concurrent_layer_renderer=4))
    image = image_of(client.get("/service", query_string=getmap(LAYERS="base,overlay")))
    assert image.convert("RGBA").getpixel((10, 50)) == BLUE
    assert image.convert("RGBA").getpixel((190, 50)) == RED


# -- fuzzing ---------------------------------------------------------------------------

_NASTY = [
    "",
    " ",
    "\x00",
    "\x01\x02",
    "\u00e4\u00f6\u00fc",
    "\U0001f600",
    "%",
    "&amp;",
    "<x>",
    "'\"",
    "\t\n",
    "a" * 300,
    "-",
    ",",
    ",,,",
    "null",
    "None",
]
_CHOICES: dict[str, list[str]] = {
    "service": ["WMS", "wms", "WMTS"],
    "version": ["1.1.1", "1.3.0", "1.0.0", "1.1.0", "1.2.0", "9.9.9", "1", "x.y.z"],
    "wmtver": ["1.0.0", "1.1.1"],
    "request": [
        "GetMap",
        "getmap",
        "map",
        "GetCapabilities",
        "GetFeatureInfo",
        "GetLegendGraphic",
        "capabilities",
        "feature_info",
        "Nope",
    ],
    "layers": ["base", "overlay", "base,overlay", "group", "clear", "nope", "base,,overlay"],
    "styles": ["", "default", ",", "default,default", "fancy", "inspire_common:DEFAULT"],
    "srs": [
        "EPSG:4326",
        "EPSG:3857",
        "epsg:900913",
        "CRS:84",
        "EPSG:4258",
        "EPSG:99999999",
        "EPSG:",
        "EPSG:abc",
        "+proj=merc",
        "urn:ogc:def:crs:EPSG::4326",
    ],
    "bbox": [
        "-180,-90,180,90",
        "0,0,10,10",
        "10,10,0,0",
        "1,2,3",
        "a,b,c,d",
        "nan,0,1,1",
        "-1e308,-1e308,1e308,1e308",
        "0,0,1e-300,1e-300",
        "-20037508,-20037508,20037508,20037508",
        "inf,-inf,1,1",
        "1,1,1,1",
        "0,0,1e20,1e20",
    ],
    "width": ["256", "1", "0", "-1", "12.7", "1e3", "abc", "1e309", "99999999", "nan", "3000"],
    "height": ["256", "1", "0", "-5", "0.9", "7.5", "NaN", "inf", "1000000000000"],
    "format": [
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/tiff",
        "image/GeoTIFF",
        "PNG",
        "JPEG",
        "image/bmp",
        "image/png; mode=8bit",
        "text/html",
    ],
    "transparent": ["TRUE", "true", "FALSE", "yes", "1"],
    "bgcolor": ["0xFFFFFF", "0x000000", "#ff0000", "0xZZZZZZ", "0x12", "red"],
    "exceptions": [
        "application/vnd.ogc.se_xml",
        "application/vnd.ogc.se_inimage",
        "application/vnd.ogc.se_blank",
        "INIMAGE",
        "BLANK",
        "XML",
        "text/html",
    ],
    "time": ["2020-01-01", "current"],
    "tiled": ["true", "false"],
}


def _random_params(rng: random.Random) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, values in _CHOICES.items():
        optional = name in ("wmtver", "time", "tiled", "transparent", "bgcolor", "exceptions")
        if rng.random() < (0.5 if optional else 0.04):
            continue
        value = rng.choice(values)
        if name == "request" and rng.random() < 0.7:
            value = "GetMap"
        if rng.random() < 0.05:
            value = rng.choice(_NASTY)
        elif rng.random() < 0.03:
            value = value + rng.choice(_NASTY)
        key = "".join(ch.upper() if rng.random() < 0.5 else ch for ch in name)
        params[key] = value
        if name == "srs" and rng.random() < 0.9:
            params["CRS"] = value
    return params


def test_fuzz_getmap_never_crashes(service: WMSService) -> None:
    rng = random.Random(20240607)
    client = make_client(service)
    statuses: set[int] = set()
    for _ in range(300):
        params = _random_params(rng)
        response = client.get("/service", query_string=params)
        statuses.add(response.status_code)
        content_type = response.headers.get("Content-Type", "")
        assert response.status_code in (200, 500), params
        if content_type.startswith("image/"):
            image_of(response)
            continue
        assert "xml" in content_type, (params, content_type)
        root = etree.fromstring(response.data)
        if response.status_code == 500:
            assert etree.QName(root).localname in ("ServiceExceptionReport", "WMTException")
        else:
            assert etree.QName(root).localname in ("WMT_MS_Capabilities", "WMS_Capabilities")
    assert statuses == {200, 500}


_INFO_CHOICES: dict[str, list[str]] = {
    "version": ["1.1.1", "1.3.0", "1.0.0", "1.1.0", "2.0", "x.y.z", "\x00", "1.1.1\x00"],
    "request": ["GetFeatureInfo", "feature_info", "GetLegendGraphic", "getlegendgraphic"],
    "query_layers": ["base", "overlay", "nope", "base,nope", "", "\x00", "base\x00"],
    "layer": ["base", "nope", "", "\x00", "group"],
    "x": ["0", "5", "199", "200", "-1", "1e9", "abc", "", "5.5", "\x00"],
    "y": ["0", "5", "99", "100", "-3", "nan", "", "\x00"],
    "info_format": ["text/plain", "text/html", "application/vnd.ogc.gml", "text/xml", "x/y", ""],
    "sld_version": ["1.1.0", "1.0.0", "", "\x00"],
    "feature_count": ["1", "-1", "abc", "99999999999"],
    "scale": ["1000", "abc", "-1", ""],
}


def test_fuzz_featureinfo_and_legend_never_crash(service: WMSService) -> None:
    rng = random.Random(20240608)
    client = make_client(service)
    for _ in range(200):
        params = _random_params(rng)
        for name, values in _INFO_CHOICES.items():
            if rng.random() < 0.15:
                continue
            value = rng.choice(values)
            if rng.random() < 0.05:
                value += rng.choice(_NASTY)
            params[name.upper() if rng.random() < 0.5 else name] = value
            if name in ("x", "y") and rng.random() < 0.7:
                params["I" if name == "x" else "J"] = value
        response = client.get("/service", query_string=params)
        content_type = response.headers.get("Content-Type", "")
        assert response.status_code in (200, 404, 500), params
        assert (
            response.status_code != 500
            or "xml" in content_type
            or content_type.startswith("image/")
        ), (params, content_type, response.data[:200])
        if content_type.startswith("image/"):
            image_of(response)
        elif response.status_code != 200:
            root = etree.fromstring(response.data)
            assert etree.QName(root).localname in ("ServiceExceptionReport", "WMTException")
        elif "xml" in content_type and response.data:
            etree.fromstring(response.data)
