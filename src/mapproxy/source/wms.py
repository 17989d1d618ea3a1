"""WMS source: GetMap requests to an upstream WMS, with reprojection and format fallback."""

from __future__ import annotations

import contextlib
import html
import logging
import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote, unquote_plus

from PIL import Image

from mapproxy.errors import SourceError
from mapproxy.http.client import (
    HTTPClient,
    HTTPResponse,
    UpstreamHTTPError,
    error_message,
    split_credentials,
)
from mapproxy.image.options import ImageOptions, format_mime_type
from mapproxy.image.result import ImageResult
from mapproxy.source.base import MapExtent, MapQuery
from mapproxy.source.on_error import OnError, parse_color
from mapproxy.srs import SRS, BBox

__all__ = ["WMSSource", "image_from_response"]

log = logging.getLogger("mapproxy.source.wms")

# Metres per degree at the equator, to compare geographic resolutions with min_res/max_res.
_METERS_PER_DEGREE = 111319.4907932736

_EXCEPTION_TEXT = re.compile(
    r"<(?:[\w.-]+:)?(?:ServiceException|ExceptionText)\b[^>]*>(.*?)</", re.DOTALL
)
_CDATA = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.DOTALL)


def _exception_text(body: bytes) -> str:
    """The message of an OGC exception document, or the start of any other text body."""
    text = body[:65536].decode("utf-8", "replace")
    messages = []
    for match in _EXCEPTION_TEXT.finditer(text):
        content = _CDATA.sub(lambda m: m.group(1), match.group(1))
        content = html.unescape(content).strip()
        if content:
            messages.append(" ".join(content.split()))
    if messages:
        return "; ".join(messages)
    return " ".join(text[:300].split())


def image_from_response(
    response: HTTPResponse,
    hide_error_details: bool,
    source_name: str = "source WMS",
    logger: logging.Logger = log,
) -> ImageResult:
    """Check that an upstream response is a complete image; raises SourceError otherwise.

    The format comes from the image bytes, which are decoded fully (truncated or corrupt
    images are refused); an OGC exception text is logged on ``logger``.
    """
    from mapproxy.image.encode import detect_format
    from mapproxy.image.verify import looks_complete

    reason = f"No image returned from {source_name}"
    content_type = response.content_type
    if "xml" in content_type or content_type.startswith("text/"):
        detail = _exception_text(response.body)
        logger.warning('%s "%s": %s', reason, response.url, detail)
        raise SourceError(error_message(reason, response.url, detail, hide_error_details))
    detected = detect_format(response.body)
    if detected is None:
        if response.body.lstrip()[:1] == b"<":
            detail = _exception_text(response.body)
        else:
            detail = f"unknown image data (Content-Type: {content_type or 'none'})"
        logger.warning('%s "%s": %s', reason, response.url, detail)
        raise SourceError(error_message(reason, response.url, detail, hide_error_details))
    result = ImageResult(response.body, format=detected)
    try:
        if not looks_complete(response.body, detected):
            # the same check cached tiles get: a tile failing it would be fetched forever
            raise ValueError("image data is cut off")
        # Decode fully now (the image is kept for splitting/merging): a truncated or
        # corrupt image must never reach a cache or a client.
        result.as_image()
    except Exception as error:  # Pillow raises OSError, SyntaxError, struct.error, ...
        detail = f"truncated or corrupt image data ({error or type(error).__name__})"
        logger.warning('%s "%s": %s', reason, response.url, detail)
        raise SourceError(
            error_message(reason, response.url, detail, hide_error_details)
        ) from error
    return result


_KNOWN_PARAMS = frozenset(["layers", "styles", "sld", "sld_body"])


def _param_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_param_value(v) for v in value)
    return str(value)


def _is_true(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def _format_number(value: float) -> str:
    return repr(float(value))


class WMSSource:
    """A WMS 1.0.0-1.3.0 GetMap source.

    ``params`` are the ``req`` options other than ``url`` (``layers``, ``styles``,
    ``transparent``, extra parameters). Requests in an SRS missing from
    ``supported_srs`` are fetched in a supported SRS and reprojected; formats missing
    from ``supported_formats`` are fetched in the first supported one and converted.
    ``request_limiter`` (``concurrent_requests``) is entered around every upstream request.
    Of the query's ``dimensions`` (client parameters) only ``forward_req_params`` are sent.
    """

    supports_meta_tiles = True

    def __init__(
        self,
        client: HTTPClient,
        url: str,
        params: Mapping[str, object],
        version: str = "1.1.1",
        supported_srs: Sequence[SRS] | None = None,
        supported_formats: Sequence[str] | None = None,
        transparent: bool = False,
        image_options: ImageOptions | None = None,
        extent: MapExtent | None = None,
        coverage: object | None = None,
        min_res: float | None = None,
        max_res: float | None = None,
        on_error: Mapping[object, object] | OnError | None = None,
        transparent_color: str | Sequence[int] | None = None,
        transparent_color_tolerance: int = 5,
        opacity: float | None = None,
        preferred_src_proj: Mapping[str, Sequence[SRS]] | None = None,
        request_limiter: contextlib.AbstractContextManager[object] | None = None,
        forward_req_params: Sequence[str] | None = None,
    ) -> None:
        self.client = client
        # Client request parameters (and dimensions) passed on to the upstream.
        self.forward_req_params = frozenset(p.lower() for p in forward_req_params or ())
        self.url = url
        self.version = str(version)
        self.params: dict[str, str] = {}
        params_transparent = False
        for key, value in params.items():
            name = str(key)
            lower = name.lower()
            if lower == "url":
                continue
            if lower == "transparent":
                params_transparent = _is_true(value)
                continue
            # extra parameters keep their spelling (as in MapProxy); known ones are lower-case
            if lower in _KNOWN_PARAMS:
                name = lower
            self.params[name] = _param_value(value)
        # ``request_transparent``: ask the upstream for transparent images. ``transparent``
        # (for layers and caches): results may show what lies below them.
        self.request_transparent = bool(transparent) or params_transparent
        self.transparent = (
            self.request_transparent
            or transparent_color is not None
            or (opacity is not None and opacity < 1.0)
        )
        self.supported_srs = list(supported_srs) if supported_srs else []
        self.supported_formats = list(supported_formats) if supported_formats else []
        self.image_options = image_options or ImageOptions(transparent=self.request_transparent)
        self.extent = extent
        self.coverage = coverage
        self.min_res = min_res
        self.max_res = max_res
        self.on_error = on_error if isinstance(on_error, OnError) else OnError(on_error)
        self.transparent_color = (
            parse_color(transparent_color)[:3] if transparent_color is not None else None
        )
        self.transparent_color_tolerance = int(transparent_color_tolerance)
        self.opacity = opacity
        self.preferred_src_proj = dict(preferred_src_proj or {})
        self.request_limiter = request_limiter
        self._has_sld = "sld" in self.params or "sld_body" in self.params

    def __repr__(self) -> str:
        url = split_credentials(self.url)[0]
        return f"WMSSource({url!r}, layers={self.params.get('layers', '')!r})"

    # --- request planning -------------------------------------------------------------

    def source_srs(self, srs: SRS) -> SRS:
        """The SRS to request from the upstream for a query in ``srs``."""
        if not self.supported_srs:
            return srs
        for supported in self.supported_srs:
            if supported.is_same_as(srs):
                return supported
        for preferred in self.preferred_src_proj.get(srs.code, ()):
            for supported in self.supported_srs:
                if supported.is_same_as(preferred):
                    return supported
        for supported in self.supported_srs:
            if supported.is_latlong == srs.is_latlong:
                return supported
        return self.supported_srs[0]

    def source_format(self, format: str) -> str:
        """The format string to request for a query in ``format``."""
        if not self.supported_formats:
            return format
        wanted = format_mime_type(format)
        for supported in self.supported_formats:
            if supported == format:
                return supported
        for supported in self.supported_formats:
            if format_mime_type(supported) == wanted:
                return supported
        return self.supported_formats[0]

    def _plan(self, query: MapQuery) -> tuple[BBox, tuple[int, int], SRS, str]:
        src_srs = self.source_srs(query.srs)
        src_format = self.source_format(query.format)
        if src_srs.is_same_as(query.srs):
            return query.bbox, query.size, src_srs, src_format
        src_bbox = query.srs.transform_bbox_to(src_srs, query.bbox)
        src_size = _source_size(query.size, src_bbox)
        return src_bbox, src_size, src_srs, src_format

    def get_map_url(self, query: MapQuery) -> str:
        """The GetMap URL ``get_map`` requests for ``query`` (after SRS/format fallback)."""
        bbox, size, srs, src_format = self._plan(query)
        return self.map_url(bbox, size, srs, src_format, query.dimensions)

    def map_url(
        self,
        bbox: BBox,
        size: tuple[int, int],
        srs: SRS,
        format: str,
        dimensions: Mapping[str, str] | None = None,
    ) -> str:
        """GetMap URL for an x/y ``bbox`` in ``srs`` (1.3.0: written in the CRS axis order)."""
        params: list[tuple[str, str]] = []
        if self.params.get("layers") or not self._has_sld:
            params.append(("layers", self.params.get("layers", "")))
        ordered = srs.axis_ordered(bbox) if self.version == "1.3.0" else bbox
        params.append(("bbox", ",".join(_format_number(v) for v in ordered)))
        params.append(("width", str(int(size[0]))))
        params.append(("height", str(int(size[1]))))
        params.append(("crs" if self.version == "1.3.0" else "srs", srs.code))
        if self.version == "1.0.0":
            # WMS 1.0.0 names formats (PNG, JPEG, GIF) instead of mime types
            format = format_mime_type(format).partition("/")[2].partition(";")[0].upper()
        params.append(("format", format))
        if self.version == "1.0.0":
            params.append(("request", "map"))
            params.append(("wmtver", "1.0.0"))
        else:
            params.append(("request", "GetMap"))
            params.append(("service", "WMS"))
            params.append(("version", self.version))
        if self.request_transparent:
            params.append(("transparent", "TRUE"))
        for name, value in self.params.items():
            if name not in ("layers", "styles"):
                params.append((name, value))
        for name, value in (dimensions or {}).items():
            if str(name).lower() in self.forward_req_params:
                params.append((str(name).lower(), _param_value(value)))
        params.append(("styles", self.params.get("styles", "")))
        return _merge_query(self.url, params)

    # --- fetching ------------------------------------------------------------------

    def get_map(self, query: MapQuery) -> ImageResult:
        """Fetch ``query`` from the upstream WMS; raises SourceError unless on_error applies."""
        if not self._res_in_range(query):
            return _blank(query)
        bbox, size, src_srs, src_format = self._plan(query)
        url = self.map_url(bbox, size, src_srs, src_format, query.dimensions)
        try:
            with self.request_limiter or contextlib.nullcontext():
                response = self.client.open(url)
            result = image_from_response(response, self.client.hide_error_details)
        except UpstreamHTTPError as error:
            return self.on_error.handle(error, error.status, query.size, query.format)
        except SourceError as error:
            return self.on_error.handle(error, None, query.size, query.format)

        if not src_srs.is_same_as(query.srs):
            result = self._reproject(result, bbox, src_srs, query)
        elif format_mime_type(src_format) != format_mime_type(query.format):
            result = ImageResult(
                result.as_image(),
                format=query.format,
                size=query.size,
                transparent=self.request_transparent,
            )
        else:
            result.transparent = self.request_transparent
        if self.transparent_color is not None:
            result = self._make_color_transparent(result, query.format)
        result.opacity = self.opacity
        return result

    def _reproject(
        self, result: ImageResult, src_bbox: BBox, src_srs: SRS, query: MapQuery
    ) -> ImageResult:
        from mapproxy.image.transform import transform_image

        image = transform_image(
            result.as_image(),
            src_bbox,
            src_srs,
            query.bbox,
            query.size,
            query.srs,
            resampling=self.image_options.resampling,
        )
        return ImageResult(
            image, format=query.format, size=query.size, transparent=self.request_transparent
        )

    def _make_color_transparent(self, result: ImageResult, format: str) -> ImageResult:
        import numpy as np  # only here: numpy costs every server process ~11 MB

        assert self.transparent_color is not None
        image = result.as_image().convert("RGBA")
        pixels = np.asarray(image).copy()
        color = np.array(self.transparent_color, dtype=np.int16)
        diff = np.abs(pixels[:, :, :3].astype(np.int16) - color)
        mask = np.all(diff <= self.transparent_color_tolerance, axis=2)
        pixels[mask, 3] = 0
        return ImageResult(
            Image.fromarray(pixels, "RGBA"), format=format, size=image.size, transparent=True
        )

    def res_in_range(self, query: MapQuery) -> bool:
        """False if ``min_res``/``max_res`` make the source answer ``query`` with a blank."""
        return self._res_in_range(query)

    def _res_in_range(self, query: MapQuery) -> bool:
        if self.min_res is None and self.max_res is None:
            return True
        res = (query.bbox[2] - query.bbox[0]) / max(query.size[0], 1)
        if query.srs.is_latlong:
            res *= _METERS_PER_DEGREE
        # min_res is the coarse limit (inclusive), max_res the fine one (exclusive).
        if self.min_res is not None and res > self.min_res:
            return False
        return not (self.max_res is not None and res <= self.max_res)


def _blank(query: MapQuery) -> ImageResult:
    image = Image.new("RGBA", query.size, (255, 255, 255, 0))
    return ImageResult(image, format=query.format, size=query.size, transparent=True)


def _source_size(size: tuple[int, int], src_bbox: BBox) -> tuple[int, int]:
    """A size for ``src_bbox`` with square pixels of the finer resolution ``size`` gives
    it on either axis (one side keeps its length, the other grows; as MapProxy 7.0.0)."""
    width = src_bbox[2] - src_bbox[0]
    height = src_bbox[3] - src_bbox[1]
    if width <= 0 or height <= 0 or size[0] <= 0 or size[1] <= 0:
        return size
    res = min(width / size[0], height / size[1])
    return max(1, round(width / res)), max(1, round(height / res))


def _merge_query(url: str, params: Sequence[tuple[str, str]]) -> str:
    """Append ``params`` to ``url``; existing parameters of the same name are replaced."""
    base, _, query = url.partition("?")
    names = {name.lower() for name, _ in params}
    kept = [
        part
        for part in query.split("&")
        if part and unquote_plus(part.split("=", 1)[0]).lower() not in names
    ]
    added = [f"{quote(name, safe='')}={quote(value, safe=',:/')}" for name, value in params]
    return base + "?" + "&".join(kept + added)
