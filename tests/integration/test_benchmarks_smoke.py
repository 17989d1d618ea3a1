"""Smoke test of the benchmark suite (benchmarks/): upstream, one tiny workload, the report.

Runs against this project only (no reference MapProxy, no wrk: the Python load loop), so CI
notices when the suite stops working. The numbers themselves are never asserted.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import socket
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]


def _benchmarks(name: str) -> ModuleType:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module(f"benchmarks.{name}")


def test_upstream_image_is_a_function_of_the_bbox() -> None:
    upstream = _benchmarks("upstream")
    query = {
        "REQUEST": "GetMap",
        "BBOX": "900000,5900000,1500000,6500000",
        "WIDTH": "256",
        "HEIGHT": "256",
        "FORMAT": "image/png",
    }
    status, content_type, first = upstream.getmap(query)
    assert (status, content_type) == (200, "image/png")
    assert upstream.getmap(dict(query))[2] == first
    moved = upstream.getmap(query | {"BBOX": "1500000,5900000,2100000,6500000"})[2]
    pixels = np.asarray(Image.open(io.BytesIO(first)).convert("RGB"))
    moved_pixels = np.asarray(Image.open(io.BytesIO(moved)).convert("RGB"))
    assert pixels.shape == (256, 256, 3)
    assert not np.array_equal(pixels, moved_pixels)
    # Grid lines: whole rows and columns of the line colour.
    line = np.all(pixels == (30, 30, 30), axis=2)
    assert line.all(axis=0).any() and line.all(axis=1).any()
    assert upstream.getmap({"REQUEST": "GetCapabilities"})[0] == 400


def test_upstream_memo_serves_repeated_requests(tmp_path: Path) -> None:
    import ctypes
    import multiprocessing

    upstream = _benchmarks("upstream")
    rendered = multiprocessing.Value(ctypes.c_long, 0)
    query = {"REQUEST": "GetMap", "BBOX": "0,0,1000,1000", "WIDTH": "64", "HEIGHT": "64"}
    first = upstream.getmap(query, str(tmp_path), rendered)
    # bboxes that differ below 1/100 map unit are the same request
    again = upstream.getmap(query | {"BBOX": "0.001,0,1000,1000.004"}, str(tmp_path), rendered)
    assert first == again and first[0] == 200
    assert rendered.value == 1
    assert upstream.getmap(query | {"WIDTH": "65"}, str(tmp_path), rendered)[0] == 200
    assert rendered.value == 2
    assert not list(tmp_path.rglob("*.tmp"))


def test_primed_meta_tiles_are_the_ones_the_proxy_asks_for() -> None:
    from urllib.parse import parse_qs

    from mapproxy.config.build.grids import BUILTIN_GRIDS
    from mapproxy.grid import MetaGrid, TileGrid
    from mapproxy.grid.tile_grid import TileCoord
    from mapproxy.srs import get_srs

    workloads = _benchmarks("workloads")
    spec = BUILTIN_GRIDS["GLOBAL_WEBMERCATOR"]
    half = workloads.WEBMERCATOR_HALF_WORLD
    resolutions = [2 * half / 256 / 2**z for z in range(13)]
    grid = TileGrid(get_srs(spec["srs"]), spec["bbox"], resolutions, origin="nw")
    meta = MetaGrid(grid, (4, 4), 80)
    for path in workloads.w2_paths(seed=5, count=30):
        z, x, y = (int(part) for part in path.rsplit(".", 1)[0].split("/")[-3:])
        query = parse_qs(workloads.meta_getmap_query(z, x, y))
        bbox = [float(value) for value in query["BBOX"][0].split(",")]
        expected = meta.meta_tile(TileCoord(x, y, z))
        assert bbox == pytest.approx(list(expected.bbox), abs=1e-6)
        assert (int(query["WIDTH"][0]), int(query["HEIGHT"][0])) == expected.size


def test_tile_paths_follow_the_cache_layout() -> None:
    workloads = _benchmarks("workloads")
    assert workloads.tc_file_path(9, 274, 178) == "09/000/000/274/000/000/178.png"
    assert workloads.wmts_path("bench", 9, 274, 178) == "/wmts/bench/webmercator/9/274/178.png"
    # MapProxy's TMS for this grid starts at level 1 and counts rows from below.
    assert workloads.tms_path("bench", 10, 274, 690) == "/tms/1.0.0/bench/webmercator/9/274/333.png"
    x0, y0, x1, y1 = workloads.country_tile_range(6)
    assert (x0, y0, x1, y1) == (33, 20, 34, 22)


def test_suite_runs_w2_against_this_project(tmp_path: Path) -> None:
    run = _benchmarks("run")
    pytest.importorskip("gunicorn", reason="the test extra provides gunicorn")
    report = tmp_path / "report.md"
    work_dir = tmp_path / "work"
    exit_code = run.main(
        [
            "--quick",
            "--only",
            "W2",
            "--projects",
            "this",
            "--duration",
            "1",
            "--connections",
            "4",
            "--loader",
            "python",
            "--work-dir",
            str(work_dir),
            "--output",
            str(report),
        ]
    )
    assert exit_code == 0
    metrics = {item["name"]: item for item in json.loads((work_dir / "results.json").read_text())}
    misses = metrics["cache misses (20 ms upstream)"]
    assert misses["workload"] == "W2"
    assert misses["medians"]["this"] > 0
    assert misses["note"] == ""  # no failed requests
    per_tile = metrics["upstream requests per tile (one client)"]["medians"]["this"]
    assert 0 < per_tile <= 1.0  # one meta tile request at most per missing tile
    text = report.read_text()
    assert run.RESULTS_START in text and run.RESULTS_END in text
    assert "| W2 | cache misses (20 ms upstream) |" in text
    # The processes the suite started are gone: gunicorn (its command line names the work
    # directory) and the upstream (nothing listens on its port any more).
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert str(work_dir).encode() not in cmdline.read_bytes()
        except OSError:
            continue
    port = int((work_dir / "upstream.log").read_text().split("127.0.0.1:")[1].split()[0])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_w4_without_a_working_seeder_is_reported_not_fatal(tmp_path: Path) -> None:
    run = _benchmarks("run")
    settings = run.parse_args(["--quick", "--projects", "this", "--work-dir", str(tmp_path)])
    no_seeder = run.Project("this", "this project", tmp_path / "no-bin")
    settings = dataclasses.replace(settings, projects=(no_seeder,))
    results = run.Results()
    run.w4_seeding(settings, results)
    rate = results.metrics[0]
    assert rate.workload == "W4"
    assert rate.median("this") is None
    assert rate.note == "n/a (mapproxy-seed not available)"
    assert "| W4 | seeding levels 0-7, -c 2 | n/a (mapproxy-seed not available) |" in (
        run.markdown_table(results)
    )
