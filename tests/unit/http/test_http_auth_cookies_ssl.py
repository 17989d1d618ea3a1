"""HTTPClient: credentials in URLs, cookies (manage_cookies), SSL certificate checks."""

from __future__ import annotations

import base64
import logging
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, image_handler, status_handler
from mapproxy.http import HTTPClient, UpstreamHTTPError
from mapproxy.http.client import split_credentials


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def with_credentials(url: str, userinfo: str) -> str:
    return url.replace("://", f"://{userinfo}@", 1)


def test_split_credentials_decodes_percent_escapes_and_keeps_the_rest() -> None:
    url, authorization = split_credentials("http://us%40er:p%3As%2Fs@h:8080/p?a=b@c&x=%41")
    assert url == "http://h:8080/p?a=b@c&x=%41"
    assert authorization == basic("us@er", "p:s/s")


def test_split_credentials_without_userinfo_or_password() -> None:
    assert split_credentials("http://h/p?mail=a@b") == ("http://h/p?mail=a@b", None)
    assert split_credentials("https://user@h/") == ("https://h/", basic("user", ""))


def test_url_credentials_are_sent_as_basic_auth_and_removed_from_url(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    url = with_credentials(upstream.url, "us%40er:p%3Ass") + "/service?map=x"
    with caplog.at_level(logging.INFO, logger="mapproxy.source.request"):
        response = HTTPClient().open(url)
    request = upstream.recorded[0]
    assert request.headers["Authorization"] == basic("us@er", "p:ss")
    assert request.path == "/service"
    assert request.raw_query == "map=x"
    assert response.url == upstream.url + "/service?map=x"
    lines = [r.getMessage() for r in caplog.records if r.name == "mapproxy.source.request"]
    assert lines[0].startswith(f"GET {upstream.url}/service?map=x 200 ")
    assert "p%3Ass" not in caplog.text


def test_url_credentials_are_sent_with_post(upstream: FakeUpstream) -> None:
    url = with_credentials(upstream.url, "u:secret") + "/service?layers=a"
    HTTPClient(method="POST").open(url)
    request = upstream.recorded[0]
    assert request.method == "POST"
    assert request.headers["Authorization"] == basic("u", "secret")
    assert request.query == {"layers": "a"}


@pytest.mark.parametrize("hide", [True, False])
def test_credentials_never_in_error_messages_or_logs(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture, hide: bool
) -> None:
    upstream.handler = status_handler(401)
    url = with_credentials(upstream.url, "user:topsecret") + "/service?x=1"
    with caplog.at_level(logging.DEBUG), pytest.raises(UpstreamHTTPError) as excinfo:
        HTTPClient(hide_error_details=hide).open(url)
    error = excinfo.value
    assert error.full_message == f'HTTP Error "{upstream.url}/service?x=1": 401'
    assert error.url == f"{upstream.url}/service?x=1"
    assert "topsecret" not in str(error)
    assert "topsecret" not in caplog.text
    assert f'HTTP Error "{upstream.url}/service?x=1": 401' in caplog.text


def test_credentials_not_in_connection_error(caplog: pytest.LogCaptureFixture) -> None:
    with FakeUpstream() as fake:
        url = with_credentials(fake.url, "user:topsecret") + "/gone"
    with caplog.at_level(logging.DEBUG), pytest.raises(UpstreamHTTPError) as excinfo:
        HTTPClient(hide_error_details=False).open(url)
    assert "topsecret" not in str(excinfo.value)
    assert "topsecret" not in caplog.text


def cookie_handler(request: Request) -> Response:
    """Sets ``session`` on the first request, echoes received cookies as a header."""
    response = image_handler()(request)
    if "session" not in request.cookies:
        response.set_cookie("session", "abc123", path="/")
    return response


def test_cookies_are_sent_back_with_manage_cookies(upstream: FakeUpstream) -> None:
    upstream.handler = cookie_handler
    client = HTTPClient(manage_cookies=True)
    client.open(upstream.url + "/service?a=1")
    client.open(upstream.url + "/service?a=2")
    client.open(upstream.url + "/other/path")
    first, second, third = upstream.recorded
    assert "Cookie" not in first.headers
    assert second.headers["Cookie"] == "session=abc123"
    assert third.headers["Cookie"] == "session=abc123"


def test_cookies_are_ignored_by_default(upstream: FakeUpstream) -> None:
    upstream.handler = cookie_handler
    client = HTTPClient()
    client.open(upstream.url + "/service")
    client.open(upstream.url + "/service")
    assert all("Cookie" not in request.headers for request in upstream.recorded)


def test_cookies_belong_to_one_client(upstream: FakeUpstream) -> None:
    upstream.handler = cookie_handler
    HTTPClient(manage_cookies=True).open(upstream.url + "/a")
    HTTPClient(manage_cookies=True).open(upstream.url + "/b")
    assert all("Cookie" not in request.headers for request in upstream.recorded)


def test_cookie_jar_is_shared_by_threads(upstream: FakeUpstream) -> None:
    upstream.handler = cookie_handler
    client = HTTPClient(manage_cookies=True)
    client.open(upstream.url + "/login")
    threads = [
        threading.Thread(target=client.open, args=(f"{upstream.url}/t{i}",)) for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(upstream.recorded) == 9
    assert all(r.headers.get("Cookie") == "session=abc123" for r in upstream.recorded[1:])


# --- SSL ----------------------------------------------------------------------------


@pytest.fixture
def https_upstream(tmp_path: Path) -> Iterator[tuple[FakeUpstream, Path]]:
    """An HTTPS FakeUpstream with a certificate for 127.0.0.1 from a throwaway CA."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    with FakeUpstream(ssl_context=context) as fake:
        yield fake, ca_path


def test_unknown_certificate_is_a_clean_error(
    https_upstream: tuple[FakeUpstream, Path],
) -> None:
    fake, _ = https_upstream
    with pytest.raises(UpstreamHTTPError) as excinfo:
        HTTPClient(timeout_seconds=5).open(fake.url + "/service")
    assert str(excinfo.value) == "Could not verify connection to URL (see logs for URL and reason)."
    assert excinfo.value.status is None
    assert excinfo.value.full_message.startswith(
        f'Could not verify connection to URL "{fake.url}/service": '
    )
    assert fake.requests == []


def test_ssl_ca_certs_verifies_the_certificate(https_upstream: tuple[FakeUpstream, Path]) -> None:
    fake, ca_path = https_upstream
    response = HTTPClient(timeout_seconds=5, ssl_ca_certs=str(ca_path)).open(
        fake.url + "/service?a=1"
    )
    assert response.status == 200
    assert fake.requests == [("/service", {"a": "1"})]


def test_ssl_no_cert_checks_accepts_any_certificate(
    https_upstream: tuple[FakeUpstream, Path],
) -> None:
    fake, _ = https_upstream
    response = HTTPClient(timeout_seconds=5, ssl_no_cert_checks=True).open(fake.url + "/s")
    assert response.status == 200
    assert fake.requests == [("/s", {})]
