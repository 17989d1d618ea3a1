"""mapproxy-util serve-develop: start, reload on config changes, broken configs, arguments."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mapproxy.script.serve import is_local_host, parse_bind_address

SCRIPT_DIR = str(Path(sys.executable).parent)

BASE_YAML = """\
globals:
  image:
    paletted: false
"""

CONFIG_YAML = """\
base: [base.yaml]
services:
  demo:
  wms:
    md:
      title: {title}
layers:
  - name: dbg
    title: Debug layer
    sources: [dbg]
sources:
  dbg:
    type: debug
"""


def util_script() -> str:
    """The installed mapproxy-util console script."""
    path = shutil.which("mapproxy-util", path=SCRIPT_DIR)
    assert path
    return path


def free_port() -> int:
    """A currently unused TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(url: str) -> tuple[int, str]:
    """Status and body of a GET request; (0, '') if the server does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        # HTTPException: IncompleteRead when the reloader restarts the server mid-response
        return 0, ""


def wait_for(
    url: str, accept: Callable[[int, str], bool], timeout: float, on_retry: Callable[[], None]
) -> tuple[int, str]:
    """Poll ``url`` until ``accept(status, body)``; calls ``on_retry`` between polls."""
    deadline = time.monotonic() + timeout
    status, body = 0, ""
    while time.monotonic() < deadline:
        status, body = fetch(url)
        if accept(status, body):
            return status, body
        on_retry()
        time.sleep(0.3)
    raise AssertionError(f"no acceptable answer from {url} in {timeout}s: {status} {body[:300]}")


def touch_later(path: Path) -> Callable[[], None]:
    """A retry hook that moves the mtime of ``path`` forward (in case a change was missed)."""

    def retry() -> None:
        stat = path.stat()
        os.utime(path, (stat.st_atime, stat.st_mtime + 1))

    return retry


class Server:
    """A serve-develop process group with its output files."""

    def __init__(self, process: subprocess.Popen[bytes], log_dir: Path, port: int) -> None:
        self.process = process
        self.log_dir = log_dir
        self.url = f"http://127.0.0.1:{port}"

    def output(self) -> str:
        """Everything the server wrote so far."""
        return (self.log_dir / "out.txt").read_text() + (self.log_dir / "err.txt").read_text()

    def stop(self) -> None:
        """Terminate the reloader and server processes (whole process group)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # the server child runs in the same group; make sure it is gone too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def server_starter(tmp_path: Path, command: str) -> Iterator[Callable[..., Server]]:
    """Yield ``start(*args)`` running ``mapproxy-util <command>`` on a free port; stops all."""
    servers: list[Server] = []

    def start(*args: str) -> Server:
        port = free_port()
        log_dir = tmp_path / f"logs{len(servers)}"
        log_dir.mkdir()
        with open(log_dir / "out.txt", "wb") as out, open(log_dir / "err.txt", "wb") as err:
            process = subprocess.Popen(
                [util_script(), command, "-b", f"127.0.0.1:{port}", *args],
                cwd=tmp_path,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        server = Server(process, log_dir, port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    yield from server_starter(tmp_path, "serve-develop")


def wms_title(body: str) -> str | None:
    """The first <Title> of a capabilities document."""
    start = body.find("<Title>")
    if start < 0:
        return None
    return body[start + len("<Title>") : body.find("</Title>", start)]


CAPS = "/service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.1.1"


def test_serve_develop_answers_and_reloads_changed_config_files(tmp_path: Path, start_server):
    config = tmp_path / "mapproxy.yaml"
    base = tmp_path / "base.yaml"
    base.write_text(BASE_YAML)
    config.write_text(CONFIG_YAML.format(title="First Title"))
    server = start_server("mapproxy.yaml")

    def no_retry() -> None:
        assert server.process.poll() is None, server.output()

    wait_for(server.url + "/", lambda s, b: s == 200 and "Welcome to MapProxy" in b, 60, no_retry)
    _, caps = wait_for(server.url + CAPS, lambda s, b: s == 200, 10, no_retry)
    assert wms_title(caps) == "First Title"

    config.write_text(CONFIG_YAML.format(title="Second Title"))
    wait_for(
        server.url + CAPS, lambda s, b: wms_title(b) == "Second Title", 30, touch_later(config)
    )

    # a change in a base file restarts the server too: the base file adds the tms service
    assert fetch(server.url + "/tms/1.0.0/")[0] == 404
    base.write_text(BASE_YAML + "services:\n  tms:\n")
    wait_for(server.url + "/tms/1.0.0/", lambda s, b: s == 200, 30, touch_later(base))
    assert wms_title(fetch(server.url + CAPS)[1]) == "Second Title"
    assert server.process.poll() is None


def test_config_broken_while_running_serves_error_page_until_fixed(tmp_path: Path, start_server):
    config = tmp_path / "mapproxy.yaml"
    (tmp_path / "base.yaml").write_text(BASE_YAML)
    config.write_text(CONFIG_YAML.format(title="Good"))
    server = start_server("mapproxy.yaml")
    wait_for(server.url + "/", lambda s, b: s == 200, 60, lambda: None)

    config.write_text("services: [\n")
    _, body = wait_for(server.url + "/", lambda s, b: s == 500, 30, touch_later(config))
    assert "configuration error" in body
    assert "invalid YAML" in body
    assert server.process.poll() is None

    config.write_text(CONFIG_YAML.format(title="Fixed"))
    wait_for(server.url + CAPS, lambda s, b: wms_title(b) == "Fixed", 30, touch_later(config))

    # a broken base file is watched as well, so fixing it brings the server back
    base = tmp_path / "base.yaml"
    base.write_text("globals: {image: [\n")
    wait_for(server.url + "/", lambda s, b: s == 500, 30, touch_later(base))
    base.write_text(BASE_YAML)
    wait_for(server.url + "/", lambda s, b: s == 200, 30, touch_later(base))
    output = server.output()
    assert "ERROR: " in output
    assert "Traceback" not in output


def test_broken_config_at_start_exits_2_without_traceback(tmp_path: Path):
    (tmp_path / "mapproxy.yaml").write_text(
        "services:\n  wms:\nlayers:\n  - name: a\n    title: A\n    sources: [missing]\n"
    )
    result = subprocess.run(
        [util_script(), "serve-develop", "-b", f"127.0.0.1:{free_port()}", "mapproxy.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "ERROR: " in result.stderr
    assert "missing" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_missing_config_file_exits_2(tmp_path: Path):
    result = subprocess.run(
        [util_script(), "serve-develop", "-b", f"127.0.0.1:{free_port()}", "nothere.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "ERROR: " in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_argument_prints_help_and_exits_1(tmp_path: Path):
    result = subprocess.run(
        [util_script(), "serve-develop"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 1
    assert "--bind" in result.stdout
    assert "ERROR: MapProxy configuration required." in result.stderr


def test_invalid_bind_address_is_an_argument_error(tmp_path: Path):
    result = subprocess.run(
        [util_script(), "serve-develop", "-b", "host:port", "mapproxy.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "invalid bind address" in result.stderr


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:9000", ("0.0.0.0", 9000)),
        (":8081", ("0.0.0.0", 8081)),
        ("8082", ("localhost", 8082)),
        ("example.org", ("example.org", 8080)),
        ("[::1]:8083", ("::1", 8083)),
        ("[::1]", ("::1", 8080)),
    ],
)
def test_parse_bind_address(address: str, expected: tuple[str, int]):
    assert parse_bind_address(address) == expected


@pytest.mark.parametrize("address", ["host:port", "1.2.3.4:", "70000", "[::1]x"])
def test_parse_bind_address_rejects_invalid(address: str):
    with pytest.raises(ValueError):
        parse_bind_address(address)


def test_local_hosts():
    assert is_local_host("localhost")
    assert is_local_host("127.0.0.1")
    assert is_local_host("::1")
    assert not is_local_host("0.0.0.0")
    assert not is_local_host("example.org")
