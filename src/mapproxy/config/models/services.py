"""``services`` section."""

from __future__ import annotations

from typing import Any, Literal

from mapproxy.config.models.common import ConfigModel, Number


class WMSServiceConfig(ConfigModel):
    md: dict[str, Any] | None = None
    srs: list[str] | None = None
    bbox_srs: list[str | dict[str, Any]] | None = None
    image_formats: list[str] | None = None
    featureinfo_types: list[str] | None = None
    featureinfo_xslt: dict[str, str] | None = None
    attribution: dict[str, Any] | None = None
    strict: bool = False
    on_source_errors: Literal["notify", "raise"] = "notify"
    max_output_pixels: int | list[int] | None = None
    versions: list[str] | None = None
    concurrent_layer_renderer: int = 1
    inspire_md: dict[str, Any] | None = None


class WMTSServiceConfig(ConfigModel):
    kvp: bool | None = None
    restful: bool | None = None
    restful_template: str | None = None
    restful_featureinfo_template: str | None = None
    md: dict[str, Any] | None = None
    featureinfo_formats: list[dict[str, str]] | None = None


class TMSServiceConfig(ConfigModel):
    use_grid_names: bool = False
    origin: Literal["sw", "nw", "ll", "ul"] | None = None
    md: dict[str, Any] | None = None


class KMLServiceConfig(ConfigModel):
    use_grid_names: bool = False
    md: dict[str, Any] | None = None


class DemoServiceConfig(ConfigModel):
    pass


class OGCAPIServiceConfig(ConfigModel):
    enable_tiles: bool = True
    enable_maps: bool = True
    map_srs: list[str] | None = None
    image_formats: list[str] | None = None
    attribution: dict[str, Any] | None = None
    md: dict[str, Any] | None = None
    default_dataset_layers: list[str] | None = None
    on_source_errors: Literal["notify", "raise"] = "notify"
    max_output_pixels: Number | list[int] | None = None
    concurrent_layer_renderer: int = 1


SERVICE_MODELS: dict[str, type[ConfigModel]] = {
    "wms": WMSServiceConfig,
    "wmts": WMTSServiceConfig,
    "tms": TMSServiceConfig,
    "kml": KMLServiceConfig,
    "demo": DemoServiceConfig,
    "ogcapi": OGCAPIServiceConfig,
}
