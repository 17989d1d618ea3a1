"""``sources`` section: one model per source ``type``."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from mapproxy.config.models.common import (
    ConfigModel,
    CoverageConfig,
    HTTPOptionsConfig,
    ImageOptionsConfig,
    Number,
    OnErrorResponseConfig,
)


class SourceSeedConfig(ConfigModel):
    """``seed:`` of a source: options only mapproxy-seed uses."""

    rate_limit: float | None = Field(default=None, gt=0)  # upstream requests per second


class SourceCommonConfig(ConfigModel):
    coverage: CoverageConfig | None = None
    seed_only: bool = False
    seed: SourceSeedConfig | None = None
    min_res: Number | None = None
    max_res: Number | None = None
    min_scale: Number | None = None
    max_scale: Number | None = None
    concurrent_requests: int | None = None


class WMSRequestConfig(ConfigModel):
    # any other key is an extra request parameter, not an unknown option
    extra_keys_allowed: ClassVar[bool] = True

    url: str
    layers: str | list[str] | None = None
    transparent: bool | str | None = None
    styles: str | None = None
    sld: str | None = None
    sld_body: str | None = None
    map: str | None = None


class WMSOptsConfig(ConfigModel):
    version: Literal["1.0.0", "1.1.0", "1.1.1", "1.3.0"] = "1.1.1"
    map: bool = True
    featureinfo: bool = False
    featureinfo_format: str | None = None
    featureinfo_xslt: str | None = None
    featureinfo_out_format: str | None = None
    query_layers: str | list[str] | None = None
    legendgraphic: bool = False
    legendurl: str | None = None


class WMSSourceConfig(SourceCommonConfig):
    type: Literal["wms"]
    req: WMSRequestConfig
    wms_opts: WMSOptsConfig = WMSOptsConfig()
    supported_srs: list[str] | None = None
    supported_formats: list[str] | None = None
    image: ImageOptionsConfig | None = None
    http: HTTPOptionsConfig | None = None
    forward_req_params: list[str] | None = None
    on_error: dict[int | str, OnErrorResponseConfig] | None = None


class MapServerRequestConfig(ConfigModel):
    map: str
    layers: str | list[str] | None = None
    transparent: bool | str | None = None
    styles: str | None = None
    url: str | None = None


class MapServerSourceConfig(SourceCommonConfig):
    type: Literal["mapserver"]
    req: MapServerRequestConfig
    wms_opts: WMSOptsConfig = WMSOptsConfig()
    supported_srs: list[str] | None = None
    supported_formats: list[str] | None = None
    image: ImageOptionsConfig | None = None
    forward_req_params: list[str] | None = None
    mapserver: dict[str, str] | None = None
    on_error: dict[int | str, OnErrorResponseConfig] | None = None


class TileSourceConfig(SourceCommonConfig):
    type: Literal["tile"]
    url: str
    grid: str | None = None
    transparent: bool = False
    image: ImageOptionsConfig | None = None
    request_format: str | None = None
    http: HTTPOptionsConfig | None = None
    on_error: dict[int | str, OnErrorResponseConfig] | None = None
    origin: Literal["sw", "nw", "ll", "ul"] | None = None


class DebugSourceConfig(SourceCommonConfig):
    type: Literal["debug"]


class RasterSourceConfig(SourceCommonConfig):
    """A GDAL-readable raster file (GeoTIFF, COG) read with rasterio."""

    type: Literal["raster"]
    filename: str
    transparent: bool = False
    resampling: Literal["nearest", "bilinear", "cubic", "lanczos", "average"] = "bilinear"
    nodata: Number | None = None
    bands: list[int] | None = None
    image: ImageOptionsConfig | None = None


class MapnikSourceConfig(SourceCommonConfig):
    type: Literal["mapnik"]
    mapfile: str
    layers: str | list[str] | None = None
    transparent: bool = False
    scale_factor: Number | None = None
    multithreaded: bool = False
    use_mapnik2: bool | None = None
    image: ImageOptionsConfig | None = None


class ArcGISSourceConfig(SourceCommonConfig):
    type: Literal["arcgis"]
    req: dict[str, Any]
    opts: dict[str, Any] | None = None
    supported_srs: list[str] | None = None
    supported_formats: list[str] | None = None
    image: ImageOptionsConfig | None = None
    http: HTTPOptionsConfig | None = None
    on_error: dict[int | str, OnErrorResponseConfig] | None = None


class OGCAPITilesSourceConfig(SourceCommonConfig):
    type: Literal["ogcapitiles"]
    landingpage_url: str
    collection: str | None = None
    tile_matrix_set_id: str | None = None
    image: ImageOptionsConfig | None = None
    http: HTTPOptionsConfig | None = None


class OGCAPIMapsSourceConfig(SourceCommonConfig):
    type: Literal["ogcapimaps"]
    landingpage_url: str
    collection: str | None = None
    supported_srs: list[str] | None = None
    transparent: bool = False
    image: ImageOptionsConfig | None = None
    bgcolor: str | None = None
    http: HTTPOptionsConfig | None = None


SOURCE_MODELS: dict[str, type[SourceCommonConfig]] = {
    "wms": WMSSourceConfig,
    "mapserver": MapServerSourceConfig,
    "tile": TileSourceConfig,
    "debug": DebugSourceConfig,
    "raster": RasterSourceConfig,
    "mapnik": MapnikSourceConfig,
    "arcgis": ArcGISSourceConfig,
    "ogcapitiles": OGCAPITilesSourceConfig,
    "ogcapimaps": OGCAPIMapsSourceConfig,
}

SourceConfig = (
    WMSSourceConfig
    | MapServerSourceConfig
    | TileSourceConfig
    | DebugSourceConfig
    | RasterSourceConfig
    | MapnikSourceConfig
    | ArcGISSourceConfig
    | OGCAPITilesSourceConfig
    | OGCAPIMapsSourceConfig
)

__all__ = ["SOURCE_MODELS", "Field", "SourceConfig"]
