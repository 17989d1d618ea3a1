"""``mapproxy-util gridconf-from-ogcapitilematrixset``: OGC API TileMatrixSets as grid YAML."""

from __future__ import annotations

import json
import optparse
import re
import sys
from collections.abc import Sequence
from typing import Any

from mapproxy.errors import HTTPClientError
from mapproxy.http.client import HTTPClient
from mapproxy.script.autoconfig import dump_yaml
from mapproxy.script.wms_capabilities import error_text
from mapproxy.srs import UnknownSRS, get_srs

TILING_SCHEMES_RELS = ("http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes", "tiling-schemes")
_EPSG_URI = re.compile(r"^https?://www\.opengis\.net/def/crs/EPSG/[^/]+/(\d+)$")
_CRS84_URI = re.compile(r"^https?://www\.opengis\.net/def/crs/OGC/[^/]+/CRS84$")
_CORNERS = {"topLeft": "ul", "bottomLeft": "ll"}


class TileMatrixSetError(Exception):
    """A tile matrix set that cannot be expressed as a MapProxy grid."""


def srs_from_crs(crs: Any) -> str:
    """``EPSG:nnnn`` for an OGC CRS URI (CRS84 is EPSG:4326 with lon/lat order)."""
    if isinstance(crs, str):
        if _CRS84_URI.match(crs):
            return "EPSG:4326"
        match = _EPSG_URI.match(crs)
        if match:
            code = f"EPSG:{match.group(1)}"
            try:
                get_srs(code)
            except UnknownSRS:
                pass
            else:
                return code
    raise TileMatrixSetError(f"CRS {crs} is not supported")


def _same(matrices: list[dict[str, Any]], key: str, default: Any = None) -> Any:
    values = [matrix.get(key, default) for matrix in matrices]
    if any(value != values[0] for value in values):
        raise TileMatrixSetError(f"Tile matrix set with varying {key} depending on tile matrix")
    return values[0]


def grid_from_tile_matrix_set(tms: Any) -> dict[str, Any]:
    """The grid config (srs, bbox, origin, res, tile_size) of one TileMatrixSet document."""
    if not isinstance(tms, dict):
        raise TileMatrixSetError("not a tile matrix set document")
    srs = srs_from_crs(tms.get("crs"))
    matrices = tms.get("tileMatrices")
    if not isinstance(matrices, list) or not matrices:
        raise TileMatrixSetError("Tile matrix set without tileMatrices")
    if not all(isinstance(matrix, dict) for matrix in matrices):
        raise TileMatrixSetError("tileMatrices must be objects")
    try:
        tile_size = [_same(matrices, "tileWidth"), _same(matrices, "tileHeight")]
        origin_point = _same(matrices, "pointOfOrigin")
        corner = _same(matrices, "cornerOfOrigin", "topLeft")
        if any("variableMatrixWidths" in matrix for matrix in matrices):
            raise TileMatrixSetError("Tile matrix with variableMatrixWidths are not supported")
        if corner not in _CORNERS:
            raise TileMatrixSetError(f"cornerOfOrigin {corner} is not supported")
        x0, y0 = origin_point
        # pointOfOrigin follows the CRS axis order; grids are always x/y
        if not _CRS84_URI.match(tms["crs"]) and get_srs(srs).is_axis_order_ne:
            x0, y0 = y0, x0
        first = matrices[0]
        width = first["matrixWidth"] * tile_size[0] * first["cellSize"]
        height = first["matrixHeight"] * tile_size[1] * first["cellSize"]
        resolutions = [matrix["cellSize"] for matrix in matrices]
    except KeyError as error:
        raise TileMatrixSetError(f"missing {error.args[0]} in tile matrix") from None
    except (TypeError, ValueError):
        raise TileMatrixSetError("invalid values in tile matrix") from None
    if corner == "topLeft":
        bbox = [x0, y0 - height, x0 + width, y0]
    else:
        bbox = [x0, y0, x0 + width, y0 + height]
    return {
        "srs": srs,
        "bbox": bbox,
        "origin": _CORNERS[corner],
        "res": resolutions,
        "tile_size": tile_size,
    }


def _json_link(links: Any, rels: Sequence[str]) -> str | None:
    for link in links if isinstance(links, list) else []:
        if (
            isinstance(link, dict)
            and link.get("rel") in rels
            and link.get("type") == "application/json"
            and isinstance(link.get("href"), str)
        ):
            href: str = link["href"]
            return href
    return None


class _Fetcher:
    def __init__(self) -> None:
        self.client = HTTPClient(
            timeout_seconds=60.0, headers={"Accept": "application/json"}, hide_error_details=False
        )

    def json(self, url: str) -> Any:
        """The JSON document at ``url``; raises TileMatrixSetError."""
        try:
            body = self.client.open(url).body
        except HTTPClientError as error:
            raise TileMatrixSetError(error_text(error)) from None
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise TileMatrixSetError(f"invalid JSON from {url}: {error}") from None


def grids_from_landing_page(url: str) -> dict[str, Any]:
    """Every convertible TileMatrixSet of the OGC API at ``url``; reports the others on stderr.

    Raises TileMatrixSetError when the list of sets itself cannot be read.
    """
    fetcher = _Fetcher()
    landing = fetcher.json(url)
    list_url = _json_link(
        landing.get("links") if isinstance(landing, dict) else None, TILING_SCHEMES_RELS
    )
    if list_url is None:
        raise TileMatrixSetError("Cannot find a link to tile matrix set definitions")
    listing = fetcher.json(list_url)
    sets = listing.get("tileMatrixSets") if isinstance(listing, dict) else None
    if not isinstance(sets, list):
        raise TileMatrixSetError(f"{list_url}: no tileMatrixSets list")
    grids: dict[str, Any] = {}
    for entry in sets:
        if not isinstance(entry, dict):
            continue
        set_url = _json_link(entry.get("links"), ("self",))
        if set_url is None:
            print(
                f"Cannot handle {entry.get('id')}: no JSON link to its definition", file=sys.stderr
            )
            continue
        try:
            tms = fetcher.json(set_url)
            grid = grid_from_tile_matrix_set(tms)
        except TileMatrixSetError as error:
            print(f"Cannot handle {set_url}: {error}", file=sys.stderr)
            continue
        grids[str(tms.get("id") or entry.get("id"))] = grid
    return grids


def _parser() -> optparse.OptionParser:
    parser = optparse.OptionParser("%prog gridconf-from-ogcapitilematrixset url_to_landing_page")
    parser.prog = "mapproxy-util"
    parser.add_option("--url", help="URL to OGC API landing page.")
    return parser


def gridconf_command(argv: Sequence[str]) -> int:
    """Run ``mapproxy-util gridconf-from-ogcapitilematrixset``; returns the exit code."""
    parser = _parser()
    options, args = parser.parse_args(list(argv))
    url = options.url or (args[0] if args else None)
    if not url:
        parser.print_help()
        return 2
    try:
        grids = grids_from_landing_page(url)
    except TileMatrixSetError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    print("Configuration to add to mapproxy.yml:")
    print()
    print(dump_yaml({"grids": grids}))
    return 0
