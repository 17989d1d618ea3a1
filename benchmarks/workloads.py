"""Workload definitions (request lists W1-W3, the W6 config) and the load generator.

A load run sends requests from a fixed list of paths for a fixed duration. It uses `wrk`
(with a Lua script that cycles through the list and prints JSON) when it is installed, and a
threaded Python loop otherwise, so the smoke test needs no system packages.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Germany, (minlon, minlat, maxlon, maxlat): the "country" of the seeding and request lists.
COUNTRY_BBOX = (5.87, 47.27, 15.04, 55.06)
# The same area in EPSG:25832 (UTM 32N), metres.
COUNTRY_BBOX_25832 = (280_000.0, 5_240_000.0, 920_000.0, 6_100_000.0)
WEBMERCATOR_HALF_WORLD = 20037508.342789244


@dataclass(frozen=True)
class LoadResult:
    """What one fixed-duration load run measured."""

    requests: int
    errors: int
    duration_seconds: float
    p50_ms: float
    p99_ms: float
    tool: str

    @property
    def requests_per_second(self) -> float:
        """Successful requests per second."""
        return max(self.requests - self.errors, 0) / self.duration_seconds


# --------------------------------------------------------------------------------------
# request lists


def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    """Web mercator tile column and row (row 0 at the top) containing a point."""
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    lat_rad = math.radians(lat)
    y = int((1.0 - math.asinh(math.tan(lat_rad)) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def country_tile_range(z: int) -> tuple[int, int, int, int]:
    """Inclusive tile range (minx, miny, maxx, maxy; rows from the top) over the country."""
    minlon, minlat, maxlon, maxlat = COUNTRY_BBOX
    x0, y0 = lonlat_to_tile(minlon, maxlat, z)
    x1, y1 = lonlat_to_tile(maxlon, minlat, z)
    return x0, y0, x1, y1


def wmts_path(layer: str, z: int, x: int, y: int) -> str:
    """WMTS RESTful tile URL path (row from the top)."""
    return f"/wmts/{layer}/webmercator/{z}/{x}/{y}.png"


def tms_path(layer: str, z: int, x: int, y: int) -> str:
    """TMS tile URL path for a tile given with its row from the top (z >= 1).

    TMS counts rows from below, and MapProxy's TMS numbers the levels of this grid (the
    global-mercator profile) from the grid's level 1: TMS level 0 has 2x2 tiles.
    """
    return f"/tms/1.0.0/{layer}/webmercator/{z - 1}/{x}/{2**z - 1 - y}.png"


def tc_file_path(z: int, x: int, y: int) -> str:
    """Relative path of a tile in a `tc` file cache (row from the top, as the grid is nw)."""
    x_digits, y_digits = f"{x:09d}", f"{y:09d}"
    return "/".join(
        [
            f"{z:02d}",
            x_digits[0:3],
            x_digits[3:6],
            x_digits[6:9],
            y_digits[0:3],
            y_digits[3:6],
            y_digits[6:9] + ".png",
        ]
    )


def seeded_tiles(max_level: int) -> list[tuple[int, int, int]]:
    """Every (z, x, y) the seed task `w1_tiles` (levels 0..max_level over the country) makes."""
    tiles: list[tuple[int, int, int]] = []
    for z in range(max_level + 1):
        x0, y0, x1, y1 = country_tile_range(z)
        tiles.extend((z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1))
    return tiles


def w1_tiles(kind: str, tiles: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The W1 tiles in request order (TMS cannot address level 0)."""
    shuffled = [tile for tile in tiles if kind != "tms" or tile[0] >= 1]
    random.Random(1).shuffle(shuffled)
    return shuffled


def w1_paths(kind: str, tiles: Sequence[tuple[int, int, int]]) -> list[str]:
    """W1 request paths: ``kind`` is `wmts`, `tms` or `static` (nginx, below ``/tiles/``)."""
    shuffled = w1_tiles(kind, tiles)
    if kind == "wmts":
        return [wmts_path("bench", z, x, y) for z, x, y in shuffled]
    if kind == "tms":
        return [tms_path("bench", z, x, y) for z, x, y in shuffled]
    if kind == "static":
        return ["/tiles/" + tc_file_path(z, x, y) for z, x, y in shuffled]
    raise ValueError(kind)


def w2_paths(seed: int, count: int = 20_000) -> list[str]:
    """W2 request paths: random tiles at z10-12 over the country, fixed by ``seed``."""
    rng = random.Random(seed)
    paths = []
    for _ in range(count):
        z = rng.choice((10, 11, 12))
        x0, y0, x1, y1 = country_tile_range(z)
        paths.append(wmts_path("miss", z, rng.randint(x0, x1), rng.randint(y0, y1)))
    return paths


# The benchmark caches' meta tiles: 4x4 tiles of 256 pixels plus 80 pixels on every side.
META_TILES = 4
META_BUFFER = 80


def meta_getmap_query(z: int, x: int, y: int) -> str:
    """The upstream GetMap query of the meta tile holding web mercator tile z/x/y (row 0 at
    the top), as both proxies ask it for levels whose meta tiles lie inside the grid."""
    res = 2 * WEBMERCATOR_HALF_WORLD / 256 / 2**z
    x0, y0 = x // META_TILES * META_TILES, y // META_TILES * META_TILES
    buffer = META_BUFFER * res
    minx = -WEBMERCATOR_HALF_WORLD + x0 * 256 * res - buffer
    maxy = WEBMERCATOR_HALF_WORLD - y0 * 256 * res + buffer
    size = META_TILES * 256 + 2 * META_BUFFER
    maxx = minx + size * res
    miny = maxy - size * res
    return (
        "SERVICE=WMS&VERSION=1.1.1&REQUEST=GetMap&LAYERS=synthetic&STYLES=&SRS=EPSG:3857"
        f"&BBOX={minx!r},{miny!r},{maxx!r},{maxy!r}&WIDTH={size}&HEIGHT={size}&FORMAT=image/png"
    )


def w2_meta_queries(paths: Sequence[str], offsets: Sequence[int], count: int) -> list[str]:
    """Upstream GetMaps of the meta tiles that ``count`` requests from each of ``offsets``
    in the W2 list ``paths`` need (the load generator starts each thread at an offset)."""
    queries: dict[str, None] = {}
    for offset in offsets:
        for index in range(offset + 1, offset + 1 + count):
            tile = paths[index % len(paths)].rsplit(".", 1)[0]
            z, x, y = (int(part) for part in tile.split("/")[-3:])
            queries[meta_getmap_query(z, x, y)] = None
    return list(queries)


def w3_paths(srs: str, count: int = 16) -> list[str]:
    """W3 request paths: 512x512 WMS 1.1.1 GetMaps of layer `bench` inside the country."""
    rng = random.Random(3)
    if srs == "EPSG:4326":
        minx, miny, maxx, maxy = COUNTRY_BBOX
        sizes = (1.5, 2.5)  # degrees: about z8/z9 of the cache
    elif srs == "EPSG:25832":
        minx, miny, maxx, maxy = COUNTRY_BBOX_25832
        sizes = (150_000.0, 250_000.0)
    else:
        raise ValueError(srs)
    paths = []
    for _ in range(count):
        size = rng.uniform(*sizes)
        left = rng.uniform(minx, maxx - size)
        bottom = rng.uniform(miny, maxy - size)
        bbox = f"{left:.6f},{bottom:.6f},{left + size:.6f},{bottom + size:.6f}"
        paths.append(
            "/service?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetMap&LAYERS=bench&STYLES="
            f"&SRS={srs}&BBOX={bbox}&WIDTH=512&HEIGHT=512&FORMAT=image%2Fpng"
        )
    return paths


def large_config(layers: int = 400, grids: int = 10, upstream_url: str = "") -> str:
    """W6: a mapproxy.yaml with ``layers`` layers and caches over ``grids`` custom grids."""
    url = upstream_url or "http://127.0.0.1:9/service?"
    grid_defs = [
        ("EPSG:3857", "[-20037508.34, -20037508.34, 20037508.34, 20037508.34]"),
        ("EPSG:4326", "[-180, -90, 180, 90]"),
        ("EPSG:25832", "[-46133.17, 5048875.26, 1206211.10, 6301219.54]"),
        ("EPSG:3035", "[2426378.01, 1528101.26, 6293974.62, 5446513.52]"),
        ("EPSG:31467", "[3280414.71, 5237500.62, 3934261.35, 6103834.38]"),
    ]
    lines = [
        "# W6: generated by benchmarks/workloads.py large_config()",
        "services:",
        "  demo:",
        "  tms:",
        "  wmts:",
        "  wms:",
        "    srs: ['EPSG:3857', 'EPSG:4326', 'EPSG:25832']",
        "    md: {title: Large config}",
        "sources:",
        "  upstream:",
        "    type: wms",
        "    req:",
        f"      url: {url}",
        "      layers: synthetic",
        "grids:",
    ]
    for index in range(grids):
        srs, bbox = grid_defs[index % len(grid_defs)]
        lines += [
            f"  grid_{index}:",
            f"    srs: '{srs}'",
            f"    bbox: {bbox}",
            f"    bbox_srs: '{srs}'",
            "    origin: nw",
            f"    num_levels: {16 + index % 5}",
            f"    tile_size: [{256 if index % 2 == 0 else 512}, {256 if index % 2 == 0 else 512}]",
        ]
    lines.append("caches:")
    for index in range(layers):
        lines += [
            f"  cache_{index}:",
            f"    grids: [grid_{index % grids}]",
            "    sources: [upstream]",
            "    cache:",
            "      type: file",
            f"      directory: ./tiles/cache_{index}",
        ]
    lines.append("layers:")
    for index in range(layers):
        lines += [
            f"  - name: layer_{index}",
            f"    title: Layer {index}",
            f"    sources: [cache_{index}]",
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# load generation


def run_load(
    base_url: str,
    paths: Sequence[str],
    duration_seconds: float,
    connections: int = 16,
    threads: int = 2,
    use_wrk: bool | None = None,
    scratch_dir: Path | None = None,
) -> LoadResult:
    """Send GETs for ``paths`` (cycled) to ``base_url`` for ``duration_seconds``."""
    wrk = shutil.which("wrk")
    if use_wrk is None:
        use_wrk = wrk is not None
    if use_wrk:
        if wrk is None:
            raise RuntimeError("wrk is not installed (apt-get install wrk)")
        return _run_wrk(wrk, base_url, paths, duration_seconds, connections, threads, scratch_dir)
    return _run_python(base_url, paths, duration_seconds, connections)


# Where in the path list each wrk thread (or Python loader connection) starts.
THREAD_OFFSET = 7919


def start_offsets(loader: str, connections: int, threads: int = 2) -> list[int]:
    """The list positions the load generator's threads (wrk) or connections start at."""
    return [index * THREAD_OFFSET for index in range(threads if loader == "wrk" else connections)]


_LUA = """
local paths = {%(paths)s}
local counter = 0
local next_thread = 0
function setup(thread)
  thread:set("offset", next_thread * %(thread_offset)d)
  next_thread = next_thread + 1
end
function init(args)
  counter = offset or 0
end
function request()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1])
end
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  local template = 'WRK_JSON {"requests": %%d, "errors": %%d, "duration_us": %%d, '
    .. '"p50_us": %%d, "p99_us": %%d}\\n'
  io.write(string.format(template,
    summary.requests, errors, summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def _run_wrk(
    wrk: str,
    base_url: str,
    paths: Sequence[str],
    duration_seconds: float,
    connections: int,
    threads: int,
    scratch_dir: Path | None,
) -> LoadResult:
    scratch = scratch_dir or Path("/tmp")
    script = scratch / f"wrk-{os.getpid()}-{threading.get_ident()}.lua"
    script.write_text(
        _LUA
        % {
            "paths": ", ".join(json.dumps(path) for path in paths),
            "thread_offset": THREAD_OFFSET,
        }
    )
    try:
        completed = subprocess.run(
            [
                wrk,
                f"-t{threads}",
                f"-c{max(connections, threads)}",
                f"-d{max(1, round(duration_seconds))}s",
                "--timeout",
                "30s",
                "-s",
                str(script),
                base_url,
            ],
            capture_output=True,
            text=True,
            timeout=duration_seconds + 60,
            check=False,
            start_new_session=True,
        )
    finally:
        script.unlink(missing_ok=True)
    for line in completed.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            data = json.loads(line[len("WRK_JSON ") :])
            return LoadResult(
                requests=int(data["requests"]),
                errors=int(data["errors"]),
                duration_seconds=int(data["duration_us"]) / 1e6,
                p50_ms=int(data["p50_us"]) / 1000.0,
                p99_ms=int(data["p99_us"]) / 1000.0,
                tool="wrk",
            )
    raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr[-2000:]}")


def _run_python(
    base_url: str, paths: Sequence[str], duration_seconds: float, connections: int
) -> LoadResult:
    """A threaded HTTP/1.1 loop: the fallback when wrk is missing (slower, GIL-bound)."""
    host_port = base_url.split("://", 1)[1].rstrip("/")
    host, port = host_port.split(":")
    deadline = time.monotonic() + duration_seconds
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections

    def worker(index: int) -> None:
        connection: http.client.HTTPConnection | None = None
        counter = index * THREAD_OFFSET
        while time.monotonic() < deadline:
            path = paths[counter % len(paths)]
            counter += 1
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(host, int(port), timeout=30)
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                if response.status >= 400:
                    errors[index] += 1
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException):
                errors[index] += 1
                if connection is not None:
                    connection.close()
                connection = None
            latencies[index].append(time.perf_counter() - started)
        if connection is not None:
            connection.close()

    started = time.monotonic()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.monotonic() - started
    all_latencies = sorted(value for chunk in latencies for value in chunk)
    if not all_latencies:
        return LoadResult(0, 0, elapsed, math.nan, math.nan, "python")
    p99_index = min(len(all_latencies) - 1, int(len(all_latencies) * 0.99))
    return LoadResult(
        requests=len(all_latencies),
        errors=sum(errors),
        duration_seconds=elapsed,
        p50_ms=statistics.median(all_latencies) * 1000.0,
        p99_ms=all_latencies[p99_index] * 1000.0,
        tool="python",
    )
