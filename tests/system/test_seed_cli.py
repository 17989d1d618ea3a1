"""mapproxy-seed as a subprocess against FakeUpstream-backed configs."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from werkzeug.test import Client

from fakes.fake_upstream import FakeUpstream

SCRIPT = str(Path(sys.executable).parent / "mapproxy-seed")

MAPPROXY_YAML = """\
services:
  tms:
layers:
  - name: osm
    title: OSM
    sources: [osm_cache]
caches:
  osm_cache:
    grids: [webmercator]
    sources: [osm_wms]
    meta_size: [2, 2]
    meta_buffer: 0
  sq_cache:
    grids: [webmercator]
    sources: [osm_wms]
    cache:
      type: sqlite
  slow_cache:
    grids: [webmercator]
    sources: [osm_wms]
    meta_size: [1, 1]
    meta_buffer: 0
  only_cache:
    grids: [webmercator]
    sources: [seed_wms]
    meta_size: [1, 1]
    meta_buffer: 0
grids:
  webmercator:
    base: GLOBAL_WEBMERCATOR
sources:
  osm_wms:
    type: wms
    req:
      url: {url}/service
      layers: osm
  seed_wms:
    type: wms
    seed_only: true
    req:
      url: {url}/seedonly
      layers: osm
      transparent: true
"""

SEED_YAML = """\
seeds:
  myseed:
    caches: [osm_cache]
    levels:
      to: 3
    coverages: [germany]
  allworld:
    caches: [osm_cache, sq_cache]
    levels: [0, 1]
cleanups:
  clean1:
    caches: [osm_cache]
    levels:
      from: 2
      to: 3
    remove_before:
      days: 1
coverages:
  germany:
    bbox: [5.8, 47.2, 15.1, 55.1]
    srs: "EPSG:4326"
"""

LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] ([ \d]\d) ([ \d]{2}\d\.\d\d)% (.*) \((\d+) tiles\)$")
OSM_DIR = "cache_data/osm_cache_EPSG3857"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, upstream: FakeUpstream) -> Path:
    (tmp_path / "mapproxy.yaml").write_text(MAPPROXY_YAML.format(url=upstream.url))
    (tmp_path / "seed.yaml").write_text(SEED_YAML)
    return tmp_path


def seed(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, "-f", "mapproxy.yaml", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def tile_files(root: Path, cache_dir: str = OSM_DIR) -> set[str]:
    base = root / cache_dir
    return {
        str(path.relative_to(base))
        for path in base.rglob("*.png")
        if "tile_locks" not in path.parts
    }


def tc(z: int, x: int, y: int) -> str:
    return f"{z:02d}/000/000/{x:03d}/000/000/{y:03d}.png"


GERMANY_TILES = {
    tc(0, 0, 0),
    *(tc(1, x, y) for x in (0, 1) for y in (0, 1)),
    *(tc(2, x, y) for x in (2, 3) for y in (0, 1)),
    *(tc(3, x, y) for x in (4, 5) for y in (2, 3)),
}  # the same files as MapProxy 7.0.0 seeds for this task


def test_seed_creates_meta_tiles_in_coverage_and_prints_progress(project, upstream):
    result = seed(project, "seed.yaml", "--seed", "myseed")
    assert result.returncode == 0, result.stderr
    assert tile_files(project) == GERMANY_TILES
    lines = result.stdout.splitlines()
    assert lines[:7] == [
        "========== Seeding tasks ==========",
        "Start seeding process (1 task)",
        "  myseed:",
        "    Seeding cache 'osm_cache' with grid 'webmercator' in EPSG:3857",
        "    Limited to coverage in: 5.80000, 47.20000, 15.10000, 55.10000 (EPSG:4326)",
        "    Levels: [0, 1, 2, 3]",
        "    Overwriting: all tiles",
    ]
    first, last = LINE.match(lines[7]), LINE.match(lines[-1])
    assert first and last
    assert first.groups() == (
        " 0",
        "  0.00",
        "645653.04660, 5974780.48215, 1680924.31098, 7381298.31219",
        "0",
    )
    assert last.groups()[1:] == (
        "100.00",
        "645653.04660, 5974780.48215, 1680924.31098, 7381298.31219",
        "16",
    )
    # one meta request per level (level 0 has a single tile)
    assert len(upstream.requests) == 4
    assert sorted(q["width"] for q in upstream.queries) == ["256", "512", "512", "512"]


def test_second_run_requests_nothing_and_keeps_mtimes(project, upstream):
    assert seed(project, "seed.yaml", "--seed", "myseed").returncode == 0
    path = project / OSM_DIR / tc(2, 2, 0)
    mtime = path.stat().st_mtime
    upstream.reset()
    assert seed(project, "seed.yaml", "--seed", "myseed", "-c", "1").returncode == 0
    assert upstream.requests == []
    assert path.stat().st_mtime == mtime


def test_refresh_before_recreates_older_tiles(project, upstream):
    assert seed(project, "seed.yaml", "--seed", "myseed").returncode == 0
    path = project / OSM_DIR / tc(0, 0, 0)
    os.utime(path, (time.time() - 7200, time.time() - 7200))
    (project / "refresh.yaml").write_text(
        "seeds:\n  r:\n    caches: [osm_cache]\n    levels: [0, 1]\n"
        "    refresh_before:\n      hours: 1\n"
    )
    upstream.reset()
    result = seed(project, "refresh.yaml")
    assert result.returncode == 0, result.stderr
    assert "    Overwriting: tiles older than " in result.stdout
    assert len(upstream.requests) == 1  # only level 0 was old
    assert path.stat().st_mtime > time.time() - 60


def test_server_serves_seeded_tiles_without_upstream_requests(project, upstream):
    (project / "world.yaml").write_text(
        "seeds:\n  w:\n    caches: [osm_cache]\n    levels: [0, 1, 2]\n"
    )
    assert seed(project, "world.yaml").returncode == 0
    from mapproxy.wsgiapp import make_wsgi_app

    upstream.reset()
    client = Client(make_wsgi_app(str(project / "mapproxy.yaml")))
    for url in ("0/0/0", "1/1/0", "1/0/1"):
        response = client.get(f"/tms/1.0.0/osm/EPSG3857/{url}.png")
        assert response.status_code == 200
    assert upstream.requests == []


def test_sqlite_cache_is_seeded_and_cleaned_per_level(project, upstream):
    result = seed(project, "seed.yaml", "--seed", "allworld")
    assert result.returncode == 0, result.stderr
    db = project / "cache_data/sq_cache/webmercator/1.mbtiles"
    rows = sqlite3.connect(db).execute("SELECT count(*) FROM tiles").fetchone()
    assert rows == (4,)
    (project / "clean.yaml").write_text(
        "cleanups:\n  c:\n    caches: [sq_cache]\n    levels: [1]\n    remove_all: true\n"
    )
    result = seed(project, "clean.yaml")
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1].endswith("] removing old tiles for level 1")
    assert not db.exists()
    assert (project / "cache_data/sq_cache/webmercator/0.mbtiles").exists()


def test_summary_lists_tasks_and_seeds_nothing(project, upstream):
    result = seed(project, "seed.yaml", "--summary")
    assert result.returncode == 0
    assert result.stdout.splitlines()[-6:-1] == [
        "========== Cleanup tasks ==========",
        "  clean1:",
        "    Cleaning up cache 'osm_cache' with grid 'webmercator' in EPSG:3857",
        "    Limited to coverage in: -180.00000, -85.05113, 180.00000, 85.05113 (EPSG:4326)",
        "    Levels: [2, 3]",
    ]
    assert result.stdout.splitlines()[-1].startswith("    Remove: tiles older than ")
    assert result.stdout.count("  allworld:") == 2
    assert upstream.requests == []
    assert not (project / "cache_data").exists()


def test_dry_run_requests_nothing_and_counts_tiles(project, upstream):
    result = seed(project, "seed.yaml", "-n", "--seed", "myseed")
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1].endswith("(16 tiles)")
    assert upstream.requests == []


def test_cleanup_removes_old_files_and_whole_levels(project, upstream):
    assert seed(project, "seed.yaml", "--seed", "myseed").returncode == 0
    old = project / OSM_DIR / tc(2, 2, 0)
    os.utime(old, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    (project / "clean.yaml").write_text(
        "cleanups:\n"
        "  all3:\n    caches: [osm_cache]\n    levels: [3]\n    remove_all: true\n"
        "  old2:\n    caches: [osm_cache]\n    levels: [2]\n"
        "    remove_before:\n      days: 1\n"
    )
    dry = seed(project, "clean.yaml", "-n")
    assert dry.returncode == 0
    assert tile_files(project) == GERMANY_TILES
    result = seed(project, "clean.yaml")
    assert result.returncode == 0
    assert f"] removing old tiles in {OSM_DIR}/03" in result.stdout
    assert f"] removing old tiles in {OSM_DIR}/02" in result.stdout
    assert tile_files(project) == GERMANY_TILES - {tc(2, 2, 0)} - {
        t for t in GERMANY_TILES if t.startswith("03/")
    }
    assert not (project / OSM_DIR / "03").exists()


def test_cleanup_with_coverage_removes_tiles_inside_only(project, upstream):
    assert seed(project, "seed.yaml", "--seed", "allworld").returncode == 0
    (project / "clean.yaml").write_text(
        "cleanups:\n  c:\n    caches: [osm_cache]\n    levels: [1]\n    remove_all: true\n"
        "    coverages: [ne]\ncoverages:\n  ne:\n    bbox: [10, 10, 20, 20]\n"
    )
    result = seed(project, "clean.yaml")
    assert result.returncode == 0, result.stderr
    # the 2x2 meta tile of level 1 covers the whole level
    assert tile_files(project) == {tc(0, 0, 0)}


def test_seed_only_source_is_used_by_seeding_but_not_by_the_server(project, upstream):
    from mapproxy.wsgiapp import make_wsgi_app

    (project / "only.yaml").write_text("seeds:\n  o:\n    caches: [only_cache]\n    levels: [0]\n")
    client = Client(make_wsgi_app(str(project / "mapproxy.yaml")))
    response = client.get("/tms/1.0.0/only_cache/EPSG3857/0/0/0.png")
    assert response.status_code in (200, 404)
    assert upstream.requests == []
    result = seed(project, "only.yaml")
    assert result.returncode == 0, result.stderr
    assert [path for path, _ in upstream.requests] == ["/seedonly"]
    assert tile_files(project, "cache_data/only_cache_EPSG3857") == {tc(0, 0, 0)}


@pytest.mark.parametrize(
    ("seed_yaml", "message"),
    [
        (
            "seeds:\n  a:\n    caches: [nope]\n",
            "error in configuration: cache nope not found. available caches: "
            "osm_cache,sq_cache,slow_cache,only_cache",
        ),
        (
            "seeds:\n  a:\n    caches: [osm_cache]\n    grids: [GLOBAL_GEODETIC]\n",
            "error in configuration: GLOBAL_GEODETIC not defined for caches",
        ),
        (
            "seeds:\n  a:\n    caches: [osm_cache]\n    coverages: [x]\n",
            "error in configuration: coverage x not found. available coverages: ",
        ),
        ("seeds:\n  a:\n    levels: [1]\n", "error in configuration: invalid configuration"),
        ("- 1\n", "error in configuration: configuration not a YAML dictionary"),
    ],
)
def test_seed_conf_errors_exit_2(project, seed_yaml, message):
    (project / "bad.yaml").write_text(seed_yaml)
    result = seed(project, "bad.yaml")
    assert result.returncode == 2
    assert result.stdout.splitlines()[-1] == message


def test_type_errors_are_logged_as_warnings(project):
    (project / "bad.yaml").write_text("seeds:\n  a:\n    caches: [osm_cache]\n    levels: foo\n")
    result = seed(project, "bad.yaml")
    assert result.returncode == 2
    assert re.match(
        r"\[.*\] mapproxy.seed.config - WARNING - 'foo' in seeds.a.levels"
        r" not of any type list, dict$",
        result.stdout.splitlines()[0],
    )


def test_legacy_seed_format_is_rejected_with_exception(project):
    (project / "old.yaml").write_text("views:\n  a:\n    bbox: [0, 0, 1, 1]\n")
    result = seed(project, "old.yaml")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "Exception: The old seeding config style is no longer supported. "
        "Please refer to the documentation."
    )


def test_unknown_task_names_exit_1(project):
    result = seed(project, "seed.yaml", "--seed", "foo,myseed", "--summary")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "unknown seed tasks: foo",
        "available seed tasks: myseed, allworld",
    ]


def test_usage_errors(project):
    no_conf = subprocess.run(
        [SCRIPT, "seed.yaml"], capture_output=True, text=True, cwd=project, timeout=60
    )
    assert no_conf.returncode == 2
    assert "error: missing mapproxy configuration -f/--proxy-conf" in no_conf.stderr
    no_seed = seed(project)
    assert no_seed.returncode == 1
    assert no_seed.stdout.startswith("Usage: mapproxy-seed [options] seed_conf")
    bad_duration = seed(project, "seed.yaml", "--duration", "5x")
    assert bad_duration.returncode == 2
    assert bad_duration.stderr.splitlines()[-1].endswith(
        "error: option --duration: invalid duration value: '5x', expected (10s, 15m, 0.5h, 3d, etc)"
    )


SLOW_SEED = "seeds:\n  slow:\n    caches: [slow_cache]\n    levels:\n      to: 4\n"
SLOW_TILES = {tc(z, x, y) for z in range(5) for x in range(2**z) for y in range(2**z)}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_continues_to_the_same_tile_set(project, upstream, sig):
    (project / "slow.yaml").write_text(SLOW_SEED)
    upstream.handler = upstream.sleep_handler(0.03)
    process = subprocess.Popen(
        [SCRIPT, "-f", "mapproxy.yaml", "slow.yaml", "--continue", "-c", "2"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    process.send_signal(sig)
    stdout, _ = process.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert process.returncode == 3
        assert stdout.endswith("\ninterrupted...\n")
    partial = tile_files(project, "cache_data/slow_cache_EPSG3857")
    assert 0 < len(partial) < len(SLOW_TILES)
    assert (project / ".mapproxy_seed_progress").exists()
    first_requests = len(upstream.requests)
    time.sleep(1.5)  # orphaned workers of a killed run end within a second
    result = seed(project, "slow.yaml", "--continue", "-c", "2")
    assert result.returncode == 0, result.stderr
    assert tile_files(project, "cache_data/slow_cache_EPSG3857") == SLOW_TILES
    assert not list((project / "cache_data").rglob("*.tmp"))
    assert not (project / ".mapproxy_seed_progress").exists()
    # resumed: the rest only, not a walk over everything
    assert len(upstream.requests) - first_requests <= len(SLOW_TILES) - len(partial) + 4
    for name in SLOW_TILES:
        Image.open(project / "cache_data/slow_cache_EPSG3857" / name).load()


def test_duration_stops_the_run_with_exit_3(project, upstream):
    (project / "slow.yaml").write_text(SLOW_SEED)
    upstream.handler = upstream.sleep_handler(0.05)
    result = seed(project, "slow.yaml", "--duration", "2s", "--continue", "-c", "1")
    assert result.returncode == 3
    assert (project / ".mapproxy_seed_progress").exists()


def test_reseed_interval_skips_a_recent_run(project, upstream):
    (project / "reseed").write_text("")
    result = seed(
        project, "seed.yaml", "--seed", "myseed", "--continue",
        "--reseed-file", "reseed", "--reseed-interval", "1h",
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout.strip() == "no need for re-seeding"
    assert upstream.requests == []
