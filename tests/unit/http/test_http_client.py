from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import mapproxy
from fakes.fake_upstream import (  # tests/ is on sys.path (tests/conftest.py)
    FakeUpstream,
    png_bytes,
    status_handler,
)
from mapproxy.errors import HTTPClientError
from mapproxy.http import HTTPClient, HTTPResponse, UpstreamHTTPError


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/service?x=1"


def test_get_returns_status_headers_and_body(upstream: FakeUpstream) -> None:
    response = HTTPClient().open(upstream.url + "/wms?width=10&height=20")
    assert isinstance(response, HTTPResponse)
    assert response.status == 200
    assert response.content_type == "image/png"
    assert response.headers["content-type"] == "image/png"
    assert response.body == png_bytes((10, 20))
    assert response.url == upstream.url + "/wms?width=10&height=20"
    assert upstream.requests == [("/wms", {"width": "10", "height": "20"})]
    assert upstream.recorded[0].method == "GET"


def test_sends_user_agent_and_configured_headers(upstream: FakeUpstream) -> None:
    HTTPClient(headers={"X-Api-Key": "secret", "Accept-Language": "de"}).open(upstream.url + "/")
    headers = upstream.recorded[0].headers
    assert headers["User-Agent"] == f"MapProxy-{mapproxy.__version__}"
    assert headers["X-Api-Key"] == "secret"
    assert headers["Accept-Language"] == "de"


def test_configured_user_agent_overrides_default(upstream: FakeUpstream) -> None:
    HTTPClient(headers={"User-Agent": "custom"}).open(upstream.url + "/")
    assert upstream.recorded[0].headers["User-Agent"] == "custom"


def test_auto_method_posts_long_query_strings(upstream: FakeUpstream) -> None:
    client = HTTPClient()
    long_value = "a" * 5000
    client.open(upstream.url + "/wms?layers=" + long_value + "&styles=")
    client.open(upstream.url + "/wms?layers=short")
    long_request, short_request = upstream.recorded
    assert long_request.method == "POST"
    assert long_request.raw_query == ""
    assert long_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert long_request.query == {"layers": long_value, "styles": ""}
    assert short_request.method == "GET"


def test_method_get_never_posts(upstream: FakeUpstream) -> None:
    HTTPClient(method="GET").open(upstream.url + "/wms?layers=" + "a" * 5000)
    assert upstream.recorded[0].method == "GET"


def test_method_post_sends_query_as_body(upstream: FakeUpstream) -> None:
    HTTPClient(method="POST").open(upstream.url + "/wms?layers=a&bbox=1,2,3,4")
    request = upstream.recorded[0]
    assert request.method == "POST"
    assert request.path == "/wms"
    assert request.query == {"layers": "a", "bbox": "1,2,3,4"}


def test_explicit_data_is_posted(upstream: FakeUpstream) -> None:
    HTTPClient().open(upstream.url + "/post?x=1", data=b"payload")
    request = upstream.recorded[0]
    assert request.method == "POST"
    assert request.body == b"payload"
    assert request.query == {"x": "1"}


def test_invalid_method_is_rejected() -> None:
    with pytest.raises(ValueError):
        HTTPClient(method="PUT")


def test_http_error_with_hidden_details(upstream: FakeUpstream) -> None:
    upstream.handler = status_handler(500)
    with pytest.raises(HTTPClientError) as excinfo:
        HTTPClient().open(upstream.url + "/err")
    assert str(excinfo.value) == "HTTP Error (see logs for URL and reason)."
    assert isinstance(excinfo.value, UpstreamHTTPError)
    assert excinfo.value.status == 500
    assert excinfo.value.full_message == f'HTTP Error "{upstream.url}/err": 500'


def test_http_error_with_details(upstream: FakeUpstream) -> None:
    upstream.handler = status_handler(404)
    url = upstream.url + "/missing?a=1"
    with pytest.raises(HTTPClientError) as excinfo:
        HTTPClient(hide_error_details=False).open(url)
    assert str(excinfo.value) == f'HTTP Error "{url}": 404'


def test_hidden_error_details_are_logged(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.handler = status_handler(503)
    with caplog.at_level(logging.WARNING), pytest.raises(HTTPClientError):
        HTTPClient().open(upstream.url + "/down")
    assert f'HTTP Error "{upstream.url}/down": 503' in caplog.text


def test_connection_refused_with_hidden_details() -> None:
    with pytest.raises(HTTPClientError) as excinfo:
        HTTPClient().open(closed_port_url())
    assert str(excinfo.value) == "No response from URL (see logs for URL and reason)."
    assert isinstance(excinfo.value, UpstreamHTTPError)
    assert excinfo.value.status is None


def test_connection_refused_with_details() -> None:
    url = closed_port_url()
    with pytest.raises(HTTPClientError) as excinfo:
        HTTPClient(hide_error_details=False).open(url)
    message = str(excinfo.value)
    assert message.startswith(f'No response from URL "{url}": ')
    assert "refused" in message.lower()


def test_read_timeout_fails_fast(upstream: FakeUpstream) -> None:
    upstream.handler = upstream.sleep_handler(5)
    client = HTTPClient(timeout_seconds=0.5, hide_error_details=False)
    start = time.monotonic()
    with pytest.raises(HTTPClientError) as excinfo:
        client.open(upstream.url + "/slow")
    elapsed = time.monotonic() - start
    assert 0.4 < elapsed < 2.0
    assert str(excinfo.value) == f'No response from URL "{upstream.url}/slow": timed out'
    assert len(upstream.requests) == 1  # timeouts are not retried


def test_clients_with_same_ssl_settings_share_connection_pool() -> None:
    a = HTTPClient(timeout_seconds=1, headers={"A": "1"})
    b = HTTPClient(timeout_seconds=5)
    c = HTTPClient(ssl_no_cert_checks=True)
    assert a._pool is b._pool
    assert a._pool is not c._pool


LOG_LINE = re.compile(r"^(GET|POST) (\S+) (\d{3}|-) (\d+\.\d|-) (\d+|-)$")


def request_log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mapproxy.source.request"]


def test_request_log_line_for_success(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    url = upstream.url + "/wms?layers=a&bbox=1,2,3,4&styles="
    with caplog.at_level(logging.INFO, logger="mapproxy.source.request"):
        response = HTTPClient().open(url)
    (line,) = request_log_lines(caplog)
    match = LOG_LINE.match(line)
    assert match, line
    method, logged_url, status, size, duration = match.groups()
    assert (method, logged_url, status) == ("GET", url, "200")
    assert size == f"{len(response.body) / 1024:.1f}"
    assert int(duration) < 2000


def test_request_log_line_for_http_error(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.handler = status_handler(500)
    with (
        caplog.at_level(logging.INFO, logger="mapproxy.source.request"),
        pytest.raises(HTTPClientError),
    ):
        HTTPClient().open(upstream.url + "/err?x=1")
    (line,) = request_log_lines(caplog)
    assert re.fullmatch(rf"GET {re.escape(upstream.url)}/err\?x=1 500 - \d+", line), line


def test_request_log_line_for_connection_error(caplog: pytest.LogCaptureFixture) -> None:
    url = closed_port_url()
    with (
        caplog.at_level(logging.INFO, logger="mapproxy.source.request"),
        pytest.raises(HTTPClientError),
    ):
        HTTPClient().open(url)
    (line,) = request_log_lines(caplog)
    assert re.fullmatch(rf"GET {re.escape(url)} - - \d+", line), line


def test_request_log_line_removes_spaces_and_logs_post(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="mapproxy.source.request"):
        HTTPClient(method="POST").open(upstream.url + "/wms?layers=a b")
    (line,) = request_log_lines(caplog)
    assert line.startswith(f"POST {upstream.url}/wms?layers=ab 200 ")


def test_no_request_log_without_info(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mapproxy.source.request"):
        HTTPClient().open(upstream.url + "/")
    assert request_log_lines(caplog) == []


def test_chunked_response_has_no_size(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    from werkzeug.wrappers import Response

    def chunked(request: object) -> Response:
        return Response(iter([b"abc", b"def"]), content_type="text/plain")

    upstream.handler = chunked
    with caplog.at_level(logging.INFO, logger="mapproxy.source.request"):
        response = HTTPClient().open(upstream.url + "/chunked")
    assert response.body == b"abcdef"
    (line,) = request_log_lines(caplog)
    assert re.fullmatch(rf"GET {re.escape(upstream.url)}/chunked 200 - \d+", line), line


class _NagleHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive; headers and body leave in two sends with Nagle's algorithm on."""

    protocol_version = "HTTP/1.1"
    body = b"x" * 20000

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()  # the first send
        self.wfile.write(self.body)  # held back by Nagle until the headers are acknowledged

    def log_message(self, format: str, *args: object) -> None:
        pass


class _CountingServer(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="Linux TCP_QUICKACK")
def test_pooled_connection_asks_for_quick_acks_before_every_response(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without quick ACKs a kept-alive connection to a server that sends headers and body
    separately (Nagle on) waits for the kernel's delayed ACK, ~40 ms per response: the
    option must be on the pooled socket each time a response is about to be read (the
    kernel clears it again on its own). The latency itself is measured by benchmark W2."""
    from mapproxy.http import client as client_module

    seen: list[tuple[int, int]] = []
    real_quick_ack = client_module._quick_ack

    def recording_quick_ack(sock: socket.socket | None) -> None:
        real_quick_ack(sock)
        assert sock is not None
        seen.append((sock.fileno(), sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK)))

    monkeypatch.setattr(client_module, "_quick_ack", recording_quick_ack)
    server = _CountingServer(("127.0.0.1", 0), _NagleHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/tile"
        client = HTTPClient(timeout_seconds=5)
        for _ in range(12):
            assert client.open(url).body == _NagleHandler.body
    finally:
        server.shutdown()
        server.server_close()
    assert server.connections == 1  # one pooled connection for all requests
    assert len(seen) == 12
    assert len({fileno for fileno, _ in seen}) == 1
    assert all(enabled == 1 for _, enabled in seen)
