"""WMS request parsing: version negotiation, request types and GetMap validation."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mapproxy.image.options import ImageOptions
from mapproxy.service.base import InvalidRequest
from mapproxy.srs import SRS, BBox

Version = tuple[int, int, int]

# Request names (lower-cased) and the operation they stand for.
_REQUEST_TYPES = {
    "getmap": "GetMap",
    "map": "GetMap",
    "getfeatureinfo": "GetFeatureInfo",
    "feature_info": "GetFeatureInfo",
    "getcapabilities": "GetCapabilities",
    "capabilities": "GetCapabilities",
    "getlegendgraphic": "GetLegendGraphic",
}
_LEGEND_VERSIONS = frozenset({"1.1.1", "1.3.0"})

# WMS 1.0.0 format names.
WMS100_FORMATS = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
}

_ALLOWED_STYLES = frozenset({"", "default", "inspire_common:DEFAULT"})
# Parameters of GetMap itself; all others reach the sources as dimensions.
_GETMAP_PARAMS = frozenset(
    {
        "service",
        "request",
        "version",
        "wmtver",
        "layers",
        "styles",
        "srs",
        "crs",
        "bbox",
        "width",
        "height",
        "format",
        "transparent",
        "bgcolor",
        "exceptions",
        "tiled",
    }
)
_FALLBACK_EXCEPTION_SIZE = (256, 256)


class ImageSizeTooLarge(InvalidRequest):
    """The requested image exceeds ``max_output_pixels``; always reported as XML."""


def parse_version(text: str | None) -> Version | None:
    """``'1.1.1'`` -> ``(1, 1, 1)``; None for missing or malformed values."""
    if not text:
        return None
    parts = text.strip().split(".")
    if len(parts) != 3:
        return None
    try:
        major, minor, patch = (int(part) for part in parts)
    except ValueError:
        return None
    return (major, minor, patch)


def negotiate_version(requested: str | None, supported: Sequence[str]) -> str:
    """The version to answer with: exact match, else clamped to the supported range,
    else the highest supported version below the requested one."""
    ordered = sorted(supported, key=lambda v: parse_version(v) or (0, 0, 0))
    wanted = parse_version(requested)
    if wanted is None:
        return ordered[-1]
    parsed = [parse_version(v) or (0, 0, 0) for v in ordered]
    if wanted <= parsed[0]:
        return ordered[0]
    if wanted >= parsed[-1]:
        return ordered[-1]
    best = ordered[0]
    for version, parsed_version in zip(ordered, parsed, strict=True):
        if parsed_version <= wanted:
            best = version
    return best


def request_version(params: Mapping[str, str], supported: Sequence[str]) -> str:
    """Negotiated version from ``VERSION``, else ``WMTVER``."""
    requested = params.get("version") or params.get("wmtver")
    return negotiate_version(requested, supported)


def request_type(params: Mapping[str, str], version: str) -> str:
    """Canonical operation name (``GetMap`` ...); raises InvalidRequest for unknown types."""
    # MapProxy names the lower-cased value, and 'None' when REQUEST is missing.
    value = params.get("request")
    raw = "None" if value is None else value.lower()
    name = _REQUEST_TYPES.get(raw)
    if name is None or (name == "GetLegendGraphic" and version not in _LEGEND_VERSIONS):
        raise InvalidRequest(f"unknown WMS request type '{raw}'")
    return name


@dataclass(frozen=True, slots=True)
class ImageFormat:
    """An offered output format: the name shown in capabilities and its image options."""

    name: str
    options: ImageOptions


class FormatTable:
    """Lookup of request FORMAT values (case-insensitive, 1.0.0 names) to offered formats."""

    def __init__(
        self,
        image_formats: Sequence[str],
        format_options: Mapping[str, ImageOptions] | None = None,
    ) -> None:
        format_options = format_options or {}
        self.formats: list[ImageFormat] = []
        self._lookup: dict[str, ImageFormat] = {}
        for entry in image_formats:
            options = format_options.get(entry)
            if options is None:
                name = entry if "/" in entry else f"image/{entry}"
                options = format_options.get(name) or ImageOptions(format=name)
            else:
                name = entry if "/" in entry else options.format
            image_format = ImageFormat(name, options)
            self.formats.append(image_format)
            for key in (entry, name):
                self._lookup.setdefault(key.strip().lower(), image_format)
        self.default = self._lookup.get("image/png") or ImageFormat(
            "image/png", ImageOptions(format="image/png")
        )

    def get(self, value: str, version: str) -> ImageFormat | None:
        """The offered format for a request FORMAT value, or None."""
        text = value.strip()
        if version == "1.0.0" and text.upper() in WMS100_FORMATS:
            text = WMS100_FORMATS[text.upper()]
        return self._lookup.get(text.lower())

    def names_100(self) -> list[str]:
        """Offered formats that have a WMS 1.0.0 name (``PNG``, ``JPEG`` ...)."""
        reverse = {mime: name for name, mime in WMS100_FORMATS.items()}
        names: list[str] = []
        for image_format in self.formats:
            name = reverse.get(image_format.options.mime_type)
            if name and name not in names:
                names.append(name)
        return names


@dataclass(frozen=True, slots=True)
class ExceptionContext:
    """How to report an error: XML of ``version``, or an image (``inimage``/``blank``)."""

    version: str
    mode: str = "xml"
    format: ImageFormat | None = None
    size: tuple[int, int] = _FALLBACK_EXCEPTION_SIZE
    transparent: bool = False
    bgcolor: tuple[int, int, int] = (255, 255, 255)


@dataclass(frozen=True, slots=True)
class GetMapRequest:
    """A validated GetMap request; ``bbox`` is x/y (east/north) in ``srs``."""

    version: str
    layers: tuple[str, ...]
    srs: SRS
    bbox: BBox
    size: tuple[int, int]
    format: ImageFormat
    transparent: bool = False
    bgcolor: tuple[int, int, int] = (255, 255, 255)
    tiled: bool = False
    dimensions: Mapping[str, str] = field(default_factory=dict)


def parse_bgcolor(value: str | None) -> tuple[int, int, int]:
    """``0xRRGGBB`` or ``#RRGGBB`` -> RGB; white for missing or malformed values."""
    if not value:
        return (255, 255, 255)
    text = value.strip()
    if text[:2].lower() == "0x":
        text = text[2:]
    elif text.startswith("#"):
        text = text[1:]
    if len(text) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in text):
        return (255, 255, 255)
    return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))


def parse_transparent(value: str | None) -> bool:
    """``TRANSPARENT=TRUE`` (any case) -> True."""
    return value is not None and value.strip().lower() == "true"


def parse_bbox(value: str) -> BBox | None:
    """Four finite comma-separated numbers with min < max, else None."""
    parts = value.split(",")
    if len(parts) != 4:
        return None
    try:
        minx, miny, maxx, maxy = (float(part) for part in parts)
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        return None
    if not (minx < maxx and miny < maxy):
        return None
    return (minx, miny, maxx, maxy)


def parse_size_value(value: str | None) -> int | None:
    """A positive pixel count; floats are truncated. None for anything else."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number) or number < 1:
        return None
    return int(number)


def exceptions_mode(value: str | None) -> str:
    """``xml``, ``inimage`` or ``blank`` from an EXCEPTIONS value."""
    if not value:
        return "xml"
    lowered = value.lower()
    if "image" in lowered:
        return "inimage"
    if "blank" in lowered:
        return "blank"
    return "xml"


class GetMapParser:
    """Validates GetMap parameters in the order MapProxy does (see spec §2.2)."""

    def __init__(
        self,
        layer_names: Sequence[str],
        formats: FormatTable,
        srs: Mapping[str, SRS],
        max_output_pixels: int,
    ) -> None:
        self.layer_names = frozenset(layer_names)
        self.formats = formats
        self.srs = dict(srs)
        self.max_output_pixels = max_output_pixels

    def exception_context(self, params: Mapping[str, str], version: str) -> ExceptionContext:
        """Leniently read what an error image needs; never raises."""
        mode = exceptions_mode(params.get("exceptions"))
        if mode == "xml":
            return ExceptionContext(version)
        image_format = self.formats.get(params.get("format") or "", version)
        width = parse_size_value(params.get("width"))
        height = parse_size_value(params.get("height"))
        size = _FALLBACK_EXCEPTION_SIZE
        if width and height and width * height <= self.max_output_pixels:
            size = (width, height)
        return ExceptionContext(
            version=version,
            mode=mode,
            format=image_format or self.formats.default,
            size=size,
            transparent=parse_transparent(params.get("transparent")),
            bgcolor=parse_bgcolor(params.get("bgcolor")),
        )

    def parse(self, params: Mapping[str, str], version: str) -> GetMapRequest:
        """A validated GetMapRequest; raises InvalidRequest with MapProxy's messages."""
        srs_param = "crs" if version == "1.3.0" else "srs"
        version_param = "wmtver" if version == "1.0.0" else "version"
        required = (
            version_param,
            "request",
            "layers",
            "styles",
            srs_param,
            "bbox",
            "width",
            "height",
            "format",
        )
        missing = [name for name in required if name not in params]
        if missing:
            raise InvalidRequest(f"missing parameters {missing!r}")

        bbox_value = params["bbox"]
        bbox = parse_bbox(bbox_value)
        if bbox is None:
            raise InvalidRequest(f"invalid bbox {bbox_value}")

        styles = params["styles"]
        if any(style not in _ALLOWED_STYLES for style in styles.split(",")):
            raise InvalidRequest(f"unsupported styles: {styles}", code="StyleNotDefined")

        width = parse_size_value(params["width"])
        if width is None:
            raise InvalidRequest(f"invalid width {params['width']}")
        height = parse_size_value(params["height"])
        if height is None:
            raise InvalidRequest(f"invalid height {params['height']}")
        if width * height > self.max_output_pixels:
            raise ImageSizeTooLarge("image size too large")

        layers = tuple(params["layers"].split(","))
        for name in layers:
            if name not in self.layer_names:
                raise InvalidRequest(f"unknown layer: {name}", code="LayerNotDefined")

        image_format = self.formats.get(params["format"], version)
        if image_format is None:
            raise InvalidRequest(
                f"unsupported image format: {params['format']}", code="InvalidFormat"
            )

        srs_value = params[srs_param]
        srs = self.srs.get(srs_value.strip().upper())
        if srs is None:
            if version == "1.3.0":
                raise InvalidRequest(f"unsupported crs: {srs_value}", code="InvalidCRS")
            raise InvalidRequest(f"unsupported srs: {srs_value}", code="InvalidSRS")
        if version == "1.3.0" and srs.is_axis_order_ne:
            bbox = (bbox[1], bbox[0], bbox[3], bbox[2])

        # TIME, ELEVATION, DIM_* and any other non-GetMap parameter: sources pass on
        # those named in their forward_req_params (values are not validated, as in
        # MapProxy).
        dimensions = {name: value for name, value in params.items() if name not in _GETMAP_PARAMS}
        return GetMapRequest(
            version=version,
            layers=layers,
            srs=srs,
            bbox=bbox,
            size=(width, height),
            format=image_format,
            transparent=parse_transparent(params.get("transparent")),
            bgcolor=parse_bgcolor(params.get("bgcolor")),
            tiled=(params.get("tiled") or "").strip().lower() == "true",
            dimensions=dimensions,
        )
