"""TMS 1.0.0 (``/tms``) and the plain tile service (``/tiles``)."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from werkzeug.wrappers import Request, Response

from mapproxy.cache.base import Tile
from mapproxy.errors import MapProxyError, TileOutsideGrid
from mapproxy.grid.tile_grid import TileCoord, TileGrid
from mapproxy.layer.base import TileLayer
from mapproxy.layer.limit import CLIP_ALL
from mapproxy.service.authorize import (
    AUTHORIZE_KEY,
    authorize,
    authorize_tile,
    clipped_tile_response,
)
from mapproxy.service.base import (
    no_cache,
    query_params,
    script_url,
    tile_response,
    xml_response,
    xml_safe,
)
from mapproxy.service.decorate import DECORATE_IMG_KEY, decorated_tile_response
from mapproxy.srs import bbox_intersection

log = logging.getLogger("mapproxy.service.tms")

XML_CONTENT_TYPE = "text/xml; charset=utf-8"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
OUTSIDE_MESSAGE = "The requested tile is outside the bounding box of the tile map."
GLOBAL_PROFILES = frozenset({"global-mercator", "global-geodetic"})

_ORIGINS = {"sw": "sw", "ll": "sw", "nw": "nw", "ul": "nw"}
# Layer names without a grid part fall back to these grids (in this order).
_FALLBACK_SUFFIXES = ("_EPSG900913", "_EPSG4326")
# Tile indices with more digits than this are outside every grid; skipping int()
# keeps absurd inputs cheap (and below Python's int-conversion digit limit).
_MAX_INDEX_DIGITS = 18
_HUGE_INDEX = 10**18  # larger than any grid, smaller than what breaks int math
_SQRT2 = math.sqrt(2)
# Placeholder for the public base URL in prebuilt documents (never valid in XML text).
_BASE = "\x00BASE\x00"

_SEGMENT = r"([^/]+)"
_TILE = r"/(-?[0-9]+)/(-?[0-9]+)/(-?[0-9]+)\.(\w+)/?\Z"
_TMS_TILE_RE = re.compile(rf"^/tms/1\.0\.0/{_SEGMENT}(?:/{_SEGMENT})?{_TILE}")
_TMS_MAP_RE = re.compile(rf"^/tms/1\.0\.0/{_SEGMENT}(?:/{_SEGMENT})?\Z")
_TILES_TILE_RE = re.compile(rf"^/tiles/(?:1\.0\.0/)?{_SEGMENT}(?:/{_SEGMENT})?{_TILE}")


def tile_index(text: str) -> int:
    """An integer path/parameter value; huge values map to a number outside any grid."""
    digits = len(text) - (text[0] == "-") if text else 0
    if digits > _MAX_INDEX_DIGITS:
        return -_HUGE_INDEX if text[0] == "-" else _HUGE_INDEX
    return int(text)


def format_number(value: float) -> str:
    """A float as Python prints it (``78271.51696402048``, ``200000.0``)."""
    return repr(float(value))


def tile_levels(grid: TileGrid) -> tuple[int, ...]:
    """Internal levels published as ``/tiles`` levels 0, 1, ...

    Grids with a resolution factor of sqrt(2) publish only every second level.
    """
    levels = tuple(range(grid.levels))
    return levels[::2] if is_sqrt2_grid(grid.resolutions) else levels


def tms_levels(grid: TileGrid) -> tuple[int, ...]:
    """Internal levels published as ``/tms`` levels 0, 1, ...

    Like ``tile_levels``; the global profiles also skip the first level (TMS level 0
    has 2x2 resp. 2x1 tiles).
    """
    levels = tile_levels(grid)
    return levels[1:] if grid.tms_profile in GLOBAL_PROFILES else levels


def is_sqrt2_grid(resolutions: Sequence[float]) -> bool:
    """True if every level halves the pixel area of the previous one (res factor sqrt 2)."""
    if len(resolutions) < 2:
        return False
    return all(
        math.isclose(coarse / fine, _SQRT2, rel_tol=1e-6) for coarse, fine in pairwise(resolutions)
    )


@dataclass(slots=True)
class TileSet:
    """One tile layer with everything a request needs, computed once."""

    layer: TileLayer
    path: str
    extension: str
    mimetype: str
    load_tile: Callable[[TileCoord], Tile]
    grid_sizes: tuple[tuple[int, int], ...]
    is_sw: bool
    tile_levels: tuple[int, ...]
    tms_levels: tuple[int, ...]
    tile_map_service_entry: str
    tile_map_head: str
    tile_set_entries: tuple[tuple[int, str], ...]


class TileService:
    """Serves ``/tms`` (TMS 1.0.0, profile levels, sw rows) and ``/tiles`` (internal levels).

    ``origin`` is the default row numbering of ``/tiles`` (``sw``/``nw``); without it
    rows follow each grid's own origin. ``use_grid_names`` names tile sets by grid
    name instead of ``EPSGnnnn``.
    """

    def __init__(
        self,
        layers: Sequence[TileLayer],
        md: Mapping[str, Any],
        use_grid_names: bool = False,
        origin: str | None = None,
        max_tile_age_seconds: int = 259200,
    ) -> None:
        self.md = md
        self.use_grid_names = use_grid_names
        self.origin = _ORIGINS.get(origin.lower()) if origin else None
        if origin and self.origin is None:
            raise ValueError(f"unknown tms origin {origin!r} (use sw or nw)")
        self.max_tile_age_seconds = max_tile_age_seconds
        self._separator = "/" if use_grid_names else "_"
        self._tile_sets: dict[str, TileSet] = {}
        levels_by_grid: dict[int, _GridLevels] = {}  # many layers share a grid
        for layer in layers:
            grid_part = layer.grid_name if use_grid_names else layer.grid.srs.srs_code_no_colon
            key = f"{layer.name}{self._separator}{grid_part}"
            # Like a dict update: the last layer wins, the listing keeps the first slot.
            grid_levels = levels_by_grid.get(id(layer.grid))
            if grid_levels is None:
                grid_levels = levels_by_grid[id(layer.grid)] = _grid_levels(layer.grid)
            path = f"{layer.name}/{grid_part}"
            self._tile_sets[key] = _build_tile_set(layer, path, grid_levels)
        self._root_template = _root_document(md)
        self._capabilities_template = _capabilities_document(md, self._tile_sets.values())

    def handle(self, request: Request) -> Response:
        """Answer a ``/tms`` or ``/tiles`` request."""
        path = request.path
        if path.startswith("/tiles"):
            return self._handle_tiles(request, path)
        return self._handle_tms(request, path)

    # /tiles -------------------------------------------------------------------

    def _handle_tiles(self, request: Request, path: str) -> Response:
        match = _TILES_TILE_RE.match(path)
        if match is None:
            return _text_error(f"invalid request ({path})", 404)
        layer_part, grid_part, z, x, y, ext = match.groups()
        tile_set = self.lookup(layer_part, grid_part)
        if tile_set is None:
            return _text_error(f"unknown layer: {layer_part}", 404)
        if ext != tile_set.extension:
            return _text_error(_format_message(ext, tile_set.extension), 404)
        origin = self.origin
        if request.query_string:
            requested = query_params(request).get("origin", "").lower()
            if requested in ("sw", "nw"):
                origin = requested
        flip = origin is not None and (origin == "sw") != tile_set.is_sw
        coord = _internal_coord(
            tile_set, tile_set.tile_levels, tile_index(z), tile_index(x), tile_index(y), flip
        )
        if coord is None:
            return _text_error(OUTSIDE_MESSAGE, 404)
        return self._tile_response(request, tile_set, coord, _text_error)

    # /tms ---------------------------------------------------------------------

    def _handle_tms(self, request: Request, path: str) -> Response:
        match = _TMS_TILE_RE.match(path)
        if match is not None:
            layer_part, grid_part, z, x, y, ext = match.groups()
            tile_set = self.lookup(layer_part, grid_part)
            if tile_set is None:
                return _xml_error(f"unknown layer: {layer_part}", 404)
            if ext != tile_set.extension:
                return _xml_error(_format_message(ext, tile_set.extension), 404)
            coord = _internal_coord(
                tile_set,
                tile_set.tms_levels,
                tile_index(z),
                tile_index(x),
                tile_index(y),
                not tile_set.is_sw,
            )
            if coord is None:
                return _xml_error(OUTSIDE_MESSAGE, 404)
            return self._tile_response(request, tile_set, coord, _xml_error)
        if path in ("/tms", "/tms/"):
            return self._root(request)
        if path in ("/tms/1.0.0", "/tms/1.0.0/"):
            return self._capabilities(request)
        match = _TMS_MAP_RE.match(path)
        if match is not None:
            layer_part, grid_part = match.groups()
            tile_set = self.lookup(layer_part, grid_part)
            if tile_set is None:
                return _xml_error(f"unknown layer: {layer_part}", 404)
            href_path = layer_part if grid_part is None else f"{layer_part}/{grid_part}"
            return self._tile_map(request, tile_set, href_path)
        return _xml_error(f"invalid request ({path})", 404)

    def tile_sets(self) -> list[TileSet]:
        """The published tile sets (one per layer and grid)."""
        return list(self._tile_sets.values())

    def lookup(self, layer_part: str, grid_part: str | None) -> TileSet | None:
        """The tile set for a URL's layer (and grid) part, or None."""
        tile_sets = self._tile_sets
        if grid_part is not None:
            return tile_sets.get(f"{layer_part}{self._separator}{grid_part}")
        tile_set = tile_sets.get(layer_part)
        if tile_set is None and not self.use_grid_names:
            for suffix in _FALLBACK_SUFFIXES:
                tile_set = tile_sets.get(layer_part + suffix)
                if tile_set is not None:
                    break
        return tile_set

    def _tile_response(
        self,
        request: Request,
        tile_set: TileSet,
        coord: TileCoord,
        error: Callable[[str, int], Response],
    ) -> Response:
        clip = CLIP_ALL
        callback = request.environ.get(AUTHORIZE_KEY)
        if callback is not None:
            access = authorize_tile(callback, request.environ, "tms", tile_set.layer, coord)
            if isinstance(access, tuple):
                return error(access[1], access[0])
            clip = access
            if clip.covers_nothing:
                return clipped_tile_response(None, clip, tile_set.layer.grid.tile_size)
        try:
            tile = tile_set.load_tile(coord)
        except TileOutsideGrid:
            return error(OUTSIDE_MESSAGE, 404)
        except MapProxyError as exc:
            log.error("error while loading tile %s of %s: %s", coord, tile_set.path, exc)
            return error(str(exc), 500)
        if not clip.covers_all:
            return clipped_tile_response(tile.data, clip, tile_set.layer.grid.tile_size)
        decorate = request.environ.get(DECORATE_IMG_KEY)
        if decorate is not None:
            return decorated_tile_response(
                decorate,
                request,
                "tms",
                tile_set.layer,
                coord,
                tile,
                tile_set.mimetype,
                self.max_tile_age_seconds,
            )
        return tile_response(request, tile, tile_set.mimetype, self.max_tile_age_seconds)

    # documents ----------------------------------------------------------------

    def _root(self, request: Request) -> Response:
        body = self._root_template.replace(_BASE, _base_url(request))
        return xml_response(body, XML_CONTENT_TYPE)

    def _capabilities(self, request: Request) -> Response:
        template = self._capabilities_template
        callback = request.environ.get(AUTHORIZE_KEY)
        if callback is not None:
            names = list(dict.fromkeys(ts.layer.name for ts in self._tile_sets.values()))
            auth = authorize(callback, request.environ, "tms", names)
            denial = auth.denial
            if denial is not None:
                return _xml_error(denial[1], denial[0])
            if not auth.is_full:
                tile_sets = [
                    ts for ts in self._tile_sets.values() if auth.permits(ts.layer.name, "tile")
                ]
                template = _capabilities_document(self.md, tile_sets)
        body = template.replace(_BASE, _base_url(request))
        return xml_response(body, XML_CONTENT_TYPE)

    def _tile_map(self, request: Request, tile_set: TileSet, href_path: str) -> Response:
        callback = request.environ.get(AUTHORIZE_KEY)
        if callback is not None:
            name = tile_set.layer.name
            auth = authorize(callback, request.environ, "tms", [name])
            denial = auth.denial or (None if auth.permits(name, "tile") else (403, "forbidden"))
            if denial is not None:
                return _xml_error(denial[1], denial[0])
        prefix = f"{_base_url(request)}/tms/1.0.0/{escape(quote(href_path))}/"
        entries = "".join(
            f'    <TileSet href="{prefix}{order}" units-per-pixel="{res}" order="{order}" />\n'
            for order, res in tile_set.tile_set_entries
        )
        body = f"{tile_set.tile_map_head}{entries}  </TileSets>\n</TileMap>"
        return xml_response(body, XML_CONTENT_TYPE)


def _base_url(request: Request) -> str:
    return escape(script_url(request), {'"': "&quot;"})


def _internal_coord(
    tile_set: TileSet, levels: tuple[int, ...], level: int, x: int, y: int, flip: bool
) -> TileCoord | None:
    """The internal coordinate for a request, or None if outside the grid.

    ``levels`` maps the published level to the internal one; ``flip`` converts the
    requested row numbering to the grid's own.
    """
    if not 0 <= level < len(levels):
        return None
    z = levels[level]
    cols, rows = tile_set.grid_sizes[z]
    if not (0 <= x < cols and 0 <= y < rows):
        return None
    if flip:
        y = rows - 1 - y
    return TileCoord(x, y, z)


def _format_message(requested: str, supported: str) -> str:
    return f"invalid format ({requested}). this tile set only supports ({supported})"


def _xml_error(message: str, status: int) -> Response:
    body = (
        '<?xml version="1.0"?>\n<TileMapServerError>\n'
        f"    <Message>{escape(xml_safe(message))}</Message>\n</TileMapServerError>"
    )
    return no_cache(xml_response(body, XML_CONTENT_TYPE, status))


def _text_error(message: str, status: int) -> Response:
    response = Response(message, status=status)
    response.headers["Content-Type"] = TEXT_CONTENT_TYPE
    return no_cache(response)


def _srs_name(grid: TileGrid) -> str:
    return "OSGEO:41001" if grid.tms_profile == "global-mercator" else grid.srs.code


@dataclass(frozen=True, slots=True)
class _GridLevels:
    """The per-grid parts of a tile set: published levels and resolutions."""

    tile_levels: tuple[int, ...]
    tms_levels: tuple[int, ...]
    tile_set_entries: tuple[tuple[int, str], ...]


def _grid_levels(grid: TileGrid) -> _GridLevels:
    levels = tms_levels(grid)
    return _GridLevels(
        tile_levels=tile_levels(grid),
        tms_levels=levels,
        tile_set_entries=tuple(
            (order, format_number(grid.resolution(level))) for order, level in enumerate(levels)
        ),
    )


def _build_tile_set(layer: TileLayer, path: str, grid_levels: _GridLevels) -> TileSet:
    grid = layer.grid
    profile = grid.tms_profile
    try:
        bbox = layer.extent.bbox_for(grid.srs)
    except MapProxyError:
        bbox = grid.bbox
    bbox = bbox_intersection(bbox, grid.bbox) or grid.bbox
    minx, miny, maxx, maxy = (format_number(v) for v in bbox)
    width, height = grid.tile_size
    head = (
        '<?xml version="1.0"?>\n'
        ' <TileMap version="1.0.0">\n'
        f"  <Title>{_text(layer.title)}</Title>\n"
        "  <Abstract></Abstract>\n"
        f"  <SRS>{escape(_srs_name(grid))}</SRS>\n"
        f'  <BoundingBox minx="{minx}" miny="{miny}" maxx="{maxx}" maxy="{maxy}" />\n'
        f'  <Origin x="{minx}" y="{miny}" />\n'
        f'  <TileFormat width="{width}" height="{height}" '
        f"mime-type={_attr(layer.format)} extension={_attr(layer.extension)} />\n"
        f'  <TileSets profile="{profile}">\n'
    )
    entry = (
        f"        <TileMap title={_attr(layer.title)}\n"
        f"                 srs={_attr(_srs_name(grid))}\n"
        f'                 profile="{profile}"\n'
        f'                 href="{_BASE}/tms/1.0.0/{escape(quote(path))}" />\n'
    )
    return TileSet(
        layer=layer,
        path=path,
        extension=layer.extension,
        mimetype=layer.format.split(";", 1)[0].strip(),
        load_tile=(
            partial(layer.load_tile, dimensions=layer.default_dimensions)
            if layer.dimensions
            else layer.load_tile
        ),
        grid_sizes=grid.grid_sizes,
        is_sw=grid.origin == "sw",
        tile_levels=grid_levels.tile_levels,
        tms_levels=grid_levels.tms_levels,
        tile_map_service_entry=entry,
        tile_map_head=head,
        tile_set_entries=grid_levels.tile_set_entries,
    )


def _root_document(md: Mapping[str, Any]) -> str:
    title = str(md.get("title") or "")
    return (
        '<?xml version="1.0"?>\n'
        "    <Services>\n"
        f'    <TileMapService title={_attr(title)} version="1.0.0"\n'
        f'        href="{_BASE}/tms/1.0.0/" />\n'
        "</Services>"
    )


def _capabilities_document(md: Mapping[str, Any], tile_sets: Any) -> str:
    parts = [
        '<?xml version="1.0"?>\n',
        '    <TileMapService version="1.0.0">\n',
        f"    <Title>{_text(md.get('title'))}</Title>\n",
        f"    <Abstract>{_text(md.get('abstract'))}</Abstract>\n",
    ]
    keywords = _keyword_list(md.get("keyword_list"))
    if keywords:
        parts.append(f"    <KeywordList>{escape(keywords)}</KeywordList>\n")
    contact = md.get("contact")
    if isinstance(contact, Mapping) and contact:
        parts.append(_contact_information(contact))
    parts.append("    <TileMaps>\n")
    parts.extend(tile_set.tile_map_service_entry for tile_set in tile_sets)
    parts.append("    </TileMaps>\n</TileMapService>\n")
    return "".join(parts)


def _text(value: Any) -> str:
    return "" if value is None else escape(xml_safe(str(value)))


def _attr(value: str) -> str:
    return quoteattr(xml_safe(value))


def _keyword_list(keyword_list: Any) -> str:
    """TMS KeywordList text: quoted keywords, space separated per vocabulary entry."""
    if not keyword_list:
        return ""
    if isinstance(keyword_list, str):
        return f'"{keyword_list}"'
    groups = []
    for entry in keyword_list:
        if isinstance(entry, Mapping):
            keywords = entry.get("keywords") or []
        elif isinstance(entry, str):
            keywords = [entry]
        else:
            keywords = list(entry)
        groups.append(" ".join(f'"{keyword}"' for keyword in keywords))
    return "".join(groups)


def _contact_information(contact: Mapping[str, Any]) -> str:
    def field(key: str) -> str:
        return _text(contact.get(key))

    return (
        "    <ContactInformation>\n"
        "        <ContactPersonPrimary>\n"
        f"            <ContactPerson>{field('person')}</ContactPerson>\n"
        f"            <ContactOrganization>{field('organization')}</ContactOrganization>\n"
        "        </ContactPersonPrimary>\n"
        f"        <ContactPosition>{field('position')}</ContactPosition>\n"
        "        <ContactAddress>\n"
        f"            <Address>{field('address')}</Address>\n"
        f"            <City>{field('city')}</City>\n"
        f"            <PostCode>{field('postcode')}</PostCode>\n"
        f"            <Country>{field('country')}</Country>\n"
        "        </ContactAddress>\n"
        f"        <ContactVoiceTelephone>{field('phone')}</ContactVoiceTelephone>\n"
        f"        <ContactFacsimileTelephone>{field('fax')}</ContactFacsimileTelephone>\n"
        f"        <ContactElectronicMailAddress>{field('email')}"
        "</ContactElectronicMailAddress>\n"
        "    </ContactInformation>\n"
    )
