"""A broken SQLite cache file (not a database, truncated) is logged; tiles are still served."""

from __future__ import annotations

import io
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from fakes.fake_upstream import FakeUpstream, image_handler

CONFIG = """
services:
  wmts:
layers:
  - {{name: mb, title: mb, sources: [c_mb]}}
  - {{name: sq, title: sq, sources: [c_sq]}}
  - {{name: gp, title: gp, sources: [c_gp]}}
  - {{name: gl, title: gl, sources: [c_gl]}}
caches:
  c_mb:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [wms]
    meta_size: [1, 1]
    cache: {{type: mbtiles}}
  c_sq:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [wms]
    meta_size: [1, 1]
    cache: {{type: sqlite}}
  c_gp:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [wms]
    meta_size: [1, 1]
    cache: {{type: geopackage}}
  c_gl:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [wms]
    meta_size: [1, 1]
    cache: {{type: geopackage, levels: true}}
sources:
  wms:
    type: wms
    req: {{url: "{url}/service", layers: x}}
globals:
  cache:
    base_dir: ./cache_data
"""

# layer -> its database file for level 1, relative to the config directory
FILES = {
    "mb": "cache_data/c_mb.mbtiles",
    "sq": "cache_data/c_sq/GLOBAL_WEBMERCATOR/1.mbtiles",
    "gp": "cache_data/c_gp.gpkg",
    "gl": "cache_data/c_gl/GLOBAL_WEBMERCATOR/1.gpkg",
}


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(image_handler((0, 128, 255, 255))) as fake:
        yield fake


def _valid_database(path: Path) -> bytes:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE filler (data blob)")
        conn.executemany("INSERT INTO filler VALUES (?)", [(b"x" * 4000,)] * 50)
    conn.close()
    return path.read_bytes()


def _broken_contents(kind: str, tmp_path: Path) -> bytes:
    if kind == "garbage":
        return b"this is not an SQLite database\n" * 100
    # a real database cut off in the middle
    return _valid_database(tmp_path / "valid.db")[:20000]


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
@pytest.mark.parametrize("layer", sorted(FILES))
def test_broken_file_is_logged_and_tiles_come_from_the_source(  # type: ignore[no-untyped-def]
    make_app, upstream, tmp_path: Path, caplog, layer: str, kind: str
) -> None:
    broken = tmp_path / FILES[layer]
    broken.parent.mkdir(parents=True, exist_ok=True)
    contents = _broken_contents(kind, tmp_path)
    broken.write_bytes(contents)
    client = make_app(CONFIG.format(url=upstream.url))
    with caplog.at_level(logging.ERROR, logger="mapproxy"):
        for _ in range(2):
            response = client.get(f"/wmts/{layer}/GLOBAL_WEBMERCATOR/1/0/1.png")
            assert response.status_code == 200
            assert response.content_type == "image/png"
            image = Image.open(io.BytesIO(response.data)).convert("RGBA")
            assert image.getpixel((10, 10)) == (0, 128, 255, 255)
    # not cached: each request went to the source
    assert len(upstream.requests) == 2
    assert broken.read_bytes() == contents
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert all(str(broken) in r.getMessage() for r in errors)
    assert any(
        "file is not a database" in r.getMessage() or "malformed" in r.getMessage() for r in errors
    )


def test_repaired_file_is_used_again(make_app, upstream, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / FILES["mb"]
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"garbage" * 100)
    client = make_app(CONFIG.format(url=upstream.url))
    assert client.get("/wmts/mb/GLOBAL_WEBMERCATOR/1/0/1.png").status_code == 200
    broken.unlink()
    for _ in range(2):
        assert client.get("/wmts/mb/GLOBAL_WEBMERCATOR/1/0/1.png").status_code == 200
    assert len(upstream.requests) == 2  # stored after the repair, then served from the file
    with sqlite3.connect(broken) as conn:
        rows = conn.execute("SELECT zoom_level, tile_column, tile_row FROM tiles").fetchall()
    conn.close()
    assert rows == [(1, 0, 1)]
