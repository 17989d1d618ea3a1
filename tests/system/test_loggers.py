"""The logger names users' log.ini files refer to, and what each of them logs."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from werkzeug.test import Client

from fakes.fake_upstream import FakeUpstream, status_handler
from mapproxy.util import system

CONFIG = """
services:
  wms:
  tms:
  wmts:
  {extra_services}
layers:
  - name: osm
    title: OSM
    sources: [osm_cache]
  - name: direct
    title: Direct
    sources: [osm_wms]
  - name: tiles
    title: Tiles
    sources: [tile_cache]
caches:
  osm_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [osm_wms]
  tile_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [osm_tiles]
sources:
  osm_wms:
    type: wms
    req:
      url: {url}/service
      layers: osm
  osm_tiles:
    type: tile
    grid: GLOBAL_WEBMERCATOR
    url: {url}/tiles/%(z)s/%(x)s/%(y)s.png
"""

GETMAP = {
    "SERVICE": "WMS",
    "REQUEST": "GetMap",
    "VERSION": "1.1.1",
    "LAYERS": "direct",
    "STYLES": "",
    "SRS": "EPSG:3857",
    "BBOX": "0,0,1000000,1000000",
    "WIDTH": "100",
    "HEIGHT": "100",
    "FORMAT": "image/png",
}


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def app(make_app: Callable[..., Client], upstream: FakeUpstream) -> Client:
    return make_app(CONFIG.format(url=upstream.url, extra_services=""))


def records(
    caplog: pytest.LogCaptureFixture, name: str, level: int | None = None
) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == name and (level is None or record.levelno == level)
    ]


def messages(caplog: pytest.LogCaptureFixture, name: str, level: int | None = None) -> list[str]:
    return [record.getMessage() for record in records(caplog, name, level)]


# --- mapproxy.config ---------------------------------------------------------------------


def test_config_logs_each_file_read_including_base_files(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mapproxy.config")
    make_app(
        "base: [base.yaml]\n" + CONFIG.format(url=upstream.url, extra_services=""),
        **{"base.yaml": "globals:\n  image:\n    paletted: false\n"},
    )
    assert messages(caplog, "mapproxy.config", logging.INFO)[:2] == [
        f"reading: {tmp_path / 'mapproxy.yaml'}",
        f"reading: {tmp_path / 'base.yaml'}",
    ]


def test_config_logs_validation_and_demo_warnings(
    make_app: Callable[..., Client], upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mapproxy.config")
    text = CONFIG.format(url=upstream.url, extra_services="demo:")
    make_app(
        text.replace(
            "    grids: [GLOBAL_WEBMERCATOR]\n",
            "    grids: [GLOBAL_WEBMERCATOR]\n    colour: red\n",
            1,
        )
    )
    warnings = messages(caplog, "mapproxy.config", logging.WARNING)
    assert any("colour" in message and "caches.osm_cache" in message for message in warnings)
    assert any("demo service is enabled" in message for message in warnings)


# --- mapproxy.system ---------------------------------------------------------------------


def test_system_logs_library_versions_once_per_process(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import PIL
    import pyproj

    monkeypatch.setattr(system, "_reported", False)
    monkeypatch.setattr(system, "_proj_reported", False)
    caplog.set_level(logging.DEBUG, logger="mapproxy.system")
    make_app(CONFIG.format(url=upstream.url, extra_services=""))
    # PROJ was loaded in this test process before: it is reported with the rest
    versions, proj = messages(caplog, "mapproxy.system", logging.INFO)
    assert f"Pillow {PIL.__version__}" in versions
    assert proj == f"PROJ {pyproj.proj_version_str} (pyproj {pyproj.__version__})"
    debug = messages(caplog, "mapproxy.system", logging.DEBUG)
    assert any(message.startswith("PROJ data directory: ") for message in debug)

    caplog.clear()
    make_app(CONFIG.format(url=upstream.url, extra_services=""))
    assert records(caplog, "mapproxy.system") == []


def test_proj_is_loaded_and_reported_with_the_first_transformation(tmp_path: Path) -> None:
    config = tmp_path / "mapproxy.yaml"
    config.write_text(
        "services:\n  tms:\n  wms:\n    srs: ['EPSG:3857', 'EPSG:4326', 'EPSG:25832']\n"
        "layers:\n  - name: l\n    title: L\n    sources: [c]\n"
        "caches:\n  c:\n    grids: [GLOBAL_WEBMERCATOR]\n    sources: []\n"
    )
    script = f"""
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s", stream=sys.stdout)
from mapproxy.wsgiapp import make_wsgi_app
make_wsgi_app({str(config)!r})
print("PYPROJ LOADED", "pyproj" in sys.modules)
from mapproxy.srs import get_srs
get_srs("EPSG:3857").transform_bbox_to(get_srs("EPSG:4326"), (0.0, 0.0, 1000.0, 1000.0))
get_srs("EPSG:25832").transform_bbox_to(get_srs("EPSG:4326"), (5e5, 5e6, 6e5, 6e6))
print("PYPROJ LOADED", "pyproj" in sys.modules)
"""
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    lines = completed.stdout.splitlines()
    system_lines = [line for line in lines if line.startswith("mapproxy.system ")]
    assert lines.index("PYPROJ LOADED False") < lines.index("PYPROJ LOADED True")
    assert system_lines[0].startswith("mapproxy.system MapProxy ")
    proj_lines = [line for line in system_lines if line.startswith("mapproxy.system PROJ ")]
    assert len(proj_lines) == 1
    assert lines.index(proj_lines[0]) > lines.index("PYPROJ LOADED False")


def test_system_warns_about_missing_imaging_features(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import features

    real_check = features.check
    monkeypatch.setattr(features, "check", lambda name: name != "freetype2" and real_check(name))
    caplog.set_level(logging.INFO, logger="mapproxy.system")
    system.report_system_info()
    (warning,) = messages(caplog, "mapproxy.system", logging.WARNING)
    assert warning.startswith("Pillow has no freetype2 support: ")


# --- mapproxy.wsgiapp --------------------------------------------------------------------


def test_wsgiapp_logs_fatal_errors_with_handler_path_query_and_traceback(
    app: Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(request: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.app.handlers["tms"], "handle", broken)  # type: ignore[attr-defined]
    response = app.get("/tms/1.0.0/osm/EPSG3857/0/0/0.png?foo=bar")
    assert response.status_code == 500
    (record,) = records(caplog, "mapproxy.wsgiapp", logging.ERROR)
    assert record.getMessage() == "fatal error in tms for /tms/1.0.0/osm/EPSG3857/0/0/0.png?foo=bar"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "RuntimeError: boom" in caplog.text


# --- mapproxy.service.* and mapproxy.source.* -------------------------------------------


def test_wms_source_error_is_logged_by_source_and_wms_service(
    app: Client, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.handler = status_handler(500)
    response = app.get("/service", query_string=GETMAP)
    assert b"ServiceException" in response.data
    (source_warning,) = messages(caplog, "mapproxy.source.wms", logging.WARNING)
    assert source_warning.startswith(f'HTTP Error "{upstream.url}/service?')
    assert source_warning.endswith('": 500')
    (service_warning,) = messages(caplog, "mapproxy.service.wms", logging.WARNING)
    assert service_warning.startswith("layer error in GetMap for bbox 0.0,0.0,1000000.0,1000000.0")
    assert "HTTP Error (see logs for URL and reason)." in service_warning


def test_tile_source_error_is_logged_by_source_and_wmts_service(
    app: Client, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.handler = status_handler(503)
    response = app.get("/wmts/tiles/GLOBAL_WEBMERCATOR/1/0/0.png")
    assert response.status_code == 500
    (source_warning,) = messages(caplog, "mapproxy.source.tile", logging.WARNING)
    assert source_warning == f'HTTP Error "{upstream.url}/tiles/1/0/0.png": 503'
    (service_error,) = messages(caplog, "mapproxy.service.wmts")
    assert "HTTP Error (see logs for URL and reason)." in service_error


def test_tms_service_logs_tile_errors(
    app: Client, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.handler = status_handler(500)
    response = app.get("/tms/1.0.0/osm/EPSG3857/0/0/0.png")
    assert response.status_code == 500
    (service_error,) = messages(caplog, "mapproxy.service.tms")
    assert service_error.startswith("error while loading tile ")
    assert "HTTP Error (see logs for URL and reason)." in service_error


def test_demo_service_logs_failed_capabilities_requests(
    make_app: Callable[..., Client], upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_app(CONFIG.format(url=upstream.url, extra_services="demo:"))
    response = client.get("/demo/?tms_capabilities&layer=nosuchlayer&srs=EPSG3857")
    assert response.status_code == 200
    (warning,) = messages(caplog, "mapproxy.service.demo", logging.WARNING)
    assert warning == (
        "demo capabilities request /tms/1.0.0/nosuchlayer/EPSG3857? answered 404 NOT FOUND"
    )


def test_source_request_logs_one_info_line_per_outgoing_request(
    app: Client, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mapproxy.source.request")
    assert app.get("/service", query_string=GETMAP).status_code == 200
    assert app.get("/wmts/tiles/GLOBAL_WEBMERCATOR/1/0/0.png").status_code == 200
    lines = messages(caplog, "mapproxy.source.request", logging.INFO)
    assert len(lines) == 2
    wms_line = re.escape(f"GET {upstream.url}/service?") + r"\S+ 200 \d+\.\d (\d+|-)"
    tile_line = re.escape(f"GET {upstream.url}/tiles/1/0/0.png 200 ") + r"\d+\.\d (\d+|-)"
    assert re.fullmatch(wms_line, lines[0])
    assert re.fullmatch(tile_line, lines[1])
