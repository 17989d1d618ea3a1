"""WMTS GetFeatureInfo: a pixel of one tile, answered by the layer's info sources."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from mapproxy.errors import MapProxyError
from mapproxy.grid.tile_grid import TileCoord, TileGrid
from mapproxy.service.authorize import AUTHORIZE_KEY, authorize
from mapproxy.service.base import no_cache
from mapproxy.service.featureinfo import point_in, query_sources
from mapproxy.service.wmts.tile_sets import WMTSError, WMTSTileSet
from mapproxy.source.featureinfo import FeatureInfoQuery, info_type, merge_docs
from mapproxy.srs import BBox
from mapproxy.util.lazy import lazy_module

if TYPE_CHECKING:
    import shapely
else:  # loaded on first use: shapely and numpy cost ~14 MB
    shapely = lazy_module("shapely")

log = logging.getLogger("mapproxy.service.wmts")


class InfoFormats:
    """The configured ``featureinfo_formats``: (mimetype, suffix) pairs in config order."""

    def __init__(self, formats: Sequence[tuple[str, str]] = ()) -> None:
        self.formats = tuple(formats)
        self._by_mimetype = {mimetype: mimetype for mimetype, _ in self.formats}
        self._by_suffix = {suffix: mimetype for mimetype, suffix in self.formats}

    def from_kvp(self, value: str) -> str:
        """The mimetype for an INFOFORMAT value (a configured mimetype or suffix)."""
        mimetype = self._by_mimetype.get(value) or self._by_suffix.get(value)
        if mimetype is None:
            raise WMTSError(f"unknown infoformat: {value}", "InvalidParameterValue")
        return mimetype

    def from_suffix(self, suffix: str) -> str:
        """The mimetype for the ``{InfoFormat}`` suffix of a RESTful URL."""
        mimetype = self._by_suffix.get(suffix)
        if mimetype is None:
            raise WMTSError(f"unknown infoformat: {suffix}", "InvalidParameterValue")
        return mimetype


def _reserialized(body: bytes) -> bytes:
    """An XML answer as lxml writes it (no XML declaration, like merged answers)."""
    from lxml import etree

    try:
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False))
    except (etree.LxmlError, ValueError):
        return body
    return bytes(etree.tostring(root))


def parse_pixel(i_value: str, j_value: str, tile_size: tuple[int, int]) -> tuple[int, int]:
    """(I, J) inside a tile; raises PointIJOutOfRange (400)."""
    try:
        i, j = int(i_value), int(j_value)
    except ValueError:
        raise WMTSError(
            f"invalid point I={i_value}, J={j_value}", "PointIJOutOfRange", "i"
        ) from None
    if not 0 <= i < tile_size[0]:
        raise WMTSError(f"I={i_value} is outside the tile", "PointIJOutOfRange", "i")
    if not 0 <= j < tile_size[1]:
        raise WMTSError(f"J={j_value} is outside the tile", "PointIJOutOfRange", "j")
    return i, j


def tile_bbox(grid: TileGrid, level: int, col: int, row: int) -> BBox:
    """The bbox of WMTS tile (``level``, ``col``, ``row`` counted from the top).

    Computed from the top left corner as the WMTS standard does (maxx = minx + span),
    which gives the same doubles as the reference.
    """
    res = grid.resolution(level)
    width, height = grid.tile_size
    span_x, span_y = res * width, res * height
    minx = grid.bbox[0] + col * span_x
    maxy = grid.bbox[3] - row * span_y
    return (minx, maxy - span_y, minx + span_x, maxy)


def featureinfo_response(
    environ: Mapping[str, Any],
    tile_set: WMTSTileSet,
    tile: TileCoord,
    pos: tuple[int, int],
    mimetype: str,
) -> Response:
    """The merged answer of the layer's info sources for pixel ``pos`` of a tile.

    ``tile`` is the WMTS tile (column, row from the top, level), already checked
    against the grid; the query is the tile's bbox and size in the grid SRS.
    Authorization: ``wmts.featureinfo`` with the layer name and tile bbox, the
    layer needs the ``featureinfo`` feature; outside its limit the answer is empty.
    """
    layer = tile_set.layer
    grid = layer.grid
    query = FeatureInfoQuery(
        bbox=tile_bbox(grid, tile.z, tile.x, tile.y),
        size=grid.tile_size,
        srs=grid.srs,
        pos=pos,
        info_format=mimetype,
    )
    sources = list(layer.info_sources)
    callback = environ.get(AUTHORIZE_KEY)
    if callback is not None:
        auth = authorize(
            callback, environ, "wmts.featureinfo", [layer.name], (grid.srs.code, query.bbox)
        )
        denial = auth.denial
        if denial is not None:
            raise WMTSError(denial[1], status=denial[0])
        if not auth.permits(layer.name, "featureinfo"):
            raise WMTSError("forbidden", status=403)
        area = auth.tile_limit(layer.name)
        if area is not None and not point_in(shapely.Point(query.coord), [area], query):
            sources = []
    try:
        docs = query_sources(sources, query)
    except MapProxyError as error:
        log.warning("GetFeatureInfo of %s failed: %s", layer.name, error)
        raise WMTSError(str(error)) from error
    kind = info_type(mimetype)
    body = (
        _reserialized(docs[0].body) if kind == "xml" and len(docs) == 1 else merge_docs(docs, kind)
    )
    content_type = f"{mimetype}; charset=utf-8" if mimetype.startswith("text/") else mimetype
    return no_cache(Response(body, content_type=content_type))
