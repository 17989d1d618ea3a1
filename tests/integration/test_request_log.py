"""Logging as deployed: the log.ini from `mapproxy-util create -t log-ini`, loaded by the
(uncommented) lines of the WSGI module from `create -t wsgi-app`, under gunicorn.

`source-requests.log` must get one line per upstream request in MapProxy's format
(`<METHOD> <url> <status> <size kB> <ms>`), for a successful GetMap, an upstream HTTP error
and a refused connection; `mapproxy.log` must get the `reading: <file>` lines of
`mapproxy.config` for the configuration and its base file.
"""

from __future__ import annotations

import re
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    from . import deploy
except ImportError:
    import deploy

pytestmark = pytest.mark.integration

CONFIG = """\
base: base.yaml
services:
  wms:
    srs: ['EPSG:4326']
layers:
  - name: direct
    title: MapServer, uncached
    sources: [ms_wms]
  - name: refused
    title: a WMS that refuses connections
    sources: [dead_wms]
sources:
  ms_wms:
    type: wms
    req:
      url: {url}
      layers: raster
      transparent: true
  dead_wms:
    type: wms
    req:
      url: http://127.0.0.1:{dead_port}/wms
      layers: raster
"""

BASE = """\
globals:
  http:
    client_timeout: 20
"""

# [asctime] METHOD URL STATUS SIZE DURATION  (formatter `requests` = "[%(asctime)s] %(message)s")
REQUEST_LINE = re.compile(
    r"^\[(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] "
    r"(?P<method>GET|POST) (?P<url>\S+) (?P<status>\d{3}|-) (?P<size>\d+\.\d|-) "
    r"(?P<ms>\d+|-)$"
)
# "%(asctime)s - %(levelname)s - %(name)s - %(message)s"
READING_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - INFO - mapproxy\.config - reading: (?P<file>.+)$"
)

GETMAP = {
    "SERVICE": "WMS",
    "VERSION": "1.1.1",
    "REQUEST": "GetMap",
    "STYLES": "",
    "SRS": "EPSG:4326",
    "BBOX": "-20,30,20,70",
    "WIDTH": "200",
    "HEIGHT": "200",
    "FORMAT": "image/png",
}

DELAY = 0.25  # seconds the MapServer fixture waits before answering


@dataclass
class LoggedApp:
    url: str
    directory: Path
    dead_port: int

    def getmap(self, layer: str) -> deploy.Response:
        query = urllib.parse.urlencode({**GETMAP, "LAYERS": layer})
        return deploy.http_get(f"{self.url}/service?{query}")

    def request_lines(self) -> list[re.Match[str]]:
        lines = (self.directory / "source-requests.log").read_text().splitlines()
        matches = [REQUEST_LINE.match(line) for line in lines]
        assert all(matches), [line for line, m in zip(lines, matches, strict=True) if not m]
        return [m for m in matches if m]


def enable_log_ini(script: Path) -> None:
    """Uncomment the fileConfig lines of the generated WSGI module, as its comment says."""
    lines = script.read_text().splitlines()
    statements = ("from logging.config import fileConfig", "import os.path", "fileConfig(")
    enabled = 0
    for index, line in enumerate(lines):
        if line.startswith("# ") and line[2:].startswith(statements):
            lines[index] = line[2:]
            enabled += 1
    assert enabled == 3, script.read_text()
    script.write_text("\n".join(lines) + "\n")


@pytest.fixture
def logged_app(tmp_path: Path, mapserver) -> Iterator[LoggedApp]:  # type: ignore[no-untyped-def]
    deploy.require_python_module("gunicorn")
    dead_port = deploy.free_port()  # nothing listens there: connections are refused
    config = tmp_path / "mapproxy.yaml"
    config.write_text(CONFIG.format(url=mapserver.url, dead_port=dead_port))
    (tmp_path / "base.yaml").write_text(BASE)
    util = deploy.venv_script("mapproxy-util")
    for argv in (
        [util, "create", "-t", "log-ini", str(tmp_path / "log.ini")],
        [util, "create", "-t", "wsgi-app", "-f", str(config), str(tmp_path / "config.py")],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    script = tmp_path / "config.py"
    enable_log_ini(script)
    server, url = deploy.gunicorn_server(script, ["-k", "sync", "-w", "1"], tmp_path)
    with server:
        yield LoggedApp(url, tmp_path, dead_port)


def check_url(line: re.Match[str], expected_base: str) -> dict[str, str]:
    """The logged URL is the full outgoing URL with lower-case parameter names."""
    url = line["url"]
    assert url.startswith(expected_base + "?"), url
    query = urllib.parse.urlsplit(url).query
    params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    assert params, url
    assert all(key == key.lower() for key in params), url
    assert params["request"] == "GetMap"
    assert params["layers"] == "raster"
    return params


def test_source_requests_log(logged_app: LoggedApp, mapserver) -> None:  # type: ignore[no-untyped-def]
    mapserver.reset()
    mapserver.delay = DELAY

    # 1. a successful upstream GetMap
    ok = logged_app.getmap("direct")
    assert ok.status == 200 and ok.content_type == "image/png", ok

    # 2. the upstream answers 500
    mapserver.override = lambda query: (500, "text/plain", b"upstream broke")
    logged_app.getmap("direct")
    mapserver.override = None

    # 3. nobody listens on the source's port
    mapserver.delay = 0
    logged_app.getmap("refused")

    lines = logged_app.request_lines()
    assert len(lines) == 3, [line.group(0) for line in lines]
    assert mapserver.count(request="GetMap") == 2
    success, http_error, refused = lines

    # every line names exactly the request MapServer received
    for line, (method, path, _body) in zip(lines, mapserver.raw_requests, strict=False):
        assert line["method"] == method == "GET"
        assert line["url"] == mapserver.url.rstrip("/") + path

    check_url(success, mapserver.url)
    assert success["status"] == "200"
    # size: the upstream response's Content-Length in kB with one decimal
    status, _headers, body = mapserver.run_cgi("GET", urllib.parse.urlsplit(success["url"]).query)
    assert status == 200
    assert success["size"] == f"{len(body) / 1024:.1f}"
    assert DELAY * 1000 <= int(success["ms"]) < 20_000

    check_url(http_error, mapserver.url)
    assert (http_error["status"], http_error["size"]) == ("500", "-")
    assert DELAY * 1000 <= int(http_error["ms"]) < 20_000

    check_url(refused, f"http://127.0.0.1:{logged_app.dead_port}/wms")
    assert (refused["status"], refused["size"]) == ("-", "-")
    assert refused["ms"] == "-" or 0 <= int(refused["ms"]) < 5_000

    # the request lines do not propagate into mapproxy.log
    main_log = (logged_app.directory / "mapproxy.log").read_text()
    assert "GET http" not in main_log


def test_mapproxy_log_names_the_configuration_files(logged_app: LoggedApp) -> None:
    lines = (logged_app.directory / "mapproxy.log").read_text().splitlines()
    reading = [m["file"] for m in map(READING_LINE.match, lines) if m]
    directory = logged_app.directory
    assert reading == [str(directory / "mapproxy.yaml"), str(directory / "base.yaml")], lines
    # other loggers of the app end up in the same file with the `default` format
    assert any(" - WARNING - mapproxy." in line or " - INFO - mapproxy." in line for line in lines)
