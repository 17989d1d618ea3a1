"""``http`` options of sources and ``globals.http``, seen from the upstream's side.

Credentials in source URLs, cookies (``manage_cookies``), ``method``, SSL certificate
checks (``ssl_ca_certs``, ``ssl_no_cert_checks``), ``client_timeout`` and ``headers``.
"""

from __future__ import annotations

import base64
import logging
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lxml import etree
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, image_handler, status_handler

GETMAP = {
    "SERVICE": "WMS",
    "REQUEST": "GetMap",
    "VERSION": "1.1.1",
    "LAYERS": "l",
    "STYLES": "",
    "SRS": "EPSG:4326",
    "BBOX": "5,50,6,51",
    "WIDTH": "10",
    "HEIGHT": "10",
    "FORMAT": "image/png",
}

WMS_PARAMS = {
    "layers": "a",
    "bbox": "5.0,50.0,6.0,51.0",
    "width": "10",
    "height": "10",
    "srs": "EPSG:4326",
    "format": "image/png",
    "request": "GetMap",
    "service": "WMS",
    "version": "1.1.1",
    "styles": "",
}


def wms_config(url: str, source_options: str = "", globals_text: str = "") -> str:
    """One WMS layer ``l`` on source ``s`` (``req.url`` = url); options are YAML lines."""
    options = "".join(f"\n    {line}" for line in source_options.strip().splitlines())
    return f"""
services:
  wms:
layers:
  - name: l
    title: L
    sources: [s]
sources:
  s:
    type: wms
    req: {{url: "{url}", layers: a}}{options}
globals:
  {globals_text or "cache: {base_dir: ./cache_data}"}
"""


def service_exception(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 500, response.data
    root = etree.fromstring(response.data)
    assert root.tag == "ServiceExceptionReport"
    text = str(root.findtext("ServiceException"))
    prefix = "Could not get any sources:\n"
    assert text.startswith(prefix)
    return text[len(prefix) :]


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


# --- credentials in the URL -----------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_url_credentials_become_basic_auth(
    make_app: Callable[..., Client], upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://us%40er:p%3As3cret@127.0.0.1:{upstream.port}/service?map=x"
    app = make_app(wms_config(url))
    with caplog.at_level(logging.DEBUG):
        response = app.get("/service", query_string=GETMAP)
    assert response.status_code == 200
    (request,) = upstream.recorded
    assert request.headers["Authorization"] == basic("us@er", "p:s3cret")
    assert request.path == "/service"
    assert request.query == {"map": "x", **WMS_PARAMS}
    (line,) = [r.getMessage() for r in caplog.records if r.name == "mapproxy.source.request"]
    assert line.startswith(f"GET {upstream.url}/service?map=x&layers=a&")
    assert "s3cret" not in caplog.text


@pytest.mark.parametrize("hide", ["true", "false"])
def test_url_credentials_never_in_errors_or_logs(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    hide: str,
) -> None:
    upstream.handler = status_handler(401)
    url = f"http://user:s3cret@127.0.0.1:{upstream.port}/service"
    app = make_app(wms_config(url, f"http: {{hide_error_details: {hide}}}"))
    with caplog.at_level(logging.DEBUG):
        text = service_exception(app.get("/service", query_string=GETMAP))
    assert "s3cret" not in text
    assert "s3cret" not in caplog.text
    if hide == "false":
        assert text.startswith(f'HTTP Error "{upstream.url}/service?layers=a&')
        assert text.endswith('": 401')
    else:
        assert text == "HTTP Error (see logs for URL and reason)."
    assert f'HTTP Error "{upstream.url}/service?layers=a&' in caplog.text


# --- cookies --------------------------------------------------------------------------


def cookie_handler(request: Request) -> Response:
    """Sets a cookie named after the path on the first request of each client."""
    response = image_handler()(request)
    name = request.path.strip("/")
    if name not in request.cookies:
        response.set_cookie(name, f"{name}-session", path="/")
    return response


COOKIE_CONFIG = """
services:
  wms:
layers:
  - {name: a, title: A, sources: [a]}
  - {name: b, title: B, sources: [b]}
sources:
  a:
    type: wms
    req: {url: "{url}/a", layers: x}
    http: {manage_cookies: true}
  b:
    type: wms
    req: {url: "{url}/b", layers: x}
globals:
  http: {manage_cookies: GLOBAL}
"""


@pytest.mark.parametrize("global_cookies", [True, False])
def test_manage_cookies_sends_cookies_back_per_source(
    make_app: Callable[..., Client], upstream: FakeUpstream, global_cookies: bool
) -> None:
    upstream.handler = cookie_handler
    text = COOKIE_CONFIG.replace("{url}", upstream.url)
    app = make_app(text.replace("GLOBAL", str(global_cookies).lower()))
    for layer in ("a", "a", "b", "b", "a"):
        assert app.get("/service", query_string={**GETMAP, "LAYERS": layer}).status_code == 200
    cookies = [(r.path, r.headers.get("Cookie")) for r in upstream.recorded]
    b_cookie = "b=b-session" if global_cookies else None
    assert cookies == [
        ("/a", None),
        ("/a", "a=a-session"),
        ("/b", None),
        ("/b", b_cookie),
        ("/a", "a=a-session"),  # source b's cookie is not sent by source a
    ]


# --- method ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source_http", "globals_text", "method"),
    [
        ("", "", "GET"),
        ("http: {method: POST}", "", "POST"),
        ("", "http: {method: POST}", "POST"),
        ("http: {method: GET}", "http: {method: POST}", "GET"),
        ("http: {method: AUTO}", "", "GET"),
    ],
)
def test_wms_method_get_post_auto(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    source_http: str,
    globals_text: str,
    method: str,
) -> None:
    app = make_app(wms_config(upstream.url + "/service?map=m", source_http, globals_text))
    assert app.get("/service", query_string=GETMAP).status_code == 200
    (request,) = upstream.recorded
    assert request.method == method
    assert request.path == "/service"
    assert request.query == {"map": "m", **WMS_PARAMS}
    if method == "POST":
        assert request.raw_query == ""
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert request.body.decode().startswith("map=m&layers=a&bbox=5.0,50.0,6.0,51.0&")
    else:
        assert request.body == b""


def test_wms_auto_method_posts_long_requests(
    make_app: Callable[..., Client], upstream: FakeUpstream
) -> None:
    layers = ",".join(f"layer_{i:04d}" for i in range(400))  # > 4000 characters
    app = make_app(
        wms_config(upstream.url + "/service", "", "").replace("layers: a}", f"layers: '{layers}'}}")
    )
    assert app.get("/service", query_string=GETMAP).status_code == 200
    (request,) = upstream.recorded
    assert request.method == "POST"
    assert request.query["layers"] == layers


def test_tile_source_ignores_global_post_method(
    make_app: Callable[..., Client], upstream: FakeUpstream
) -> None:
    app = make_app(f"""
services:
  tms:
layers:
  - {{name: t, title: T, sources: [c]}}
caches:
  c: {{grids: [GLOBAL_WEBMERCATOR], sources: [t], disable_storage: true}}
sources:
  t: {{type: tile, grid: GLOBAL_WEBMERCATOR, url: "{upstream.url}/%(z)s/%(x)s/%(y)s.png"}}
globals:
  http: {{method: POST}}
""")
    assert app.get("/tms/1.0.0/t/EPSG3857/1/0/1.png").status_code == 200
    (request,) = upstream.recorded
    assert request.method == "GET"
    assert request.body == b""


# --- headers and timeouts ---------------------------------------------------------------


def test_global_headers_are_replaced_by_source_headers(
    make_app: Callable[..., Client], upstream: FakeUpstream
) -> None:
    globals_text = "http: {headers: {X-Global: g, X-Other: o}}"
    app = make_app(wms_config(upstream.url + "/service", "", globals_text))
    app.get("/service", query_string=GETMAP)
    app = make_app(wms_config(upstream.url + "/service", "http: {headers: {X-S: s}}", globals_text))
    app.get("/service", query_string=GETMAP)
    first, second = upstream.recorded
    assert (first.headers.get("X-Global"), first.headers.get("X-Other")) == ("g", "o")
    assert second.headers.get("X-S") == "s"
    assert "X-Global" not in second.headers
    assert first.headers["User-Agent"].startswith("MapProxy-")


def test_global_client_timeout_gives_clean_error_and_server_keeps_serving(
    make_app: Callable[..., Client], upstream: FakeUpstream
) -> None:
    upstream.handler = upstream.sleep_handler(10)
    app = make_app(wms_config(upstream.url + "/service", "", "http: {client_timeout: 0.5}"))
    started = time.monotonic()
    text = service_exception(app.get("/service", query_string=GETMAP))
    assert time.monotonic() - started < 3
    assert text == "No response from URL (see logs for URL and reason)."
    upstream.handler = image_handler()
    assert app.get("/service", query_string=GETMAP).status_code == 200


# --- SSL ------------------------------------------------------------------------------


@pytest.fixture
def https_upstream(tmp_path: Path) -> Iterator[FakeUpstream]:
    """An HTTPS upstream whose certificate is signed by ``tmp_path/certs/ca.pem``."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    (tmp_path / "certs").mkdir()
    ca.cert_pem.write_to_path(str(tmp_path / "certs" / "ca.pem"))
    with FakeUpstream(ssl_context=context) as fake:
        yield fake


def test_unverified_certificate_is_a_clean_error(
    make_app: Callable[..., Client], https_upstream: FakeUpstream
) -> None:
    app = make_app(wms_config(https_upstream.url + "/service", "http: {client_timeout: 5}"))
    text = service_exception(app.get("/service", query_string=GETMAP))
    assert text == "Could not verify connection to URL (see logs for URL and reason)."
    assert https_upstream.requests == []


@pytest.mark.parametrize(
    ("source_http", "globals_text"),
    [
        ("http: {ssl_ca_certs: certs/ca.pem}", ""),  # relative to the config directory
        ("", "http: {ssl_ca_certs: ./certs/ca.pem}"),
        ("http: {ssl_no_cert_checks: true}", ""),
        ("", "http: {ssl_no_cert_checks: true}"),
    ],
)
def test_ssl_ca_certs_and_no_cert_checks(
    make_app: Callable[..., Client],
    https_upstream: FakeUpstream,
    tmp_path: Path,
    source_http: str,
    globals_text: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path.parent)  # relative paths must not depend on the cwd
    app = make_app(wms_config(https_upstream.url + "/service", source_http, globals_text))
    response = app.get("/service", query_string=GETMAP)
    assert response.status_code == 200, response.data
    assert response.mimetype == "image/png"
    assert https_upstream.requests == [("/service", WMS_PARAMS)]
