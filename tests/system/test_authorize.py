"""The authorization API (``environ['mapproxy.authorize']``) in WMS, TMS, WMTS and the demo.

A wrapping middleware injects a recording callback; the fake WMS paints each layer in
its own colour so pixels tell which layers were drawn and where they were clipped.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import pytest
import shapely
from lxml import etree
from PIL import Image
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, png_bytes

COLORS = {"a": (255, 0, 0), "b": (0, 255, 0), "c": (0, 0, 255), "d": (255, 255, 0)}
OWS = "{http://www.opengis.net/ows/1.1}"
WMS13 = "{http://www.opengis.net/wms}"
WMTS = "{http://www.opengis.net/wmts/1.0}"

CONFIG = """
services:
  demo:
  tms:
  wmts:
  wms:
    srs: ['EPSG:4326', 'EPSG:3857', 'EPSG:25832']
    md: {title: Auth test}
layers:
  - name: grp
    title: Group
    layers:
      - {name: a, title: A, sources: [a_cache]}
      - {name: b, title: B, sources: [b_wms]}
  - {name: c, title: C, sources: [c_cache]}
  - title: Unnamed
    layers:
      - {name: d, title: D, sources: [d_wms]}
caches:
  a_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [a_wms]
    meta_size: [1, 1]
    meta_buffer: 0
  c_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [c_wms]
    format: image/jpeg
    meta_size: [1, 1]
    meta_buffer: 0
sources:
  a_wms: {type: wms, req: {url: "{url}/service", layers: a}}
  b_wms: {type: wms, req: {url: "{url}/service", layers: b, transparent: true}}
  c_wms: {type: wms, req: {url: "{url}/service", layers: c}}
  d_wms: {type: wms, req: {url: "{url}/service", layers: d}}
globals:
  cache: {base_dir: ./cache_data}
"""

GETMAP = {
    "SERVICE": "WMS",
    "REQUEST": "GetMap",
    "VERSION": "1.1.1",
    "SRS": "EPSG:4326",
    "BBOX": "0,0,10,10",
    "WIDTH": "100",
    "HEIGHT": "100",
    "FORMAT": "image/png",
    "STYLES": "",
    "TRANSPARENT": "true",
}
CAPABILITIES_111 = {"SERVICE": "WMS", "REQUEST": "GetCapabilities", "VERSION": "1.1.1"}
CAPABILITIES_130 = {"SERVICE": "WMS", "REQUEST": "GetCapabilities", "VERSION": "1.3.0"}
MERCATOR_HALF = 20037508.342789244


class Authorizer:
    """A recording authorization callback answering ``result`` (or ``answer(...)``)."""

    def __init__(self) -> None:
        self.result: Any = {"authorized": "full"}
        self.answer: Callable[..., Any] | None = None
        self.calls: list[dict[str, Any]] = []

    def __call__(self, service: str, layers: list[str], **kwargs: Any) -> Any:
        self.calls.append({"service": service, "layers": layers, **kwargs})
        if self.answer is not None:
            return self.answer(service, layers, **kwargs)
        return self.result

    @property
    def last(self) -> dict[str, Any]:
        assert self.calls, "the callback was not called"
        return self.calls[-1]

    def summary(self) -> list[tuple[str, list[str], Any]]:
        """(service, layers, query_extent) of every call."""
        return [(c["service"], c["layers"], c["query_extent"]) for c in self.calls]


def colour_wms(request: Request) -> Response:
    """The fake WMS: each layer in its own opaque colour, at the requested size."""
    args = {key.lower(): value for key, value in request.args.items()}
    size = (int(args.get("width", 256)), int(args.get("height", 256)))
    color = COLORS.get(args.get("layers", ""), (128, 128, 128))
    return Response(png_bytes(size, color), content_type="image/png")


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(colour_wms) as fake:
        yield fake


@pytest.fixture
def authorizer() -> Authorizer:
    return Authorizer()


@pytest.fixture
def mapproxy(make_app: Callable[..., Client], upstream: FakeUpstream) -> Any:
    """The MapProxy WSGI app (without authorization)."""
    return make_app(CONFIG.replace("{url}", upstream.url)).app  # type: ignore[attr-defined]


@pytest.fixture
def plain(mapproxy: Any) -> Client:
    """A client without authorization middleware."""
    return Client(mapproxy)


@pytest.fixture
def client(mapproxy: Any, authorizer: Authorizer) -> Client:
    """A client whose requests pass a middleware that sets ``mapproxy.authorize``."""

    def middleware(environ: dict[str, Any], start_response: Any) -> Any:
        environ["mapproxy.authorize"] = authorizer
        return mapproxy(environ, start_response)

    return Client(middleware)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache_data"


def image_of(response: Any) -> Image.Image:
    image = Image.open(io.BytesIO(response.data))
    image.load()
    return image


def rgba(response: Any, *points: tuple[int, int]) -> list[tuple[int, ...]]:
    image = image_of(response).convert("RGBA")
    return [image.getpixel(point) for point in points]  # type: ignore[misc]


def alpha(pixel: tuple[int, ...]) -> int:
    return pixel[3]


def partial(layers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"authorized": "partial", "layers": layers, **extra}


def getmap(client: Client, **params: str) -> Any:
    return client.get("/service", query_string={**GETMAP, **params})


def upstream_layers(upstream: FakeUpstream) -> list[str]:
    return [query.get("layers", "") for _, query in upstream.requests]


# --- without a callback ----------------------------------------------------------------


def test_without_callback_responses_are_unchanged(
    plain: Client, client: Client, authorizer: Authorizer
) -> None:
    requests: list[tuple[str, dict[str, str] | None]] = [
        ("/service", {**GETMAP, "LAYERS": "grp,c"}),
        ("/service", CAPABILITIES_111),
        ("/service", CAPABILITIES_130),
        ("/tms/1.0.0/", None),
        ("/tms/1.0.0/a/EPSG3857/1/0/0.png", None),
        ("/wmts/1.0.0/WMTSCapabilities.xml", None),
        ("/wmts/a/GLOBAL_WEBMERCATOR/1/0/0.png", None),
        ("/demo/", None),
    ]
    for path, query in requests:
        without = plain.get(path, query_string=query)
        with_full = client.get(path, query_string=query)
        assert without.status_code == 200, path
        assert with_full.status_code == 200, path
        assert without.data == with_full.data, path
    assert len(authorizer.calls) == len(requests)


def test_without_callback_the_environ_key_is_not_required(plain: Client) -> None:
    response = getmap(plain, LAYERS="a")
    assert response.status_code == 200
    assert alpha(rgba(response, (50, 50))[0]) == 255


# --- what the callback is called with ------------------------------------------------------


def test_getmap_passes_resolved_leaf_layers_and_query_extent(
    client: Client, authorizer: Authorizer
) -> None:
    response = getmap(client, LAYERS="grp,c,d")
    assert response.status_code == 200
    call = authorizer.last
    assert call["service"] == "wms.map"
    assert call["layers"] == ["a", "b", "c", "d"]
    assert call["query_extent"] == ("EPSG:4326", (0.0, 0.0, 10.0, 10.0))
    assert set(call) == {"service", "layers", "environ", "query_extent"}
    assert call["environ"]["PATH_INFO"] == "/service"
    assert "mapproxy.authorize" in call["environ"]


def test_getmap_130_query_extent_is_in_x_y_order(client: Client, authorizer: Authorizer) -> None:
    response = getmap(client, VERSION="1.3.0", CRS="EPSG:4326", BBOX="0,10,10,20", LAYERS="b")
    assert response.status_code == 200
    assert authorizer.summary() == [("wms.map", ["b"], ("EPSG:4326", (10.0, 0.0, 20.0, 10.0)))]


def test_invalid_getmap_is_rejected_before_authorization(
    client: Client, authorizer: Authorizer
) -> None:
    assert getmap(client, LAYERS="unknown").status_code != 200
    assert getmap(client, LAYERS="a", BBOX="0,0,10").status_code != 200
    assert authorizer.calls == []


def test_wms_capabilities_pass_all_named_layers(client: Client, authorizer: Authorizer) -> None:
    assert client.get("/service", query_string=CAPABILITIES_111).status_code == 200
    assert client.get("/service", query_string=CAPABILITIES_130).status_code == 200
    expected = ("wms.capabilities", ["grp", "a", "b", "c", "d"], None)
    assert authorizer.summary() == [expected, expected]


def test_tms_and_tiles_pass_the_layer_and_tile_bbox(client: Client, authorizer: Authorizer) -> None:
    # TMS level 0 is internal level 1 (global-mercator profile), rows count from the south
    assert client.get("/tms/1.0.0/a/EPSG3857/0/0/1.png").status_code == 200
    assert client.get("/tiles/a/EPSG3857/1/0/0.png").status_code == 200
    north_west = ("EPSG:3857", (-MERCATOR_HALF, 0.0, 0.0, MERCATOR_HALF))
    assert authorizer.summary() == [("tms", ["a"], north_west), ("tms", ["a"], north_west)]


def test_tms_documents_pass_layers_without_extent(client: Client, authorizer: Authorizer) -> None:
    assert client.get("/tms/1.0.0/").status_code == 200
    assert client.get("/tms/1.0.0/a/EPSG3857").status_code == 200
    assert client.get("/tms/").status_code == 200  # the root document is not authorized
    assert authorizer.summary() == [("tms", ["a", "c"], None), ("tms", ["a"], None)]


def test_wmts_passes_the_layer_and_tile_bbox(client: Client, authorizer: Authorizer) -> None:
    assert client.get("/wmts/a/GLOBAL_WEBMERCATOR/1/0/0.png").status_code == 200
    kvp = {
        "SERVICE": "WMTS",
        "REQUEST": "GetTile",
        "VERSION": "1.0.0",
        "LAYER": "c",
        "STYLE": "",
        "TILEMATRIXSET": "GLOBAL_WEBMERCATOR",
        "TILEMATRIX": "01",
        "TILEROW": "1",
        "TILECOL": "1",
        "FORMAT": "image/jpeg",
    }
    assert client.get("/service", query_string=kvp).status_code == 200
    assert authorizer.summary() == [
        ("wmts", ["a"], ("EPSG:3857", (-MERCATOR_HALF, 0.0, 0.0, MERCATOR_HALF))),
        ("wmts", ["c"], ("EPSG:3857", (0.0, -MERCATOR_HALF, MERCATOR_HALF, 0.0))),
    ]


def test_wmts_capabilities_pass_all_layers(client: Client, authorizer: Authorizer) -> None:
    assert client.get("/wmts/1.0.0/WMTSCapabilities.xml").status_code == 200
    kvp = {"SERVICE": "WMTS", "REQUEST": "GetCapabilities"}
    assert client.get("/service", query_string=kvp).status_code == 200
    assert authorizer.summary() == [("wmts", ["a", "c"], None), ("wmts", ["a", "c"], None)]


def test_tile_outside_the_grid_is_rejected_before_authorization(
    client: Client, authorizer: Authorizer
) -> None:
    assert client.get("/tiles/a/EPSG3857/1/5/5.png").status_code == 404
    assert client.get("/wmts/a/GLOBAL_WEBMERCATOR/1/5/5.png").status_code == 400
    assert authorizer.calls == []


def test_demo_passes_no_layers(client: Client, authorizer: Authorizer) -> None:
    assert client.get("/demo/").status_code == 200
    assert authorizer.summary() == [("demo", [], None)]
    authorizer.calls.clear()
    assert client.get("/demo/static/demo.css").status_code == 200
    assert authorizer.calls == []


# --- refusals in each protocol's format ------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        ({"authorized": "none"}, 403, "forbidden"),
        ({"authorized": "unauthenticated"}, 401, "unauthorized"),
        ({"authorized": "no such value"}, 403, "forbidden"),
        (None, 403, "forbidden"),
    ],
)
def test_wms_refusals_are_exception_documents(
    client: Client, authorizer: Authorizer, answer: Any, status: int, message: str
) -> None:
    authorizer.result = answer
    response = getmap(client, LAYERS="grp")  # also for a group: refused, not blank
    assert response.status_code == status
    assert response.mimetype == "application/vnd.ogc.se_xml"
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    root = etree.fromstring(response.data)
    assert root.tag == "ServiceExceptionReport"
    assert root.findtext("ServiceException") == message

    response = getmap(client, VERSION="1.3.0", CRS="EPSG:4326", LAYERS="a")
    assert response.status_code == status
    assert response.mimetype == "text/xml"
    root = etree.fromstring(response.data)
    assert root.tag == "{http://www.opengis.net/ogc}ServiceExceptionReport"
    assert root.get("version") == "1.3.0"

    response = client.get("/service", query_string=CAPABILITIES_130)
    assert response.status_code == status
    assert etree.fromstring(response.data).get("version") == "1.3.0"


def test_wms_refusal_ignores_inimage_exceptions(client: Client, authorizer: Authorizer) -> None:
    authorizer.result = {"authorized": "none"}
    response = getmap(client, LAYERS="a", EXCEPTIONS="application/vnd.ogc.se_inimage")
    assert response.status_code == 403
    assert response.mimetype == "application/vnd.ogc.se_xml"


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        ({"authorized": "none"}, 403, "forbidden"),
        ({"authorized": "unauthenticated"}, 401, "unauthorized"),
    ],
)
def test_wmts_refusals_are_ows_exception_reports(
    client: Client, authorizer: Authorizer, answer: Any, status: int, message: str
) -> None:
    authorizer.result = answer
    for path, query in [
        ("/wmts/a/GLOBAL_WEBMERCATOR/1/0/0.png", None),
        ("/wmts/1.0.0/WMTSCapabilities.xml", None),
        ("/service", {"SERVICE": "WMTS", "REQUEST": "GetCapabilities"}),
    ]:
        response = client.get(path, query_string=query)
        assert response.status_code == status, path
        assert response.mimetype == "text/xml"
        root = etree.fromstring(response.data)
        assert root.tag == f"{OWS}ExceptionReport"
        assert root.findtext(f"{OWS}Exception/{OWS}ExceptionText") == message


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        ({"authorized": "none"}, 403, "forbidden"),
        ({"authorized": "unauthenticated"}, 401, "unauthorized"),
    ],
)
def test_tms_refusals_are_tms_errors(
    client: Client, authorizer: Authorizer, answer: Any, status: int, message: str
) -> None:
    authorizer.result = answer
    for path in ("/tms/1.0.0/a/EPSG3857/1/0/0.png", "/tms/1.0.0/", "/tms/1.0.0/a/EPSG3857"):
        response = client.get(path)
        assert response.status_code == status, path
        assert response.mimetype == "text/xml"
        root = etree.fromstring(response.data)
        assert root.tag == "TileMapServerError"
        assert root.findtext("Message") == message
    response = client.get("/tiles/a/EPSG3857/1/0/0.png")
    assert response.status_code == status
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == message


def test_tile_needs_the_tile_feature(client: Client, authorizer: Authorizer) -> None:
    authorizer.result = partial({"a": {"map": True}, "c": {"tile": True}})
    assert client.get("/tms/1.0.0/a/EPSG3857/1/0/0.png").status_code == 403
    assert client.get("/wmts/a/GLOBAL_WEBMERCATOR/1/0/0.png").status_code == 403
    assert client.get("/tms/1.0.0/a/EPSG3857").status_code == 403
    assert client.get("/tms/1.0.0/c/EPSG3857/1/0/0.jpeg").status_code == 200
    assert client.get("/wmts/c/GLOBAL_WEBMERCATOR/1/0/0.jpeg").status_code == 200


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ({"authorized": "none"}, 403),
        ({"authorized": "unauthenticated"}, 401),
        (partial({"a": {"map": True}}), 403),
    ],
)
def test_demo_allows_only_full_access(
    client: Client, authorizer: Authorizer, answer: Any, status: int
) -> None:
    authorizer.result = answer
    response = client.get("/demo/")
    assert response.status_code == status
    assert response.mimetype == "text/plain"
    assert client.get("/demo/static/demo.css").status_code == 200


def test_demo_capabilities_view_is_filtered_for_the_user(
    client: Client, authorizer: Authorizer
) -> None:
    def answer(service: str, layers: list[str], **kwargs: Any) -> Any:
        if service == "demo":
            return {"authorized": "full"}
        assert kwargs["environ"].get("HTTP_AUTHORIZATION") == "Bearer jane"
        return partial({"c": {"map": True}})

    authorizer.answer = answer
    response = client.get(
        "/demo/", query_string={"wms_capabilities": ""}, headers={"Authorization": "Bearer jane"}
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "&lt;Name&gt;c&lt;/Name&gt;" in text
    assert "&lt;Name&gt;a&lt;/Name&gt;" not in text
    assert [call["service"] for call in authorizer.calls] == ["demo", "wms.capabilities"]


# --- WMS layer rules ----------------------------------------------------------------------


def test_explicitly_requested_unpermitted_layer_refuses_the_request(
    client: Client, authorizer: Authorizer, upstream: FakeUpstream
) -> None:
    authorizer.result = partial({"a": {"map": True}})
    response = getmap(client, LAYERS="a,b")
    assert response.status_code == 403
    assert etree.fromstring(response.data).findtext("ServiceException") == "forbidden"
    assert upstream.requests == []


def test_unpermitted_sub_layers_of_a_group_are_dropped(
    client: Client, authorizer: Authorizer, upstream: FakeUpstream
) -> None:
    # b (green) is drawn above a (red) when both are permitted
    assert rgba(getmap(client, LAYERS="grp"), (50, 50)) == [(0, 255, 0, 255)]
    upstream.requests.clear()
    authorizer.result = partial({"a": {"map": True}, "b": {"featureinfo": True}})
    response = getmap(client, LAYERS="grp")
    assert response.status_code == 200
    assert rgba(response, (50, 50)) == [(255, 0, 0, 255)]
    assert "b" not in upstream_layers(upstream)


def test_a_group_needs_no_permission_of_its_own(client: Client, authorizer: Authorizer) -> None:
    authorizer.result = partial({"a": {"map": True}, "b": {"map": True}})
    assert rgba(getmap(client, LAYERS="grp"), (50, 50)) == [(0, 255, 0, 255)]


def test_group_without_permitted_layers_gives_an_empty_image(
    client: Client, authorizer: Authorizer, upstream: FakeUpstream
) -> None:
    authorizer.result = partial({"grp": {"map": True}})
    response = getmap(client, LAYERS="grp")
    assert response.status_code == 200
    assert alpha(rgba(response, (50, 50))[0]) == 0
    assert upstream.requests == []


def test_full_answer_ignores_limits(client: Client, authorizer: Authorizer) -> None:
    authorizer.result = {
        "authorized": "full",
        "limited_to": {"geometry": [0, 0, 1, 1], "srs": "EPSG:4326"},
    }
    assert rgba(getmap(client, LAYERS="b"), (90, 10)) == [(0, 255, 0, 255)]


# --- WMS capabilities ----------------------------------------------------------------------


def layer_names_111(response: Any) -> list[str]:
    root = etree.fromstring(response.data)
    return [str(name) for name in root.xpath("//Layer/Name/text()")]


def test_capabilities_list_only_permitted_layers(client: Client, authorizer: Authorizer) -> None:
    authorizer.result = partial(
        {"grp": {"map": True}, "a": {"map": True}, "b": {"featureinfo": True}, "c": {"map": True}}
    )
    response = client.get("/service", query_string=CAPABILITIES_111)
    assert response.status_code == 200
    assert layer_names_111(response) == ["grp", "a", "c"]
    root = etree.fromstring(response.data)
    # the unnamed group lost its only layer and is gone too; the root stays
    assert root.xpath("//Layer[not(Name)]/Title/text()") == ["Auth test"]

    response = client.get("/service", query_string=CAPABILITIES_130)
    root = etree.fromstring(response.data)
    names = root.xpath("//wms:Layer/wms:Name/text()", namespaces={"wms": WMS13[1:-1]})
    assert names == ["grp", "a", "c"]


def test_capabilities_hide_layers_of_an_unlisted_parent(
    client: Client, authorizer: Authorizer
) -> None:
    authorizer.result = partial({"a": {"map": True}, "b": {"map": True}, "d": {"map": True}})
    response = client.get("/service", query_string=CAPABILITIES_111)
    assert layer_names_111(response) == ["d"]
    root = etree.fromstring(response.data)
    assert root.xpath("//Layer[Name='d']/../Title/text()") == ["Unnamed"]
    # not listed, but still requestable
    assert getmap(client, LAYERS="a").status_code == 200


def bbox_attrs(element: Any) -> tuple[float, ...]:
    return tuple(float(element.get(key)) for key in ("minx", "miny", "maxx", "maxy"))


def test_capabilities_extents_shrink_to_limits(client: Client, authorizer: Authorizer) -> None:
    authorizer.result = partial(
        {
            "grp": {"map": True, "limited_to": {"geometry": [0, 0, 10, 10], "srs": "EPSG:4326"}},
            "a": {"map": True, "limited_to": {"geometry": [5, 5, 20, 20], "srs": "EPSG:4326"}},
            "b": {"map": True, "limited_to": {"geometry": [100, 50, 110, 60], "srs": "EPSG:4326"}},
            "c": {"map": True},
        },
        limited_to={"geometry": [-10, -10, 8, 8], "srs": "EPSG:4326"},
    )
    response = client.get("/service", query_string=CAPABILITIES_111)
    root = etree.fromstring(response.data)
    assert layer_names_111(response) == ["grp", "a", "c"]  # b lies outside the request limit

    def llbbox(xpath: str) -> tuple[float, ...]:
        return bbox_attrs(root.xpath(f"{xpath}/LatLonBoundingBox")[0])

    assert llbbox("/WMT_MS_Capabilities/Capability/Layer") == (-10.0, -10.0, 8.0, 8.0)
    assert llbbox("//Layer[Name='grp']") == (0.0, 0.0, 8.0, 8.0)
    assert llbbox("//Layer[Name='a']") == (5.0, 5.0, 8.0, 8.0)
    assert llbbox("//Layer[Name='c']") == (-10.0, -10.0, 8.0, 8.0)
    mercator = bbox_attrs(root.xpath("//Layer[Name='a']/BoundingBox[@SRS='EPSG:3857']")[0])
    expected = pyproj.Transformer.from_crs(4326, 3857, always_xy=True).transform_bounds(5, 5, 8, 8)
    assert mercator == pytest.approx(expected)

    response = client.get("/service", query_string=CAPABILITIES_130)
    root = etree.fromstring(response.data)
    ns = {"wms": WMS13[1:-1]}
    box = root.xpath("//wms:Layer[wms:Name='a']/wms:BoundingBox[@CRS='EPSG:4326']", namespaces=ns)
    assert bbox_attrs(box[0]) == (5.0, 5.0, 8.0, 8.0)  # lat/lon order, square anyway
    west = root.xpath(
        "//wms:Layer[wms:Name='a']/wms:EX_GeographicBoundingBox/wms:westBoundLongitude/text()",
        namespaces=ns,
    )
    assert west == ["5.0"]


def test_capabilities_limit_in_another_srs(client: Client, authorizer: Authorizer) -> None:
    utm = (
        "POLYGON((500000 5500000, 600000 5500000, 600000 5600000, 500000 5600000, 500000 5500000))"
    )
    authorizer.result = partial(
        {"c": {"map": True, "limited_to": {"geometry": utm, "srs": "EPSG:25832"}}}
    )
    response = client.get("/service", query_string=CAPABILITIES_111)
    root = etree.fromstring(response.data)
    west, south, east, north = bbox_attrs(root.xpath("//Layer[Name='c']/LatLonBoundingBox")[0])
    to_lonlat = pyproj.Transformer.from_crs(25832, 4326, always_xy=True)
    assert (west, south, east, north) == pytest.approx(
        to_lonlat.transform_bounds(500000, 5500000, 600000, 5600000), abs=1e-3
    )


# --- GetMap with limited_to ----------------------------------------------------------------


def test_getmap_clips_a_limited_layer_to_a_bbox(client: Client, authorizer: Authorizer) -> None:
    authorizer.result = partial(
        {"b": {"map": True, "limited_to": {"geometry": [5, 0, 10, 7.5], "srs": "EPSG:4326"}}}
    )
    response = getmap(client, LAYERS="b")
    assert response.status_code == 200
    pixels = rgba(response, (49, 50), (50, 50), (99, 99), (60, 24), (60, 25), (0, 0))
    assert [alpha(p) for p in pixels] == [0, 255, 255, 0, 255, 0]


def test_getmap_clip_outside_shows_the_background_colour(
    client: Client, authorizer: Authorizer
) -> None:
    authorizer.result = partial(
        {"b": {"map": True, "limited_to": {"geometry": [0, 0, 5, 10], "srs": "EPSG:4326"}}}
    )
    response = getmap(client, LAYERS="b", TRANSPARENT="false", BGCOLOR="0xff00ff")
    assert rgba(response, (25, 50), (75, 50)) == [(0, 255, 0, 255), (255, 0, 255, 255)]
    response = getmap(client, LAYERS="b", TRANSPARENT="false", FORMAT="image/jpeg")
    inside, outside = rgba(response, (25, 50), (75, 50))
    assert inside[1] > 240 and inside[0] < 15
    assert outside[:3] == pytest.approx((255, 255, 255), abs=3)


def test_getmap_layer_outside_its_limit_is_not_requested(
    client: Client, authorizer: Authorizer, upstream: FakeUpstream
) -> None:
    authorizer.result = partial(
        {
            "b": {"map": True, "limited_to": {"geometry": [50, 50, 60, 60], "srs": "EPSG:4326"}},
            "d": {"map": True},
        }
    )
    response = getmap(client, LAYERS="b,d")
    assert rgba(response, (50, 50)) == [(255, 255, 0, 255)]
    assert upstream_layers(upstream) == ["d"]


def test_getmap_clips_to_a_wkt_polygon_in_another_srs(
    client: Client, authorizer: Authorizer
) -> None:
    utm_polygon = "POLYGON((500000 5500000, 650000 5450000, 600000 5650000, 500000 5500000))"
    second = "POLYGON((300000 5300000, 350000 5300000, 350000 5350000, 300000 5300000))"
    authorizer.result = partial(
        {
            "b": {
                "map": True,
                "limited_to": {"geometry": f"{utm_polygon}\n{second}", "srs": "EPSG:25832"},
            }
        }
    )
    bbox = (500000.0, 6000000.0, 1500000.0, 7000000.0)
    size = 200
    response = getmap(
        client,
        LAYERS="b",
        SRS="EPSG:3857",
        BBOX=",".join(map(str, bbox)),
        WIDTH="200",
        HEIGHT="200",
    )
    assert response.status_code == 200
    image = np.asarray(image_of(response).convert("RGBA"))

    area = shapely.union_all([shapely.from_wkt(utm_polygon), shapely.from_wkt(second)])
    boundary = area.boundary
    to_utm = pyproj.Transformer.from_crs(3857, 25832, always_xy=True)
    res = (bbox[2] - bbox[0]) / size
    checked = inside_count = 0
    for row in range(0, size, 4):
        for col in range(0, size, 4):
            x = bbox[0] + (col + 0.5) * res
            y = bbox[3] - (row + 0.5) * res
            point = shapely.Point(*to_utm.transform(x, y))
            if boundary.distance(point) < 3 * res:  # too close to the edge to tell
                continue
            inside = area.contains(point)
            assert image[row, col, 3] == (255 if inside else 0), (row, col)
            checked += 1
            inside_count += inside
    assert checked > 2000
    assert 20 < inside_count < checked - 20


def test_getmap_clips_to_a_shapely_geometry(client: Client, authorizer: Authorizer) -> None:
    triangle = shapely.Polygon([(0, 0), (10, 0), (0, 10)])
    authorizer.result = partial(
        {"b": {"map": True, "limited_to": {"geometry": triangle, "srs": "EPSG:4326"}}}
    )
    assert [alpha(p) for p in rgba(getmap(client, LAYERS="b"), (10, 90), (90, 10))] == [255, 0]


def test_request_limit_clips_every_layer(client: Client, authorizer: Authorizer) -> None:
    authorizer.result = partial(
        {
            "b": {"map": True, "limited_to": {"geometry": [0, 0, 5, 10], "srs": "EPSG:4326"}},
            "d": {"map": True},
        },
        limited_to={"geometry": "POLYGON((0 0, 10 0, 10 5, 0 5, 0 0))", "srs": "EPSG:4326"},
    )
    response = getmap(client, LAYERS="d,b")
    # b (green) only where both limits meet, d (yellow) in the lower half, the rest empty
    lower_left, lower_right, upper_left, upper_right = rgba(
        response, (25, 75), (75, 75), (25, 25), (75, 25)
    )
    assert lower_left == (0, 255, 0, 255)
    assert lower_right == (255, 255, 0, 255)
    assert alpha(upper_left) == alpha(upper_right) == 0


def test_clipped_opaque_layer_does_not_hide_layers_below(
    client: Client, authorizer: Authorizer, upstream: FakeUpstream
) -> None:
    query = {"LAYERS": "d,c", "SRS": "EPSG:3857", "BBOX": "0,0,1000000,1000000"}
    assert getmap(client, **query).status_code == 200
    assert "d" not in upstream_layers(upstream)  # the unclipped, opaque c hides d
    upstream.requests.clear()
    authorizer.result = partial(
        {
            "c": {"map": True, "limited_to": {"geometry": [0, 0, 5, 10], "srs": "EPSG:4326"}},
            "d": {"map": True},
        }
    )
    response = getmap(client, **query)
    left, right = rgba(response, (25, 50), (75, 50))
    assert left[2] > 240 and left[0] < 15  # c (blue, from a JPEG cache)
    assert right == (255, 255, 0, 255)  # d below shows through
    assert "d" in upstream_layers(upstream)


def test_clips_with_concurrent_layer_rendering(
    make_app: Callable[..., Client], upstream: FakeUpstream
) -> None:
    config = CONFIG.replace("{url}", upstream.url).replace(
        "md: {title: Auth test}", "md: {title: Auth test}\n    concurrent_layer_renderer: 4"
    )
    mapproxy = make_app(config).app  # type: ignore[attr-defined]
    limit = {"geometry": [0, 0, 5, 10], "srs": "EPSG:4326"}

    def middleware(environ: dict[str, Any], start_response: Any) -> Any:
        environ["mapproxy.authorize"] = lambda service, layers, **kwargs: partial(
            {"b": {"map": True, "limited_to": limit}, "d": {"map": True}}
        )
        return mapproxy(environ, start_response)

    response = getmap(Client(middleware), LAYERS="d,b")
    assert rgba(response, (25, 50), (75, 50)) == [(0, 255, 0, 255), (255, 255, 0, 255)]


def test_invalid_limit_is_a_server_error(client: Client, authorizer: Authorizer) -> None:
    for limit in (
        {"geometry": [0, 0, 5, 10]},
        {"geometry": "POLYGON((0 0, 1", "srs": "EPSG:4326"},
        {"geometry": "LINESTRING(0 0, 1 1)", "srs": "EPSG:4326"},
        {"geometry": [0, 0, 5, 10], "srs": "EPSG:nonsense"},
    ):
        authorizer.result = partial({"b": {"map": True, "limited_to": limit}})
        assert getmap(client, LAYERS="b").status_code == 500, limit


# --- tiles with limited_to -----------------------------------------------------------------


def tile_pixels(response: Any) -> np.ndarray:
    return np.asarray(image_of(response).convert("RGBA"))


def test_tile_outside_the_limit_is_transparent_and_not_loaded(
    client: Client, authorizer: Authorizer, upstream: FakeUpstream, cache_dir: Path
) -> None:
    authorizer.result = partial(
        {"c": {"tile": True, "limited_to": {"geometry": [10, 10, 20, 20], "srs": "EPSG:4326"}}}
    )
    for path in ("/tiles/c/EPSG3857/1/0/1.jpeg", "/wmts/c/GLOBAL_WEBMERCATOR/1/0/1.jpeg"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.mimetype == "image/png"
        assert response.headers["Cache-Control"] == "no-cache, no-store"
        assert "ETag" not in response.headers
        assert tile_pixels(response)[..., 3].max() == 0
    assert upstream.requests == []
    assert not (cache_dir / "c_cache_EPSG3857").exists()


def test_partly_covered_tile_is_masked_png_and_cached_in_full(
    client: Client, plain: Client, authorizer: Authorizer, cache_dir: Path
) -> None:
    # the north-east tile of level 1; limited to its lower left quarter
    quarter = pyproj.Transformer.from_crs(3857, 4326, always_xy=True).transform_bounds(
        0, 0, MERCATOR_HALF / 2, MERCATOR_HALF / 2
    )
    authorizer.result = partial(
        {"c": {"tile": True, "limited_to": {"geometry": list(quarter), "srs": "EPSG:4326"}}}
    )
    response = client.get("/wmts/c/GLOBAL_WEBMERCATOR/1/1/0.jpeg")
    assert response.status_code == 200
    assert response.mimetype == "image/png"  # even though the cache holds JPEG
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    pixels = tile_pixels(response)
    assert pixels[..., 3][128:, :128].min() == 255
    assert pixels[..., 3][:128, :].max() == 0
    assert pixels[..., 3][:, 128:].max() == 0
    assert pixels[200, 50, 2] > 240  # blue inside

    cached = list((cache_dir / "c_cache_EPSG3857").rglob("*.jpeg"))
    assert len(cached) == 1
    full = Image.open(cached[0]).convert("RGB")
    assert full.getpixel((10, 10))[2] > 240  # the cache keeps the whole tile
    response = plain.get("/wmts/c/GLOBAL_WEBMERCATOR/1/1/0.jpeg")
    assert response.mimetype == "image/jpeg"
    assert response.data == cached[0].read_bytes()


def test_tile_inside_the_limit_is_served_unchanged(
    client: Client, plain: Client, authorizer: Authorizer
) -> None:
    authorizer.result = partial(
        {"a": {"tile": True, "limited_to": {"geometry": [-180, -85, 180, 85], "srs": "EPSG:4326"}}}
    )
    limited = client.get("/tms/1.0.0/a/EPSG3857/1/1/1.png")
    unlimited = plain.get("/tms/1.0.0/a/EPSG3857/1/1/1.png")
    assert limited.status_code == 200
    assert limited.data == unlimited.data
    assert "ETag" in limited.headers


def test_layer_limit_wins_over_request_limit_for_tiles(
    client: Client, authorizer: Authorizer
) -> None:
    authorizer.result = partial(
        {"a": {"tile": True, "limited_to": {"geometry": [-180, -89, 180, 89], "srs": "EPSG:4326"}}},
        limited_to={"geometry": [100, 50, 110, 60], "srs": "EPSG:4326"},
    )
    response = client.get("/tiles/a/EPSG3857/1/0/0.png")
    assert tile_pixels(response)[..., 3].min() == 255
    authorizer.result = partial(
        {"a": {"tile": True}}, limited_to={"geometry": [100, 50, 110, 60], "srs": "EPSG:4326"}
    )
    response = client.get("/tiles/a/EPSG3857/1/0/0.png")
    assert tile_pixels(response)[..., 3].max() == 0


# --- tile capabilities ----------------------------------------------------------------------


def test_tms_capabilities_list_only_permitted_layers(
    client: Client, authorizer: Authorizer
) -> None:
    authorizer.result = partial({"a": {"map": True}, "c": {"tile": True}})
    root = etree.fromstring(client.get("/tms/1.0.0/").data)
    assert [e.get("href") for e in root.iter("TileMap")] == [
        "http://localhost/tms/1.0.0/c/EPSG3857"
    ]


def test_wmts_capabilities_list_only_permitted_layers(
    client: Client, authorizer: Authorizer
) -> None:
    authorizer.result = partial({"a": {"tile": True}, "c": {"map": True}})
    for path, query in [
        ("/wmts/1.0.0/WMTSCapabilities.xml", None),
        ("/service", {"SERVICE": "WMTS", "REQUEST": "GetCapabilities"}),
    ]:
        root = etree.fromstring(client.get(path, query_string=query).data)
        names = [e.findtext(f"{OWS}Identifier") for e in root.iter(f"{WMTS}Layer")]
        assert names == ["a"], path
        assert len(list(root.iter(f"{WMTS}TileMatrixSet"))) >= 1
