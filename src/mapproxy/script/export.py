"""``mapproxy-util export``: copy the tiles of a cache or source into a new cache."""

from __future__ import annotations

import ast
import optparse
import os
import re
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mapproxy.config.build import ConfigBuilder
from mapproxy.config.build.coverages import load_coverage
from mapproxy.config.build.paths import ConfigPaths
from mapproxy.config.loader import load_configuration_files
from mapproxy.config.validate import validate_config
from mapproxy.coverage import Coverage
from mapproxy.errors import ConfigurationError, MapProxyError
from mapproxy.grid import TileCoord, TileGrid
from mapproxy.srs import bbox_intersection

EXPORT_CACHE = "export"
EXPORT_GRID = "export_grid"

# --type -> the ``cache:`` options of the destination (``dest`` is filled in)
EXPORT_TYPES: dict[str, dict[str, Any]] = {
    "tms": {"type": "file", "directory_layout": "tms"},
    "mapproxy": {"type": "file", "directory_layout": "tc"},
    "tc": {"type": "file", "directory_layout": "tc"},
    "arcgis": {"type": "file", "directory_layout": "arcgis"},
    "mbtile": {"type": "mbtiles"},
    "mbtiles": {"type": "mbtiles"},
    "sqlite": {"type": "sqlite"},
    "geopackage": {"type": "geopackage"},
    "compact-v1": {"type": "compact", "version": 1},
    "compact-v2": {"type": "compact", "version": 2},
}
_FILE_TYPES = ("mbtiles", "geopackage")
_GRID_OPTION = re.compile(r"(\w+)\s*=\s*('[^']*'|\"[^\"]*\"|\[[^\]]*\]|\S+)")


class ExportError(Exception):
    """A user error; printed after ``ERROR:``."""


@dataclass
class ExportStats:
    """What an export did."""

    exported: int = 0
    missing: int = 0


def parse_levels(text: str) -> list[int]:
    """``1,2,3``, ``1..10`` or ``1,3,4,6..8`` (ranges inclusive) as a sorted list."""
    levels: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if ".." in part:
                first, last = part.split("..", 1)
                levels.update(range(int(first), int(last) + 1))
            else:
                levels.add(int(part))
    except ValueError:
        raise ExportError(f"invalid levels: {text}") from None
    return sorted(levels)


def parse_grid_definition(text: str) -> dict[str, Any]:
    """Grid options from ``"srs='EPSG:4326' bbox=[5,50,10,60] tile_size=[512,512]"``."""
    options: dict[str, Any] = {}
    for match in _GRID_OPTION.finditer(text):
        key, value = match.group(1), match.group(2)
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    if not options:
        raise ExportError(f"invalid grid definition: {text}")
    return options


def coverage_config(coverage: str, srs: str | None, where: str | None) -> dict[str, Any]:
    """The ``coverage`` options for ``--coverage`` (bbox string or file), ``--srs``, ``--where``."""
    code = srs or "EPSG:4326"
    if code.isdigit():
        code = f"EPSG:{code}"
    try:
        bbox = [float(v) for v in coverage.replace(" ", ",").split(",") if v]
    except ValueError:
        bbox = []
    if len(bbox) == 4:
        return {"bbox": bbox, "srs": code}
    conf: dict[str, Any] = {"datasource": coverage, "srs": code}
    if where:
        conf["where"] = where
    return conf


def _parser() -> optparse.OptionParser:
    parser = optparse.OptionParser("%prog export [options] mapproxy_conf")
    parser.prog = "mapproxy-util"
    parser.add_option("-f", "--mapproxy-conf", dest="mapproxy_conf", help="MapProxy configuration")
    parser.add_option(
        "-q",
        "--quiet",
        action="count",
        dest="quiet",
        default=0,
        help="reduce number of messages to stdout, repeat to disable progress output",
    )
    parser.add_option("--source", dest="source", help="source to export (source or cache)")
    parser.add_option(
        "--grid",
        help="grid for export. either the name of an existing grid or the grid definition "
        "as a string",
    )
    parser.add_option("--dest", help="destination of the export (directory or filename)")
    parser.add_option("--type", help="type of the export format")
    parser.add_option("--levels", help="levels to export: e.g 1,2,3 or 1..10")
    parser.add_option(
        "--fetch-missing-tiles",
        dest="fetch_missing_tiles",
        action="store_true",
        default=False,
        help="if missing tiles should be fetched from the sources",
    )
    parser.add_option(
        "--force",
        action="store_true",
        default=False,
        help="overwrite/append to existing --dest files/directories",
    )
    parser.add_option(
        "-n",
        "--dry-run",
        action="store_true",
        default=False,
        help="do not export, just print output",
    )
    parser.add_option(
        "-c",
        "--concurrency",
        type="int",
        default=1,
        help="number of parallel export processes",
    )
    parser.add_option(
        "--coverage",
        help="the coverage for the export as a BBOX string, WKT file or OGR datasource",
    )
    parser.add_option("--srs", help="the SRS of the coverage")
    parser.add_option("--where", help="filter for OGR coverages")
    return parser


def _same_grid(a: TileGrid, b: TileGrid) -> bool:
    return (
        a.srs == b.srs
        and a.bbox == b.bbox
        and a.resolutions == b.resolutions
        and a.tile_size == b.tile_size
        and a.origin == b.origin
    )


def export_coords(
    grid: TileGrid, levels: Sequence[int], coverage: Coverage | None
) -> Iterator[TileCoord]:
    """The tiles of ``levels`` of ``grid`` that intersect ``coverage`` (all without one)."""
    bbox = grid.bbox
    if coverage is not None:
        limited = bbox_intersection(bbox, coverage.bbox_for(grid.srs))
        if limited is None:
            return
        bbox = limited
    for level in levels:
        for coord in grid.affected_level_tiles(bbox, level).tiles:
            if coord is None:
                continue
            if coverage is not None and not coverage.intersects(grid.tile_bbox(coord), grid.srs):
                continue
            yield coord


class Exporter:
    """Copies tiles from the source cache (or renders them from a source) into the export."""

    def __init__(self, builder: ConfigBuilder, source: str, fetch_missing: bool) -> None:
        self.export_manager = builder.cache(EXPORT_CACHE).tile_managers[0]
        self.grid: TileGrid = self.export_manager.grid
        self.fetch_missing = fetch_missing
        self.source_manager: Any = None
        if source in builder.config.caches:
            source_cache = builder.cache(source)
            for manager in source_cache.tile_managers:
                if _same_grid(manager.grid, self.grid):
                    self.source_manager = manager
                    break
            if not fetch_missing:
                # read-only: existing tiles are used, nothing is requested upstream
                for manager in source_cache.tile_managers:
                    manager.sources = []

    def export_tile(self, coord: TileCoord) -> bool:
        """Export one tile; False if it is missing in the source (and not fetched)."""
        if self.source_manager is not None:
            if self.fetch_missing:
                tile = self.source_manager.load_tile(coord)
            else:
                tile = self.source_manager.cache.load_tile(coord)
                if tile is None:
                    return False
            self.export_manager.cache.store_tiles({coord: tile.data})
            return True
        self.export_manager.load_tile(coord)
        return True


def _build(options: optparse.Values, conf_file: str) -> tuple[ConfigBuilder, str, Coverage | None]:
    loaded = load_configuration_files(conf_file)
    data = dict(loaded.data)
    grids = dict(data.get("grids") or {})
    caches = dict(data.get("caches") or {})
    if options.source not in caches and options.source not in (data.get("sources") or {}):
        raise ExportError(f"no source or cache named {options.source}")
    grid_name = options.grid
    if "=" in options.grid:
        grids[EXPORT_GRID] = parse_grid_definition(options.grid)
        grid_name = EXPORT_GRID
    backend = dict(EXPORT_TYPES[options.type])
    if backend["type"] in _FILE_TYPES:
        backend["filename"] = os.path.abspath(options.dest)
    else:
        backend["directory"] = os.path.abspath(options.dest)
    export_conf: dict[str, Any] = {
        "sources": [options.source],
        "grids": [grid_name],
        "cache": backend,
    }
    source_conf = caches.get(options.source)
    if isinstance(source_conf, dict):
        for key in ("format", "request_format", "image"):
            if key in source_conf:
                export_conf[key] = source_conf[key]
    caches[EXPORT_CACHE] = export_conf
    data["grids"] = grids
    data["caches"] = caches
    config = validate_config(data)
    config.config_file = loaded.config_file
    config.config_files = loaded.config_files
    builder = ConfigBuilder(config)
    coverage = None
    if options.coverage:
        paths = ConfigPaths(os.getcwd(), ".")
        conf = coverage_config(options.coverage, options.srs, options.where)
        coverage = load_coverage(conf, "--coverage", paths)
    return builder, grid_name, coverage


def _check_options(options: optparse.Values, conf_file: str | None) -> None:
    missing = [
        f"--{name}"
        for name in ("source", "grid", "dest", "levels")
        if not getattr(options, name.replace("-", "_"))
    ]
    if not conf_file:
        missing.insert(0, "-f/--mapproxy-conf")
    if missing:
        raise ExportError(f"missing options: {', '.join(missing)}")
    if options.type is None:
        options.type = "tms"
    if options.type not in EXPORT_TYPES:
        raise ExportError(f"unsupported export type {options.type}")
    if os.path.exists(options.dest) and not options.force:
        raise ExportError(f"destination exists ({options.dest}), use --force to append")


def run_export(options: optparse.Values, conf_file: str) -> ExportStats:
    """Export the tiles selected by ``options``."""
    levels = parse_levels(options.levels)
    builder, _, coverage = _build(options, conf_file)
    exporter = Exporter(builder, options.source, options.fetch_missing_tiles)
    grid = exporter.grid
    if options.quiet < 2:
        print(
            f"Exporting cache '{options.source}' to '{options.dest}' with grid "
            f"'{options.grid}' in {grid.srs.code}"
        )
        print(f"  Levels: {levels}")
    bad = [level for level in levels if not 0 <= level < grid.levels]
    if bad:
        raise ExportError(f"levels {bad} are outside the grid (0-{grid.levels - 1})")
    stats = ExportStats()
    coords = export_coords(grid, levels, coverage)
    if options.dry_run:
        stats.missing = sum(1 for _ in coords)
        return stats
    with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
        for exported in pool.map(exporter.export_tile, coords):
            if exported:
                stats.exported += 1
            else:
                stats.missing += 1
    if options.quiet < 1:
        print(f"  exported {stats.exported} tiles ({stats.missing} missing in the source)")
    return stats


def export_command(argv: Sequence[str]) -> int:
    """Run ``mapproxy-util export``; returns the exit code."""
    parser = _parser()
    options, args = parser.parse_args(list(argv))
    conf_file = options.mapproxy_conf or (args[0] if args else None)
    try:
        _check_options(options, conf_file)
        assert conf_file is not None
        run_export(options, conf_file)
    except ExportError as error:
        parser.print_help()
        sys.stdout.flush()
        print(f"\nERROR: {error}", file=sys.stderr)
        return 1
    except (ConfigurationError, MapProxyError) as error:
        sys.stdout.flush()
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    return 0
