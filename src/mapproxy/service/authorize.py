"""The authorization API: a callable a WSGI middleware puts in ``environ['mapproxy.authorize']``.

Called as ``authorize(service, layers, environ=environ, query_extent=...)``; the answer
is a dict with ``authorized`` (``full``, ``partial``, ``none``, ``unauthenticated``),
for ``partial`` a ``layers`` dict of ``{name: {feature: True, limited_to: {...}}}`` and
optionally a request-wide ``limited_to``. Without the key everything is allowed, and
services only pay one dict lookup per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Response

from mapproxy.grid.tile_grid import TileCoord
from mapproxy.image.blank import blank_image
from mapproxy.image.encode import encode_image
from mapproxy.image.options import ImageOptions
from mapproxy.image.result import ImageResult
from mapproxy.layer.base import TileLayer
from mapproxy.layer.limit import CLIP_ALL, Clip, LimitArea, apply_clip, clip_for, parse_limited_to
from mapproxy.service.base import no_cache
from mapproxy.srs import BBox

AUTHORIZE_KEY = "mapproxy.authorize"

QueryExtent = tuple[str, BBox]

_EMPTY: Mapping[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Authorization:
    """The answer of one authorization call.

    ``status`` is ``full``, ``partial``, ``forbidden`` or ``unauthenticated``; anything
    a callback answers other than full/partial/unauthenticated counts as forbidden.
    A ``full`` answer has neither layer rules nor limits.
    """

    status: str
    layers: Mapping[str, Any] = field(default_factory=dict)
    limited_to: LimitArea | None = None

    @classmethod
    def from_result(cls, result: Any) -> Authorization:
        """Interpret a callback's return value; raises InvalidLimit for bad limits."""
        authorized = result.get("authorized") if isinstance(result, Mapping) else None
        if authorized == "full":
            return FULL
        if authorized == "unauthenticated":
            return UNAUTHENTICATED
        if authorized != "partial":
            return FORBIDDEN
        assert isinstance(result, Mapping)
        layers = result.get("layers") or {}
        if not isinstance(layers, Mapping):
            layers = {}
        limit = result.get("limited_to")
        return cls("partial", layers, parse_limited_to(limit) if limit else None)

    @property
    def denial(self) -> tuple[int, str] | None:
        """(HTTP status, message) when the whole request is refused, else None."""
        if self.status == "forbidden":
            return 403, "forbidden"
        if self.status == "unauthenticated":
            return 401, "unauthorized"
        return None

    @property
    def is_full(self) -> bool:
        """True when nothing is filtered or limited."""
        return self.status == "full"

    def permits(self, layer: str | None, feature: str) -> bool:
        """True if ``feature`` (``map``, ``tile``, ``featureinfo`` ...) of ``layer`` is allowed."""
        if self.status == "full":
            return True
        if self.status != "partial" or layer is None:
            return False
        rules = self.layers.get(layer, _EMPTY)
        return isinstance(rules, Mapping) and bool(rules.get(feature))

    def layer_limit(self, layer: str) -> LimitArea | None:
        """The layer's own ``limited_to``, if any."""
        if self.status != "partial":
            return None
        rules = self.layers.get(layer, _EMPTY)
        limit = rules.get("limited_to") if isinstance(rules, Mapping) else None
        return parse_limited_to(limit) if limit else None

    def map_limits(self, layer: str) -> tuple[LimitArea, ...]:
        """Areas a map layer is clipped to: its own and the request's (both apply)."""
        own = self.layer_limit(layer)
        return tuple(area for area in (own, self.limited_to) if area is not None)

    def tile_limit(self, layer: str) -> LimitArea | None:
        """The area a tile layer is clipped to: its own limit wins over the request's."""
        own = self.layer_limit(layer)
        return own if own is not None else self.limited_to


FULL = Authorization("full")
FORBIDDEN = Authorization("forbidden")
UNAUTHENTICATED = Authorization("unauthenticated")


def authorize(
    callback: Callable[..., Any],
    environ: Mapping[str, Any],
    service: str,
    layers: Iterable[str],
    query_extent: QueryExtent | None = None,
) -> Authorization:
    """Call the request's authorization ``callback`` and interpret its answer.

    Services look the callback up themselves (``environ.get(AUTHORIZE_KEY)``) so that
    requests without one cost a single dict lookup. ``query_extent`` is
    ``(srs_code, bbox)`` with the bbox in x/y order, or None for capabilities.
    """
    result = callback(service, list(layers), environ=environ, query_extent=query_extent)
    return Authorization.from_result(result)


def authorize_tile(
    callback: Callable[..., Any],
    environ: Mapping[str, Any],
    service: str,
    layer: TileLayer,
    coord: TileCoord,
) -> tuple[int, str] | Clip:
    """Authorize one tile of ``layer``: (status, message) if refused, else its Clip.

    The callback sees ``[layer.name]`` and the tile's bbox in the grid SRS; the tile
    needs the ``tile`` feature. ``CLIP_ALL`` means the tile is served unchanged.
    """
    grid = layer.grid
    bbox = grid.tile_bbox(coord)
    auth = authorize(callback, environ, service, [layer.name], (grid.srs.code, bbox))
    denial = auth.denial
    if denial is not None:
        return denial
    if not auth.permits(layer.name, "tile"):
        return 403, "forbidden"
    area = auth.tile_limit(layer.name)
    if area is None:
        return CLIP_ALL
    return clip_for([area], bbox, grid.tile_size, grid.srs)


def clipped_tile_response(data: bytes | None, clip: Clip, size: tuple[int, int]) -> Response:
    """A partly or fully hidden tile as PNG (also for JPEG caches), never cached."""
    png = ImageOptions(format="image/png", transparent=True)
    if clip.mask is None or not data:
        body = blank_image(size, png).as_bytes(png)
    else:
        image = ImageResult(data).as_image()
        body = encode_image(apply_clip(image, clip.mask), png)
    return no_cache(Response(body, mimetype="image/png"))
