"""Grids, fake tile managers and a WSGI client shared by the tile service unit tests."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator, Sequence

from PIL import Image
from werkzeug.test import Client
from werkzeug.wrappers import Request

from mapproxy.cache.base import Tile
from mapproxy.errors import MapProxyError
from mapproxy.grid.tile_grid import TileCoord, TileGrid
from mapproxy.layer.base import TileLayer
from mapproxy.source.base import MapExtent
from mapproxy.srs import get_srs

MERCATOR_EXTENT = 20037508.342789244
TILE_TIMESTAMP = 1700000000.5


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (4, 4), (255, 0, 0, 255)).save(buf, "PNG")
    return buf.getvalue()


PNG = png_bytes()


def global_webmercator(name: str | None = "GLOBAL_WEBMERCATOR", levels: int = 20) -> TileGrid:
    return TileGrid(
        get_srs("EPSG:3857"),
        (-MERCATOR_EXTENT, -MERCATOR_EXTENT, MERCATOR_EXTENT, MERCATOR_EXTENT),
        [156543.03392804097 / 2**i for i in range(levels)],
        origin="nw",
        name=name,
    )


def global_mercator() -> TileGrid:
    return TileGrid(
        get_srs("EPSG:900913"),
        (-MERCATOR_EXTENT, -MERCATOR_EXTENT, MERCATOR_EXTENT, MERCATOR_EXTENT),
        [156543.03392804097 / 2**i for i in range(20)],
        origin="sw",
        name="GLOBAL_MERCATOR",
    )


def global_geodetic(name: str | None = "GLOBAL_GEODETIC") -> TileGrid:
    return TileGrid(
        get_srs("EPSG:4326"),
        (-180, -90, 180, 90),
        [1.40625 / 2**i for i in range(20)],
        origin="sw",
        name=name,
    )


def aligned_geodetic(name: str = "geo2") -> TileGrid:
    """A sw-origin EPSG:4326 grid starting with 2x1 tiles (addressable from the nw)."""
    return TileGrid(
        get_srs("EPSG:4326"), (-180, -90, 180, 90), [0.703125 / 2**i for i in range(3)], name=name
    )


def utm_grid(name: str = "utm") -> TileGrid:
    """A local sw grid whose bbox is not a whole number of rows (no nw addressing)."""
    return TileGrid(
        get_srs("EPSG:25832"),
        (200000, 5000000, 800000, 6000000),
        [1000, 500, 250],
        origin="sw",
        name=name,
    )


def sqrt2_webmercator(name: str = "sq2") -> TileGrid:
    res = 156543.03392804097
    return TileGrid(
        get_srs("EPSG:3857"),
        (-MERCATOR_EXTENT, -MERCATOR_EXTENT, MERCATOR_EXTENT, MERCATOR_EXTENT),
        [res / 2 ** (i / 2) for i in range(6)],
        origin="nw",
        name=name,
    )


class FakeTileManager:
    """Records requested coordinates; returns a PNG tile or raises ``error``."""

    def __init__(self, error: MapProxyError | None = None, data: bytes | None = PNG) -> None:
        self.coords: list[TileCoord] = []
        self.error = error
        self.data = data

    def load_tile(self, coord: TileCoord, with_metadata: bool = False) -> Tile:
        self.coords.append(coord)
        if self.error is not None:
            raise self.error
        return Tile(coord, self.data, TILE_TIMESTAMP)


def make_layer(
    name: str,
    grid: TileGrid,
    title: str | None = None,
    format: str = "image/png",
    extension: str = "png",
    manager: FakeTileManager | None = None,
) -> TileLayer:
    return TileLayer(
        name=name,
        title=title or name.upper(),
        grid=grid,
        tile_manager=manager or FakeTileManager(),
        format=format,
        extension=extension,
        extent=MapExtent(grid.bbox, grid.srs),
    )


def coords_of(layer: TileLayer) -> list[TileCoord]:
    manager = layer.tile_manager
    assert isinstance(manager, FakeTileManager)
    return manager.coords


def make_client(service: object) -> Client:
    def app(environ, start_response):  # type: ignore[no-untyped-def]
        return service.handle(Request(environ))(environ, start_response)  # type: ignore[attr-defined]

    return Client(app)


_ALPHABET = "abcXYZ0123456789-_./%?&=;:,+ ~!@$'()*[]{}\\\"<>|^`\t\x00éü漢"


def mutated_paths(seeds: Sequence[str], count: int, seed: int) -> Iterator[str]:
    """``count`` deterministic random mutations of ``seeds`` (chars, segments, numbers)."""
    rng = random.Random(seed)
    for _ in range(count):
        path = rng.choice(seeds)
        for _ in range(rng.randint(1, 3)):
            path = _mutate(path, rng)
        yield path


def _mutate(path: str, rng: random.Random) -> str:
    operation = rng.randrange(8)
    position = rng.randrange(len(path) + 1)
    if operation == 0:
        return path[:position] + rng.choice(_ALPHABET) + path[position:]
    if operation == 1 and path:
        return path[:position] + path[position + 1 :]
    segments = path.split("/")
    index = rng.randrange(len(segments))
    if operation == 2:
        segments[index] = str(rng.choice([-1, -(10**30), 0, 1, 2**31, 10**40, 99999]))
    elif operation == 3:
        segments.insert(index, segments[index])
    elif operation == 4:
        del segments[index]
    elif operation == 5:
        segments[index] = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 6)))
    elif operation == 6:
        return path[:position]
    else:
        segments[index] = segments[index] + rng.choice([".png", ".jpeg", ".", "..", "/", ".PNG"])
    return "/".join(segments)
