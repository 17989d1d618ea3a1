"""Tile grids: resolutions, tile bbox/coordinate math, meta tiles."""

from __future__ import annotations

from mapproxy.grid.meta import MetaGrid, MetaTile
from mapproxy.grid.tile_grid import AffectedTiles, TileCoord, TileGrid

__all__ = ["AffectedTiles", "MetaGrid", "MetaTile", "TileCoord", "TileGrid"]
