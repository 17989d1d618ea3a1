"""What every tile cache backend offers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from mapproxy.grid.tile_grid import TileCoord


@dataclass(slots=True)
class Tile:
    """A tile as stored: encoded ``data`` and its creation ``timestamp`` (epoch seconds)."""

    coord: TileCoord
    data: bytes | None = None
    timestamp: float | None = None
    cacheable: bool = True

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else 0


class TileCache(Protocol):
    """Stores encoded tiles by coordinate. ``lock_cache_id`` names its tile locks."""

    lock_cache_id: str

    def load_tile(self, coord: TileCoord) -> Tile | None:
        """The stored tile with data and timestamp, or None if missing."""
        ...

    def is_cached(self, coord: TileCoord) -> bool:
        """True if a tile is stored for ``coord``."""
        ...

    def tile_timestamp(self, coord: TileCoord) -> float | None:
        """The stored tile's timestamp as ``load_tile`` reports it, or None if missing."""
        ...

    def store_tiles(self, tiles: Mapping[TileCoord, bytes]) -> None:
        """Store encoded tiles atomically (a crash never leaves a partial tile)."""
        ...

    def remove_tile(self, coord: TileCoord) -> None:
        """Delete one tile if present."""
        ...
