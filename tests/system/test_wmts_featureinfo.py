"""WMTS GetFeatureInfo (KVP and RESTful) and WMTS LegendURLs against a fake upstream WMS.

Expected values were taken from MapProxy 7.0.0 with the same configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lxml import etree
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, png_bytes

CONFIG = """
services:
  wms:
    md: {title: T}
    versions: ['1.1.1', '1.1.0']
  wmts:
    featureinfo_formats:
      - {mimetype: 'application/gml+xml; version=3.1', suffix: gml}
      - {mimetype: text/html, suffix: html}
      - {mimetype: application/json, suffix: geojson}
layers:
  - {name: q, title: Queryable, sources: [c]}
  - {name: p, title: Plain, sources: [cp], legendurl: 'http://example.org/legend.png'}
  - {name: ql, title: QL, sources: [c],
     wmts_kvp_legendurl: '{base_url}/kvp/{layer_name}.png',
     wmts_rest_legendurl: '{base_url}/rest/{layer_name}.png'}
  - {name: k, title: K, sources: [cp], wmts_kvp_legendurl: 'http://x/{layer_name}?a=1&b=2'}
  - {name: ms, title: Multi, sources: [cm]}
  - {name: io, title: Info only, sources: [cp, winfo]}
caches:
  c:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [wa]
  cp:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [wc]
  cm:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [wa, wb]
sources:
  wa:
    type: wms
    wms_opts: {featureinfo: true}
    req: {url: '{url}/a', layers: 'la1,la2'}
  wb:
    type: wms
    wms_opts: {featureinfo: true, version: '1.3.0'}
    req: {url: '{url}/b', layers: lb}
  wc:
    type: wms
    req: {url: '{url}/c', layers: lc}
  winfo:
    type: wms
    wms_opts: {featureinfo: true, map: false}
    req: {url: '{url}/info', layers: li}
"""

KVP = (
    "/service?SERVICE=WMTS&REQUEST=GetFeatureInfo&VERSION=1.0.0&STYLE=default"
    "&TILEMATRIXSET=GLOBAL_WEBMERCATOR&FORMAT=image/png"
)
# Tile 3/5/2 (level/col/row from the top) of GLOBAL_WEBMERCATOR, as MapProxy 7 sends it.
TILE_BBOX = "5009377.085697312,5009377.085697311,10018754.171394624,10018754.171394622"
NS = {
    "wmts": "http://www.opengis.net/wmts/1.0",
    "ows": "http://www.opengis.net/ows/1.1",
    "xlink": "http://www.w3.org/1999/xlink",
}


def fake_wms(request: Request) -> Response:
    args = {k.lower(): v for k, v in request.args.items()}
    tag = request.path.encode()
    if args.get("request", "").lower() != "getfeatureinfo":
        return Response(png_bytes((256, 256)), mimetype="image/png")
    fmt = args.get("info_format", "")
    if "json" in fmt:
        body = b'{"type": "FeatureCollection", "features": ["' + tag + b'"]}'
        return Response(body, mimetype="application/json")
    if "xml" in fmt:
        body = b'<?xml version="1.0"?><root><a>' + tag + b"</a></root>"
        return Response(body, mimetype="text/xml")
    if "html" in fmt:
        return Response(b"<html><body><p>" + tag + b"</p></body></html>", mimetype="text/html")
    return Response(b"text " + tag, mimetype="text/plain")


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(fake_wms) as server:
        yield server


@pytest.fixture
def client(make_app: Callable[..., Client], upstream: FakeUpstream) -> Client:
    return make_app(CONFIG.replace("{url}", upstream.url))


def gfi_queries(upstream: FakeUpstream, path: str | None = None) -> list[dict[str, str]]:
    return [
        query
        for p, query in upstream.requests
        if query.get("request") == "GetFeatureInfo" and (path is None or p == path)
    ]


def kvp(layer: str, infoformat: str, i: int = 10, j: int = 20, matrix: str = "3") -> str:
    return (
        f"{KVP}&LAYER={layer}&TILEMATRIX={matrix}&TILEROW=2&TILECOL=5"
        f"&INFOFORMAT={infoformat}&I={i}&J={j}"
    )


def exception(resp: Any) -> tuple[int, str, str]:
    root = etree.fromstring(resp.data)
    exc = root.find("ows:Exception", NS)
    return resp.status_code, exc.get("exceptionCode"), exc.findtext("ows:ExceptionText", None, NS)


# --- KVP ----------------------------------------------------------------------------


def test_kvp_upstream_request(client: Client, upstream: FakeUpstream) -> None:
    resp = client.get(kvp("q", "text/html"))
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.data == b"<html><body><p>/a</p></body></html>"
    assert gfi_queries(upstream) == [
        {
            "bbox": TILE_BBOX,
            "format": "image/png",
            "height": "256",
            "width": "256",
            "info_format": "text/html",
            "layers": "la1,la2",
            "query_layers": "la1,la2",
            "request": "GetFeatureInfo",
            "service": "WMS",
            "srs": "EPSG:3857",
            "styles": "",
            "version": "1.1.1",
            "x": "10",
            "y": "20",
        }
    ]


def test_kvp_infoformat_by_mimetype_or_suffix(client: Client, upstream: FakeUpstream) -> None:
    by_mimetype = client.get(kvp("q", "application/gml%2Bxml;%20version=3.1", matrix="03"))
    by_suffix = client.get(kvp("q", "gml"))
    for resp in (by_mimetype, by_suffix):
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "application/gml+xml; version=3.1"
        # re-serialized like the reference: without the XML declaration
        assert resp.data == b"<root><a>/a</a></root>"
    assert [q["info_format"] for q in gfi_queries(upstream)] == [
        "application/gml+xml; version=3.1"
    ] * 2


def test_merged_sources(client: Client, upstream: FakeUpstream) -> None:
    resp = client.get(kvp("ms", "application/json"))
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json == {"type": "FeatureCollection", "features": ["/a", "/b"]}
    (query_b,) = gfi_queries(upstream, "/b")
    assert (query_b["version"], query_b["crs"], query_b["i"], query_b["j"]) == (
        "1.3.0",
        "EPSG:3857",
        "10",
        "20",
    )
    assert query_b["bbox"] == TILE_BBOX
    html = client.get(kvp("ms", "text/html"))
    assert html.data == b"<html><body><p>/a</p><p>/b</p></body></html>"


def test_info_only_source(client: Client, upstream: FakeUpstream) -> None:
    resp = client.get(kvp("io", "html", i=0, j=255))
    assert resp.status_code == 200
    assert resp.data == b"<html><body><p>/info</p></body></html>"
    (query,) = gfi_queries(upstream)
    assert (query["query_layers"], query["x"], query["y"]) == ("li", "0", "255")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            kvp("q", "text/plain"),
            (400, "InvalidParameterValue", "unknown infoformat: text/plain"),
        ),
        (kvp("q", "TEXT/HTML"), (400, "InvalidParameterValue", "unknown infoformat: TEXT/HTML")),
        (kvp("p", "text/html"), (501, "OperationNotSupported", "layer p not queryable")),
        (kvp("nope", "text/html"), (400, "InvalidParameterValue", "unknown layer: nope")),
        (
            kvp("q", "text/html").replace("&INFOFORMAT=text/html", ""),
            (500, "NoApplicableCode", "missing parameters ['infoformat']"),
        ),
        (kvp("q", "text/html", matrix="30"), (400, "TileOutOfRange", None)),
        (kvp("q", "text/html", i=256), (400, "PointIJOutOfRange", None)),
        (kvp("q", "text/html", j=-1), (400, "PointIJOutOfRange", None)),
    ],
)
def test_kvp_errors(
    client: Client, upstream: FakeUpstream, url: str, expected: tuple[int, str, str | None]
) -> None:
    resp = client.get(url)
    assert resp.headers["Content-Type"] == "text/xml"
    status, code, text = exception(resp)
    assert (status, code) == expected[:2]
    if expected[2] is not None:
        assert text == expected[2]
    assert gfi_queries(upstream) == []


def test_source_error(client: Client, upstream: FakeUpstream) -> None:
    upstream.handler = lambda request: Response(b"oops", status=500)
    resp = client.get(kvp("q", "text/html"))
    status, code, _ = exception(resp)
    assert (status, code) == (500, "NoApplicableCode")


# --- RESTful --------------------------------------------------------------------------


def test_rest_featureinfo(client: Client, upstream: FakeUpstream) -> None:
    resp = client.get("/wmts/q/GLOBAL_WEBMERCATOR/3/5/2/10/20.html")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.data == b"<html><body><p>/a</p></body></html>"
    geojson = client.get("/wmts/q/GLOBAL_WEBMERCATOR/03/5/2/10/20.geojson")
    assert geojson.headers["Content-Type"] == "application/json"
    first, second = gfi_queries(upstream)
    assert first["bbox"] == second["bbox"] == TILE_BBOX
    assert (first["info_format"], first["x"], first["y"]) == ("text/html", "10", "20")
    assert second["info_format"] == "application/json"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/wmts/q/GLOBAL_WEBMERCATOR/3/5/2/10/20.txt", (400, "InvalidParameterValue")),
        ("/wmts/p/GLOBAL_WEBMERCATOR/3/5/2/10/20.html", (501, "OperationNotSupported")),
        ("/wmts/q/FOO/3/5/2/10/20.html", (400, "InvalidParameterValue")),
        ("/wmts/q/GLOBAL_WEBMERCATOR/3/5/99/10/20.html", (400, "TileOutOfRange")),
    ],
)
def test_rest_errors(
    client: Client, upstream: FakeUpstream, path: str, expected: tuple[int, str]
) -> None:
    status, code, _ = exception(client.get(path))
    assert (status, code) == expected
    assert gfi_queries(upstream) == []


def test_rest_featureinfo_template(make_app: Callable[..., Client], upstream: FakeUpstream) -> None:
    config = CONFIG.replace(
        "      - {mimetype: application/json, suffix: geojson}\n",
        "      - {mimetype: application/json, suffix: geojson}\n"
        "    restful_featureinfo_template:"
        " '/fi/{Layer}/{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}"
        "/{J}/{I}/info.{InfoFormat}'\n",
    )
    client = make_app(config.replace("{url}", upstream.url))
    resp = client.get("/wmts/fi/q/GLOBAL_WEBMERCATOR/3/2/5/20/10/info.html")
    assert resp.status_code == 200
    (query,) = gfi_queries(upstream)
    assert (query["bbox"], query["x"], query["y"]) == (TILE_BBOX, "10", "20")
    caps = etree.fromstring(client.get("/wmts/1.0.0/WMTSCapabilities.xml").data)
    urls = caps.xpath(
        "//wmts:Layer[ows:Identifier='q']/wmts:ResourceURL[@resourceType='FeatureInfo']",
        namespaces=NS,
    )
    assert urls[1].get("template") == (
        "http://localhost/wmts/fi/q/{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}"
        "/{J}/{I}/info.html"
    )


# --- authorization --------------------------------------------------------------------


def _with_auth(client: Client, answer: Callable[..., Any]) -> tuple[Client, list[Any]]:
    app = client.application
    calls: list[Any] = []

    def callback(service: str, layers: list[str], **kwargs: Any) -> Any:
        calls.append((service, layers, kwargs["query_extent"]))
        return answer(service, layers)

    def middleware(environ: dict[str, Any], start_response: Any) -> Any:
        environ["mapproxy.authorize"] = callback
        return app(environ, start_response)

    return Client(middleware), calls


def test_authorization_call_and_refusals(client: Client, upstream: FakeUpstream) -> None:
    authed, calls = _with_auth(client, lambda service, layers: {"authorized": "full"})
    assert authed.get("/wmts/q/GLOBAL_WEBMERCATOR/3/5/2/10/20.html").status_code == 200
    ((service, layers, (srs, bbox)),) = calls
    assert (service, layers, srs) == ("wmts.featureinfo", ["q"], "EPSG:3857")
    assert ",".join(repr(v) for v in bbox) == TILE_BBOX

    denied, _ = _with_auth(client, lambda service, layers: {"authorized": "none"})
    assert denied.get(kvp("q", "text/html")).status_code == 403
    anonymous, _ = _with_auth(client, lambda service, layers: {"authorized": "unauthenticated"})
    assert anonymous.get(kvp("q", "text/html")).status_code == 401
    tile_only, _ = _with_auth(
        client,
        lambda service, layers: {"authorized": "partial", "layers": {"q": {"tile": True}}},
    )
    assert tile_only.get(kvp("q", "text/html")).status_code == 403
    assert len(gfi_queries(upstream)) == 1


def test_authorization_limited_to(client: Client, upstream: FakeUpstream) -> None:
    def answer(bbox: list[float]) -> Callable[..., Any]:
        rules = {"featureinfo": True, "limited_to": {"geometry": bbox, "srs": "EPSG:3857"}}
        return lambda service, layers: {"authorized": "partial", "layers": {"q": rules}}

    outside, _ = _with_auth(client, answer([0, 0, 1000, 1000]))
    resp = outside.get(kvp("q", "text/html"))
    assert (resp.status_code, resp.data) == (200, b"")
    assert gfi_queries(upstream) == []
    inside, _ = _with_auth(client, answer([0, 0, 2e7, 2e7]))
    assert inside.get(kvp("q", "text/html")).data == b"<html><body><p>/a</p></body></html>"


# --- capabilities ---------------------------------------------------------------------


def _layer(caps: Any, name: str) -> Any:
    return caps.xpath(f"//wmts:Contents/wmts:Layer[ows:Identifier='{name}']", namespaces=NS)[0]


def test_capabilities_rest(client: Client) -> None:
    resp = client.get("/wmts/1.0.0/WMTSCapabilities.xml")
    caps = etree.fromstring(resp.data)
    ops = caps.xpath("//ows:OperationsMetadata/ows:Operation/@name", namespaces=NS)
    assert ops == ["GetCapabilities", "GetTile", "GetFeatureInfo"]
    q = _layer(caps, "q")
    assert q.xpath("wmts:InfoFormat/text()", namespaces=NS) == [
        "application/gml+xml; version=3.1",
        "text/html",
        "application/json",
    ]
    resources = [
        (r.get("format"), r.get("resourceType"), r.get("template"))
        for r in q.findall("wmts:ResourceURL", NS)
    ]
    base = "http://localhost/wmts/q/{TileMatrixSet}/{TileMatrix}/{TileCol}/{TileRow}"
    assert resources == [
        ("image/png", "tile", base + ".png"),
        ("application/gml+xml; version=3.1", "FeatureInfo", base + "/{I}/{J}.gml"),
        ("text/html", "FeatureInfo", base + "/{I}/{J}.html"),
        ("application/json", "FeatureInfo", base + "/{I}/{J}.geojson"),
    ]
    # not queryable: no InfoFormat, no FeatureInfo resource
    p = _layer(caps, "p")
    assert p.findall("wmts:InfoFormat", NS) == []
    assert [r.get("resourceType") for r in p.findall("wmts:ResourceURL", NS)] == ["tile"]
    # the document text as MapProxy 7 writes it
    text = resp.data.decode()
    assert (
        '      <ResourceURL format="text/html" resourceType="FeatureInfo" '
        'template="http://localhost/wmts/q/{TileMatrixSet}/{TileMatrix}/{TileCol}/{TileRow}'
        '/{I}/{J}.html"/>\n'
    ) in text
    assert (
        "        <LegendURL\n"
        '          format="image/png"\n'
        '          xlink:href="http://localhost/rest/ql.png"\n'
        "        />\n"
    ) in text


def legend_urls(caps: Any) -> dict[str, list[tuple[str, str]]]:
    return {
        layer.findtext("ows:Identifier", None, NS): [
            (url.get("format"), url.get(f"{{{NS['xlink']}}}href"))
            for url in layer.findall("wmts:Style/wmts:LegendURL", NS)
        ]
        for layer in caps.findall("wmts:Contents/wmts:Layer", NS)
    }


def test_legend_urls(client: Client) -> None:
    wms_legend = (
        "http://localhost/service?service=WMS&request=GetLegendGraphic"
        "&version=1.1.1&format=image%2Fpng&layer=p"
    )
    rest = legend_urls(etree.fromstring(client.get("/wmts/1.0.0/WMTSCapabilities.xml").data))
    assert rest == {
        "q": [],
        "p": [("image/png", wms_legend)],
        "ql": [("image/png", "http://localhost/rest/ql.png")],
        "k": [],
        "ms": [],
        "io": [],
    }
    kvp_caps = client.get("/service?SERVICE=WMTS&REQUEST=GetCapabilities")
    assert legend_urls(etree.fromstring(kvp_caps.data)) == {
        **rest,
        "ql": [("image/png", "http://localhost/kvp/ql.png")],
        "k": [("image/png", "http://x/k?a=1&b=2")],
    }


def test_no_wms_no_default_legend(make_app: Callable[..., Client], upstream: FakeUpstream) -> None:
    config = CONFIG.replace("  wms:\n    md: {title: T}\n    versions: ['1.1.1', '1.1.0']\n", "")
    client = make_app(config.replace("{url}", upstream.url))
    caps = etree.fromstring(client.get("/wmts/1.0.0/WMTSCapabilities.xml").data)
    assert legend_urls(caps)["p"] == []
    assert legend_urls(caps)["ql"] == [("image/png", "http://localhost/rest/ql.png")]


def test_no_featureinfo_formats(make_app: Callable[..., Client], upstream: FakeUpstream) -> None:
    start = CONFIG.index("    featureinfo_formats:")
    end = CONFIG.index("layers:")
    client = make_app((CONFIG[:start] + CONFIG[end:]).replace("{url}", upstream.url))
    caps = etree.fromstring(client.get("/wmts/1.0.0/WMTSCapabilities.xml").data)
    assert caps.xpath("//wmts:InfoFormat", namespaces=NS) == []
    assert caps.xpath("//wmts:ResourceURL[@resourceType='FeatureInfo']", namespaces=NS) == []
    status, code, text = exception(client.get(kvp("q", "text/html")))
    assert (status, code, text) == (400, "InvalidParameterValue", "unknown infoformat: text/html")


def test_owslib_parses_capabilities(client: Client) -> None:
    from owslib.wmts import WebMapTileService

    for url in (
        "/wmts/1.0.0/WMTSCapabilities.xml",
        "/service?SERVICE=WMTS&REQUEST=GetCapabilities",
    ):
        wmts = WebMapTileService("http://localhost/wmts", xml=client.get(url).data)
        q = wmts.contents["q"]
        assert q.infoformats == [
            "application/gml+xml; version=3.1",
            "text/html",
            "application/json",
        ]
        assert wmts.contents["p"].infoformats == []
        assert (
            wmts.contents["p"]
            .styles["default"]["legend"]
            .startswith("http://localhost/service?service=WMS&request=GetLegendGraphic")
        )
        assert "GetFeatureInfo" in [op.name for op in wmts.operations]
    rest = WebMapTileService(
        "http://localhost/wmts", xml=client.get("/wmts/1.0.0/WMTSCapabilities.xml").data
    )
    assert [r["resourceType"] for r in rest.contents["q"].resourceURLs] == [
        "tile",
        "FeatureInfo",
        "FeatureInfo",
        "FeatureInfo",
    ]
