"""mapproxy-seed additions: rate limits, failure policy, tile lists, upscale/downscale order."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.wrappers import Request, Response

from fakes.fake_upstream import FakeUpstream, image_handler

SCRIPT = str(Path(sys.executable).parent / "mapproxy-seed")
HALF = 20037508.342789244

MAPPROXY_YAML = """\
caches:
  tile_cache:
    grids: [webmercator]
    sources: [wms]
    meta_size: [1, 1]
    meta_buffer: 0
  limited_cache:
    grids: [webmercator]
    sources: [limited_wms]
    meta_size: [1, 1]
    meta_buffer: 0
  up_cache:
    grids: [webmercator]
    sources: [coarse_wms]
    meta_size: [2, 2]
    meta_buffer: 0
    upscale_tiles: 2
  down_cache:
    grids: [webmercator]
    sources: [fine_wms]
    meta_size: [2, 2]
    meta_buffer: 0
    downscale_tiles: 2
grids:
  webmercator:
    base: GLOBAL_WEBMERCATOR
sources:
  wms:
    type: wms
    req: {{url: "{url}/service", layers: a}}
  limited_wms:
    type: wms
    req: {{url: "{url}/limited", layers: a}}
    seed:
      rate_limit: 10
  coarse_wms:
    type: wms
    req: {{url: "{url}/coarse", layers: a}}
    max_res: 40000
  fine_wms:
    type: wms
    req: {{url: "{url}/fine", layers: a}}
    min_res: 40000
"""


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, upstream: FakeUpstream) -> Path:
    (tmp_path / "mapproxy.yaml").write_text(MAPPROXY_YAML.format(url=upstream.url))
    return tmp_path


def seed(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, "-f", "mapproxy.yaml", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def write_seed(project: Path, cache: str, last_level: int) -> str:
    (project / "seed.yaml").write_text(
        f"seeds:\n  s:\n    caches: [{cache}]\n    levels:\n      to: {last_level}\n"
    )
    return "seed.yaml"


def tile_files(project: Path, cache: str) -> set[tuple[int, int, int]]:
    base = project / "cache_data" / f"{cache}_EPSG3857"
    result = set()
    for path in base.rglob("*.png"):
        parts = path.relative_to(base).parts
        if parts[0] == "tile_locks":
            continue
        z, x, y = int(parts[0]), int("".join(parts[1:4])), int("".join(parts[4:7])[:-4])
        result.add((z, x, y))
    return result


def tile_of(bbox_param: str) -> tuple[int, int, int]:
    """(z, x, y) of a GLOBAL_WEBMERCATOR tile (origin nw) from a WMS BBOX parameter."""
    minx, _, maxx, maxy = (float(v) for v in bbox_param.split(","))
    size = maxx - minx
    z = round(math.log2(2 * HALF / size))
    return z, round((minx + HALF) / size), round((HALF - maxy) / size)


def requested_tiles(upstream: FakeUpstream) -> list[tuple[int, int, int]]:
    return [tile_of({k.lower(): v for k, v in q.items()}["bbox"]) for q in upstream.queries]


ALL_LEVEL_2 = {(z, x, y) for z in range(3) for x in range(2**z) for y in range(2**z)}
FAILING = {(2, 0, 0), (2, 1, 0)}


def failing_handler(failing: set[tuple[int, int, int]]):  # type: ignore[no-untyped-def]
    images = image_handler()

    def handle(request: Request) -> Response:
        args = {k.lower(): v for k, v in request.args.items()}
        if tile_of(args["bbox"]) in failing:
            return Response("broken", status=500, content_type="text/plain")
        return images(request)

    return handle


def test_failed_meta_tiles_are_retried_listed_and_reseeded_from_the_list(project, upstream):
    upstream.handler = failing_handler(FAILING)
    args = ("--max-retries", "2", "--retry-delay", "0.01", "-c", "2")
    result = seed(
        project, write_seed(project, "tile_cache", 2), *args, "--failed-tiles-file", "failed.txt"
    )
    assert result.returncode == 5, result.stderr
    requested = requested_tiles(upstream)
    # one request plus two retries for each failing tile, one for every other tile
    assert sorted(t for t in requested if t in FAILING) == [(2, 0, 0)] * 3 + [(2, 1, 0)] * 3
    assert len(requested) == len(ALL_LEVEL_2) - 2 + 6
    assert result.stderr.count("Retries left: 2") == 2
    assert result.stderr.count("Retries left: 1") == 2
    assert result.stderr.count("An error occured. Giving up") == 2
    assert "2 meta tiles (2 tiles) failed" in result.stderr
    assert (project / "failed.txt").read_text() == (
        "tile_cache webmercator 2 0 0\ntile_cache webmercator 2 1 0\n"
    )
    assert tile_files(project, "tile_cache") == ALL_LEVEL_2 - FAILING

    upstream.handler = image_handler()
    upstream.reset()
    result = seed(project, "--tiles-file", "failed.txt", *args, "--failed-tiles-file", "f2.txt")
    assert result.returncode == 0, result.stderr
    assert sorted(requested_tiles(upstream)) == sorted(FAILING)
    assert tile_files(project, "tile_cache") == ALL_LEVEL_2
    assert (project / "f2.txt").read_text() == ""
    assert "    Seeding cache 'tile_cache' with grid 'webmercator' in EPSG:3857" in result.stdout
    assert "    Tiles: 2" in result.stdout


def test_max_failures_aborts_with_exit_4_and_writes_the_list(project, upstream):
    upstream.handler = failing_handler(FAILING)
    result = seed(
        project,
        write_seed(project, "tile_cache", 3),
        "-c", "1", "--max-retries", "1", "--retry-delay", "0.01",
        "--max-failures", "1", "--failed-tiles-file", "failed.txt",
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert result.stderr.splitlines()[-1] == "aborted: 1 meta tiles failed (--max-failures 1)"
    # depth first, north row first: (2, 0, 0) is the first failing meta tile
    assert (project / "failed.txt").read_text() == "tile_cache webmercator 2 0 0\n"
    assert len(tile_files(project, "tile_cache")) < 85


def test_without_failure_options_a_failing_worker_gives_up_as_mapproxy(project, upstream):
    upstream.handler = failing_handler(FAILING)
    result = seed(
        project, write_seed(project, "tile_cache", 2), "-c", "1",
        "--max-retries", "1", "--retry-delay", "0.01",
    )  # fmt: skip
    assert result.returncode == 1
    assert "An error occured. Giving up" in result.stderr
    assert not (project / "failed.txt").exists()


@pytest.mark.parametrize(
    "text",
    ["tile_cache webmercator 2 0\n", "tile_cache webmercator a 0 0\n", "nope webmercator 0 0 0\n"],
)
def test_bad_tiles_files_are_configuration_errors(project, upstream, text):
    (project / "tiles.txt").write_text("# comment\n\n" + text)
    result = seed(project, "--tiles-file", "tiles.txt")
    assert result.returncode == 2
    assert result.stdout.splitlines()[-1].startswith("error in configuration: ")
    assert upstream.requests == []


def test_tiles_file_and_seed_conf_exclude_each_other(project):
    result = seed(project, "seed.yaml", "--tiles-file", "tiles.txt")
    assert result.returncode == 2
    assert "--tiles-file replaces the seed configuration" in result.stderr


def max_per_second(timestamps: list[float]) -> int:
    """The most requests in any half-open one-second window."""
    times = sorted(timestamps)
    return max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))


def test_rate_limit_holds_across_worker_processes(project, upstream):
    result = seed(project, write_seed(project, "tile_cache", 3), "-c", "4", "--rate-limit", "20")
    assert result.returncode == 0, result.stderr
    times = [request.timestamp for request in upstream.recorded]
    assert len(times) == 85
    # a bucket of one request: no burst, 84 gaps of at least 1/20 s
    assert max(times) - min(times) >= 84 / 20 * 0.97
    assert max_per_second(times) <= 21


def test_source_seed_rate_limit_wins_when_lower(project, upstream):
    result = seed(project, write_seed(project, "limited_cache", 2), "-c", "4", "--rate-limit", "50")
    assert result.returncode == 0, result.stderr
    times = [request.timestamp for request in upstream.recorded]
    assert len(times) == 21
    assert max(times) - min(times) >= 20 / 10 * 0.97
    assert max_per_second(times) <= 11


def test_invalid_source_rate_limit_is_a_config_error(project, upstream):
    text = (project / "mapproxy.yaml").read_text().replace("rate_limit: 10", "rate_limit: 0")
    (project / "mapproxy.yaml").write_text(text)
    result = seed(project, write_seed(project, "tile_cache", 0))
    assert result.returncode == 2
    assert "sources.limited_wms.seed.rate_limit" in result.stdout


def levels_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("    Levels: ")]


def request_sizes(upstream: FakeUpstream) -> list[tuple[str, float]]:
    """(WIDTH, bbox width in m) of every upstream request, in order."""
    result = []
    for query in upstream.queries:
        args = {k.lower(): v for k, v in query.items()}
        minx, _, maxx, _ = (float(v) for v in args["bbox"].split(","))
        result.append((args["width"], round(maxx - minx)))
    return result


WORLD = round(2 * HALF)


def test_upscale_cache_is_seeded_as_one_task_per_level_lowest_first(project, upstream):
    result = seed(project, write_seed(project, "up_cache", 3), "-c", "1")
    assert result.returncode == 0, result.stderr
    # as MapProxy 7.0.0: one task per level, each with its own summary
    assert "Start seeding process (4 tasks)" in result.stdout
    assert levels_lines(result.stdout) == [f"    Levels: [{z}]" for z in (0, 1, 2, 3)]
    assert result.stdout.count("    Seeding cache 'up_cache' with grid 'webmercator'") == 4
    # levels 0 and 1 are fetchable (max_res), level 0 first; 2 and 3 are upscaled
    # from them without requests and, without cache_rescaled_tiles, not stored
    assert request_sizes(upstream) == [("256", WORLD), ("512", WORLD)]
    assert tile_files(project, "up_cache") == {
        (z, x, y) for z in range(2) for x in range(2**z) for y in range(2**z)
    }
    assert result.stdout.splitlines()[-1].endswith(" 3 100.00% "
        "-20037508.34279, -20037508.34279, 20037508.34279, 20037508.34279 (64 tiles)")  # fmt: skip


def test_downscale_cache_is_seeded_as_one_task_per_level_highest_first(project, upstream):
    result = seed(project, write_seed(project, "down_cache", 3), "-c", "1")
    assert result.returncode == 0, result.stderr
    assert "Start seeding process (4 tasks)" in result.stdout
    assert levels_lines(result.stdout) == [f"    Levels: [{z}]" for z in (3, 2, 1, 0)]
    # only levels 2 and 3 are fetchable (min_res): level 3 first, in 2x2 meta tiles
    assert request_sizes(upstream) == [("512", WORLD // 4)] * 16 + [("512", WORLD // 2)] * 4
    assert tile_files(project, "down_cache") == {
        (z, x, y) for z in (2, 3) for x in range(2**z) for y in range(2**z)
    }


INTERACTIVE_SEED = """\
seeds:
  empty:
    caches: [tile_cache]
    levels: [0, 1]
    coverages: [nothing]
  world:
    caches: [tile_cache]
    levels: [0]
cleanups:
  cl:
    caches: [tile_cache]
    levels: [1]
coverages:
  nothing:
    intersection:
      - bbox: [0, 0, 1, 1]
        srs: "EPSG:4326"
      - bbox: [5, 5, 6, 6]
        srs: "EPSG:4326"
"""

WORLD_BLOCK = [
    "  world:",
    "    Seeding cache 'tile_cache' with grid 'webmercator' in EPSG:3857",
    "    Limited to coverage in: -180.00000, -85.05113, 180.00000, 85.05113 (EPSG:4326)",
    "    Levels: [0]",
    "    Overwriting: all tiles",
]
EMPTY_BLOCK = ["  empty:", "    Empty coverage given for this task", "    Skipped"]


def test_empty_coverage_replaces_the_task_block_as_mapproxy(project, upstream):
    (project / "seed.yaml").write_text(INTERACTIVE_SEED)
    summary = seed(project, "seed.yaml", "--summary", "--seed", "world,empty")
    assert summary.returncode == 0
    # the order of --seed names, as MapProxy 7.0.0
    assert summary.stdout.splitlines() == [
        "========== Seeding tasks ==========",
        *WORLD_BLOCK,
        *EMPTY_BLOCK,
        "========== Cleanup tasks ==========",
    ]
    result = seed(project, "seed.yaml", "--seed", "empty")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "========== Seeding tasks ==========",
        "Start seeding process (1 task)",
        *EMPTY_BLOCK,
    ]
    assert upstream.requests == []


def test_interactive_asks_per_task_and_reasks_on_other_answers(project, upstream):
    (project / "seed.yaml").write_text(INTERACTIVE_SEED)
    result = subprocess.run(
        [SCRIPT, "-f", "mapproxy.yaml", "seed.yaml", "-i", "-n"],
        input="y\nno\nfoo\nyes\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=project,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # the answers are not echoed: each prompt ends where the next output starts
    assert lines[:16] == [
        "========== Select seeding tasks ==========",
        *EMPTY_BLOCK,
        "    Seed this task (y/n)?   world:",
        *WORLD_BLOCK[1:],
        "    Seed this task (y/n)? ========== Select cleanup tasks ==========",
        "  cl:",
        "    Cleaning up cache 'tile_cache' with grid 'webmercator' in EPSG:3857",
        "    Limited to coverage in: -180.00000, -85.05113, 180.00000, 85.05113 (EPSG:4326)",
        "    Levels: [1]",
        lines[14],
        "    Cleanup this task (y/n)?     Cleanup this task (y/n)? "
        "========== Seeding tasks ==========",
    ]
    assert lines[14].startswith("    Remove: tiles older than ")
    # the confirmed empty task is listed and skipped, "world" was declined
    assert lines[16:20] == ["Start seeding process (1 task)", *EMPTY_BLOCK]
    assert "Start cleanup process (1 task)" in lines


def run_in_pty(project: Path, *args: str) -> str:
    import os

    master, slave = os.openpty()
    process = subprocess.Popen(
        [SCRIPT, "-f", "mapproxy.yaml", *args], cwd=project, stdout=slave, stderr=slave
    )
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert process.wait(timeout=60) == 0
    return output.decode()


STATUS = re.compile(r"\[\d\d:\d\d:\d\d\] [ \d]{2}\d\.\d\d%\t[.oO0]{1,20} *\r")


def test_live_progress_line_on_a_terminal_only(project, upstream):
    upstream.handler = upstream.sleep_handler(0.03)
    on_tty = run_in_pty(project, write_seed(project, "tile_cache", 3), "-c", "1")
    statuses = STATUS.findall(on_tty)
    assert len(statuses) >= 2
    # progress lines every second on a terminal, between the in-place lines
    assert len(re.findall(r"\] [ \d]\d [ \d]{2}\d\.\d\d% .*\(\d+ tiles\)\r\n", on_tty)) >= 3
    shutil.rmtree(project / "cache_data")
    piped = seed(project, "seed.yaml", "-c", "1")
    assert piped.returncode == 0
    # not a terminal: as -q, no in-place line and progress lines only every 30 s
    assert "\r" not in piped.stdout
    assert [line[11:21] for line in piped.stdout.splitlines()[-2:]] == [" 0   0.00%", " 0 100.00%"]
