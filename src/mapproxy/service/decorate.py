"""The ``mapproxy.decorate_img`` environ hook: let the WSGI host change images before encoding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image
from werkzeug.wrappers import Request, Response

from mapproxy.cache.base import Tile
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.image.options import ImageOptions
from mapproxy.image.result import ImageResult
from mapproxy.layer.base import TileLayer
from mapproxy.service.base import tile_response

DECORATE_IMG_KEY = "mapproxy.decorate_img"
REQUEST_KEY = "mapproxy.request"

QueryExtent = tuple[str, tuple[float, float, float, float]]


def decorate_image(
    callback: Any,
    image: ImageResult,
    service: str,
    layers: Sequence[str],
    environ: Mapping[str, Any],
    query_extent: QueryExtent,
) -> ImageResult:
    """Call the hook; a returned PIL image is wrapped, anything else must be an ImageResult."""
    result = callback(image, service, list(layers), environ=environ, query_extent=query_extent)
    if isinstance(result, Image.Image):
        return ImageResult(result, transparent=image.transparent, cacheable=image.cacheable)
    if not isinstance(result, ImageResult):
        raise TypeError(f"{DECORATE_IMG_KEY} returned {type(result).__name__}, not an image")
    return result


def decorated_tile_response(
    callback: Any,
    request: Request,
    service: str,
    layer: TileLayer,
    coord: TileCoord,
    tile: Tile,
    mimetype: str,
    max_age_seconds: int,
) -> Response:
    """A tile response after the hook; ETag/cache headers stay those of the cached tile.

    When the hook returns the very object it was given, the tile bytes go out untouched;
    otherwise the returned image is encoded in the tile format.
    """
    data = tile.data or b""
    original = ImageResult(data, format=mimetype, size=layer.grid.tile_size)
    grid = layer.grid
    query_extent: QueryExtent = (grid.srs.code, grid.tile_bbox(coord))
    environ = request.environ
    result = decorate_image(callback, original, service, [layer.name], environ, query_extent)
    if result is not original:
        options = getattr(layer.tile_manager, "image_options", None)
        if not isinstance(options, ImageOptions) or options.mime_type != mimetype:
            options = ImageOptions(format=mimetype if mimetype != "image/mixed" else "image/png")
        encoded = result.as_bytes(options)
        tile = Tile(tile.coord, encoded, timestamp=tile.timestamp, cacheable=tile.cacheable)
    return tile_response(request, tile, mimetype, max_age_seconds)
