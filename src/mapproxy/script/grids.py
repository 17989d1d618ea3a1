"""``mapproxy-util grids``: show the configuration and levels of the configured grids."""

from __future__ import annotations

import optparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mapproxy.config.build import ConfigBuilder
from mapproxy.config.build.coverages import parse_bbox
from mapproxy.config.loader import load_configuration_files, load_yaml_file
from mapproxy.config.validate import validate_config
from mapproxy.errors import ConfigurationError, MapProxyError
from mapproxy.grid import TileGrid
from mapproxy.srs import BBox, get_srs

# The configured options of the built-in grids as the reference shows them (bbox is
# a default, so it is shown with '*').
BUILTIN_GRID_CONFS: dict[str, dict[str, Any]] = {
    "GLOBAL_GEODETIC": {"srs": "EPSG:4326", "origin": "sw"},
    "GLOBAL_MERCATOR": {"srs": "EPSG:900913", "origin": "sw"},
    "GLOBAL_WEBMERCATOR": {"srs": "EPSG:3857", "origin": "nw"},
}
DEFAULT_CACHE_GRID = "GLOBAL_MERCATOR"
_DISPLAY_ORIGINS = {"sw": "ll", "nw": "ul"}


class GridsError(Exception):
    """A user error; printed to stderr, exit code ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class CoverageExtent:
    """A named seed coverage as a bbox in the grid SRS (for area ratios)."""

    name: str
    bbox: BBox
    srs: str


def _parser() -> optparse.OptionParser:
    parser = optparse.OptionParser("%prog grids [options] mapproxy_conf")
    parser.prog = "mapproxy-util"
    parser.add_option("-f", "--mapproxy-conf", dest="mapproxy_conf", help="MapProxy configuration.")
    parser.add_option(
        "-g",
        "--grid",
        dest="grid_name",
        help="Display only information about the specified grid.",
    )
    parser.add_option(
        "--all",
        dest="show_all",
        action="store_true",
        default=False,
        help="Show also grids that are not referenced by any cache.",
    )
    parser.add_option(
        "-l",
        "--list",
        dest="list_grids",
        action="store_true",
        default=False,
        help="List names of configured grids, which are used by any cache",
    )
    group = optparse.OptionGroup(parser, "Approximate the number of tiles within a given coverage")
    group.add_option(
        "-s",
        "--seed-conf",
        dest="seed_config",
        help="Seed configuration, where the coverage is defined",
    )
    group.add_option(
        "-c",
        "--coverage-name",
        dest="coverage",
        help="Calculate number of tiles when a coverage is given",
    )
    parser.add_option_group(group)
    return parser


def format_count(count: float) -> str:
    """Tile count: plain integer up to one million, else millions with two decimals."""
    if count > 1_000_000:
        return f"{count / 1_000_000:7.2f}M"
    return str(int(count))


def used_grid_names(caches: Mapping[str, Any]) -> set[str]:
    """Names of the grids referenced by any cache (a cache without grids uses the default)."""
    names: set[str] = set()
    for cache in caches.values():
        names.update(cache.grids or [DEFAULT_CACHE_GRID])
    return names


def configuration_lines(conf: Mapping[str, Any], grid: TileGrid) -> list[str]:
    """``key: value`` lines of the configured options, defaults marked with ``*``."""
    defaults: dict[str, Any] = {
        "bbox": list(grid.bbox),
        "origin": _DISPLAY_ORIGINS[grid.origin],
        "tile_size": list(grid.tile_size),
    }
    lines = []
    for key in sorted({*map(str, conf), *defaults}):
        if key in conf:
            lines.append(f"        {key}: {conf[key]!r}")
        else:
            lines.append(f"        {key}*: {defaults[key]!r}")
    return lines


def level_resolutions(conf: Mapping[str, Any], grid: TileGrid) -> list[Any]:
    """Resolutions as configured (ints stay ints) when ``res`` is given, else computed."""
    res = conf.get("res")
    if isinstance(res, list) and len(res) == grid.levels:
        return sorted(res, reverse=True)
    return list(grid.resolutions)


def level_lines(
    conf: Mapping[str, Any], grid: TileGrid, coverage_ratio: float | None = None
) -> list[str]:
    """One line per level: resolution, columns * rows = tiles (and tiles in the coverage)."""
    resolutions = [f"{res!r}," for res in level_resolutions(conf, grid)]
    width = max(len(text) for text in resolutions)
    lines = []
    for level, res_text in enumerate(resolutions):
        cols, rows = grid.grid_sizes[level]
        total = cols * rows
        line = (
            f"        {level:02d}:  {res_text:<{width}} # {cols:6d} * {rows:<6d} = "
            f"{format_count(total):>10}"
        )
        if coverage_ratio is not None:
            line += f" ({format_count(int(total * coverage_ratio))})"
        lines.append(line)
    return lines


def grid_lines(
    name: str,
    conf: Mapping[str, Any],
    grid: TileGrid,
    coverage: CoverageExtent | None = None,
) -> list[str]:
    """The complete display of one grid."""
    lines = [f"{name}:", "    Configuration:"]
    lines += configuration_lines(conf, grid)
    ratio = None
    levels_header = "    Levels: Resolutions, # x * y = total tiles"
    if coverage is not None:
        ratio = coverage_ratio(coverage, grid)
        lines.append(
            f"    Coverage: {coverage.name} covers approx. {ratio * 100:.4f}% of the grid BBOX"
        )
        levels_header += " (approx. tiles within coverage)"
    lines.append(levels_header)
    lines += level_lines(conf, grid, ratio)
    return lines


def coverage_ratio(coverage: CoverageExtent, grid: TileGrid) -> float:
    """Area of the coverage bbox (in grid SRS) relative to the grid bbox; may exceed 1."""
    bbox = coverage.bbox
    coverage_srs = get_srs(coverage.srs)
    if coverage_srs != grid.srs:
        # four segments per edge, as the reference samples
        bbox = coverage_srs.transform_bbox_to(grid.srs, bbox, with_points=4)
    area = (bbox[2] - bbox[0]) * (bbox[3] - bbox[1])
    grid_bbox = grid.bbox
    return area / ((grid_bbox[2] - grid_bbox[0]) * (grid_bbox[3] - grid_bbox[1]))


def load_seed_coverage(seed_config: str, name: str) -> CoverageExtent:
    """The bbox coverage ``name`` from the ``coverages`` section of a seed configuration."""
    data = load_yaml_file(seed_config)
    coverages = data.get("coverages") or {}
    if name not in coverages:
        available = ", ".join(sorted(map(str, coverages)))
        raise GridsError(f"coverage {name} not found. available coverages: {available}")
    conf = coverages[name] or {}
    if "bbox" not in conf:
        raise GridsError(f"coverages.{name}: only bbox coverages are supported by this command")
    bbox = parse_bbox(conf["bbox"], f"coverages.{name}.bbox")
    srs = str(conf.get("srs") or conf.get("bbox_srs") or "EPSG:4326")
    return CoverageExtent(name=name, bbox=bbox, srs=srs)


def _display(options: optparse.Values, conf_file: str) -> None:
    loaded = load_configuration_files(conf_file)
    config = validate_config(loaded.data)
    config.config_file = loaded.config_file
    builder = ConfigBuilder(config)

    raw_grids = loaded.data.get("grids") or {}
    confs: dict[str, Mapping[str, Any]] = dict(BUILTIN_GRID_CONFS)
    confs.update({str(name): conf or {} for name, conf in raw_grids.items()})

    if options.grid_name:
        if options.grid_name not in confs:
            print(f"grid not found: {options.grid_name}")
            raise GridsError("", exit_code=1)
        names = [options.grid_name]
    elif options.show_all:
        names = sorted(confs)
    else:
        names = sorted(used_grid_names(config.caches))

    if options.list_grids:
        for name in names:
            print(name)
        return

    coverage = None
    if options.coverage:
        coverage = load_seed_coverage(options.seed_config, options.coverage)
    for index, name in enumerate(names):
        grid = builder.grid(name)
        conf = confs.get(name, {})
        if coverage is not None:
            conf = resolved_conf(name, confs, grid)
        if index:
            print()
        for line in grid_lines(name, conf, grid, coverage):
            print(line)


def resolved_conf(
    name: str, confs: Mapping[str, Mapping[str, Any]], grid: TileGrid
) -> dict[str, Any]:
    """The options of ``name`` merged over its ``base`` chain, with the tile size filled in.

    The reference shows this form when a coverage is given.
    """
    chain: list[Mapping[str, Any]] = []
    current: str | None = name
    while current is not None and current in confs and len(chain) < len(confs):
        conf = confs[current]
        chain.append(conf)
        base = conf.get("base")
        current = str(base) if base is not None else None
    merged: dict[str, Any] = {}
    for conf in reversed(chain):
        merged.update({str(k): v for k, v in conf.items() if k != "base"})
    merged.setdefault("tile_size", list(grid.tile_size))
    return merged


def grids_command(argv: Sequence[str]) -> int:
    """Run ``mapproxy-util grids``; returns the exit code."""
    parser = _parser()
    options, args = parser.parse_args(list(argv))
    conf_file = options.mapproxy_conf or (args[0] if args else None)
    if not conf_file:
        parser.print_help()
        return 1
    if bool(options.coverage) != bool(options.seed_config):
        print("--coverage and --seed-conf can only be used together")
        return 1
    try:
        _display(options, conf_file)
    except GridsError as error:
        if str(error):
            sys.stdout.flush()
            print(f"ERROR: {error}", file=sys.stderr)
        return error.exit_code
    except (ConfigurationError, MapProxyError) as error:
        sys.stdout.flush()
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    return 0
