"""Tile source: fetch single tiles from a tile server by URL template."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from PIL import Image

from mapproxy.errors import ConfigurationError, MapProxyError, SourceError
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.http.client import HTTPClient, UpstreamHTTPError
from mapproxy.image.options import format_extension, format_mime_type
from mapproxy.image.result import ImageResult
from mapproxy.source.base import MapExtent, MapQuery
from mapproxy.source.on_error import OnError
from mapproxy.source.wms import image_from_response

if TYPE_CHECKING:
    from mapproxy.grid import TileGrid

__all__ = ["TEMPLATE_VARIABLES", "TileSource", "quadkey", "tile_url"]

log = logging.getLogger("mapproxy.source.tile")

# Metres per degree at the equator, to compare geographic resolutions with min_res/max_res.
_METERS_PER_DEGREE = 111319.4907932736

TEMPLATE_VARIABLES = frozenset(
    ["x", "y", "z", "format", "quadkey", "tc_path", "tms_path", "arcgiscache_path", "bbox"]
)
_VARIABLE = re.compile(r"%\((\w+)\)s")


def quadkey(x: int, y: int, z: int) -> str:
    """Bing-style quadkey of a tile numbered from the north-west corner."""
    digits = []
    for level in range(z, 0, -1):
        mask = 1 << (level - 1)
        digit = (1 if x & mask else 0) + (2 if y & mask else 0)
        digits.append(str(digit))
    return "".join(digits)


def _tc_path(x: int, y: int, z: int) -> str:
    xs = f"{x:09d}"
    ys = f"{y:09d}"
    return f"{z:02d}/{xs[0:3]}/{xs[3:6]}/{xs[6:9]}/{ys[0:3]}/{ys[3:6]}/{ys[6:9]}"


def tile_url(
    template: str,
    coord: TileCoord,
    format: str = "png",
    bbox: tuple[float, float, float, float] | None = None,
    nw_y: int | None = None,
) -> str:
    """Expand the ``%(name)s`` variables of ``template`` for ``coord`` (grid numbering).

    ``format`` is the extension (``png``); ``nw_y`` is the row counted from the top, used
    for ``quadkey`` (defaults to ``coord.y``). Other ``%`` characters are left untouched.
    """
    x, y, z = coord.x, coord.y, coord.z

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "x":
            return str(x)
        if name == "y":
            return str(y)
        if name == "z":
            return str(z)
        if name == "format":
            return format
        if name == "quadkey":
            return quadkey(x, y if nw_y is None else nw_y, z)
        if name == "tc_path":
            return _tc_path(x, y, z)
        if name == "tms_path":
            return f"{z}/{x}/{y}"
        if name == "arcgiscache_path":
            return f"L{z:02d}/R{y:08x}/C{x:08x}"
        if name == "bbox":
            if bbox is None:
                raise ValueError("tile url template needs a bbox")
            return ",".join(f"{v:.8f}" for v in bbox)  # 8 decimals, as MapProxy
        return match.group(0)

    return _VARIABLE.sub(value, template)


class TileSource:
    """Tiles from a tile server (TMS, XYZ, quadkey, ArcGIS cache) in the layout of ``grid``.

    Only queries matching exactly one tile of ``grid`` can be answered, so this source
    needs a cache with the same grid in front of it.
    """

    supports_meta_tiles = False

    def __init__(
        self,
        client: HTTPClient,
        url_template: str,
        grid: TileGrid,
        format: str = "image/png",
        transparent: bool = False,
        on_error: Mapping[object, object] | OnError | None = None,
        extent: MapExtent | None = None,
        url_origin: str | None = None,
        request_limiter: contextlib.AbstractContextManager[object] | None = None,
        min_res: float | None = None,
        max_res: float | None = None,
    ) -> None:
        """``url_origin`` (deprecated ``origin`` option): row numbering of the URLs when it
        differs from the grid's own origin (``nw``/``ul`` or ``sw``/``ll``).
        ``request_limiter`` (``concurrent_requests``) is entered around every request.
        ``min_res`` (coarsest, inclusive) and ``max_res`` (finest, exclusive) are in m/px;
        tiles of levels outside are not requested."""
        unknown = sorted(set(_VARIABLE.findall(url_template)) - TEMPLATE_VARIABLES)
        if unknown:
            raise ConfigurationError(
                f"unknown variable(s) {', '.join(unknown)} in tile source url {url_template!r}"
            )
        self.client = client
        self.url_template = url_template
        self.grid = grid
        self.format = format_mime_type(format)
        self.transparent = transparent
        self.on_error = on_error if isinstance(on_error, OnError) else OnError(on_error)
        self.extent = extent
        self.request_limiter = request_limiter
        self.min_res = min_res
        self.max_res = max_res
        self._uses_bbox = "%(bbox)s" in url_template
        self._uses_quadkey = "%(quadkey)s" in url_template
        origin = {"ul": "nw", "ll": "sw"}.get(url_origin or "", url_origin)
        self._flip_url_rows = origin is not None and origin != grid.origin

    def __repr__(self) -> str:
        return f"TileSource({self.url_template!r})"

    def tile_url(self, coord: TileCoord) -> str:
        """The upstream URL of ``coord`` (x/y counted from the grid origin)."""
        bbox = self.grid.tile_bbox(coord) if self._uses_bbox else None
        nw_y = None
        if self._uses_quadkey and self.grid.origin != "nw":
            nw_y = self.grid.grid_size(coord.z)[1] - 1 - coord.y
        url_coord = self.grid.flip_y(coord) if self._flip_url_rows else coord
        return tile_url(
            self.url_template, url_coord, format_extension(self.format), bbox=bbox, nw_y=nw_y
        )

    def is_level_in_res_range(self, level: int) -> bool:
        """Whether tiles of ``level`` lie within ``min_res``/``max_res``."""
        if self.min_res is None and self.max_res is None:
            return True
        res = self.grid.resolutions[level]
        if self.grid.srs.is_latlong:
            res *= _METERS_PER_DEGREE
        if self.min_res is not None and res > self.min_res:
            return False
        return not (self.max_res is not None and res <= self.max_res)

    def get_tile(self, coord: TileCoord) -> ImageResult | None:
        """Fetch one tile; raises SourceError unless on_error applies.

        None (no tile, nothing requested) for levels outside ``min_res``/``max_res``.
        """
        if not self.is_level_in_res_range(coord.z):
            return None
        url = self.tile_url(coord)
        tile_size = (int(self.grid.tile_size[0]), int(self.grid.tile_size[1]))
        try:
            with self.request_limiter or contextlib.nullcontext():
                response = self.client.open(url)
            result = image_from_response(
                response,
                self.client.hide_error_details,
                source_name="tile source",
                logger=log,
            )
        except UpstreamHTTPError as error:
            return self.on_error.handle(error, error.status, tile_size, self.format)
        except SourceError as error:
            return self.on_error.handle(error, None, tile_size, self.format)
        result.transparent = self.transparent
        return result

    def get_map(self, query: MapQuery) -> ImageResult:
        """Fetch the single tile ``query`` covers; raises SourceError for other queries."""
        result = self.get_tile(self.tile_coord(query))
        if result is None:
            blank = Image.new("RGBA", query.size, (255, 255, 255, 0))
            return ImageResult(blank, format=query.format, size=query.size, transparent=True)
        return result

    def tile_coord(self, query: MapQuery) -> TileCoord:
        """The grid tile whose bbox and size equal the query; raises SourceError if none."""
        grid = self.grid
        tile_width, tile_height = (int(v) for v in grid.tile_size)
        if not query.srs.is_same_as(grid.srs) or tuple(query.size) != (tile_width, tile_height):
            raise SourceError(f"invalid tile request: {_describe_query(query)}")
        res = (query.bbox[2] - query.bbox[0]) / tile_width
        level = next(
            (
                z
                for z, level_res in enumerate(grid.resolutions)
                if abs(level_res - res) <= res * 0.01
            ),
            None,
        )
        if level is None:
            raise SourceError(f"invalid tile request: {_describe_query(query)}")
        level_res = grid.resolutions[level]
        tolerance = level_res * 0.01
        coord = self._direct_coord(query, level)
        if _bbox_equal(grid.tile_bbox(coord), query.bbox, tolerance):
            return coord
        # Fall back to the grid's own tile search should its numbering differ.
        try:
            affected = grid.affected_level_tiles(query.bbox, level)
        except MapProxyError:
            affected = None
        for candidate in affected.tiles if affected is not None else ():
            if candidate is not None and _bbox_equal(
                grid.tile_bbox(candidate), query.bbox, tolerance
            ):
                return candidate
        raise SourceError(f"invalid tile request: {_describe_query(query)}")

    def _direct_coord(self, query: MapQuery, level: int) -> TileCoord:
        grid = self.grid
        res = grid.resolutions[level]
        tile_width = grid.tile_size[0] * res
        tile_height = grid.tile_size[1] * res
        x = round((query.bbox[0] - grid.bbox[0]) / tile_width)
        if grid.origin == "nw":
            y = round((grid.bbox[3] - query.bbox[3]) / tile_height)
        else:
            y = round((query.bbox[1] - grid.bbox[1]) / tile_height)
        return TileCoord(x, y, level)


def _bbox_equal(a: tuple[float, ...], b: tuple[float, ...], tolerance: float) -> bool:
    return all(abs(p - q) <= tolerance for p, q in zip(a, b, strict=True))


def _describe_query(query: MapQuery) -> str:
    bbox = ",".join(f"{v:.6f}" for v in query.bbox)
    return f"bbox {bbox} size {query.size[0]}x{query.size[1]} srs {query.srs.code}"
