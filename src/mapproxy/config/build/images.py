"""ImageOptions from format names, ``globals.image.formats`` and ``image`` options."""

from __future__ import annotations

from typing import Any

from mapproxy.config.models.common import ImageOptionsConfig
from mapproxy.config.models.globals import ImageGlobalsConfig
from mapproxy.image.options import ImageOptions


def build_image_options(
    image_globals: ImageGlobalsConfig,
    format_name: str | None,
    conf: ImageOptionsConfig | None = None,
    transparent: bool | None = None,
) -> ImageOptions:
    """ImageOptions for a format name or mime type, with ``globals.image`` defaults.

    ``format_name`` may name an entry of ``globals.image.formats``; ``conf`` overrides it.
    """
    named = image_globals.formats.get(format_name) if format_name else None
    merged: dict[str, Any] = {}
    for source in (named, conf):
        if source is not None:
            merged.update(source.model_dump(exclude_none=True))
    fmt = merged.get("format") or format_name or "image/png"
    if not fmt.startswith("image/") and (named is None or "format" not in merged):
        fmt = "image/" + fmt
    encoding = merged.get("encoding_options") or {}
    return ImageOptions(
        format=fmt,
        mode=merged.get("mode"),
        transparent=merged.get("transparent", transparent),
        colors=merged.get("colors"),
        resampling=merged.get("resampling_method", image_globals.resampling_method),
        jpeg_quality=int(encoding.get("jpeg_quality", image_globals.jpeg_quality)),
        opacity=merged.get("opacity"),
        quantizer=encoding.get("quantizer"),
        paletted=image_globals.paletted,
    )
