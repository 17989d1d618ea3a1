"""``grids`` section."""

from __future__ import annotations

from typing import Literal

from mapproxy.config.models.common import BBoxValue, ConfigModel, Number


class GridConfig(ConfigModel):
    base: str | None = None
    name: str | None = None
    srs: str | None = None
    bbox: BBoxValue | None = None
    bbox_srs: str | None = None
    tile_size: list[int] | None = None
    res: list[Number] | None = None
    res_factor: Number | Literal["sqrt2"] | None = None
    num_levels: int | None = None
    min_res: Number | None = None
    max_res: Number | None = None
    threshold_res: list[Number] | None = None
    stretch_factor: Number | None = None
    max_shrink_factor: Number | None = None
    origin: Literal["ll", "sw", "ul", "nw"] | None = None
    align_resolutions_with: str | None = None
