"""Config models shared by several sections."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Number = int | float
BBoxValue = list[Number] | str


class ConfigModel(BaseModel):
    """Base for config models; unknown keys land in ``model_extra`` and are reported."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True, defer_build=True)


class EncodingOptionsConfig(ConfigModel):
    # unknown encoding options are errors, not warnings (as in MapProxy)
    model_config = ConfigDict(extra="forbid", frozen=True)

    jpeg_quality: int | None = None
    quantizer: Literal["mediancut", "fastoctree"] | None = None
    tiff_compression: Literal["raw", "tiff_lzw", "jpeg"] | None = None


class ImageOptionsConfig(ConfigModel):
    """Image options (``globals.image.formats.*``, ``caches.*.image``, source ``image``)."""

    format: str | None = None
    mode: Literal["RGB", "RGBA", "P", "I", "L"] | None = None
    colors: int | None = None
    transparent: bool | None = None
    resampling_method: Literal["nearest", "bilinear", "bicubic"] | None = None
    opacity: Number | None = None
    encoding_options: EncodingOptionsConfig | None = None
    merge_method: str | None = None
    transparent_color: list[int] | str | None = None
    transparent_color_tolerance: Number | None = None
    font_dir: str | None = None


class HTTPOptionsConfig(ConfigModel):
    """``http`` options of sources and ``globals.http``."""

    method: Literal["GET", "POST", "AUTO"] | None = None
    headers: dict[str, str] | None = None
    client_timeout: Number | None = None
    ssl_ca_certs: str | None = None
    ssl_no_cert_checks: bool | None = None
    hide_error_details: bool | None = None
    manage_cookies: bool | None = None


class CoverageConfig(ConfigModel):
    """A coverage: bbox, polygons, datasource, or combinations."""

    bbox: BBoxValue | None = None
    srs: str | None = None
    bbox_srs: str | None = None
    polygons: str | None = None
    polygons_srs: str | None = None
    datasource: str | BBoxValue | None = None
    where: str | None = None
    ogr_datasource: str | None = None
    ogr_where: str | None = None
    ogr_srs: str | None = None
    expire_tiles: str | None = None
    union: list[CoverageConfig] | None = None
    intersection: list[CoverageConfig] | None = None
    difference: list[CoverageConfig] | None = None
    clip: bool | None = None


class OnErrorResponseConfig(ConfigModel):
    response: str | list[int]
    cache: bool = False
    authorize_stale: bool = False


class TimeSpecConfig(ConfigModel):
    """``refresh_before``/``remove_before``: absolute time, file mtime, or relative amounts."""

    time: Any = None
    mtime: str | None = None
    weeks: Number | None = None
    days: Number | None = None
    hours: Number | None = None
    minutes: Number | None = None
    seconds: Number | None = None
