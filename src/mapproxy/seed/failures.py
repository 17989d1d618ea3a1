"""Tile list files: failed tiles written by ``--failed-tiles-file``, read by ``--tiles-file``.

One tile per line: ``<cache> <grid> <z> <x> <y>``, separated by blanks, x/y in the
grid's own numbering (counted from the grid origin, as in ``tc`` cache paths). Empty
lines and lines starting with ``#`` are ignored when reading.
"""

from __future__ import annotations

from mapproxy.grid.tile_grid import TileCoord
from mapproxy.seed.config import SeedConfigurationError, SeedingConfiguration, SeedTask
from mapproxy.seed.seeder import FailedTiles
from mapproxy.util.fs import write_atomic


def format_tiles(tiles: list[tuple[str, str, TileCoord]]) -> str:
    """The lines of a tile list file, sorted and without duplicates."""
    unique = {(cache, grid, c.z, c.x, c.y) for cache, grid, c in tiles}
    return "".join(f"{cache} {grid} {z} {x} {y}\n" for cache, grid, z, x, y in sorted(unique))


def write_failed_tiles(path: str, failed: FailedTiles) -> None:
    """Replace ``path`` atomically with the failed tiles (empty if none failed)."""
    write_atomic(path, format_tiles(failed.tiles).encode("utf-8"))


def read_tiles_file(path: str) -> dict[tuple[str, str], list[TileCoord]]:
    """Tiles per (cache, grid), in order of first appearance; raises SeedConfigurationError."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as error:
        raise SeedConfigurationError(f"can't read tiles file {path}: {error.strerror}") from None
    tiles: dict[tuple[str, str], list[TileCoord]] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split()
        try:
            if len(parts) != 5:
                raise ValueError
            z, x, y = (int(value) for value in parts[2:])
        except ValueError:
            raise SeedConfigurationError(
                f"tiles file {path} line {number}: expected 'cache grid z x y', got {text!r}"
            ) from None
        tiles.setdefault((parts[0], parts[1]), []).append(TileCoord(x, y, z))
    return tiles


def tiles_file_tasks(
    path: str, config: SeedingConfiguration
) -> list[tuple[SeedTask, list[TileCoord]]]:
    """One seed task (named ``tiles``) per cache and grid of the tiles file, with its tiles."""
    result = []
    for (cache_name, grid_name), coords in read_tiles_file(path).items():
        levels = sorted({coord.z for coord in coords})
        conf = {"caches": [cache_name], "grids": [grid_name], "levels": levels}
        (task,) = config.expand_seed_task("tiles", conf)
        for coord in coords:
            if not task.grid.is_valid(coord):
                raise SeedConfigurationError(
                    f"tiles file {path}: tile {coord.z} {coord.x} {coord.y} is outside"
                    f" grid '{grid_name}'"
                )
        result.append((task, coords))
    return result
