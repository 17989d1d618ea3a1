"""Requests through the app store tiles into mbtiles, per-level sqlite and geopackage caches."""

from __future__ import annotations

import sqlite3
from pathlib import Path

CONFIG = """
services:
  wmts:
layers:
  - name: mb
    title: mb
    sources: [c_mb]
  - name: sq
    title: sq
    sources: [c_sq]
  - name: gp
    title: gp
    sources: [c_gp]
caches:
  c_mb:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [dbg]
    meta_size: [1, 1]
    cache:
      type: mbtiles
  c_sq:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [dbg]
    meta_size: [1, 1]
    cache:
      type: sqlite
  c_gp:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [dbg]
    meta_size: [1, 1]
    cache:
      type: geopackage
sources:
  dbg:
    type: debug
globals:
  cache:
    base_dir: ./cache_data
"""

TILES = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (2, 1, 3), (3, 5, 2)]


def _rows(path: Path) -> set[tuple[int, int, int]]:
    with sqlite3.connect(path) as conn:
        return set(conn.execute("SELECT zoom_level, tile_column, tile_row FROM tiles"))


def test_requests_store_rows_as_the_reference(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = make_app(CONFIG)
    for layer in ("mb", "sq", "gp"):
        for z, x, y in TILES:
            response = client.get(f"/wmts/{layer}/GLOBAL_WEBMERCATOR/{z}/{x}/{y}.png")
            assert response.status_code == 200
    data = tmp_path / "cache_data"
    # Rows as MapProxy 7.0.0 wrote them for the same requests.
    assert _rows(data / "c_mb.mbtiles") == set(TILES)
    level_files = sorted(p.name for p in (data / "c_sq" / "GLOBAL_WEBMERCATOR").iterdir())
    assert level_files == ["0.mbtiles", "1.mbtiles", "2.mbtiles", "3.mbtiles"]
    assert _rows(data / "c_sq" / "GLOBAL_WEBMERCATOR" / "2.mbtiles") == {(2, 1, 3)}
    with sqlite3.connect(data / "c_gp.gpkg") as conn:
        gp_rows = set(
            conn.execute("SELECT zoom_level, tile_column, tile_row FROM c_gp_GLOBAL_WEBMERCATOR")
        )
    assert gp_rows == set(TILES)
    # Served again from the cache.
    again = client.get("/wmts/mb/GLOBAL_WEBMERCATOR/3/5/2.png")
    assert again.status_code == 200
