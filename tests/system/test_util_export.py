"""mapproxy-util export: file cache -> mbtiles/geopackage/other layouts and back."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fakes.fake_upstream import FakeUpstream
from mapproxy.script import util

CONFIG = """\
layers:
  - name: osm
    title: OSM
    sources: [osm_cache]
caches:
  osm_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [osm_wms]
sources:
  osm_wms:
    type: wms
    req:
      url: {url}/service
      layers: osm
"""

# internal (x, y, z) -> colour; paths in the reference's tc layout
TILES = {
    (0, 0, 0): (255, 0, 0),
    (0, 0, 1): (0, 255, 0),
    (1, 1, 1): (0, 0, 255),
    (3, 1, 2): (9, 9, 9),
}


def png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (256, 256), color).save(out, "PNG")
    return out.getvalue()


def write_config(tmp_path: Path, url: str = "http://127.0.0.1:1") -> Path:
    config = tmp_path / "mapproxy.yaml"
    config.write_text(CONFIG.format(url=url))
    for (x, y, z), color in TILES.items():
        path = (
            tmp_path / f"cache_data/osm_cache_EPSG3857/{z:02d}/000/000/{x:03d}/000/000/{y:03d}.png"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png(color))
    return config


def export(config: Path, dest: Path, export_type: str, *extra: str) -> int:
    return util.main(
        [
            "export",
            "-f",
            str(config),
            "--source",
            "osm_cache",
            "--grid",
            "GLOBAL_WEBMERCATOR",
            "--dest",
            str(dest),
            "--type",
            export_type,
            "--levels",
            "0..2",
            "-q",
            *extra,
        ]
    )


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("export_type", "expected"),
    [
        ("tms", ["0/0/0.png", "1/0/0.png", "1/1/1.png", "2/3/1.png"]),
        (
            "mapproxy",
            [
                "00/000/000/000/000/000/000.png",
                "01/000/000/000/000/000/000.png",
                "01/000/000/001/000/000/001.png",
                "02/000/000/003/000/000/001.png",
            ],
        ),
        (
            "arcgis",
            [
                "L00/R00000000/C00000000.png",
                "L01/R00000000/C00000000.png",
                "L01/R00000001/C00000001.png",
                "L02/R00000001/C00000003.png",
            ],
        ),
        (
            "sqlite",
            [
                "GLOBAL_WEBMERCATOR/0.mbtiles",
                "GLOBAL_WEBMERCATOR/1.mbtiles",
                "GLOBAL_WEBMERCATOR/2.mbtiles",
            ],
        ),
        ("compact-v2", ["L00/R0000C0000.bundle", "L01/R0000C0000.bundle", "L02/R0000C0000.bundle"]),
    ],
)
def test_directory_layouts_as_reference(tmp_path, export_type, expected):
    config = write_config(tmp_path)
    dest = tmp_path / "out"
    assert export(config, dest, export_type) == 0
    assert files(dest) == expected


def test_tms_export_copies_tile_bytes(tmp_path):
    config = write_config(tmp_path)
    assert export(config, tmp_path / "out", "tms") == 0
    assert (tmp_path / "out/2/3/1.png").read_bytes() == png(TILES[(3, 1, 2)])


def test_mbtiles_roundtrip_tile_by_tile_without_upstream_requests(tmp_path):
    with FakeUpstream() as upstream:
        config = write_config(tmp_path, upstream.url)
        dest = tmp_path / "export.mbtiles"
        assert export(config, dest, "mbtile") == 0
        assert upstream.requests == []
    rows = (
        sqlite3.connect(dest)
        .execute("select zoom_level, tile_column, tile_row, tile_data from tiles order by 1, 2, 3")
        .fetchall()
    )
    assert [(z, x, y) for z, x, y, _ in rows] == [(0, 0, 0), (1, 0, 0), (1, 1, 1), (2, 3, 1)]
    for z, x, y, data in rows:
        assert bytes(data) == png(TILES[(x, y, z)])

    # and back: an mbtiles cache exported into a tc directory
    back = tmp_path / "back.yaml"
    back.write_text(
        f"caches:\n  mb:\n    grids: [GLOBAL_WEBMERCATOR]\n    sources: []\n"
        f"    cache:\n      type: mbtiles\n      filename: {dest}\n"
    )
    argv = ["export", "-f", str(back), "--source", "mb", "--grid", "GLOBAL_WEBMERCATOR"]
    argv += ["--dest", str(tmp_path / "tc"), "--type", "tc", "--levels", "0..2", "-q"]
    assert util.main(argv) == 0
    for (x, y, z), color in TILES.items():
        tile = tmp_path / f"tc/{z:02d}/000/000/{x:03d}/000/000/{y:03d}.png"
        assert tile.read_bytes() == png(color)


def test_geopackage_export_table_and_tiles(tmp_path):
    config = write_config(tmp_path)
    dest = tmp_path / "export.gpkg"
    assert export(config, dest, "geopackage") == 0
    db = sqlite3.connect(dest)
    assert db.execute("select table_name, srs_id from gpkg_contents").fetchall() == [
        ("export_GLOBAL_WEBMERCATOR", 3857)
    ]
    rows = db.execute(
        "select zoom_level, tile_column, tile_row, tile_data from export_GLOBAL_WEBMERCATOR"
    ).fetchall()
    assert sorted((z, x, y) for z, x, y, _ in rows) == [(0, 0, 0), (1, 0, 0), (1, 1, 1), (2, 3, 1)]


def test_coverage_bbox_limits_tiles(tmp_path):
    config = write_config(tmp_path)
    # north-east quarter of the world in EPSG:3857 coordinates
    assert (
        export(
            config, tmp_path / "out", "tms", "--coverage", "1,1,20000000,20000000", "--srs", "3857"
        )
        == 0
    )
    assert files(tmp_path / "out") == ["0/0/0.png", "2/3/1.png"]


def test_fetch_missing_tiles_requests_upstream(tmp_path):
    with FakeUpstream() as upstream:
        config = write_config(tmp_path, upstream.url)
        dest = tmp_path / "out"
        assert export(config, dest, "tms", "--fetch-missing-tiles") == 0
        assert upstream.requests
        assert all(params["layers"] == "osm" for _, params in upstream.requests)
    assert len(files(dest)) == 1 + 4 + 16
    # a tile missing in the source cache now exists in the source cache and the export
    assert (tmp_path / "cache_data/osm_cache_EPSG3857/02/000/000/000/000/000/000.png").exists()
    assert (dest / "2/0/0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_existing_dest_needs_force(tmp_path, capsys):
    config = write_config(tmp_path)
    dest = tmp_path / "out"
    dest.mkdir()
    assert export(config, dest, "tms") == 1
    assert "use --force" in capsys.readouterr().err
    assert export(config, dest, "tms", "--force") == 0


def test_inline_grid_definition_and_levels(tmp_path):
    config = write_config(tmp_path)
    with FakeUpstream() as upstream:
        config.write_text(CONFIG.format(url=upstream.url))
        argv = ["export", "-f", str(config), "--source", "osm_wms", "--dest", str(tmp_path / "o")]
        argv += ["--grid", "srs='EPSG:4326' bbox=[5,50,10,60] tile_size=[512,512] origin='nw'"]
        argv += ["--levels", "0,2", "-q", "--fetch-missing-tiles"]
        assert util.main(argv) == 0
        assert {params["srs"] for _, params in upstream.requests} == {"EPSG:4326"}
    # 5x10 deg, level 0 res 10/512: one tile; level 2: 2x4 tiles
    assert len(files(tmp_path / "o")) == 1 + 8


def test_export_as_subprocess(tmp_path):
    config = write_config(tmp_path)
    script = Path(sys.executable).parent / "mapproxy-util"
    result = subprocess.run(
        [
            str(script),
            "export",
            "-f",
            str(config),
            "--source",
            "osm_cache",
            "--grid",
            "GLOBAL_WEBMERCATOR",
            "--dest",
            "out",
            "--levels",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr
    assert (
        "Exporting cache 'osm_cache' to 'out' with grid 'GLOBAL_WEBMERCATOR' in EPSG:3857"
        in result.stdout
    )
    assert files(tmp_path / "out") == ["1/0/0.png", "1/1/1.png"]
