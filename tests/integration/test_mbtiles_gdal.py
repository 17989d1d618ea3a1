"""An MBTiles file written by our mbtiles cache opens with GDAL's ``gdalinfo``.

Skipped when ``gdalinfo`` (Debian's gdal-bin) is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

HALF_WORLD = 20037508.342789244

CONFIG = """
services:
  wmts:
layers:
  - {name: mb, title: mb, sources: [c_mb]}
caches:
  c_mb:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [dbg]
    meta_size: [2, 2]
    cache: {type: mbtiles}
sources:
  dbg: {type: debug}
globals:
  cache: {base_dir: ./cache_data}
"""


def test_gdalinfo_reads_size_and_zoom_levels(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gdalinfo = shutil.which("gdalinfo")
    if gdalinfo is None:
        pytest.skip("gdalinfo not installed (scripts/install-system-deps.sh installs gdal-bin)")
    client = make_app(CONFIG)
    for z in range(4):
        for x in range(2**z):
            for y in range(2**z):
                response = client.get(f"/wmts/mb/GLOBAL_WEBMERCATOR/{z}/{x}/{y}.png")
                assert response.status_code == 200
    result = subprocess.run(
        [gdalinfo, "-json", str(tmp_path / "cache_data/c_mb.mbtiles")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["driverShortName"] == "MBTiles"
    # zoom 3 of GLOBAL_WEBMERCATOR: 8 x 8 tiles of 256 px over the whole world
    assert info["size"] == [2048, 2048]
    assert info["metadata"][""]["ZOOM_LEVEL"] == "3"
    origin_x, pixel_x, _, origin_y, _, pixel_y = info["geoTransform"]
    assert origin_x == pytest.approx(-HALF_WORLD)
    assert origin_y == pytest.approx(HALF_WORLD)
    assert pixel_x == pytest.approx(2 * HALF_WORLD / 2048)
    assert pixel_y == pytest.approx(-2 * HALF_WORLD / 2048)
    # zoom levels 2, 1 and 0 as overviews
    overviews = info["bands"][0]["overviews"]
    assert [o["size"] for o in overviews] == [[1024, 1024], [512, 512], [256, 256]]
    assert len(info["bands"]) == 4  # RGBA
