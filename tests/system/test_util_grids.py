"""mapproxy-util grids: expected lines produced by MapProxy 7.0.0 with the same configs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mapproxy.script import util

CONFIG = """\
caches:
  osm_cache:
    grids: [webmercator, local_grid, GLOBAL_GEODETIC]
    sources: []
  other:
    grids: [utm]
    sources: []
grids:
  webmercator:
    base: GLOBAL_WEBMERCATOR
  local_grid:
    srs: 'EPSG:25832'
    bbox: [400000, 5500000, 500000, 5600000]
    res: [100, 50, 25, 10]
    origin: nw
  utm:
    srs: 'EPSG:25832'
    bbox: [5, 50, 10, 55]
    bbox_srs: 'EPSG:4326'
    num_levels: 5
    tile_size: [512, 512]
  unused:
    srs: 'EPSG:4326'
    min_res: 0.5
    max_res: 0.01
    res_factor: 'sqrt2'
  exact:
    srs: 'EPSG:25832'
    bbox: "0,0,256000,256000"
    res: [1.0, 2000, 0.99]
    origin: 'ul'
"""

SEED = """\
coverages:
  germany:
    bbox: [5, 47, 15, 55]
    srs: 'EPSG:4326'
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mapproxy.yaml"
    path.write_text(CONFIG)
    (tmp_path / "seed.yaml").write_text(SEED)
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = util.main(["grids", *args])
    return code, capsys.readouterr().out


def test_list_shows_grids_used_by_caches_sorted(capsys, config):
    assert run(capsys, str(config), "-l") == (
        0,
        "GLOBAL_GEODETIC\nlocal_grid\nutm\nwebmercator\n",
    )


def test_list_all_includes_builtin_and_unused(capsys, config):
    _, out = run(capsys, "-f", str(config), "-l", "--all")
    assert out.split() == [
        "GLOBAL_GEODETIC",
        "GLOBAL_MERCATOR",
        "GLOBAL_WEBMERCATOR",
        "exact",
        "local_grid",
        "unused",
        "utm",
        "webmercator",
    ]


def test_configured_res_grid_keeps_int_values_and_marks_defaults(capsys, config):
    code, out = run(capsys, str(config), "-g", "local_grid")
    assert code == 0
    assert out == textwrap.dedent("""\
        local_grid:
            Configuration:
                bbox: [400000, 5500000, 500000, 5600000]
                origin: 'nw'
                res: [100, 50, 25, 10]
                srs: 'EPSG:25832'
                tile_size*: [256, 256]
            Levels: Resolutions, # x * y = total tiles
                00:  100, #      4 * 4      =         16
                01:  50,  #      8 * 8      =         64
                02:  25,  #     16 * 16     =        256
                03:  10,  #     40 * 40     =       1600
        """)


def test_bbox_srs_grid_matches_reference_resolutions(capsys, config):
    _, out = run(capsys, str(config), "-g", "utm")
    lines = out.splitlines()
    assert "        origin*: 'll'" in lines
    assert "        tile_size: [512, 512]" in lines
    assert "        00:  1100.488475117887,  #      1 * 1      =          1" in lines
    assert "        04:  68.78052969486794,  #     11 * 16     =        176" in lines


def test_builtin_grid_counts_in_millions(capsys, config):
    _, out = run(capsys, str(config), "-g", "GLOBAL_GEODETIC")
    lines = out.splitlines()
    assert lines[:6] == [
        "GLOBAL_GEODETIC:",
        "    Configuration:",
        "        bbox*: [-180.0, -90.0, 180.0, 90.0]",
        "        origin: 'sw'",
        "        srs: 'EPSG:4326'",
        "        tile_size*: [256, 256]",
    ]
    assert "        10:  0.001373291015625,      #   1024 * 512    =     524288" in lines
    assert "        19:  2.682209014892578e-06,  # 524288 * 262144 = 137438.95M" in lines


def test_base_grid_shows_base_and_origin_default(capsys, config):
    _, out = run(capsys, str(config), "-g", "webmercator")
    assert out.splitlines()[2:5] == [
        "        base: 'GLOBAL_WEBMERCATOR'",
        "        bbox*: [-20037508.342789244, -20037508.342789244, "
        "20037508.342789244, 20037508.342789244]",
        "        origin*: 'ul'",
    ]


def test_exactly_one_million_tiles_is_plain_and_res_sorted(capsys, config):
    _, out = run(capsys, str(config), "-g", "exact")
    assert out.splitlines()[-3:] == [
        "        00:  2000, #      1 * 1      =          1",
        "        01:  1.0,  #   1000 * 1000   =    1000000",
        "        02:  0.99, #   1011 * 1011   =      1.02M",
    ]


def test_sqrt2_grid_with_max_res(capsys, config):
    _, out = run(capsys, str(config), "-g", "unused")
    lines = out.splitlines()
    assert lines[-12] == "        00:  0.5,                  #      3 * 2      =          6"
    assert lines[-1] == "        11:  0.011048543456039795, #    128 * 64     =       8192"


def test_grids_are_separated_by_one_blank_line(capsys, config):
    _, out = run(capsys, str(config))
    assert out.count("\n\n") == 3
    assert not out.endswith("\n\n")


def test_coverage_counts(capsys, config):
    seed = str(config.parent / "seed.yaml")
    _, out = run(capsys, str(config), "-g", "GLOBAL_GEODETIC", "-s", seed, "-c", "germany")
    lines = out.splitlines()
    assert "        tile_size: [256, 256]" in lines
    assert "    Coverage: germany covers approx. 0.1235% of the grid BBOX" in lines
    assert "    Levels: Resolutions, # x * y = total tiles (approx. tiles within coverage)" in lines
    assert "        09:  0.00274658203125,       #    512 * 256    =     131072 (161)" in lines
    assert lines[-1] == (
        "        19:  2.682209014892578e-06,  # 524288 * 262144 = 137438.95M ( 169.68M)"
    )
    _, out = run(capsys, str(config), "-g", "local_grid", "-s", seed, "-c", "germany")
    assert "    Coverage: germany covers approx. 6884.3353% of the grid BBOX" in out
    assert "        00:  100, #      4 * 4      =         16 (1101)" in out


def test_coverage_in_base_grid_shows_resolved_options(capsys, config):
    seed = str(config.parent / "seed.yaml")
    _, out = run(capsys, str(config), "-g", "webmercator", "-s", seed, "-c", "germany")
    assert out.splitlines()[2:7] == [
        "        bbox*: [-20037508.342789244, -20037508.342789244, "
        "20037508.342789244, 20037508.342789244]",
        "        origin: 'nw'",
        "        srs: 'EPSG:3857'",
        "        tile_size: [256, 256]",
        "    Coverage: germany covers approx. 0.0984% of the grid BBOX",
    ]


def test_unknown_grid_exit_1(capsys, config):
    assert run(capsys, str(config), "-g", "nope") == (1, "grid not found: nope\n")


def test_coverage_needs_seed_conf(capsys, config):
    assert run(capsys, str(config), "-c", "germany") == (
        1,
        "--coverage and --seed-conf can only be used together\n",
    )


def test_missing_config_prints_help_exit_1(capsys):
    code, out = run(capsys)
    assert code == 1
    assert out.startswith("Usage: mapproxy-util grids [options] mapproxy_conf")


def test_unreadable_config_exit_2(capsys, tmp_path):
    assert util.main(["grids", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.startswith("ERROR: ")
