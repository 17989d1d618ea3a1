"""WMS GetFeatureInfo and GetLegendGraphic through the whole app against a fake upstream."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, png_bytes

CONFIG = """
services:
  wms:
    md: {title: T}
    featureinfo_types: [text, html, xml, json]
layers:
  - {name: one, title: One, sources: [wa]}
  - {name: both, title: Both, sources: [wa, wb]}
  - {name: cached, title: Cached, sources: [c]}
  - {name: plain, title: Plain, sources: [wc]}
  - {name: static, title: Static, legendurl: 'file://legend.png', sources: [wc]}
  - {name: infoonly, title: Info only, sources: [wc, winfo]}
caches:
  c:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [wb, wc]
sources:
  wa:
    type: wms
    supported_srs: ['EPSG:4326']
    wms_opts: {featureinfo: true, legendgraphic: true}
    req: {url: '{url}/a', layers: 'la1,la2'}
  wb:
    type: wms
    wms_opts: {featureinfo: true, version: '1.3.0', legendgraphic: true, query_layers: qb}
    req: {url: '{url}/b', layers: lb, transparent: true}
  wc:
    type: wms
    req: {url: '{url}/c', layers: lc}
  winfo:
    type: wms
    wms_opts: {featureinfo: true, map: false, featureinfo_format: text/html,
               featureinfo_xslt: ./upper.xsl}
    req: {url: '{url}/info', layers: li}
"""

XSL = """<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><html><body><h1>xslt</h1>
    <xsl:copy-of select="//body/*"/></body></html></xsl:template>
</xsl:stylesheet>
"""

GFI = (
    "/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetFeatureInfo&SRS=EPSG:3857"
    "&BBOX=0,0,1000000,1000000&WIDTH=200&HEIGHT=100&X=50&Y=20&STYLES=&FORMAT=image/png"
)
LEGEND = "/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetLegendGraphic&FORMAT=image/png"


def fake_wms(request: Request) -> Response:
    args = {k.lower(): v for k, v in request.args.items()}
    req = args.get("request", "").lower()
    tag = request.path.encode()
    if req == "getfeatureinfo":
        fmt = args.get("info_format", "")
        if "html" in fmt:
            return Response(b"<html><body><p>" + tag + b"</p></body></html>", mimetype="text/html")
        if "xml" in fmt:
            body = b'<?xml version="1.0"?><root><a>' + tag + b"</a></root>"
            return Response(body, mimetype="text/xml")
        if "json" in fmt:
            return Response(
                b'{"type": "FeatureCollection", "features": [1]}', mimetype="application/json"
            )
        return Response(b"text " + tag, mimetype="text/plain")
    if req == "getlegendgraphic":
        if args.get("format") == "application/json":
            return Response(
                b'{"Legend": [{"layer": "' + args["layer"].encode() + b'"}]}',
                mimetype="application/json",
            )
        height = 10 if request.path == "/a" else 15
        return Response(png_bytes((20, height)), mimetype="image/png")
    return Response(
        png_bytes((int(args.get("width", 256)), int(args.get("height", 256)))), mimetype="image/png"
    )


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(fake_wms) as server:
        yield server


@pytest.fixture
def client(make_app: Callable[..., Client], upstream: FakeUpstream, tmp_path: Any) -> Client:
    Image.new("RGBA", (30, 12), (0, 0, 255, 255)).save(tmp_path / "legend.png")
    return make_app(CONFIG.replace("{url}", upstream.url), **{"upper.xsl": XSL})


def by_path(upstream: FakeUpstream, path: str) -> list[dict[str, str]]:
    return [query for p, query in upstream.requests if p == path]


def test_reprojected_point_and_params(client: Client, upstream: FakeUpstream) -> None:
    resp = client.get(GFI + "&LAYERS=one&QUERY_LAYERS=one&INFO_FORMAT=text/html&FEATURE_COUNT=3")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.data == b"<html><body><p>/a</p></body></html>"
    (query,) = by_path(upstream, "/a")
    assert query["request"] == "GetFeatureInfo"
    assert query["srs"] == "EPSG:4326"
    assert (query["width"], query["height"], query["x"], query["y"]) == ("200", "199", "50", "40")
    assert query["query_layers"] == "la1,la2"
    assert query["info_format"] == "text/html"
    assert query["feature_count"] == "3"
    assert [float(v) for v in query["bbox"].split(",")] == pytest.approx(
        [0.0, 0.0, 8.983152841195214, 8.946573850543423]
    )


def test_wms_130_source_gets_i_j(client: Client, upstream: FakeUpstream) -> None:
    resp = client.get(
        "/service?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetFeatureInfo&CRS=EPSG:4326"
        "&BBOX=40,0,50,20&WIDTH=200&HEIGHT=100&I=50&J=20&STYLES=&FORMAT=image/png"
        "&LAYERS=both&QUERY_LAYERS=both&INFO_FORMAT=text/xml"
    )
    assert resp.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert resp.data == b"<root><a>/a</a><a>/b</a></root>"
    (query,) = by_path(upstream, "/b")
    assert (query["i"], query["j"], query["crs"]) == ("50", "20", "EPSG:4326")
    assert query["bbox"] == "40.0,0.0,50.0,20.0"
    assert query["query_layers"] == "qb"
    assert "x" not in query
    (a_query,) = by_path(upstream, "/a")
    assert (a_query["x"], a_query["y"], a_query["bbox"]) == ("50", "20", "0.0,40.0,20.0,50.0")


def test_text_merge_and_cached_layer(client: Client) -> None:
    resp = client.get(GFI + "&LAYERS=both,cached&QUERY_LAYERS=both,cached&INFO_FORMAT=text/plain")
    assert resp.data == b"text /a\ntext /b\ntext /b"
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_html_merge_and_json(client: Client) -> None:
    resp = client.get(GFI + "&LAYERS=both&QUERY_LAYERS=both&INFO_FORMAT=text/html")
    assert resp.data == b"<html><body><p>/a</p><p>/b</p></body></html>"
    resp = client.get(GFI + "&LAYERS=both&QUERY_LAYERS=both&INFO_FORMAT=application/json")
    assert resp.headers["Content-Type"] == "application/json"
    assert b'"features": [1, 1]' in resp.data


def test_info_only_source_with_xslt(client: Client, upstream: FakeUpstream) -> None:
    resp = client.get(GFI + "&LAYERS=infoonly&QUERY_LAYERS=infoonly&INFO_FORMAT=text/plain")
    assert b"<h1>xslt</h1>\n<p>/info</p>" in resp.data
    (query,) = by_path(upstream, "/info")
    assert query["info_format"] == "text/html"
    # a map: false source is never asked for maps
    client.get(
        "/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetMap&LAYERS=infoonly&STYLES="
        "&SRS=EPSG:4326&BBOX=0,0,10,10&WIDTH=10&HEIGHT=10&FORMAT=image/png"
    )
    assert len(by_path(upstream, "/info")) == 1


@pytest.mark.parametrize(
    ("extra", "message", "code"),
    [
        ("&LAYERS=plain&QUERY_LAYERS=plain", b"layer plain is not queryable", b"LayerNotQueryable"),
        ("&LAYERS=one&QUERY_LAYERS=nope", b"unknown layer: nope", b"LayerNotDefined"),
        ("&LAYERS=one&QUERY_LAYERS=one&X=200", b"invalid point X=200, Y=20", b"InvalidPoint"),
    ],
)
def test_errors(client: Client, extra: str, message: bytes, code: bytes) -> None:
    resp = client.get(GFI.replace("&X=50", "") + ("" if "X=" in extra else "&X=50") + extra)
    assert resp.status_code == 500
    assert message in resp.data
    assert code in resp.data


def test_missing_point(client: Client) -> None:
    resp = client.get(GFI.replace("&X=50&Y=20", "") + "&LAYERS=one&QUERY_LAYERS=one")
    assert b"missing parameters [&#x27;x&#x27;, &#x27;y&#x27;]" in resp.data or (
        b"missing parameters ['x', 'y']" in resp.data
    )


def test_authorization(client: Client, upstream: FakeUpstream) -> None:
    calls: list[tuple[str, list[str]]] = []

    def authorize(service: str, layers: list[str], **kwargs: Any) -> dict[str, Any]:
        calls.append((service, layers))
        return {
            "authorized": "partial",
            "layers": {
                "one": {
                    "featureinfo": True,
                    "limited_to": {"srs": "EPSG:3857", "geometry": [0, 0, 100, 100]},
                },
                "both": {"featureinfo": True},
            },
        }

    app = client.application

    def middleware(environ: dict[str, Any], start_response: Any) -> Any:
        environ["mapproxy.authorize"] = authorize
        return app(environ, start_response)

    secured = Client(middleware)
    resp = secured.get(GFI + "&LAYERS=both&QUERY_LAYERS=both&INFO_FORMAT=text/plain")
    assert resp.data == b"text /a\ntext /b"
    assert calls[-1] == ("wms.featureinfo", ["both"])
    # outside limited_to: nothing, but the requested type
    resp = secured.get(GFI + "&LAYERS=one&QUERY_LAYERS=one&INFO_FORMAT=text/html")
    assert (resp.status_code, resp.data) == (200, b"")
    assert resp.headers["Content-Type"].startswith("text/html")
    resp = secured.get(GFI + "&LAYERS=cached&QUERY_LAYERS=cached&INFO_FORMAT=text/plain")
    assert resp.status_code == 403


def test_capabilities(client: Client) -> None:
    caps = client.get("/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetCapabilities").data.decode()
    assert "<GetLegendGraphic>" in caps
    assert "<Format>application/json</Format>" in caps
    assert '<LegendURL width="20" height="35">' in caps
    assert (
        'xlink:href="http://localhost/service?format=image%2Fpng&amp;layer=both&amp;'
        "sld_version=1.1.0&amp;request=GetLegendGraphic&amp;service=WMS&amp;"
        'version=1.1.1&amp;styles="'
    ) in caps
    assert '<LegendURL width="30" height="12">' in caps
    assert caps.count('queryable="1"') == 5  # root, one, both, cached, infoonly
    caps13 = client.get("/service?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetCapabilities").data
    assert b"<sld:GetLegendGraphic>" in caps13
    assert b"<Format>text/xml</Format>" in caps13


def test_legend_stacked(client: Client, upstream: FakeUpstream) -> None:
    resp = client.get(LEGEND + "&LAYER=both&SLD_VERSION=1.1.0")
    assert resp.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(resp.data)).size == (20, 35)
    assert [q["layer"] for q in upstream.queries] == ["la1", "la2", "lb"]
    assert upstream.queries[0] == {
        "request": "GetLegendGraphic",
        "service": "WMS",
        "version": "1.1.1",
        "layer": "la1",
        "format": "image/png",
        "sld_version": "1.1.0",
    }
    assert upstream.queries[2]["transparent"] == "TRUE"


def test_legend_cached_static_and_scale(client: Client, upstream: FakeUpstream) -> None:
    resp = client.get(LEGEND + "&LAYER=cached&SCALE=5000")
    assert Image.open(io.BytesIO(resp.data)).size == (20, 15)
    assert upstream.queries[-1]["scale"] == "5000.0"
    resp = client.get(LEGEND + "&LAYER=static")
    assert Image.open(io.BytesIO(resp.data)).size == (30, 12)


def test_legend_json(client: Client) -> None:
    resp = client.get(LEGEND.replace("image/png", "application/json") + "&LAYER=one")
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json == {"Legend": [{"layer": "la1"}, {"layer": "la2"}]}


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("&LAYER=plain", 404, b"layer plain has no legend graphic"),
        ("&LAYER=xx", 500, b"unknown layer: xx"),
        ("&LAYER=both&SLD_VERSION=1.0.0", 500, b"invalid sld_version 1.0.0"),
    ],
)
def test_legend_errors(client: Client, query: str, status: int, message: bytes) -> None:
    resp = client.get(LEGEND + query)
    assert resp.status_code == status
    assert message in resp.data


def _typed_by_path(request: Request) -> Response:
    """XML from /a, compact JSON from /b, text elsewhere, whatever INFO_FORMAT asks."""
    if request.path == "/a":
        return Response(b'<?xml version="1.0"?>\n<root><a>1</a></root>', mimetype="text/xml")
    if request.path == "/b":
        return Response(b'{"type":"FeatureCollection","features":[]}', mimetype="application/json")
    return Response(b"text", mimetype="text/plain")


@pytest.mark.parametrize(
    ("query", "content_type", "body"),
    [
        # One XML answer loses its declaration; its type comes from the version.
        (
            "LAYERS=one&QUERY_LAYERS=one&VERSION=1.1.1&SRS=EPSG:3857",
            "application/vnd.ogc.gml",
            b"<root><a>1</a></root>",
        ),
        (
            "LAYERS=one&QUERY_LAYERS=one&VERSION=1.3.0&CRS=EPSG:3857&I=50&J=20",
            "text/xml; charset=utf-8",
            b"<root><a>1</a></root>",
        ),
        # One JSON answer is written anew.
        (
            "LAYERS=cached&QUERY_LAYERS=cached&VERSION=1.3.0&CRS=EPSG:3857&I=50&J=20",
            "application/json",
            b'{"type": "FeatureCollection", "features": []}',
        ),
        # Answers of different types are joined as text.
        (
            "LAYERS=both&QUERY_LAYERS=both&VERSION=1.1.1",
            "text/plain; charset=utf-8",
            b'<?xml version="1.0"?>\n<root><a>1</a></root>\n'
            b'{"type":"FeatureCollection","features":[]}',
        ),
    ],
)
def test_answer_type_is_the_upstream_type(
    client: Client, upstream: FakeUpstream, query: str, content_type: str, body: bytes
) -> None:
    # As in MapProxy 7.0.0: the Content-Type follows the upstream answers, not INFO_FORMAT.
    upstream.handler = _typed_by_path
    resp = client.get(GFI.replace("VERSION=1.1.1&", "") + "&INFO_FORMAT=text/html&" + query)
    assert resp.status_code == 200, resp.data
    assert resp.headers["Content-Type"] == content_type
    assert resp.data == body


def test_dimensions_are_not_forwarded(
    make_app: Callable[..., Client], upstream: FakeUpstream, tmp_path: Any
) -> None:
    # MapProxy 7.0.0 sends neither dimensions nor forward_req_params with GetFeatureInfo.
    config = CONFIG.replace("{url}", upstream.url).replace(
        "    supported_srs: ['EPSG:4326']\n",
        "    supported_srs: ['EPSG:4326']\n    forward_req_params: [time, foo]\n",
    )
    config = config.replace(
        "  - {name: one, title: One, sources: [wa]}\n",
        "  - {name: one, title: One, sources: [wa],\n"
        "     dimensions: {time: {values: ['2020-01-01', '2020-01-02']}}}\n",
    )
    client = make_app(config, **{"upper.xsl": XSL})
    extra = "&LAYERS=one&TIME=2020-01-01&FOO=bar"
    assert client.get(GFI + "&QUERY_LAYERS=one&INFO_FORMAT=text/plain" + extra).status_code == 200
    getmap = GFI.replace("GetFeatureInfo", "GetMap")
    assert client.get(getmap + extra).status_code == 200
    info, getmap_query = by_path(upstream, "/a")
    assert info["request"] == "GetFeatureInfo"
    assert "time" not in info and "foo" not in info
    assert (getmap_query["time"], getmap_query["foo"]) == ("2020-01-01", "bar")


COVERAGE_CONFIG = """
services:
  wms:
    srs: ['EPSG:4326', 'EPSG:3857']
    featureinfo_types: [text]
layers:
  - {name: tri, title: Triangle, sources: [w]}
sources:
  w:
    type: wms
    supported_srs: ['EPSG:4326']
    wms_opts: {featureinfo: true}
    req: {url: '{url}/t', layers: lt}
    coverage: {datasource: triangle.wkt, srs: 'EPSG:4326'}
"""


@pytest.mark.parametrize(
    ("srs", "bbox", "inside", "outside"),
    [
        ("EPSG:4326", "0,0,10,10", (20, 80), (80, 20)),
        ("EPSG:3857", "0,0,1113194.9,1118890.0", (20, 80), (80, 20)),
    ],
)
def test_points_outside_a_polygon_coverage_ask_nobody(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    srs: str,
    bbox: str,
    inside: tuple[int, int],
    outside: tuple[int, int],
) -> None:
    """As MapProxy: inside the coverage's bbox but outside its polygon there is no answer
    and no upstream request (the triangle x + y <= 10 degrees)."""
    client = make_app(
        COVERAGE_CONFIG.replace("{url}", upstream.url),
        **{"triangle.wkt": "POLYGON((0 0, 10 0, 0 10, 0 0))"},
    )
    query = (
        "/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetFeatureInfo&LAYERS=tri&QUERY_LAYERS=tri"
        f"&STYLES=&SRS={srs}&BBOX={bbox}&WIDTH=100&HEIGHT=100&INFO_FORMAT=text/plain"
    )
    answer = client.get(f"{query}&X={inside[0]}&Y={inside[1]}")
    assert (answer.status_code, answer.data) == (200, b"text /t")
    assert len(by_path(upstream, "/t")) == 1
    answer = client.get(f"{query}&X={outside[0]}&Y={outside[1]}")
    assert (answer.status_code, answer.data) == (200, b"")
    assert len(by_path(upstream, "/t")) == 1
