from __future__ import annotations

import time
from pathlib import Path

import pytest

from mapproxy.http.client import UpstreamHTTPError
from mapproxy.source.mapserver import (
    MapServerClient,
    find_mapserv_binary,
    mapserver_url,
    parse_cgi_output,
)


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-mapserv"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_parse_cgi_output_status_headers_body() -> None:
    raw = b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nbody\n\nmore"
    assert parse_cgi_output(raw) == (404, {"Content-Type": "text/plain"}, b"body\n\nmore")
    assert parse_cgi_output(b"Content-Type: image/png\n\nPNG") == (
        200,
        {"Content-Type": "image/png"},
        b"PNG",
    )


def test_open_runs_binary_with_cgi_environment(tmp_path: Path) -> None:
    binary = _script(
        tmp_path,
        'printf "Content-Type: text/plain\\r\\n\\r\\n%s|%s|%s" '
        '"$REQUEST_METHOD" "$QUERY_STRING" "$(pwd)"\n',
    )
    client = MapServerClient(binary, working_dir=str(tmp_path))
    response = client.open(mapserver_url(binary) + "?map=%2Fa.map&layers=x")
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert response.body == f"GET|map=%2Fa.map&layers=x|{tmp_path}".encode()


def test_working_dir_defaults_to_binary_dir(tmp_path: Path) -> None:
    assert MapServerClient(_script(tmp_path, "")).working_dir == str(tmp_path)


def test_error_status_and_empty_output_raise(tmp_path: Path) -> None:
    failing = MapServerClient(_script(tmp_path, 'printf "Status: 500\\n\\nboom"\n'))
    with pytest.raises(UpstreamHTTPError) as error:
        failing.open("mapserver://x?a=b")
    assert error.value.status == 500
    silent = MapServerClient(_script(tmp_path, "echo oops >&2; exit 3\n"), hide_error_details=False)
    with pytest.raises(UpstreamHTTPError, match="exit status 3: oops") as error:
        silent.open("mapserver://x?a=b")
    assert error.value.status is None


def test_hung_process_is_killed_after_timeout(tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    binary = _script(tmp_path, f"sleep 5; touch {marker}\n")
    client = MapServerClient(binary, timeout_seconds=0.3, hide_error_details=False)
    start = time.monotonic()
    with pytest.raises(UpstreamHTTPError, match="timed out"):
        client.open("mapserver://x?a=b")
    assert time.monotonic() - start < 3
    time.sleep(0.2)
    assert not marker.exists()


def test_find_binary(tmp_path: Path) -> None:
    binary = _script(tmp_path, "")
    assert find_mapserv_binary(binary) == binary
    assert find_mapserv_binary(str(tmp_path / "missing")) is None
    assert find_mapserv_binary("no-such-mapserv-binary") is None
