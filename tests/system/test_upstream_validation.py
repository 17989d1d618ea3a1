"""Upstream answers are checked before use: broken images are never cached or served.

A truncated PNG, an HTML page or an exception document sent as ``image/png`` with status
200, and a body shorter than its Content-Length give the client a clean error, leave the
cache empty, and the next request (upstream fixed) creates and stores the tile. A corrupt
file already in the cache is logged and created again.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from lxml import etree
from PIL import Image
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, Handler, png_bytes

OWS = "{http://www.opengis.net/ows/1.1}"

CONFIG = """
services:
  wms:
    srs: ['EPSG:3857']
  wmts:
  tms:
layers:
  - {name: meta, title: Meta tiles from WMS, sources: [meta_cache]}
  - {name: direct, title: Direct tiles, sources: [direct_cache]}
caches:
  meta_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [up_wms]
    format: image/png
    meta_size: [2, 2]
    meta_buffer: 0
  direct_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [up_tiles]
    format: image/png
sources:
  up_wms:
    type: wms
    http: {client_timeout: 5}
    req: {url: {url}/service, layers: a}
  up_tiles:
    type: tile
    grid: GLOBAL_WEBMERCATOR
    http: {client_timeout: 5}
    url: {url}/tiles/%(z)s/%(x)s/%(y)s.png
globals:
  cache: {base_dir: ./cache_data}
"""

HALF_WORLD = 20037508.342789244


def _size(request_args: dict[str, str]) -> tuple[int, int]:
    args = {key.lower(): value for key, value in request_args.items()}
    return int(args.get("width", 256)), int(args.get("height", 256))


def truncated_png(request: Request) -> Response:
    data = png_bytes(_size(dict(request.args)), (10, 20, 30, 255))
    return Response(data[: len(data) // 2], content_type="image/png")


def html_page(request: Request) -> Response:
    body = "<!DOCTYPE html><html><body><h1>Maintenance</h1></body></html>"
    return Response(body, content_type="image/png")


def exception_as_png(request: Request) -> Response:
    body = (
        '<?xml version="1.0"?>\n<ServiceExceptionReport version="1.1.1">'
        "<ServiceException>layer a is broken</ServiceException></ServiceExceptionReport>"
    )
    return Response(body, content_type="image/png")


def good_png(request: Request) -> Response:
    return Response(
        png_bytes(_size(dict(request.args)), (0, 0, 255, 255)), content_type="image/png"
    )


class ShortBodyServer:
    """A raw socket HTTP server: while ``broken``, it promises a full PNG in Content-Length,
    sends half of it and closes the connection; otherwise it sends the full PNG."""

    def __init__(self) -> None:
        self.broken = True
        self.requests = 0
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            with connection:
                self._answer(connection)

    def _answer(self, connection: socket.socket) -> None:
        connection.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = connection.recv(65536)
            if not chunk:
                return
            head += chunk
        target = head.split(b" ", 2)[1].decode("latin-1")
        self.requests += 1
        data = png_bytes(_size(dict(parse_qsl(urlsplit(target).query))), (0, 0, 255, 255))
        body = data[: len(data) // 2] if self.broken else data
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
            + f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(good_png) as fake:
        yield fake


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache_data"


def stored_files(base: Path) -> set[Path]:
    return {p for p in base.rglob("*") if p.is_file() and p.suffix != ".lck"}


def tile_file(cache_dir: Path, cache: str, z: int, x: int, y: int) -> Path:
    xs, ys = f"{x:09d}", f"{y:09d}"
    return (
        cache_dir
        / f"{cache}_EPSG3857"
        / f"{z:02d}"
        / xs[:3]
        / xs[3:6]
        / xs[6:]
        / ys[:3]
        / ys[3:6]
        / f"{ys[6:]}.png"
    )


def check_wmts_error(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 500
    root = etree.fromstring(response.data)
    assert root.tag == f"{OWS}ExceptionReport"


def check_tms_error(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 500
    assert etree.fromstring(response.data).tag == "TileMapServerError"


def check_wms_error(response) -> None:  # type: ignore[no-untyped-def]
    assert response.mimetype == "application/vnd.ogc.se_xml"
    root = etree.fromstring(response.data)
    assert root.tag == "ServiceExceptionReport"
    assert root.findtext("ServiceException")


def wms_getmap(layer: str) -> dict[str, str]:
    # exactly tile 1/0/0 (the north-west quarter) of GLOBAL_WEBMERCATOR
    return {
        "SERVICE": "WMS",
        "REQUEST": "GetMap",
        "VERSION": "1.1.1",
        "LAYERS": layer,
        "STYLES": "",
        "SRS": "EPSG:3857",
        "BBOX": f"{-HALF_WORLD},0,0,{HALF_WORLD}",
        "WIDTH": "256",
        "HEIGHT": "256",
        "FORMAT": "image/png",
    }


def check_recovery(app: Client, cache_dir: Path, layer: str) -> None:
    response = app.get(f"/wmts/{layer}/GLOBAL_WEBMERCATOR/1/0/0.png")
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.data))
    image.load()
    assert image.convert("RGBA").getpixel((5, 5)) == (0, 0, 255, 255)
    stored = tile_file(cache_dir, f"{layer}_cache", 1, 0, 0)
    assert stored.exists()
    Image.open(stored).load()


@pytest.mark.parametrize("layer", ["meta", "direct"])
@pytest.mark.parametrize(
    "bad_handler",
    [truncated_png, html_page, exception_as_png],
    ids=["truncated-png", "html-as-png", "exception-as-png"],
)
def test_broken_upstream_answer_gives_clean_errors_and_is_never_stored(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    cache_dir: Path,
    layer: str,
    bad_handler: Handler,
) -> None:
    app = make_app(CONFIG.replace("{url}", upstream.url))
    upstream.handler = bad_handler

    check_wmts_error(app.get(f"/wmts/{layer}/GLOBAL_WEBMERCATOR/1/0/0.png"))
    check_tms_error(app.get(f"/tms/1.0.0/{layer}/EPSG3857/1/0/1.png"))
    check_wms_error(app.get("/service", query_string=wms_getmap(layer)))
    assert len(upstream.requests) == 3  # every request tried the upstream again
    assert stored_files(cache_dir) == set()

    upstream.handler = good_png
    check_recovery(app, cache_dir, layer)


@pytest.mark.parametrize("layer", ["meta", "direct"])
def test_body_shorter_than_content_length_gives_clean_errors_and_is_never_stored(
    make_app: Callable[..., Client], cache_dir: Path, layer: str
) -> None:
    server = ShortBodyServer()
    try:
        app = make_app(CONFIG.replace("{url}", server.url))

        check_wmts_error(app.get(f"/wmts/{layer}/GLOBAL_WEBMERCATOR/1/0/0.png"))
        check_tms_error(app.get(f"/tms/1.0.0/{layer}/EPSG3857/1/0/1.png"))
        check_wms_error(app.get("/service", query_string=wms_getmap(layer)))
        assert server.requests == 3
        assert stored_files(cache_dir) == set()

        server.broken = False
        check_recovery(app, cache_dir, layer)
    finally:
        server.close()


@pytest.mark.parametrize("layer", ["meta", "direct"])
def test_corrupt_cached_file_is_logged_and_fetched_again(
    make_app: Callable[..., Client],
    upstream: FakeUpstream,
    cache_dir: Path,
    layer: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(CONFIG.replace("{url}", upstream.url))
    stored = tile_file(cache_dir, f"{layer}_cache", 1, 0, 0)
    stored.parent.mkdir(parents=True)
    good = png_bytes((256, 256), (200, 0, 0, 255))
    stored.write_bytes(good[: len(good) - 20])  # cut off by another tool

    with caplog.at_level(logging.ERROR, logger="mapproxy.cache"):
        response = app.get(f"/wmts/{layer}/GLOBAL_WEBMERCATOR/1/0/0.png")
    assert response.status_code == 200
    assert any(
        record.name.startswith("mapproxy.cache") and "corrupt tile 1/0/0" in record.getMessage()
        for record in caplog.records
    )
    assert len(upstream.requests) == 1
    image = Image.open(io.BytesIO(response.data))
    image.load()
    assert image.convert("RGBA").getpixel((5, 5)) == (0, 0, 255, 255)
    Image.open(stored).load()  # replaced by the fresh tile

    # the repaired tile is served from the cache
    assert app.get(f"/wmts/{layer}/GLOBAL_WEBMERCATOR/1/0/0.png").status_code == 200
    assert len(upstream.requests) == 1
