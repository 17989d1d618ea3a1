"""WMTS tile sets (one layer in one grid), tile matrix math and exception reports."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from werkzeug.wrappers import Response

from mapproxy.cache.base import Tile
from mapproxy.errors import InvalidDimensionValue, MapProxyError, TileOutsideGrid
from mapproxy.grid.tile_grid import TileCoord, TileGrid
from mapproxy.layer.base import TileLayer
from mapproxy.service.base import no_cache, xml_response, xml_safe

log = logging.getLogger("mapproxy.service.wmts")

EXCEPTION_CONTENT_TYPE = "text/xml"
OUTSIDE_MESSAGE = "The requested tile is outside the bounding box of the tile map."
# OGC pixel size in metres; deliberately 0.28 / 1000 (not 0.00028) for identical doubles.
_PIXEL_SIZE_METRES = 0.28 / 1000
_METRES_PER_DEGREE = 111319.4907932736
_STATUS_BY_CODE = {
    "TileOutOfRange": 400,
    "MissingParameterValue": 400,
    "InvalidParameterValue": 400,
    "OperationNotSupported": 501,
    "PointIJOutOfRange": 400,
}
# Tile indices with more digits than this are outside every grid.
_MAX_INDEX_DIGITS = 18
_HUGE_INDEX = 10**18  # larger than any grid, smaller than what breaks int math


class WMTSError(MapProxyError):
    """A WMTS request failed; rendered as an OWS ExceptionReport."""

    def __init__(
        self,
        message: str,
        code: str = "NoApplicableCode",
        locator: str | None = None,
        status: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.locator = locator
        self._status = status

    @property
    def status(self) -> int:
        """HTTP status: as given, else for the exception code (400/501, else 500)."""
        if self._status is not None:
            return self._status
        return _STATUS_BY_CODE.get(self.code, 500)


def exception_response(error: WMTSError) -> Response:
    """OWS 1.1 ExceptionReport as WMTS sends it (``text/xml`` without charset, no-cache)."""
    locator = f' locator="{html.escape(error.locator)}"' if error.locator else ""
    body = (
        '<?xml version="1.0"?>\n'
        '<ows:ExceptionReport xmlns:ows="http://www.opengis.net/ows/1.1"\n'
        '  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
        '  xsi:schemaLocation="http://www.opengis.net/ows/1.1 '
        'http://schemas.opengis.net/ows/1.1.0/owsExceptionReport.xsd"\n'
        '  version="1.0.0" xml:lang="en">\n'
        f'  <ows:Exception exceptionCode="{html.escape(error.code)}"{locator}>\n'
        f"    <ows:ExceptionText>{html.escape(xml_safe(error.message))}</ows:ExceptionText>\n"
        "  </ows:Exception>\n"
        "</ows:ExceptionReport>\n"
    )
    return no_cache(xml_response(body, EXCEPTION_CONTENT_TYPE, error.status))


def scale_denominator(res: float, is_geographic: bool) -> str:
    """WMTS ScaleDenominator text: rounded to 10 decimals, no trailing ``.0``."""
    scale = res / _PIXEL_SIZE_METRES
    if is_geographic:
        scale *= _METRES_PER_DEGREE
    text = repr(round(scale, 10))
    return text[:-2] if text.endswith(".0") else text


def matrix_identifier(level: int) -> str:
    """TileMatrix identifier of an internal level: two digits, zero padded."""
    return f"{level:02d}"


def parse_index(text: str, name: str) -> int:
    """An integer request value (``1``, ``01``, ``-3``); raises InvalidParameterValue."""
    value = text.strip()
    digits = value[1:] if value[:1] in ("-", "+") else value
    if not digits.isdigit() or not digits.isascii():
        raise WMTSError(f"invalid {name}: {text}", "InvalidParameterValue", name.lower())
    if len(digits) > _MAX_INDEX_DIGITS:
        return -_HUGE_INDEX if value[0] == "-" else _HUGE_INDEX
    return int(value)


def request_extension(fmt: str) -> str:
    """The extension named by a format value: ``image/png; mode=8bit`` -> ``png``."""
    return fmt.split("/", 1)[-1].split(";", 1)[0].strip()


def format_message(requested: str, supported: str) -> str:
    """The invalid-format message shared with TMS."""
    return f"invalid format ({requested}). this tile set only supports ({supported})"


@dataclass(slots=True)
class WMTSTileSet:
    """A tile layer in one nw-addressable grid, ready for requests."""

    layer: TileLayer
    extension: str
    mimetype: str
    load_tile: Callable[[TileCoord], Tile]
    grid_sizes: tuple[tuple[int, int], ...]
    is_sw: bool

    def coord(self, level: int, col: int, row: int) -> TileCoord:
        """Internal coordinate for a WMTS (nw numbered) tile; raises TileOutOfRange."""
        if not 0 <= level < len(self.grid_sizes):
            raise WMTSError(OUTSIDE_MESSAGE, "TileOutOfRange")
        cols, rows = self.grid_sizes[level]
        if not (0 <= col < cols and 0 <= row < rows):
            raise WMTSError(OUTSIDE_MESSAGE, "TileOutOfRange")
        if self.is_sw:
            row = rows - 1 - row
        return TileCoord(col, row, level)

    def load(self, coord: TileCoord, dimensions: Mapping[str, str] | None = None) -> Tile:
        """Load a tile (``dimensions`` for the sources); domain errors become WMTSError."""
        try:
            if dimensions:
                return self.layer.load_tile(coord, dimensions=dimensions)
            return self.load_tile(coord)
        except TileOutsideGrid as error:
            raise WMTSError(OUTSIDE_MESSAGE, "TileOutOfRange") from error
        except InvalidDimensionValue as error:
            raise WMTSError(str(error), "InvalidParameterValue") from error
        except MapProxyError as error:
            log.error("error while loading tile %s of %s: %s", coord, self.layer.name, error)
            raise WMTSError(str(error)) from error


def dimension_values(layer: TileLayer, requested: Mapping[str, str]) -> dict[str, str]:
    """Values of all dimensions of ``layer``: ``requested`` (lower-case names; missing or
    ``default``: the default). Raises InvalidParameterValue for values not configured."""
    values: dict[str, str] = {}
    for name, dimension in layer.dimensions.items():
        value = dimension.resolve(requested.get(name))
        if value is None:
            raise WMTSError(
                f"invalid dimension value ({name}={requested[name]}).", "InvalidParameterValue"
            )
        values[name] = value
    return values


@dataclass(slots=True)
class WMTSLayers:
    """The published WMTS layers: tile sets by (layer, grid name) and their grids."""

    tile_sets: dict[tuple[str, str], WMTSTileSet] = field(default_factory=dict)
    layers_by_name: dict[str, list[TileLayer]] = field(default_factory=dict)
    grids: dict[str, TileGrid] = field(default_factory=dict)

    def lookup(self, layer_name: str, matrix_set: str) -> WMTSTileSet:
        """The tile set for a request; raises InvalidParameterValue for unknown names."""
        tile_set = self.tile_sets.get((layer_name, matrix_set))
        if tile_set is None:
            if layer_name not in self.layers_by_name:
                raise WMTSError(f"unknown layer: {layer_name}", "InvalidParameterValue")
            raise WMTSError(f"unknown tilematrixset: {matrix_set}", "InvalidParameterValue")
        return tile_set


def collect_layers(layers: Sequence[TileLayer]) -> WMTSLayers:
    """Group tile layers by name; grids without north-west addressing are skipped."""
    result = WMTSLayers()
    for layer in layers:
        grid = layer.grid
        grid_name = layer.grid_name
        if not grid.supports_nw_addressing():
            log.warning(
                "skipping layer '%s' for WMTS, grid '%s' is not compatible with WMTS",
                layer.name,
                grid_name,
            )
            continue
        key = (layer.name, grid_name)
        group = result.layers_by_name.setdefault(layer.name, [])
        # The same layer twice in one grid is listed once; the later one serves.
        if key not in result.tile_sets:
            group.append(layer)
        result.grids.setdefault(grid_name, grid)
        result.tile_sets[key] = WMTSTileSet(
            layer=layer,
            extension=layer.extension,
            mimetype=layer.format.split(";", 1)[0].strip(),
            load_tile=layer.load_tile,
            grid_sizes=grid.grid_sizes,
            is_sw=grid.origin == "sw",
        )
    return result
