"""Tile grids: built-in grids, ``base`` inheritance, bbox and resolutions of each grid."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mapproxy.config.build.coverages import parse_bbox
from mapproxy.config.models.globals import GlobalsConfig
from mapproxy.config.models.grids import GridConfig
from mapproxy.errors import ConfigurationError, MapProxyError
from mapproxy.grid import TileGrid
from mapproxy.grid.resolutions import compute_resolutions
from mapproxy.srs import SRS, BBox, UnknownSRS, get_srs

log = logging.getLogger("mapproxy.config")

MERCATOR_EXTENT = 20037508.342789244
BUILTIN_GRIDS: dict[str, dict[str, Any]] = {
    "GLOBAL_GEODETIC": {"srs": "EPSG:4326", "bbox": [-180, -90, 180, 90], "origin": "sw"},
    "GLOBAL_MERCATOR": {
        "srs": "EPSG:900913",
        "bbox": [-MERCATOR_EXTENT, -MERCATOR_EXTENT, MERCATOR_EXTENT, MERCATOR_EXTENT],
        "origin": "sw",
    },
    "GLOBAL_WEBMERCATOR": {
        "srs": "EPSG:3857",
        "bbox": [-MERCATOR_EXTENT, -MERCATOR_EXTENT, MERCATOR_EXTENT, MERCATOR_EXTENT],
        "origin": "nw",
    },
}
# Bboxes used when a grid names one of these SRS but no bbox.
DEFAULT_SRS_BBOX: dict[str, BBox] = {
    "EPSG:4326": (-180.0, -90.0, 180.0, 90.0),
    "EPSG:900913": (-MERCATOR_EXTENT, -MERCATOR_EXTENT, MERCATOR_EXTENT, MERCATOR_EXTENT),
    "EPSG:3857": (-MERCATOR_EXTENT, -MERCATOR_EXTENT, MERCATOR_EXTENT, MERCATOR_EXTENT),
    "EPSG:102100": (-MERCATOR_EXTENT, -MERCATOR_EXTENT, MERCATOR_EXTENT, MERCATOR_EXTENT),
    "EPSG:102113": (-MERCATOR_EXTENT, -MERCATOR_EXTENT, MERCATOR_EXTENT, MERCATOR_EXTENT),
}


class GridBuilder:
    """Builds each configured or built-in grid once; ``built`` holds them by name."""

    def __init__(self, grids: Mapping[str, GridConfig], globals_config: GlobalsConfig) -> None:
        self._configs = grids
        self._globals = globals_config
        self.built: dict[str, TileGrid] = {}

    def grid(self, name: str) -> TileGrid:
        """The tile grid called ``name`` (configured or built-in)."""
        if name not in self.built:
            self.built[name] = self._build(name)
        return self.built[name]

    def _options(self, name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        """The options of grid ``name`` over those of its ``base`` grids."""
        if name in seen:
            raise ConfigurationError(f"grids.{name}.base: circular base grids")
        conf = self._configs.get(name)
        if conf is None:
            if name in BUILTIN_GRIDS:
                return {**BUILTIN_GRIDS[name], "name": name}
            raise ConfigurationError(f"unknown grid '{name}'")
        options: dict[str, Any] = {}
        if conf.base:
            options = self._options(conf.base, (*seen, name))
            options["_inherited_origin"] = True
            options.pop("name", None)
        for key, value in conf.model_dump(exclude_none=True, exclude={"base"}).items():
            if key in GridConfig.model_fields:
                options[key] = value
        options.setdefault("name", name)
        return options

    def _build(self, name: str) -> TileGrid:
        options = self._options(name)
        path = f"grids.{name}"
        try:
            srs = get_srs(options.get("srs", "EPSG:900913"))
        except UnknownSRS as error:
            raise ConfigurationError(f"{path}.srs: {error}") from None
        tile_size = tuple(options.get("tile_size") or self._globals.grid.tile_size)
        if len(tile_size) != 2 or min(tile_size) <= 0:
            raise ConfigurationError(f"{path}.tile_size: expected two positive integers")
        bbox = _grid_bbox(options, srs, path)
        origin = options.get("origin")
        if origin is None:
            if not options.get("_inherited_origin"):
                log.warning(
                    "grid %s does not have an origin. default origin will change from sw "
                    "(south/west) to nw (north-west) with MapProxy 2.0",
                    name,
                )
            origin = "sw"
        res_factor = options.get("res_factor", 2.0)
        try:
            resolutions = compute_resolutions(
                bbox,
                tile_size,
                res=options.get("res"),
                res_factor=res_factor,
                num_levels=options.get("num_levels"),
                min_res=options.get("min_res"),
                max_res=options.get("max_res"),
            )
        except (ValueError, ZeroDivisionError) as error:
            raise ConfigurationError(f"{path}: {error}") from None
        if not resolutions:
            raise ConfigurationError(f"{path}: the options give no resolution levels")
        image_globals = self._globals.image
        return TileGrid(
            srs,
            bbox,
            resolutions,
            tile_size=(int(tile_size[0]), int(tile_size[1])),
            origin=origin,
            name=options.get("name", name),
            stretch_factor=float(options.get("stretch_factor", image_globals.stretch_factor)),
            max_shrink_factor=float(
                options.get("max_shrink_factor", image_globals.max_shrink_factor)
            ),
            threshold_res=options.get("threshold_res"),
        )


def _grid_bbox(options: Mapping[str, Any], srs: SRS, path: str) -> BBox:
    """The grid's ``bbox`` in its own SRS, or the default bbox of the SRS."""
    bbox_value = options.get("bbox")
    if bbox_value is None:
        if srs.code not in DEFAULT_SRS_BBOX:
            raise ConfigurationError(f"{path}: missing 'bbox' (no default for {srs.code})")
        return DEFAULT_SRS_BBOX[srs.code]
    bbox = parse_bbox(bbox_value, f"{path}.bbox")
    bbox_srs_code = options.get("bbox_srs")
    if bbox_srs_code:
        try:
            # four segments per edge: what the reference samples (mapproxy-util grids)
            bbox = get_srs(bbox_srs_code).transform_bbox_to(srs, bbox, with_points=4)
        except MapProxyError as error:
            raise ConfigurationError(f"{path}.bbox_srs: {error}") from None
    return bbox
