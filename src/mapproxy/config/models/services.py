"""``services`` section."""

from __future__ import annotations

import datetime
from typing import Any, Literal

from mapproxy.config.models.common import ConfigModel, Number

DateValue = str | datetime.date


class InspireResourceLocatorConfig(ConfigModel):
    url: str
    media_type: str


class InspireLanguagesConfig(ConfigModel):
    default: str


class InspireDatesConfig(ConfigModel):
    """Dates of a citation (any of publication, creation, last revision)."""

    date_of_publication: DateValue | None = None
    date_of_creation: DateValue | None = None
    date_of_last_revision: DateValue | None = None


class InspireContactConfig(ConfigModel):
    organisation_name: str | None = None
    email: str | None = None


class InspireConformityConfig(InspireDatesConfig):
    title: str | None = None
    uris: list[str] | None = None
    resource_locators: list[InspireResourceLocatorConfig]
    degree: str


class InspireKeywordConfig(InspireDatesConfig):
    title: str
    uris: list[str] | None = None
    resource_locators: list[InspireResourceLocatorConfig] | None = None
    keyword_value: str


class InspireMDConfig(ConfigModel):
    """``services.wms.inspire_md``; which keys a type requires is checked when building."""

    type: Literal["linked", "embedded"]
    languages: InspireLanguagesConfig | None = None
    metadata_url: InspireResourceLocatorConfig | None = None
    resource_locators: list[InspireResourceLocatorConfig] | None = None
    temporal_reference: InspireDatesConfig | None = None
    metadata_points_of_contact: list[InspireContactConfig] | None = None
    conformities: list[InspireConformityConfig] | None = None
    mandatory_keywords: list[str] | None = None
    keywords: list[InspireKeywordConfig] | None = None
    metadata_date: DateValue | None = None


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
    inspire_md: InspireMDConfig | None = None


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
