from __future__ import annotations

import pytest

from mapproxy.errors import NoTiles, TileOutsideGrid
from mapproxy.grid import AffectedTiles, TileCoord, TileGrid
from mapproxy.grid.resolutions import compute_resolutions
from mapproxy.srs import get_srs

E = 20037508.342789244
MERCATOR_BBOX = (-E, -E, E, E)
GEODETIC_BBOX = (-180.0, -90.0, 180.0, 90.0)


def geodetic_grid() -> TileGrid:
    res = compute_resolutions(GEODETIC_BBOX, (256, 256))
    return TileGrid(get_srs("EPSG:4326"), GEODETIC_BBOX, res, origin="sw", name="GLOBAL_GEODETIC")


def mercator_grid() -> TileGrid:
    res = compute_resolutions(MERCATOR_BBOX, (256, 256))
    return TileGrid(get_srs("EPSG:900913"), MERCATOR_BBOX, res, origin="sw", name="GLOBAL_MERCATOR")


def webmercator_grid() -> TileGrid:
    res = compute_resolutions(MERCATOR_BBOX, (256, 256))
    return TileGrid(
        get_srs("EPSG:3857"), MERCATOR_BBOX, res, origin="nw", name="GLOBAL_WEBMERCATOR"
    )


def local_grid(bbox=(0.0, 0.0, 1024.0, 1024.0), res=(4.0, 2.0, 1.0), **kwargs) -> TileGrid:
    return TileGrid(get_srs("EPSG:25832"), bbox, res, **kwargs)


# --- construction ----------------------------------------------------------------


def test_builtin_grid_attributes():
    grid = geodetic_grid()
    assert grid.levels == 20
    assert grid.resolutions[0] == 1.40625
    assert grid.resolutions[-1] == 2.682209014892578e-06
    assert isinstance(grid.resolutions, tuple)
    assert grid.tile_size == (256, 256)
    assert grid.origin == "sw"
    assert grid.name == "GLOBAL_GEODETIC"
    assert grid.bbox == GEODETIC_BBOX

    grid = mercator_grid()
    assert grid.resolutions[0] == 156543.03392804097
    assert grid.resolutions[-1] == 0.29858214173896974
    assert webmercator_grid().origin == "nw"


@pytest.mark.parametrize(
    ("origin", "expected"), [("sw", "sw"), ("ll", "sw"), ("nw", "nw"), ("ul", "nw"), ("UL", "nw")]
)
def test_origin_is_normalized(origin, expected):
    assert local_grid(origin=origin).origin == expected


def test_invalid_grid_arguments_raise_value_error():
    with pytest.raises(ValueError):
        local_grid(origin="se")
    with pytest.raises(ValueError):
        local_grid(bbox=(0, 0, 0, 10))
    with pytest.raises(ValueError):
        local_grid(res=())
    with pytest.raises(ValueError):
        local_grid(res=(1.0, 2.0))


# --- grid sizes ------------------------------------------------------------------


def test_geodetic_grid_sizes():
    grid = geodetic_grid()
    assert grid.grid_size(0) == (1, 1)
    assert grid.grid_size(1) == (2, 1)
    assert grid.grid_size(2) == (4, 2)
    assert grid.grid_size(19) == (2**19, 2**18)
    assert len(grid.grid_sizes) == 20
    assert grid.grid_sizes[3] == (8, 4)


def test_mercator_grid_sizes():
    for grid in (mercator_grid(), webmercator_grid()):
        assert grid.grid_sizes[:3] == ((1, 1), (2, 2), (4, 4))
        assert grid.grid_size(19) == (2**19, 2**19)


def test_grid_size_covers_partial_tiles():
    grid = local_grid(bbox=(0, 0, 1000, 300), res=(4.0, 1.0))
    assert grid.grid_sizes == ((1, 1), (4, 2))


def test_grid_size_ignores_float_noise():
    # 360 / 1.40625 / 256 is exactly one tile; noise-level excess must not add one.
    grid = local_grid(bbox=(0, 0, 256 * 0.1 * 3, 256 * 0.1), res=(0.1,))
    assert grid.grid_sizes == ((3, 1),)


def test_level_out_of_range_raises():
    grid = mercator_grid()
    with pytest.raises(TileOutsideGrid):
        grid.resolution(20)
    with pytest.raises(TileOutsideGrid):
        grid.grid_size(-1)
    with pytest.raises(TileOutsideGrid):
        grid.tile_bbox(TileCoord(0, 0, 20))


# --- tile bboxes and coordinates -------------------------------------------------


def test_geodetic_tile_bboxes():
    grid = geodetic_grid()
    assert grid.tile_bbox(TileCoord(0, 0, 0)) == (-180, -90, 180, 270)
    assert grid.tile_bbox(TileCoord(0, 0, 1)) == (-180, -90, 0, 90)
    assert grid.tile_bbox(TileCoord(1, 0, 1)) == (0, -90, 180, 90)
    assert grid.tile_bbox(TileCoord(3, 1, 2)) == (90, 0, 180, 90)


def test_sw_tile_bboxes_start_in_the_south_west():
    grid = mercator_grid()
    assert grid.tile_bbox(TileCoord(0, 0, 0)) == MERCATOR_BBOX
    assert grid.tile_bbox(TileCoord(0, 0, 1)) == pytest.approx((-E, -E, 0, 0))
    assert grid.tile_bbox(TileCoord(1, 1, 1)) == pytest.approx((0, 0, E, E))
    assert grid.tile_bbox(TileCoord(0, 0, 2)) == pytest.approx((-E, -E, -E / 2, -E / 2))
    assert grid.tile_bbox(TileCoord(3, 3, 2)) == pytest.approx((E / 2, E / 2, E, E))


def test_nw_tile_bboxes_start_in_the_north_west():
    grid = webmercator_grid()
    assert grid.tile_bbox(TileCoord(0, 0, 0)) == MERCATOR_BBOX
    assert grid.tile_bbox(TileCoord(0, 0, 1)) == pytest.approx((-E, 0, 0, E))
    assert grid.tile_bbox(TileCoord(1, 1, 1)) == pytest.approx((0, -E, E, 0))
    assert grid.tile_bbox(TileCoord(0, 0, 2)) == pytest.approx((-E, E / 2, -E / 2, E))
    assert grid.tile_bbox(TileCoord(3, 3, 2)) == pytest.approx((E / 2, -E, E, -E / 2))


def test_neighbouring_tiles_share_edges_exactly():
    grid = webmercator_grid()
    a = grid.tile_bbox(TileCoord(5, 7, 5))
    b = grid.tile_bbox(TileCoord(6, 8, 5))
    assert a[2] == b[0]
    assert a[1] == b[3]


@pytest.mark.parametrize("make_grid", [geodetic_grid, mercator_grid, webmercator_grid])
@pytest.mark.parametrize(
    "coord", [TileCoord(0, 0, 0), TileCoord(1, 0, 1), TileCoord(5, 3, 4), TileCoord(1234, 77, 12)]
)
def test_tile_coord_round_trip(make_grid, coord):
    grid = make_grid()
    minx, miny, maxx, maxy = grid.tile_bbox(coord)
    assert grid.tile_coord((minx + maxx) / 2, (miny + maxy) / 2, coord.z) == coord
    # The corner where the tile starts belongs to the tile.
    corner_y = maxy if grid.origin == "nw" else miny
    assert grid.tile_coord(minx, corner_y, coord.z) == coord


def test_tile_coord_of_grid_corners():
    assert mercator_grid().tile_coord(-E, -E, 1) == TileCoord(0, 0, 1)
    assert webmercator_grid().tile_coord(-E, E, 1) == TileCoord(0, 0, 1)
    assert webmercator_grid().tile_coord(E * 0.99, -E * 0.99, 1) == TileCoord(1, 1, 1)
    assert mercator_grid().tile_coord(2 * E, 0, 1) == TileCoord(3, 1, 1)


def test_is_valid_and_limit_tile():
    grid = geodetic_grid()
    assert grid.is_valid(TileCoord(1, 0, 1))
    assert not grid.is_valid(TileCoord(2, 0, 1))
    assert not grid.is_valid(TileCoord(0, 1, 1))
    assert not grid.is_valid(TileCoord(-1, 0, 1))
    assert not grid.is_valid(TileCoord(0, 0, 20))
    assert not grid.is_valid(TileCoord(0, 0, -1))
    assert grid.limit_tile(TileCoord(1, 0, 1)) == TileCoord(1, 0, 1)
    assert grid.limit_tile(TileCoord(0, 2, 2)) is None


def test_flip_y_converts_between_origins():
    sw, nw = mercator_grid(), webmercator_grid()
    coord = TileCoord(3, 1, 3)
    flipped = sw.flip_y(coord)
    assert flipped == TileCoord(3, 6, 3)
    assert nw.tile_bbox(flipped) == pytest.approx(sw.tile_bbox(coord))
    assert nw.flip_y(flipped) == coord
    assert geodetic_grid().flip_y(TileCoord(1, 0, 1)) == TileCoord(1, 0, 1)


# --- level selection -------------------------------------------------------------


def test_closest_level_allows_stretching_up_to_stretch_factor():
    grid = mercator_grid()
    res0, res1 = grid.resolutions[0], grid.resolutions[1]
    assert grid.closest_level(res0) == 0
    assert grid.closest_level(res1) == 1
    assert grid.closest_level(res0 / 1.15 * 1.001) == 0
    assert grid.closest_level(res0 / 1.15 * 0.999) == 1
    assert grid.closest_level(res0 * 10) == 0
    assert grid.closest_level(0.001) == 19


def test_closest_level_with_custom_stretch_factor():
    grid = local_grid(res=(1000.0, 500.0, 200.0), stretch_factor=1.0)
    assert grid.closest_level(999) == 1
    assert grid.closest_level(1000) == 0
    assert grid.closest_level(500) == 1
    assert grid.closest_level(200) == 2


def test_closest_level_without_thresholds():
    grid = local_grid(res=(1000.0, 500.0, 200.0))
    assert grid.closest_level(870) == 0
    assert grid.closest_level(701) == 1
    assert grid.closest_level(435) == 1
    assert grid.closest_level(434) == 2


def test_closest_level_threshold_res_decides_between_neighbours():
    grid = local_grid(res=(1000.0, 500.0, 200.0), threshold_res=[700])
    assert grid.closest_level(1500) == 0
    assert grid.closest_level(1000) == 0
    assert grid.closest_level(701) == 0
    assert grid.closest_level(700) == 1
    assert grid.closest_level(500) == 1
    # No threshold between 500 and 200: the stretch factor decides.
    assert grid.closest_level(435) == 1
    assert grid.closest_level(434) == 2
    assert grid.closest_level(10) == 2


# --- affected tiles --------------------------------------------------------------


def test_affected_tiles_sw_grid_in_image_order():
    result = mercator_grid().affected_tiles(MERCATOR_BBOX, (512, 512))
    assert isinstance(result, AffectedTiles)
    assert result.level == 1
    assert result.grid_size == (2, 2)
    assert result.bbox == pytest.approx(MERCATOR_BBOX)
    assert result.tiles == (
        TileCoord(0, 1, 1),
        TileCoord(1, 1, 1),
        TileCoord(0, 0, 1),
        TileCoord(1, 0, 1),
    )


def test_affected_tiles_nw_grid_in_image_order():
    result = webmercator_grid().affected_tiles(MERCATOR_BBOX, (512, 512))
    assert result.level == 1
    assert result.tiles == (
        TileCoord(0, 0, 1),
        TileCoord(1, 0, 1),
        TileCoord(0, 1, 1),
        TileCoord(1, 1, 1),
    )


def test_affected_tiles_geodetic_levels():
    grid = geodetic_grid()
    result = grid.affected_tiles(GEODETIC_BBOX, (512, 256))
    assert result.level == 1
    assert result.tiles == (TileCoord(0, 0, 1), TileCoord(1, 0, 1))
    assert result.bbox == GEODETIC_BBOX

    result = grid.affected_tiles(GEODETIC_BBOX, (256, 128))
    assert result.level == 0
    assert result.grid_size == (1, 1)
    assert result.tiles == (TileCoord(0, 0, 0),)
    assert result.bbox == (-180, -90, 180, 270)


def test_affected_tiles_for_exact_tile_bbox_is_that_tile():
    grid = webmercator_grid()
    for coord in (TileCoord(1, 2, 2), TileCoord(300, 511, 10)):
        result = grid.affected_tiles(grid.tile_bbox(coord), (256, 256))
        assert result.tiles == (coord,)
        assert result.bbox == grid.tile_bbox(coord)


@pytest.mark.parametrize("origin", ["sw", "nw"])
@pytest.mark.parametrize("side", [0, 1, 2, 3])
def test_affected_level_tiles_ignore_sub_pixel_overlap(origin, side):
    # as MapProxy 7.0.0: up to 0.1 px of the level over a tile edge needs no extra tile
    grid = local_grid(res=(4.0, 1.0), tile_size=(256, 256), origin=origin)
    tile = grid.tile_bbox(TileCoord(1, 1, 1))
    sign = -1 if side < 2 else 1
    for overlap_px, count in ((0.03, 1), (0.09, 1), (0.11, 2), (0.5, 2)):
        bbox = list(tile)
        bbox[side] += sign * overlap_px * 1.0
        result = grid.affected_level_tiles(tuple(bbox), 1)
        assert len(result.tiles) == count, (overlap_px, result.tiles)
        assert TileCoord(1, 1, 1) in result.tiles


def test_affected_level_tiles_tiny_bbox_is_one_tile():
    grid = local_grid(res=(4.0, 1.0))
    result = grid.affected_level_tiles((300.0, 300.0, 300.1, 300.1), 1)
    assert result.tiles == (TileCoord(1, 1, 1),)


def test_affected_tiles_in_the_middle():
    grid = mercator_grid()
    bbox = (-E / 4, -E / 4, E / 4, E / 4)
    result = grid.affected_tiles(bbox, (256, 256))
    assert result.level == 2
    assert result.grid_size == (2, 2)
    assert result.tiles == (
        TileCoord(1, 2, 2),
        TileCoord(2, 2, 2),
        TileCoord(1, 1, 2),
        TileCoord(2, 1, 2),
    )
    assert result.bbox == pytest.approx((-E / 2, -E / 2, E / 2, E / 2))


def test_affected_level_tiles_partial_coverage_has_none_entries():
    bbox = (-1.5 * E, -0.5 * E, 0.5 * E, 0.5 * E)
    result = mercator_grid().affected_level_tiles(bbox, 1)
    assert result.grid_size == (3, 2)
    assert result.tiles == (
        None,
        TileCoord(0, 1, 1),
        TileCoord(1, 1, 1),
        None,
        TileCoord(0, 0, 1),
        TileCoord(1, 0, 1),
    )
    assert result.bbox == pytest.approx((-2 * E, -E, E, E))

    result = webmercator_grid().affected_level_tiles((-0.5 * E, 0.5 * E, 0.5 * E, 1.5 * E), 1)
    assert result.tiles == (None, None, TileCoord(0, 0, 1), TileCoord(1, 0, 1))
    assert result.bbox == pytest.approx((-E, 0, E, 2 * E))


def test_affected_tiles_geodetic_beyond_the_date_line():
    result = geodetic_grid().affected_level_tiles((90, -45, 270, 45), 1)
    assert result.tiles == (TileCoord(1, 0, 1), None)
    assert result.bbox == (0, -90, 360, 90)


def test_affected_tiles_transforms_request_bbox():
    grid = mercator_grid()
    bbox = (-180, -85.05112877980659, 180, 85.05112877980659)
    result = grid.affected_tiles(bbox, (512, 512), req_srs=get_srs("EPSG:4326"))
    assert result.level == 1
    assert result.tiles == (
        TileCoord(0, 1, 1),
        TileCoord(1, 1, 1),
        TileCoord(0, 0, 1),
        TileCoord(1, 0, 1),
    )
    same = grid.affected_tiles(MERCATOR_BBOX, (512, 512), req_srs=get_srs("EPSG:900913"))
    assert same.tiles == result.tiles


def test_affected_tiles_outside_grid_raises_no_tiles():
    with pytest.raises(NoTiles):
        geodetic_grid().affected_tiles((200, 0, 210, 10), (256, 256))
    with pytest.raises(NoTiles):
        # Touching the grid edge is not an intersection.
        geodetic_grid().affected_level_tiles((180, 0, 190, 10), 3)


def test_affected_tiles_too_coarse_raises_no_tiles():
    grid = geodetic_grid()
    # 1.40625 * 4.0 = 5.625 is the coarsest allowed request resolution.
    assert grid.affected_tiles(GEODETIC_BBOX, (64, 32)).level == 0
    # the finer axis decides (as in MapProxy): 360/64 = 5.625 is fine although 180/20 is not
    assert grid.affected_tiles(GEODETIC_BBOX, (64, 20)).level == 0
    with pytest.raises(NoTiles):
        grid.affected_tiles(GEODETIC_BBOX, (63, 31))
    strict = TileGrid(get_srs("EPSG:4326"), GEODETIC_BBOX, grid.resolutions, max_shrink_factor=1.0)
    with pytest.raises(NoTiles):
        strict.affected_tiles(GEODETIC_BBOX, (255, 127))


def test_affected_tiles_level_follows_the_finer_axis():
    grid = geodetic_grid()
    # x: 36/32 = 1.125 deg/px, y: 36/16 = 2.25 deg/px -> the level for 1.125 * 1.15
    square = grid.affected_tiles((0, 0, 36, 36), (32, 32))
    wide = grid.affected_tiles((0, 0, 36, 36), (32, 16))
    assert wide.level == square.level


# --- addressing and profiles -----------------------------------------------------


def test_supports_nw_addressing():
    assert webmercator_grid().supports_nw_addressing()
    assert mercator_grid().supports_nw_addressing()
    # Level 0 of GLOBAL_GEODETIC is one tile of 360° height over a 180° bbox.
    assert not geodetic_grid().supports_nw_addressing()
    assert local_grid().supports_nw_addressing()
    assert not local_grid(bbox=(0, 0, 1024, 768)).supports_nw_addressing()
    assert local_grid(bbox=(0, 0, 1024, 768), origin="nw").supports_nw_addressing()


def test_tms_profiles():
    assert mercator_grid().tms_profile == "global-mercator"
    assert webmercator_grid().tms_profile == "global-mercator"
    assert mercator_grid().is_global_mercator
    assert geodetic_grid().tms_profile == "global-geodetic"
    assert geodetic_grid().is_global_geodetic
    assert not geodetic_grid().is_global_mercator
    assert local_grid().tms_profile == "local"
    res = (1000.0, 500.0)
    assert TileGrid(get_srs("EPSG:3857"), (0, 0, 1e6, 1e6), res).tms_profile == "local"
    assert TileGrid(get_srs("EPSG:4326"), (-10, 40, 20, 60), res).tms_profile == "local"
