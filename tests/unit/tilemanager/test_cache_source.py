"""compatible_levels: which grids lie on the tiles of another grid."""

from __future__ import annotations

from mapproxy.grid import TileGrid
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.srs import SRS
from mapproxy.tilemanager.cache_source import CacheTileSource, compatible_levels

BBOX = (0.0, 0.0, 4096.0, 4096.0)
RES = (16.0, 8.0, 4.0, 2.0, 1.0)


def grid(
    res: tuple[float, ...] = RES,
    bbox: tuple[float, ...] = BBOX,
    origin: str = "sw",
    srs: str = "EPSG:3857",
    tile_size: tuple[int, int] = (256, 256),
) -> TileGrid:
    return TileGrid(SRS(srs), bbox, res, tile_size, origin=origin)


def test_same_grid_maps_each_level_to_itself() -> None:
    assert compatible_levels(grid(), grid()) == {0: 0, 1: 1, 2: 2, 3: 3, 4: 4}


def test_resolution_subset_maps_to_the_matching_levels() -> None:
    assert compatible_levels(grid(), grid(res=(8.0, 2.0))) == {0: 1, 1: 3}


def test_other_origin_on_the_same_tiles_is_compatible() -> None:
    source, target = grid(origin="nw"), grid(res=(8.0,), origin="sw")
    levels = compatible_levels(source, target)
    assert levels == {0: 1}

    class Manager:
        grid = source
        image_options = type("Options", (), {"format": "image/png"})()
        loaded: list[TileCoord] = []

        def load_tile(self, coord: TileCoord) -> object:
            self.loaded.append(coord)
            return type("Tile", (), {"data": b"png", "cacheable": True})()

    class Fallback:
        transparent = False
        extent = None

    manager = Manager()
    tile_source = CacheTileSource(manager, target, levels, Fallback())  # type: ignore[arg-type]
    result = tile_source.get_tile(TileCoord(0, 0, 0))
    assert result is not None and result.as_bytes() == b"png"
    # sw row 0 is the southern row: nw row 1 at a 2 x 2 level
    assert manager.loaded == [TileCoord(0, 1, 1)]


def test_incompatible_grids() -> None:
    assert compatible_levels(grid(), grid(res=(12.0,))) is None  # resolution not in source
    assert compatible_levels(grid(), grid(bbox=(128.0, 0.0, 4224.0, 4096.0))) is None  # shifted
    assert compatible_levels(grid(), grid(srs="EPSG:4326")) is None
    assert compatible_levels(grid(), grid(tile_size=(512, 512), res=(8.0,))) is None
    # a larger target grid has tiles the source does not have
    assert compatible_levels(grid(), grid(bbox=(0.0, 0.0, 8192.0, 4096.0))) is None
