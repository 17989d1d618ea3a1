"""nginx as reverse proxy in front of gunicorn, the app mounted under /mapproxy/.

Every absolute URL that the app generates (WMS 1.1.1/1.3.0, WMTS RESTful/KVP and TMS
capabilities, the demo pages) must point at nginx with the /mapproxy prefix, never at the
gunicorn port; with X-Forwarded-Host/-Proto set by nginx they must use the public name.
Tiles through nginx carry an ETag and answer 304 to If-None-Match.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin

import pytest

try:
    from . import deploy
except ImportError:
    import deploy

pytestmark = pytest.mark.integration

PUBLIC_HOST = "maps.example.org"

# The two `location` blocks are the ones docs/deployment.md shows.
NGINX_CONF = """\
{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;

events {{
    worker_connections 256;
}}

http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/nginx-client-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;

    # MapProxy under /mapproxy/ on this server's own name and port
    server {{
        listen 127.0.0.1:{port};

        location /mapproxy/ {{
            proxy_pass http://127.0.0.1:{app_port}/;
            proxy_set_header Host $http_host;
            proxy_set_header X-Script-Name /mapproxy;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}

    # the same behind a TLS terminator that is reached as https://{public_host}/
    server {{
        listen 127.0.0.1:{public_port};

        location /mapproxy/ {{
            proxy_pass http://127.0.0.1:{app_port}/;
            proxy_set_header Host $http_host;
            proxy_set_header X-Script-Name /mapproxy;
            proxy_set_header X-Forwarded-Host {public_host};
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
}}
"""


@dataclass
class Proxied:
    app_url: str  # gunicorn, direct
    url: str  # nginx, the app at url + "/mapproxy/"
    public_url: str  # nginx server that sets X-Forwarded-Host/-Proto


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory, mapserver_wms) -> Iterator[Proxied]:  # type: ignore[no-untyped-def]
    nginx = deploy.require_executable("nginx", "/usr/sbin/nginx")
    deploy.require_python_module("gunicorn")
    tmp = tmp_path_factory.mktemp("nginx")
    script = deploy.write_app(tmp, mapserver_wms.url)
    app, app_url = deploy.gunicorn_server(
        script, ["-k", "gthread", "-w", "2", "--threads", "4"], tmp
    )
    port, public_port = deploy.free_port(), deploy.free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            user=deploy.nginx_user_line(),
            tmp=tmp,
            port=port,
            public_port=public_port,
            app_port=app_url.rsplit(":", 1)[1],
            public_host=PUBLIC_HOST,
        )
    )
    url = f"http://127.0.0.1:{port}"
    proxy = deploy.nginx_server(nginx, tmp, conf, url + "/mapproxy/")
    with app, proxy:
        yield Proxied(app_url, url, f"http://127.0.0.1:{public_port}")


CAPABILITIES = {
    "wms-1.1.1": (
        "service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.1.1",
        "application/vnd.ogc.wms_xml",
        4,
    ),
    "wms-1.3.0": ("service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0", "text/xml", 4),
    "wmts-rest": ("wmts/1.0.0/WMTSCapabilities.xml", "application/xml", 3),
    "wmts-kvp": ("service?SERVICE=WMTS&REQUEST=GetCapabilities", "application/xml", 3),
    "tms-root": ("tms/1.0.0/", "text/xml", 1),
    "tms-layer": ("tms/1.0.0/cached/EPSG3857", "text/xml", 1),
    # the demo pages link relatively (see test_demo_links_stay_under_the_prefix)
    "demo": ("demo/", "text/html", 0),
    "demo-wms-layer": ("demo/?wms_layer=cached&format=image%2Fpng&srs=EPSG%3A3857", "text/html", 0),
    "demo-wmts-layer": (
        "demo/?wmts_layer=cached&format=png&grid=GLOBAL_WEBMERCATOR",
        "text/html",
        0,
    ),
    "demo-wms-capabilities": ("demo/?wms_capabilities&type=external", "text/html", 3),
}


@pytest.mark.parametrize("name", list(CAPABILITIES))
def test_urls_through_nginx(proxied: Proxied, name: str) -> None:
    path, content_type, minimum = CAPABILITIES[name]
    response = deploy.http_get(f"{proxied.url}/mapproxy/{path}")
    assert response.status == 200, response
    assert response.content_type.split(";")[0] == content_type
    text = response.text
    deploy.assert_urls_start_with(text, f"{proxied.url}/mapproxy/", minimum=minimum)
    app_port = proxied.app_url.rsplit(":", 1)[1]
    assert f":{app_port}" not in text


@pytest.mark.parametrize("name", list(CAPABILITIES))
def test_urls_with_forwarded_host_and_proto(proxied: Proxied, name: str) -> None:
    path, content_type, minimum = CAPABILITIES[name]
    response = deploy.http_get(f"{proxied.public_url}/mapproxy/{path}")
    assert response.status == 200, response
    assert response.content_type.split(";")[0] == content_type
    deploy.assert_urls_start_with(
        response.text, f"https://{PUBLIC_HOST}/mapproxy/", minimum=minimum
    )
    assert "127.0.0.1" not in response.text


def test_vary_header_names_the_proxy_headers(proxied: Proxied) -> None:
    response = deploy.http_get(f"{proxied.url}/mapproxy/wmts/1.0.0/WMTSCapabilities.xml")
    vary = {v.strip().lower() for v in response.headers.get("Vary", "").split(",")}
    assert {"x-script-name", "x-forwarded-host", "x-forwarded-proto"} <= vary


@pytest.mark.parametrize(
    "path",
    [
        # each on its own level, so that the first request creates its meta tile: the ETag
        # of a tile just created must validate like the one of a tile read from the cache
        "wmts/cached/GLOBAL_WEBMERCATOR/03/1/1.png",
        "tiles/cached/EPSG3857/4/2/2.png",
        "tms/1.0.0/cached/EPSG3857/6/1/2.png",
    ],
)
def test_tiles_through_nginx_with_etag(proxied: Proxied, path: str, mapserver) -> None:  # type: ignore[no-untyped-def]
    url = f"{proxied.url}/mapproxy/{path}"
    first = deploy.http_get(url)
    assert mapserver.count(request="GetMap") == 1  # created by this request
    assert first.status == 200, first
    assert first.content_type == "image/png"
    assert first.body.startswith(b"\x89PNG")
    etag = first.headers.get("ETag")
    # MapProxy's ETag: an unquoted MD5 hex digest; clients echo it as they got it
    assert etag and re.fullmatch(r"[0-9a-f]{32}", etag), etag

    for echoed in (etag, f'"{etag}"', f'"other", W/"{etag}"'):
        again = deploy.http_get(url, headers={"If-None-Match": echoed})
        assert again.status == 304, (echoed, again)
        assert again.body == b""
        assert again.headers.get("ETag") == etag

    other = deploy.http_get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status == 200
    assert other.body == first.body


def test_root_and_unknown_paths(proxied: Proxied) -> None:
    welcome = deploy.http_get(f"{proxied.url}/mapproxy/")
    assert welcome.status == 200
    assert "Welcome to MapProxy" in welcome.text
    deploy.assert_urls_start_with(welcome.text, f"{proxied.url}/mapproxy/", minimum=1)
    missing = deploy.http_get(f"{proxied.url}/mapproxy/nothing-here")
    assert missing.status == 404
    # nginx itself answers outside of the location
    outside = deploy.http_get(f"{proxied.url}/service?SERVICE=WMS&REQUEST=GetCapabilities")
    assert outside.status == 404
    assert "MapProxy" not in outside.text


DEMO_PAGES = [
    "demo/",
    "demo/?wms_layer=cached&format=image%2Fpng&srs=EPSG%3A3857",
    "demo/?wmts_layer=cached&format=png&grid=GLOBAL_WEBMERCATOR",
    "demo/?tms_layer=cached&format=png&grid=GLOBAL_WEBMERCATOR",
]


@pytest.mark.parametrize("page", DEMO_PAGES)
def test_demo_links_stay_under_the_prefix(proxied: Proxied, page: str) -> None:
    """Every relative link, script, stylesheet and service URL of a demo page resolves to a
    URL under /mapproxy/ that nginx serves."""
    page_url = f"{proxied.url}/mapproxy/{page}"
    response = deploy.http_get(page_url)
    assert response.status == 200, response
    links = deploy.relative_links(response.text)
    assert links
    checked = set()
    for link in links:
        target = urljoin(page_url, link)
        assert target.startswith(f"{proxied.url}/mapproxy/"), (link, target)
        if target in checked or "{" in target:  # the viewer's tile URL templates
            continue
        checked.add(target)
        linked = deploy.http_get(target)
        # the viewer's WMS/WMTS/TMS base URLs answer without parameters with an
        # OGC exception or a TMS error, everything else with 200
        assert (
            linked.status in (200, 400, 404)
            if target.rstrip("/").endswith(("/service", "/wmts", "/tms/1.0.0", "/tiles"))
            else linked.status == 200
        ), (target, linked)
