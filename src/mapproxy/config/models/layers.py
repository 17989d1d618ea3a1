"""``layers`` section (tree of layers)."""

from __future__ import annotations

from typing import Any

from mapproxy.config.models.common import ConfigModel, Number


class LayerConfig(ConfigModel):
    name: str | None = None
    title: str
    sources: list[str] | None = None
    tile_sources: list[str] | None = None
    layers: list[LayerConfig] | None = None
    min_res: Number | None = None
    max_res: Number | None = None
    min_scale: Number | None = None
    max_scale: Number | None = None
    nominal_res: Number | None = None
    nominal_scale: Number | None = None
    legendurl: str | None = None
    md: dict[str, Any] | None = None
    dimensions: dict[str, Any] | None = None
    wmts_kvp_legendurl: str | None = None
    wmts_rest_legendurl: str | None = None
