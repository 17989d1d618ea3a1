"""KML helpers: south-west tile numbering and the WGS84 boxes of tiles."""

from __future__ import annotations

from typing import Any

import pytest

from mapproxy.grid.tile_grid import TileCoord
from mapproxy.service.kml import KMLTileSet, _corners_to_lonlat
from mapproxy.srs import get_srs

WGS84 = get_srs("EPSG:4326")
HALF = 20037508.342789244


def tile_set(is_sw: bool) -> KMLTileSet:
    layer: Any = None  # not needed for coordinate math
    return KMLTileSet(layer, "l/g", "png", "image/png", ((1, 1), (2, 2), (4, 3)), is_sw)


@pytest.mark.parametrize(
    ("is_sw", "request_coord", "expected"),
    [
        (True, (1, 0, 1), TileCoord(1, 0, 1)),
        (False, (1, 0, 1), TileCoord(1, 1, 1)),
        (False, (3, 0, 2), TileCoord(3, 2, 2)),
        (False, (0, 2, 2), TileCoord(0, 0, 2)),
        (True, (4, 0, 2), None),
        (True, (0, 3, 2), None),
        (True, (0, 0, 3), None),
        (True, (0, 0, -1), None),
        (True, (-1, 0, 1), None),
    ],
)
def test_internal_coord_numbers_rows_from_the_south(
    is_sw: bool, request_coord: tuple[int, int, int], expected: TileCoord | None
):
    assert tile_set(is_sw).internal_coord(*request_coord) == expected


def test_web_mercator_edge_maps_to_the_poles():
    box = _corners_to_lonlat(get_srs("EPSG:3857"), WGS84, (-HALF, -HALF, HALF, HALF))
    assert box == pytest.approx((-180.0, -90.0, 180.0, 90.0))
    near = _corners_to_lonlat(get_srs("EPSG:900913"), WGS84, (0, 0, 1, 20037508.25))
    assert near[3] == 90.0
    inside = _corners_to_lonlat(get_srs("EPSG:3857"), WGS84, (0, 0, 1, 20037508.0))
    assert inside[3] == pytest.approx(85.05112, abs=1e-5)


def test_box_is_taken_from_the_four_corners():
    west, south, east, north = _corners_to_lonlat(
        get_srs("EPSG:25832"), WGS84, (200000, 5000000, 1000000, 6000000)
    )
    # corners only: the top edge bulges north of 54.0607 at the central meridian
    assert (f"{north:f}", f"{south:f}", f"{east:f}", f"{west:f}") == (
        "54.060680",
        "44.977061",
        "16.617609",
        "4.415118",
    )
