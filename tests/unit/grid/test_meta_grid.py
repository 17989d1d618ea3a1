from __future__ import annotations

import pytest

from mapproxy.errors import TileOutsideGrid
from mapproxy.grid import MetaGrid, MetaTile, TileCoord, TileGrid
from mapproxy.grid.resolutions import compute_resolutions
from mapproxy.srs import get_srs

E = 20037508.342789244
MERCATOR_BBOX = (-E, -E, E, E)
GEODETIC_BBOX = (-180.0, -90.0, 180.0, 90.0)


def mercator_grid(origin: str = "sw") -> TileGrid:
    res = compute_resolutions(MERCATOR_BBOX, (256, 256))
    return TileGrid(get_srs("EPSG:3857"), MERCATOR_BBOX, res, origin=origin)


def geodetic_grid() -> TileGrid:
    res = compute_resolutions(GEODETIC_BBOX, (256, 256))
    return TileGrid(get_srs("EPSG:4326"), GEODETIC_BBOX, res)


def test_level_0_of_one_tile_grid_is_a_single_tile():
    meta = MetaGrid(mercator_grid()).meta_tile(TileCoord(0, 0, 0))
    assert isinstance(meta, MetaTile)
    assert meta.main_coord == TileCoord(0, 0, 0)
    assert meta.size == (256, 256)
    assert meta.bbox == MERCATOR_BBOX
    assert meta.tile_patterns == ((TileCoord(0, 0, 0), (0, 0)),)

    meta = MetaGrid(geodetic_grid()).meta_tile(TileCoord(0, 0, 0))
    assert meta.size == (256, 256)
    assert meta.bbox == (-180, -90, 180, 270)


def test_meta_tile_is_limited_to_existing_tiles():
    meta = MetaGrid(mercator_grid()).meta_tile(TileCoord(1, 0, 1))
    assert meta.main_coord == TileCoord(0, 0, 1)
    assert meta.size == (512, 512)
    assert meta.bbox == pytest.approx(MERCATOR_BBOX)
    # sw grid: the northern row (y=1) is at the top of the image.
    assert meta.tile_patterns == (
        (TileCoord(0, 1, 1), (0, 0)),
        (TileCoord(1, 1, 1), (256, 0)),
        (TileCoord(0, 0, 1), (0, 256)),
        (TileCoord(1, 0, 1), (256, 256)),
    )


def test_meta_tile_in_the_middle_has_buffer_on_all_sides():
    grid = mercator_grid()
    meta = MetaGrid(grid, meta_size=(4, 4), meta_buffer=80).meta_tile(TileCoord(5, 6, 4))
    res = grid.resolutions[4]
    tile_w = 2 * E / 16
    assert meta.main_coord == TileCoord(4, 4, 4)
    assert meta.size == (4 * 256 + 160, 4 * 256 + 160)
    assert meta.bbox == pytest.approx(
        (
            -E + 4 * tile_w - 80 * res,
            -E + 4 * tile_w - 80 * res,
            -E + 8 * tile_w + 80 * res,
            -E + 8 * tile_w + 80 * res,
        )
    )
    patterns = dict(meta.tile_patterns)
    assert len(patterns) == 16
    assert meta.tile_patterns[0] == (TileCoord(4, 7, 4), (80, 80))
    assert patterns[TileCoord(7, 7, 4)] == (80 + 768, 80)
    assert patterns[TileCoord(4, 4, 4)] == (80, 80 + 768)
    assert patterns[TileCoord(7, 4, 4)] == (80 + 768, 80 + 768)
    assert meta.tiles[:4] == tuple(TileCoord(x, 7, 4) for x in range(4, 8))


def test_buffer_is_clipped_at_the_grid_edge_sw():
    meta = MetaGrid(mercator_grid(), meta_buffer=80).meta_tile(TileCoord(0, 0, 4))
    assert meta.main_coord == TileCoord(0, 0, 4)
    assert meta.size == (1024 + 80, 1024 + 80)
    assert meta.bbox[0] == -E
    assert meta.bbox[1] == -E
    patterns = dict(meta.tile_patterns)
    assert patterns[TileCoord(0, 3, 4)] == (0, 80)
    assert patterns[TileCoord(0, 0, 4)] == (0, 80 + 768)
    assert patterns[TileCoord(3, 0, 4)] == (768, 80 + 768)


def test_buffer_is_clipped_at_the_grid_edge_nw():
    meta = MetaGrid(mercator_grid("nw"), meta_buffer=80).meta_tile(TileCoord(15, 0, 4))
    assert meta.main_coord == TileCoord(12, 0, 4)
    assert meta.size == (1024 + 80, 1024 + 80)
    assert meta.bbox[2] == pytest.approx(E)
    assert meta.bbox[3] == E
    patterns = dict(meta.tile_patterns)
    assert meta.tile_patterns[0] == (TileCoord(12, 0, 4), (80, 0))
    assert patterns[TileCoord(15, 3, 4)] == (80 + 768, 768)


def test_partial_meta_tile_at_the_east_edge():
    grid = geodetic_grid()  # level 2 has 4x2 tiles
    meta = MetaGrid(grid, meta_size=(3, 3), meta_buffer=80).meta_tile(TileCoord(3, 1, 2))
    assert meta.main_coord == TileCoord(3, 0, 2)
    assert meta.size == (256 + 80, 512)
    assert meta.bbox == pytest.approx((90 - 80 * grid.resolutions[2], -90, 180, 90))
    assert meta.tile_patterns == (
        (TileCoord(3, 1, 2), (80, 0)),
        (TileCoord(3, 0, 2), (80, 256)),
    )


def test_buffer_shrinks_to_the_room_left_in_the_grid():
    grid = TileGrid(get_srs("EPSG:25832"), (0, 0, 1024, 1024), (4.0, 2.0, 1.0), tile_size=(64, 64))
    meta = MetaGrid(grid, meta_size=(1, 1), meta_buffer=80).meta_tile(TileCoord(1, 1, 2))
    assert meta.size == (64 + 64 + 80, 64 + 64 + 80)
    assert meta.bbox == (0, 0, 208, 208)
    assert meta.tile_patterns == ((TileCoord(1, 1, 2), (64, 80)),)


def test_meta_image_size_follows_tile_size():
    grid = TileGrid(
        get_srs("EPSG:25832"), (0, 0, 4096, 4096), (8.0, 4.0, 1.0), tile_size=(512, 256)
    )
    meta = MetaGrid(grid, meta_size=(2, 2), meta_buffer=10).meta_tile(TileCoord(3, 5, 2))
    assert meta.main_coord == TileCoord(2, 4, 2)
    assert meta.size == (2 * 512 + 20, 2 * 256 + 20)
    assert meta.bbox == (1024 - 10, 1024 - 10, 2048 + 10, 1536 + 10)
    assert dict(meta.tile_patterns)[TileCoord(3, 4, 2)] == (10 + 512, 10 + 256)


def test_zero_buffer():
    meta = MetaGrid(mercator_grid(), meta_buffer=0).meta_tile(TileCoord(5, 6, 4))
    assert meta.size == (1024, 1024)
    assert meta.tile_patterns[0] == (TileCoord(4, 7, 4), (0, 0))


def test_main_tile():
    meta_grid = MetaGrid(mercator_grid(), meta_size=(4, 2))
    assert meta_grid.main_tile(TileCoord(5, 6, 4)) == TileCoord(4, 6, 4)
    assert meta_grid.main_tile(TileCoord(3, 1, 4)) == TileCoord(0, 0, 4)
    assert (
        meta_grid.main_tile(TileCoord(5, 7, 4))
        == meta_grid.meta_tile(TileCoord(5, 7, 4)).main_coord
    )


def test_meta_tiles_for_returns_unique_meta_tiles_in_first_seen_order():
    meta_grid = MetaGrid(mercator_grid())
    coords = [TileCoord(5, 6, 4), TileCoord(0, 0, 4), TileCoord(4, 4, 4), TileCoord(7, 7, 4)]
    metas = meta_grid.meta_tiles_for(coords)
    assert [m.main_coord for m in metas] == [TileCoord(4, 4, 4), TileCoord(0, 0, 4)]
    assert meta_grid.meta_tiles_for([]) == []


def test_tile_outside_grid_raises():
    meta_grid = MetaGrid(mercator_grid())
    with pytest.raises(TileOutsideGrid):
        meta_grid.meta_tile(TileCoord(2, 0, 1))
    with pytest.raises(TileOutsideGrid):
        meta_grid.main_tile(TileCoord(0, 0, 20))


def test_invalid_meta_options_raise_value_error():
    with pytest.raises(ValueError):
        MetaGrid(mercator_grid(), meta_size=(0, 4))
    with pytest.raises(ValueError):
        MetaGrid(mercator_grid(), meta_buffer=-1)
