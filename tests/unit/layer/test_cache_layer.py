"""CacheMapLayer: which grid serves a request and which tiles it loads.

Expected choices were observed with MapProxy 7.0.0 (black box).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from fakes.fake_upstream import png_bytes
from mapproxy.cache.base import Tile
from mapproxy.grid import TileCoord, TileGrid
from mapproxy.image.options import ImageOptions
from mapproxy.layer.cache_layer import CacheMapLayer
from mapproxy.source.base import MapExtent, MapQuery
from mapproxy.srs import get_srs

E = 20037508.342789244
MERCATOR_BBOX = (-E, -E, E, E)


class RecordingManager:
    """A tile manager that answers every tile with a red PNG and records the coords."""

    def __init__(self, grid: TileGrid) -> None:
        self.grid = grid
        self.loaded: list[TileCoord] = []

    def load_tiles(self, coords: Sequence[TileCoord]) -> list[Tile]:
        self.loaded.extend(coords)
        data = png_bytes(self.grid.tile_size)
        return [Tile(coord, data) for coord in coords]


def mercator(name: str, finest: float) -> RecordingManager:
    res = [finest * 2**i for i in range(6, -1, -1)]
    return RecordingManager(
        TileGrid(get_srs("EPSG:3857"), MERCATOR_BBOX, res, origin="nw", name=name)
    )


def geodetic(name: str) -> RecordingManager:
    res = [1.40625 / 2**i for i in range(8)]
    return RecordingManager(
        TileGrid(get_srs("EPSG:4326"), (-180, -90, 180, 90), res, origin="sw", name=name)
    )


def layer(managers: Sequence[RecordingManager]) -> CacheMapLayer:
    return CacheMapLayer(
        managers, MapExtent(MERCATOR_BBOX, get_srs("EPSG:3857")), ImageOptions(format="png")
    )


def used(managers: Sequence[RecordingManager]) -> list[str | None]:
    return [m.grid.name for m in managers if m.loaded]


@pytest.mark.parametrize(
    ("srs", "bbox"),
    [
        ("EPSG:3857", (1e6, 1e6, 1.4e6, 1.4e6)),
        ("EPSG:4326", (9.0, 9.0, 12.6, 12.6)),  # no geographic grid: still the last
        ("EPSG:25832", (5e5, 1e6, 9e5, 1.4e6)),
    ],
)
def test_last_grid_of_the_srs_wins(srs, bbox):
    # the first grid fits the request resolution (1562.5) exactly; still the last serves it
    managers = [mercator("fits", 1562.5), mercator("other", 1500.0)]
    layer(managers).get_map(MapQuery(bbox, (256, 256), get_srs(srs)))
    assert used(managers) == ["other"]


def test_last_projected_grid_for_projected_requests():
    managers = [mercator("first", 1600.0), mercator("second", 1500.0), geodetic("geo")]
    query = MapQuery((5e5, 1e6, 9e5, 1.4e6), (256, 256), get_srs("EPSG:25832"))
    layer(managers).get_map(query)
    assert used(managers) == ["second"]


def test_grid_in_request_srs_wins_over_later_grids():
    managers = [mercator("first", 1600.0), geodetic("geo"), mercator("last", 1500.0)]
    query = MapQuery((9.0, 9.0, 12.6, 12.6), (256, 256), get_srs("EPSG:4326"))
    layer(managers).get_map(query)
    assert used(managers) == ["geo"]


@pytest.mark.parametrize(("overlap_px", "tiles"), [(0.0, 1), (0.03, 1), (0.09, 1), (0.2, 2)])
def test_sub_pixel_overlap_loads_no_extra_tile(overlap_px, tiles):
    manager = mercator("g", 1000.0)
    grid = manager.grid
    x0, y0, x1, y1 = grid.tile_bbox(TileCoord(20, 30, 6))
    bbox = (x0, y0, x1 + overlap_px * 1000.0, y1)
    layer([manager]).get_map(MapQuery(bbox, (256, 256), get_srs("EPSG:3857")))
    assert len(manager.loaded) == tiles
    assert manager.loaded[0] == TileCoord(20, 30, 6)


def utm32(name: str) -> RecordingManager:
    res = [4000.0 / 2**i for i in range(8)]
    return RecordingManager(
        TileGrid(get_srs("EPSG:25832"), (-1e6, 3e6, 3e6, 9e6), res, origin="nw", name=name)
    )


@pytest.mark.parametrize("first", ["merc", "utm"])
def test_first_grid_serves_requests_without_a_grid_of_their_kind(first: str) -> None:
    # seen with MapProxy 7.0.0: a geographic request to [utm32, webmercator] uses utm32,
    # to [webmercator, utm32] webmercator
    merc, utm = mercator("merc", 1500.0), utm32("utm")
    managers = [merc, utm] if first == "merc" else [utm, merc]
    query = MapQuery((5.0, 45.0, 10.0, 50.0), (256, 256), get_srs("EPSG:4326"))
    layer(managers).get_map(query)
    assert used(managers) == [first]
