"""Cache misses under gunicorn: the requested tile is answered, the rest of its meta tile is
stored by the worker's background thread under the meta tile lock, and a worker that stops
normally finishes that work first."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream

try:
    from . import deploy
except ImportError:
    import deploy

pytestmark = pytest.mark.integration

CONFIG = """
services:
  wmts:
layers:
  - {{name: l, title: l, sources: [c]}}
caches:
  c:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [up]
    meta_size: [8, 8]
    meta_buffer: 0
    cache: {{type: file, directory: {tiles}}}
sources:
  up:
    type: wms
    req: {{url: "{url}/service", layers: base}}
"""

LEVEL = 4  # 16 x 16 tiles: meta tile 0/0 holds x, y in 0..7


def noise_handler(request: Request) -> Response:
    """A noisy RGB image of the requested size: every tile must be quantized (slow enough
    that the background thread is still at work when the next thing happens)."""
    width, height = int(request.args["width"]), int(request.args["height"])
    pixels = np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG", compress_level=1)
    return Response(out.getvalue(), content_type="image/png")


def tile_files(tiles: Path) -> set[tuple[int, int]]:
    found = set()
    for path in tiles.rglob("*.png"):
        parts = path.relative_to(tiles).parts
        if int(parts[0]) == LEVEL:
            found.add((int(parts[3]), int(parts[6].split(".")[0])))
    return found


def start_app(tmp_path: Path, upstream: FakeUpstream) -> tuple[deploy.ServerProcess, str, Path]:
    deploy.require_python_module("gunicorn")
    tiles = tmp_path / "tiles"
    config = tmp_path / "mapproxy.yaml"
    config.write_text(CONFIG.format(tiles=tiles, url=upstream.url))
    (tmp_path / "config.py").write_text(
        "from mapproxy.wsgiapp import make_wsgi_app\n"
        f"application = make_wsgi_app({str(config)!r})\n"
    )
    server, url = deploy.gunicorn_server(tmp_path / "config.py", ["-w", "1"], tmp_path)
    return server, url, tiles


def test_neighbours_of_a_miss_wait_for_the_background_store(tmp_path: Path) -> None:
    with FakeUpstream(noise_handler) as upstream:
        server, url, tiles = start_app(tmp_path, upstream)
        with server:
            first = deploy.http_get(f"{url}/wmts/l/GLOBAL_WEBMERCATOR/{LEVEL}/3/5.png")
            assert first.status == 200
            assert (3, 5) in tile_files(tiles)
            answers: list[int] = []

            def fetch(x: int, y: int) -> None:
                path = f"/wmts/l/GLOBAL_WEBMERCATOR/{LEVEL}/{x}/{y}.png"
                answers.append(deploy.http_get(url + path).status)

            threads = [
                threading.Thread(target=fetch, args=(x, y)) for x in range(8) for y in range(8)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert answers == [200] * 64
            assert tile_files(tiles) == {(x, y) for x in range(8) for y in range(8)}
            assert len(upstream.requests) == 1


def test_stopped_worker_finishes_the_meta_tile_first(tmp_path: Path) -> None:
    with FakeUpstream(noise_handler) as upstream:
        server, url, tiles = start_app(tmp_path, upstream)
        server.start()
        try:
            response = deploy.http_get(f"{url}/wmts/l/GLOBAL_WEBMERCATOR/{LEVEL}/9/9.png")
            assert response.status == 200
        finally:
            server.stop()  # SIGTERM right after the answer: a normal, graceful exit
        assert tile_files(tiles) == {(x, y) for x in range(8, 16) for y in range(8, 16)}
        assert not list(tiles.rglob("*.tmp*"))
        assert len(upstream.requests) == 1
