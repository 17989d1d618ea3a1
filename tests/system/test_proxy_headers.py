"""Proxy headers (X-Script-Name, X-Forwarded-*, Forwarded, Host) change every public URL."""

from __future__ import annotations

import html

import pytest
from lxml import etree
from werkzeug.test import Client

CONFIG = """
services:
  demo:
  wms:
    md: {title: Proxy test}
  wmts:
  tms:
layers:
  - name: dbg
    title: Debug
    sources: [dbg_cache]
caches:
  dbg_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [dbg]
    disable_storage: true
sources:
  dbg: {type: debug}
"""

XLINK = "{http://www.w3.org/1999/xlink}href"
NS = {
    "wms": "http://www.opengis.net/wms",
    "wmts": "http://www.opengis.net/wmts/1.0",
    "ows": "http://www.opengis.net/ows/1.1",
}

# (request headers, path prefix the client puts before each path, expected public base URL)
CASES = {
    "none": ({}, "", "http://localhost"),
    "script name": ({"X-Script-Name": "/mapproxy"}, "", "http://localhost/mapproxy"),
    "script name also in path": (
        {"X-Script-Name": "/mapproxy"},
        "/mapproxy",
        "http://localhost/mapproxy",
    ),
    "script name with trailing slash": (
        {"X-Script-Name": "/mapproxy/"},
        "",
        "http://localhost/mapproxy",
    ),
    "forwarded host": ({"X-Forwarded-Host": "maps.example.org"}, "", "http://maps.example.org"),
    "forwarded host list": (
        {"X-Forwarded-Host": "maps.example.org:8443, proxy.internal"},
        "",
        "http://maps.example.org:8443",
    ),
    "forwarded proto": ({"X-Forwarded-Proto": "https"}, "", "https://localhost"),
    "rfc 7239 forwarded": (
        {"Forwarded": "for=192.0.2.1;host=maps.example.org;proto=https"},
        "",
        "https://maps.example.org",
    ),
    "host with default port": ({"Host": "maps.example.org:80"}, "", "http://maps.example.org"),
    "host with other port": (
        {"Host": "maps.example.org:8080"},
        "",
        "http://maps.example.org:8080",
    ),
    "https host with default port": (
        {"Host": "maps.example.org:443", "X-Forwarded-Proto": "https"},
        "",
        "https://maps.example.org",
    ),
    "all together": (
        {
            "Host": "backend:8080",
            "X-Script-Name": "/mapproxy",
            "X-Forwarded-Host": "maps.example.org",
            "X-Forwarded-Proto": "https",
        },
        "/mapproxy",
        "https://maps.example.org/mapproxy",
    ),
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Client:
    from mapproxy.wsgiapp import make_wsgi_app

    config = tmp_path_factory.mktemp("proxy") / "mapproxy.yaml"
    config.write_text(CONFIG)
    return Client(make_wsgi_app(str(config)))


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request: pytest.FixtureRequest) -> tuple[dict[str, str], str, str]:
    return CASES[request.param]


def get(client: Client, case: tuple[dict[str, str], str, str], path: str, **query: str):  # type: ignore[no-untyped-def]
    headers, prefix, _ = case
    response = client.get(prefix + path, query_string=query, headers=headers)
    assert response.status_code == 200, response.text[:500]
    return response


def test_wms_111_capabilities_online_resources(
    client: Client, case: tuple[dict[str, str], str, str]
) -> None:
    base = case[2]
    response = get(
        client, case, "/service", SERVICE="WMS", REQUEST="GetCapabilities", VERSION="1.1.1"
    )
    root = etree.fromstring(response.data)
    assert root.get("version") == "1.1.1"
    assert root.find("Service/OnlineResource").get(XLINK) == f"{base}/service"
    request_urls = [
        element.get(XLINK)
        for element in root.iterfind("Capability/Request/*/DCPType/HTTP/*/OnlineResource")
    ]
    assert request_urls, "no request OnlineResource"
    assert set(request_urls) == {f"{base}/service?"}


def test_wms_130_capabilities_online_resources(
    client: Client, case: tuple[dict[str, str], str, str]
) -> None:
    base = case[2]
    response = get(client, case, "/wms", SERVICE="WMS", REQUEST="GetCapabilities", VERSION="1.3.0")
    root = etree.fromstring(response.data)
    assert root.get("version") == "1.3.0"
    assert root.find("wms:Service/wms:OnlineResource", NS).get(XLINK) == f"{base}/wms"
    request_urls = {
        element.get(XLINK)
        for element in root.iterfind(
            "wms:Capability/wms:Request/*/wms:DCPType/wms:HTTP/*/wms:OnlineResource", NS
        )
    }
    assert request_urls == {f"{base}/wms?"}


def test_wmts_restful_capabilities_urls(
    client: Client, case: tuple[dict[str, str], str, str]
) -> None:
    base = case[2]
    response = get(client, case, "/wmts/1.0.0/WMTSCapabilities.xml")
    root = etree.fromstring(response.data)
    metadata = root.find("wmts:ServiceMetadataURL", NS)
    assert metadata.get(XLINK) == f"{base}/wmts/1.0.0/WMTSCapabilities.xml"
    templates = [
        element.get("template")
        for element in root.iterfind("wmts:Contents/wmts:Layer/wmts:ResourceURL", NS)
    ]
    assert f"{base}/wmts/dbg/{{TileMatrixSet}}/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.png" in (
        templates
    )
    assert all(template.startswith(f"{base}/wmts/") for template in templates)


def test_wmts_kvp_capabilities_urls(client: Client, case: tuple[dict[str, str], str, str]) -> None:
    base = case[2]
    response = get(client, case, "/service", SERVICE="WMTS", REQUEST="GetCapabilities")
    root = etree.fromstring(response.data)
    urls = {element.get(XLINK) for element in root.iterfind("ows:OperationsMetadata//ows:Get", NS)}
    assert urls == {f"{base}/service?"}


def test_tms_capabilities_hrefs(client: Client, case: tuple[dict[str, str], str, str]) -> None:
    base = case[2]
    root = etree.fromstring(get(client, case, "/tms/1.0.0/").data)
    hrefs = [tile_map.get("href") for tile_map in root.iterfind("TileMaps/TileMap")]
    assert hrefs == [f"{base}/tms/1.0.0/dbg/EPSG3857"]

    tile_map = etree.fromstring(get(client, case, "/tms/1.0.0/dbg/EPSG3857").data)
    tile_sets = [tile_set.get("href") for tile_set in tile_map.iterfind("TileSets/TileSet")]
    assert tile_sets[:2] == [f"{base}/tms/1.0.0/dbg/EPSG3857/0", f"{base}/tms/1.0.0/dbg/EPSG3857/1"]

    services = etree.fromstring(get(client, case, "/tms").data)
    assert [s.get("href") for s in services.iterfind("TileMapService")] == [f"{base}/tms/1.0.0/"]


def test_root_page_links_the_public_demo_url(
    client: Client, case: tuple[dict[str, str], str, str]
) -> None:
    base = case[2]
    response = get(client, case, "/")
    assert f'<a href="{base}/demo/">demo</a>' in response.text


def test_demo_redirect_goes_to_the_public_demo_url(
    client: Client, case: tuple[dict[str, str], str, str]
) -> None:
    headers, prefix, base = case
    response = client.get(prefix + "/demo", headers=headers)
    assert response.status_code == 301
    assert response.headers["Location"] == f"{base}/demo/"


def test_demo_capabilities_view_uses_public_urls(
    client: Client, case: tuple[dict[str, str], str, str]
) -> None:
    base = case[2]
    page = get(client, case, "/demo/", wms_capabilities="").text
    link = f"{base}/service?REQUEST=GetCapabilities&SERVICE=WMS"
    assert f'<a href="{html.escape(link)}">' in page
    embedded = html.unescape(page)
    assert f'xlink:href="{base}/service?"' in embedded
    if base != "http://localhost":
        assert 'href="http://localhost/service' not in embedded

    tms_page = html.unescape(get(client, case, "/demo/", tms_capabilities="").text)
    assert f'href="{base}/tms/1.0.0/dbg/EPSG3857"' in tms_page


def test_demo_relative_links_resolve_under_the_prefix(
    client: Client, case: tuple[dict[str, str], str, str]
) -> None:
    headers, prefix, _ = case
    page = get(client, case, "/demo/").text
    assert 'href="../service?REQUEST=GetCapabilities&amp;SERVICE=WMS"' in page
    # the browser resolves ../service against <prefix>/demo/; that URL must work too
    response = client.get(
        prefix + "/service",
        query_string={"REQUEST": "GetCapabilities", "SERVICE": "WMS"},
        headers=headers,
    )
    assert response.status_code == 200
    assert b"<WMS_Capabilities" in response.data


def test_script_name_prefix_in_path_serves_tiles(client: Client) -> None:
    headers = {"X-Script-Name": "/mapproxy"}
    with_prefix = client.get("/mapproxy/wmts/dbg/GLOBAL_WEBMERCATOR/1/0/0.png", headers=headers)
    without = client.get("/wmts/dbg/GLOBAL_WEBMERCATOR/1/0/0.png", headers=headers)
    assert with_prefix.status_code == without.status_code == 200
    assert with_prefix.mimetype == "image/png"
    assert with_prefix.data == without.data
    # without the header the prefix is just an unknown first segment
    assert client.get("/mapproxy/wmts/dbg/GLOBAL_WEBMERCATOR/1/0/0.png").status_code == 404


def test_non_ascii_script_name_is_quoted_once(make_app):  # type: ignore[no-untyped-def]
    client = make_app(
        """
        services:
          wms:
        layers:
          - name: a
            title: A
            sources: [dbg]
        sources:
          dbg:
            type: debug
        """
    )
    # WSGI carries the UTF-8 bytes of "/städte" decoded as latin-1
    script_name = "/städte".encode().decode("latin-1")
    response = client.get(
        "/service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.1.1",
        environ_overrides={"SCRIPT_NAME": script_name},
    )
    assert b"http://localhost/st%C3%A4dte/service?" in response.data
