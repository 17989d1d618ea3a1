"""KML super-overlays (``/kml``): region-based NetworkLinks over the tile layers.

Tiles are addressed with internal levels and south-west row numbering (no TMS
profile offset). Every tile document links to its (up to) four subtiles and shows
their images as GroundOverlays.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from werkzeug.wrappers import Request, Response

from mapproxy.errors import MapProxyError, TileOutsideGrid
from mapproxy.grid.tile_grid import TileCoord, TileGrid
from mapproxy.layer.base import TileLayer
from mapproxy.layer.limit import CLIP_ALL
from mapproxy.service.authorize import AUTHORIZE_KEY, authorize_tile, clipped_tile_response
from mapproxy.service.base import VARY_HEADER, no_cache, script_url, tile_response, xml_safe
from mapproxy.service.tms import OUTSIDE_MESSAGE, TEXT_CONTENT_TYPE, tile_index
from mapproxy.srs import SRS, BBox, bbox_intersection, get_srs

log = logging.getLogger("mapproxy.service.kml")

KML_CONTENT_TYPE = "application/vnd.google-earth.kml+xml"
KML_NAMESPACE = "http://www.opengis.net/kml/2.2"

# Without a grid part, layer names fall back to these grids (in this order).
_FALLBACK_SUFFIXES = ("_EPSG4326", "_EPSG900913")
_WEB_MERCATOR_CODES = frozenset(
    {"EPSG:3857", "EPSG:900913", "EPSG:102100", "EPSG:102113", "EPSG:3785"}
)
_MERCATOR_MAX_Y = 20037508.342789244
# The reference maps y values this close to the web mercator edge to +-90 degrees
# (observed on MapProxy 7.0.0: 20037508.25 .. 20037508.44 give 90, 20037508.2 does not).
_MERCATOR_EDGE_TOLERANCE = 0.1

_SEGMENT = r"([^/]+)"
_TILE_RE = re.compile(
    rf"^/kml/{_SEGMENT}(?:/{_SEGMENT})?/(-?[0-9]+)/(-?[0-9]+)/(-?[0-9]+)\.(\w+)/?\Z"
)
_LAYER_RE = re.compile(rf"^/kml/{_SEGMENT}(?:/{_SEGMENT})?/?\Z")


@dataclass(frozen=True, slots=True)
class KMLTileSet:
    """One tile layer as published by KML: ``path`` is ``<layer>/<grid part>``."""

    layer: TileLayer
    path: str
    extension: str
    mimetype: str
    grid_sizes: tuple[tuple[int, int], ...]
    is_sw: bool

    def internal_coord(self, x: int, y: int, z: int) -> TileCoord | None:
        """The grid's own coordinate of the south-west numbered tile, None if outside."""
        if not 0 <= z < len(self.grid_sizes):
            return None
        cols, rows = self.grid_sizes[z]
        if not (0 <= x < cols and 0 <= y < rows):
            return None
        return TileCoord(x, y if self.is_sw else rows - 1 - y, z)


class KMLService:
    """Serves ``/kml``: KML super-overlay documents and the tile images they reference.

    ``use_grid_names`` names tile sets by grid name instead of ``EPSGnnnn``;
    ``max_tile_age_seconds`` is the ``max-age`` of tiles and documents.
    """

    def __init__(
        self,
        layers: Sequence[TileLayer],
        md: Mapping[str, Any],
        use_grid_names: bool = False,
        max_tile_age_seconds: int = 259200,
    ) -> None:
        self.md = md
        self.use_grid_names = use_grid_names
        self.max_tile_age_seconds = max_tile_age_seconds
        self._separator = "/" if use_grid_names else "_"
        self._wgs84 = get_srs("EPSG:4326")
        self._tile_sets: dict[str, KMLTileSet] = {}
        for layer in layers:
            grid = layer.grid
            grid_part = layer.grid_name if use_grid_names else grid.srs.srs_code_no_colon
            self._tile_sets[f"{layer.name}{self._separator}{grid_part}"] = KMLTileSet(
                layer=layer,
                path=f"{layer.name}/{grid_part}",
                extension=layer.extension,
                mimetype=layer.format.split(";", 1)[0].strip(),
                grid_sizes=tuple(grid.grid_size(level) for level in range(grid.levels)),
                is_sw=grid.origin == "sw",
            )

    def tile_set_paths(self) -> list[tuple[TileLayer, str]]:
        """Every published tile layer with its ``<layer>/<grid part>`` path below ``/kml``."""
        return [(tile_set.layer, tile_set.path) for tile_set in self._tile_sets.values()]

    def handle(self, request: Request) -> Response:
        """Answer a ``/kml`` request."""
        path = request.path
        match = _TILE_RE.match(path)
        if match is not None:
            layer_part, grid_part, z, x, y, ext = match.groups()
            coords: tuple[int, int, int] = (tile_index(x), tile_index(y), tile_index(z))
        else:
            match = _LAYER_RE.match(path)
            if match is None:
                return _text_error(f"invalid request ({path})", 404)
            layer_part, grid_part = match.groups()
            coords, ext = (0, 0, 0), "kml"
        tile_set = self._lookup(layer_part, grid_part)
        if tile_set is None:
            return _text_error(f"unknown layer: {layer_part}", 404)
        if ext != "kml" and ext != tile_set.extension:
            message = f"invalid format ({ext}). this tile set only supports ({tile_set.extension})"
            return _text_error(message, 404)
        coord = tile_set.internal_coord(*coords)
        if coord is None:
            return _text_error(OUTSIDE_MESSAGE, 404)
        if ext == "kml":
            return self._document(request, tile_set, layer_part, coords, coord)
        return self._tile(request, tile_set, coord)

    def _lookup(self, layer_part: str, grid_part: str | None) -> KMLTileSet | None:
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

    def _tile(self, request: Request, tile_set: KMLTileSet, coord: TileCoord) -> Response:
        layer = tile_set.layer
        clip = CLIP_ALL
        callback = request.environ.get(AUTHORIZE_KEY)
        if callback is not None:
            access = authorize_tile(callback, request.environ, "kml", layer, coord)
            if isinstance(access, tuple):
                return _denied(*access)
            clip = access
            if clip.covers_nothing:
                return clipped_tile_response(None, clip, layer.grid.tile_size)
        try:
            tile = layer.load_tile(coord, dimensions=layer.default_dimensions or None)
        except TileOutsideGrid:
            return _text_error(OUTSIDE_MESSAGE, 404)
        except MapProxyError as exc:
            log.error("error while loading tile %s of %s: %s", coord, tile_set.path, exc)
            return _text_error(str(exc), 500)
        if not clip.covers_all:
            return clipped_tile_response(tile.data, clip, layer.grid.tile_size)
        return tile_response(request, tile, tile_set.mimetype, self.max_tile_age_seconds)

    def _document(
        self,
        request: Request,
        tile_set: KMLTileSet,
        name: str,
        coords: tuple[int, int, int],
        coord: TileCoord,
    ) -> Response:
        layer = tile_set.layer
        callback = request.environ.get(AUTHORIZE_KEY)
        if callback is not None:
            # documents need the same permission as the tile they describe
            access = authorize_tile(callback, request.environ, "kml", layer, coord)
            if isinstance(access, tuple):
                return _denied(*access)
        try:
            body = self._render(request, tile_set, xml_safe(name), coords, coord)
        except MapProxyError as exc:
            log.error("error while rendering KML for %s %s: %s", tile_set.path, coords, exc)
            return _text_error(str(exc), 500)
        return self._document_response(request, body.encode("utf-8"))

    def _render(
        self,
        request: Request,
        tile_set: KMLTileSet,
        name: str,
        coords: tuple[int, int, int],
        coord: TileCoord,
    ) -> str:
        grid = tile_set.layer.grid
        bbox = grid.tile_bbox(coord)
        bbox = bbox_intersection(bbox, grid.bbox) or bbox
        base = f"{script_url(request)}/kml/{quote(tile_set.path)}"
        width = grid.tile_size[0]
        min_lod = width // 2
        x, y, z = coords
        links: list[str] = []
        overlays: list[str] = []
        children = ((2 * x, 2 * y + 1), (2 * x + 1, 2 * y + 1), (2 * x, 2 * y), (2 * x + 1, 2 * y))
        for sub_x, sub_y in children:
            sub_coord = tile_set.internal_coord(sub_x, sub_y, z + 1)
            if sub_coord is None:
                continue
            box = self._lonlat_box(grid, grid.tile_bbox(sub_coord))
            box_text = _lat_lon_box(box, "          ")
            label = f"({sub_x}, {sub_y}, {z + 1})"
            url = escape(f"{base}/{z + 1}/{sub_x}/{sub_y}")
            links.append(
                _NETWORK_LINK.format(
                    name=escape(f"{name} - {label}"), box_text=box_text, min_lod=min_lod, url=url
                )
            )
            overlays.append(
                _GROUND_OVERLAY.format(
                    name=label,
                    box_text=box_text,
                    min_lod=min_lod,
                    max_lod=width * 3,
                    order=z + 1,
                    url=f"{url}.{escape(tile_set.extension)}",
                    lat_lon_box=_lat_lon_box(box, "        "),
                )
            )
        return (
            '<?xml version="1.0"?>\n'
            f'<kml xmlns="{KML_NAMESPACE}">\n'
            "  <Document>\n"
            f"    <name>{escape(name)}</name>\n"
            "    <Region>\n"
            "      <LatLonAltBox>\n"
            f"{_lat_lon_box(self._lonlat_box(grid, bbox), '        ')}"
            "      </LatLonAltBox>\n"
            "    </Region>\n"
            f"{''.join(links)}{''.join(overlays)}"
            "    </Document>\n"
            "</kml>\n"
        )

    def _lonlat_box(self, grid: TileGrid, bbox: BBox) -> BBox:
        """``bbox`` (grid SRS) in WGS84 from its four corners, as (west, south, east, north)."""
        return _corners_to_lonlat(grid.srs, self._wgs84, bbox)

    def _document_response(self, request: Request, body: bytes) -> Response:
        etag = hashlib.md5(body).hexdigest()
        cache_control = (
            f"public, max-age={self.max_tile_age_seconds}, s-maxage={self.max_tile_age_seconds}"
        )
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None and etag in {
            value.strip().removeprefix("W/").strip('"') for value in if_none_match.split(",")
        }:
            response = Response(status=304)
            response.headers.remove("Content-Type")
            response.headers["Vary"] = VARY_HEADER
        else:
            response = Response(body)
            response.headers["Content-Type"] = KML_CONTENT_TYPE
        response.headers["ETag"] = etag
        response.headers["Cache-control"] = cache_control
        return response


def _corners_to_lonlat(srs: SRS, wgs84: SRS, bbox: BBox) -> BBox:
    minx, miny, maxx, maxy = bbox
    corners = [(minx, miny), (minx, maxy), (maxx, maxy), (maxx, miny)]
    points = srs.transform_to(wgs84, corners)
    if srs.code in _WEB_MERCATOR_CODES:
        points = [
            (lon, 90.0 if y > 0 else -90.0)
            if abs(abs(y) - _MERCATOR_MAX_Y) < _MERCATOR_EDGE_TOLERANCE
            else (lon, lat)
            for (lon, lat), (_, y) in zip(points, corners, strict=True)
        ]
    lons = [lon for lon, _ in points]
    lats = [lat for _, lat in points]
    return (min(lons), min(lats), max(lons), max(lats))


def _lat_lon_box(box: BBox, indent: str) -> str:
    west, south, east, north = box
    return (
        f"{indent}<north>{north:f}</north><south>{south:f}</south>\n"
        f"{indent}<east>{east:f}</east><west>{west:f}</west>\n"
    )


def _text_error(message: str, status: int) -> Response:
    response = Response(message, status=status)
    response.headers["Content-Type"] = TEXT_CONTENT_TYPE
    return no_cache(response)


def _denied(status: int, message: str) -> Response:
    # the reference answers authorization errors as text/plain without charset
    response = Response(message, status=status)
    response.headers["Content-Type"] = "text/plain"
    return no_cache(response)


_NETWORK_LINK = """\
    <NetworkLink>
      <name>{name}</name>
      <Region>
        <LatLonAltBox>
{box_text}        </LatLonAltBox>
        <Lod>
          <minLodPixels>{min_lod}</minLodPixels>
          <maxLodPixels>-1</maxLodPixels>
        </Lod>
      </Region>
      <Link>
        <href>{url}.kml</href>
        <viewRefreshMode>onRegion</viewRefreshMode>
        <viewFormat/>
      </Link>
    </NetworkLink>
"""

_GROUND_OVERLAY = """\
    <GroundOverlay>
      <name>{name}</name>
      <Region>
        <LatLonAltBox>
{box_text}        </LatLonAltBox>
        <Lod>
          <minLodPixels>{min_lod}</minLodPixels>
          <maxLodPixels>{max_lod}</maxLodPixels>
          <minFadeExtent>8</minFadeExtent>
          <maxFadeExtent>8</maxFadeExtent>
        </Lod>
      </Region>
      <drawOrder>{order}</drawOrder>
      <Icon>
        <href>{url}</href>
      </Icon>
      <LatLonBox>
{lat_lon_box}      </LatLonBox>
    </GroundOverlay>
"""
