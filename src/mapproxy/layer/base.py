"""Published layers: what WMS renders and what tile services serve."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mapproxy.cache.base import Tile
from mapproxy.grid.tile_grid import TileCoord, TileGrid
from mapproxy.image.result import ImageResult
from mapproxy.layer.dimensions import Dimension
from mapproxy.source.base import MapExtent, MapQuery
from mapproxy.source.featureinfo import InfoSource
from mapproxy.source.legend import LegendSource
from mapproxy.srs import SRS


@dataclass(frozen=True, slots=True)
class ResolutionRange:
    """Valid resolutions: ``min_res`` is the coarsest (inclusive), ``max_res`` the finest
    (exclusive); both in units per pixel of ``EPSG:3857``-like metres unless the query SRS
    is geographic (then degrees are converted with 111319.49 m/deg)."""

    min_res: float | None = None
    max_res: float | None = None

    def contains(self, bbox_width: float, width_px: int, srs: SRS) -> bool:
        """True if a request of ``bbox_width`` units over ``width_px`` pixels is in range."""
        res = bbox_width / max(width_px, 1)
        if srs.is_latlong:
            res *= 111319.4907932736
        if self.min_res is not None and res > self.min_res:
            return False
        return not (self.max_res is not None and res <= self.max_res)


class MapLayer(Protocol):
    """Renders a MapQuery (a cache assembled from tiles, or a source used directly)."""

    extent: MapExtent
    transparent: bool

    def get_map(self, query: MapQuery) -> ImageResult:
        """The image for ``query``; raises SourceError, or returns a transparent image
        when the query lies outside the extent."""
        ...


@dataclass(slots=True)
class WMSLayer:
    """One node of the published WMS layer tree.

    ``map_layers`` are this node's own content, bottom to top; ``children`` nest.
    A named node is requestable; rendering a group renders its own content and then
    each child, in order. ``md`` is the raw ``md`` config dict. ``info_sources`` answer
    GetFeatureInfo and ``legend_sources`` GetLegendGraphic for this node's own content.
    """

    name: str | None
    title: str
    extent: MapExtent
    map_layers: list[MapLayer] = field(default_factory=list)
    children: list[WMSLayer] = field(default_factory=list)
    md: Mapping[str, Any] = field(default_factory=dict)
    res_range: ResolutionRange | None = None
    queryable: bool = False
    transparent: bool = False
    info_sources: list[InfoSource] = field(default_factory=list)
    legend_sources: list[LegendSource] = field(default_factory=list)
    dimensions: Mapping[str, Dimension] = field(default_factory=dict)

    def renderable_layers(self) -> list[tuple[WMSLayer, MapLayer]]:
        """(node, map layer) pairs to draw for this node, bottom to top: its own sources if
        it has any, else its children's."""
        result: list[tuple[WMSLayer, MapLayer]] = [(self, layer) for layer in self.map_layers]
        if result:
            return result
        for child in self.children:
            result.extend(child.renderable_layers())
        return result

    def iter_named(self) -> list[WMSLayer]:
        """This node (if named) and all named descendants, depth first."""
        result = [self] if self.name else []
        for child in self.children:
            result.extend(child.iter_named())
        return result


@dataclass(frozen=True, slots=True)
class TileLegend:
    """LegendURL settings of a tile layer for WMTS capabilities.

    ``kvp_url``/``rest_url`` are templates with ``{base_url}`` and ``{layer_name}``;
    ``has_static_legend`` is True when the layer has a ``legendurl`` (then WMS
    GetLegendGraphic is the default where no template is set).
    """

    kvp_url: str | None = None
    rest_url: str | None = None
    has_static_legend: bool = False


class TileProvider(Protocol):
    """Loads tiles of one grid (a TileManager)."""

    def load_tile(self, coord: TileCoord, with_metadata: bool = False) -> Tile:
        """The tile at ``coord`` (created if missing); raises TileOutsideGrid/SourceError."""
        ...


@dataclass(slots=True)
class TileLayer:
    """One layer in one grid as published by TMS, /tiles, WMTS and KML.

    ``format`` is the mime type stored in the cache (``image/png``); ``extension`` the
    URL extension (``png``, ``jpeg``). ``extent`` is the layer's data extent.
    ``info_sources`` answer WMTS GetFeatureInfo (the layer's feature info sources).
    ``legend`` holds the WMTS LegendURL settings.
    """

    name: str
    title: str
    grid: TileGrid
    tile_manager: TileProvider
    format: str
    extension: str
    extent: MapExtent
    md: Mapping[str, Any] = field(default_factory=dict)
    info_sources: list[InfoSource] = field(default_factory=list)
    legend: TileLegend | None = None
    dimensions: Mapping[str, Dimension] = field(default_factory=dict)

    @property
    def queryable(self) -> bool:
        """True if feature info can be requested for this layer."""
        return bool(self.info_sources)

    @property
    def default_dimensions(self) -> dict[str, str]:
        """The default value of each dimension (what TMS and KML request)."""
        return {name: dimension.default for name, dimension in self.dimensions.items()}

    @property
    def grid_name(self) -> str:
        return self.grid.name or self.grid.srs.srs_code_no_colon

    def load_tile(
        self,
        coord: TileCoord,
        with_metadata: bool = False,
        dimensions: Mapping[str, str] | None = None,
    ) -> Tile:
        """The tile at ``coord`` (internal numbering, grid origin); ``dimensions`` are
        passed to the sources of caches with disabled storage."""
        if dimensions:
            load: Any = self.tile_manager.load_tile
            tile: Tile = load(coord, with_metadata=with_metadata, dimensions=dimensions)
            return tile
        return self.tile_manager.load_tile(coord, with_metadata=with_metadata)
