"""GeoPackage cache: round trips, tables as MapProxy 7 writes them, readable by GDAL."""

from __future__ import annotations

import io
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from mapproxy.cache.geopackage import GeoPackageCache
from mapproxy.grid.tile_grid import TileCoord, TileGrid
from mapproxy.srs import SRS

HALF = 20037508.342789244
# Tiles requested through WMTS (row 0 north) and the rows MapProxy 7.0.0 wrote for them.
REFERENCE_ROWS = {(0, 0, 0), (1, 0, 0), (1, 1, 0), (2, 1, 3), (3, 5, 2)}


def _grid() -> TileGrid:
    res = [2 * HALF / 256 / 2**i for i in range(20)]
    return TileGrid(
        SRS("EPSG:3857"), (-HALF, -HALF, HALF, HALF), res, origin="nw", name="GLOBAL_WEBMERCATOR"
    )


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (256, 256), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


def test_round_trip_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "c.gpkg"
    cache = GeoPackageCache(str(path), "c_GLOBAL_WEBMERCATOR", _grid())
    coord = TileCoord(5, 2, 3)
    assert cache.load_tile(coord) is None
    assert not path.exists()
    cache.store_tiles({TileCoord(x, y, z): b"t" for z, x, y in REFERENCE_ROWS})
    assert cache.load_tile(coord).data == b"t"  # type: ignore[union-attr]
    assert cache.is_cached(coord) and cache.tile_timestamp(coord) is None
    cache.remove_tile(coord)
    assert not cache.is_cached(coord)
    cache.store_tiles({coord: b"t"})
    with sqlite3.connect(path) as conn:
        rows = set(
            conn.execute("SELECT zoom_level, tile_column, tile_row FROM c_GLOBAL_WEBMERCATOR")
        )
        contents = conn.execute(
            "SELECT table_name, data_type, srs_id, min_x, max_y FROM gpkg_contents"
        ).fetchall()
        matrix = conn.execute(
            "SELECT zoom_level, matrix_width, matrix_height, tile_width, pixel_x_size "
            "FROM gpkg_tile_matrix WHERE zoom_level = 2"
        ).fetchone()
        srs_ids = {r[0] for r in conn.execute("SELECT srs_id FROM gpkg_spatial_ref_sys")}
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    assert rows == REFERENCE_ROWS
    assert contents == [("c_GLOBAL_WEBMERCATOR", "tiles", 3857, -HALF, HALF)]
    assert matrix[:4] == (2, 4, 4, 256)
    assert matrix[4] == pytest.approx(39135.7584820102)
    assert {-1, 0, 3857} <= srs_ids
    assert app_id == 1196437808


def test_levels_one_file_per_level(tmp_path: Path) -> None:
    cache = GeoPackageCache(str(tmp_path / "g"), "t_g", _grid(), levels=True)
    cache.store_tiles({TileCoord(0, 0, 0): b"a", TileCoord(1, 1, 1): b"b"})
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["0.gpkg", "1.gpkg"]
    assert cache.load_tile(TileCoord(1, 1, 1)).data == b"b"  # type: ignore[union-attr]


def test_invalid_table_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        GeoPackageCache(str(tmp_path / "c.gpkg"), "x]; DROP", _grid())


@pytest.mark.skipif(shutil.which("gdalinfo") is None, reason="gdalinfo not installed")
def test_gdal_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.gpkg"
    cache = GeoPackageCache(str(path), "c_GLOBAL_WEBMERCATOR", _grid())
    cache.store_tiles({TileCoord(1, 1, 2): _png()})
    result = subprocess.run(
        ["gdalinfo", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "GPKG" in result.stdout
    assert "Pseudo-Mercator" in result.stdout or "3857" in result.stdout
    assert "ERROR" not in result.stderr
