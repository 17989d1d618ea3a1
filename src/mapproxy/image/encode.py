"""Encode PIL images to PNG, JPEG, GIF, TIFF/GeoTIFF and WebP; detect formats from bytes."""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from functools import lru_cache
from typing import IO

from PIL import Image, TiffImagePlugin, TiffTags

from mapproxy.image.options import ImageOptions
from mapproxy.image.tile import has_transparency
from mapproxy.srs import SRS, BBox

_QUANTIZERS = {
    "mediancut": Image.Quantize.MEDIANCUT,
    "fastoctree": Image.Quantize.FASTOCTREE,
    "maxcoverage": Image.Quantize.MAXCOVERAGE,
}

# ``image/png; mode=...`` values and the PIL mode they force.
_FORMAT_MODES = {"8bit": "P", "24bit": "RGB", "32bit": "RGBA"}

# Modes PNG can store directly (anything else is converted to RGB/RGBA first).
_PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})
_TIFF_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F", "P", "RGB", "RGBA", "CMYK"})

# MapProxy's PNG settings (seen in its output): zlib level 1 with run-length matching.
# Faster to encode than Pillow's default level 6 (about 3x for map-like palette tiles);
# the files are as big as MapProxy's.
_PNG_SAVE_OPTIONS = {"compress_level": 1, "compress_type": zlib.Z_RLE}

# Palette sizes at which PNG stores fewer bits per pixel (4, 2, 1).
_SMALL_PALETTE = 16

# GeoTIFF tags and geo keys (GeoTIFF 1.0 spec).
_MODEL_PIXEL_SCALE = 33550
_MODEL_TIEPOINT = 33922
_GEO_KEY_DIRECTORY = 34735
_GT_MODEL_TYPE = 1024
_GT_RASTER_TYPE = 1025
_GEOGRAPHIC_TYPE = 2048
_PROJECTED_CS_TYPE = 3072
_EPSG_ALIASES = {"EPSG:900913": 3857, "EPSG:102100": 3857, "EPSG:102113": 3857, "CRS:84": 4326}


def encode_image(
    image: Image.Image,
    options: ImageOptions,
    *,
    bbox: BBox | None = None,
    srs: SRS | None = None,
) -> bytes:
    """Encode ``image`` as ``options.format``; raises ValueError for unknown formats.

    ``bbox`` (x/y order) and ``srs`` add GeoTIFF tags to TIFF output. ``image/mixed``
    gives PNG when the image has transparent pixels and JPEG otherwise (use
    ``detect_format`` to learn which).
    """
    mime = options.mime_type
    encoder = _ENCODERS.get(mime)
    if encoder is None:
        raise ValueError(f"unsupported image format {options.format!r}")
    out = io.BytesIO()
    if mime in ("image/tiff", "image/geotiff"):
        _encode_tiff(image, options, out, bbox, srs)
    else:
        encoder(image, options, out)
    return out.getvalue()


def detect_format(data: bytes) -> str | None:
    """Mime type (``image/png`` ...) of encoded image ``data`` from its magic bytes, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "image/tiff"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def flatten_image(image: Image.Image, bgcolor: tuple[int, ...]) -> Image.Image:
    """Composite an image with alpha onto an opaque ``bgcolor`` and return an RGB image."""
    if image.mode != "RGBA":
        image = image.convert("RGBA")
    canvas = Image.new("RGB", image.size, tuple(bgcolor[:3]))
    canvas.paste(image, (0, 0), image)
    return canvas


@lru_cache(maxsize=128)
def _format_mode(format_name: str) -> str | None:
    """PIL mode forced by a ``; mode=8bit|24bit|32bit`` format parameter."""
    for param in format_name.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "mode":
            return _FORMAT_MODES.get(value.strip().lower())
    return None


def _keeps_alpha(image: Image.Image, options: ImageOptions) -> bool:
    # transparent=None keeps whatever the image has; False drops alpha onto bgcolor.
    return options.transparent is not False and image.has_transparency_data


def _opaque(image: Image.Image, options: ImageOptions) -> Image.Image:
    """RGB/L version of ``image``, compositing alpha onto the background colour."""
    if image.has_transparency_data:
        return flatten_image(image, options.bgcolor)
    if image.mode in ("RGB", "L"):
        return image
    return image.convert("RGB")


def _encode_png(image: Image.Image, options: ImageOptions, out: IO[bytes]) -> None:
    mode = _format_mode(options.format) or options.mode
    if mode == "RGBA":
        if image.mode != "RGBA":
            image = image.convert("RGBA")
    elif mode == "RGB":
        image = _opaque(image, options)
        if image.mode != "RGB":
            image = image.convert("RGB")
    elif mode == "I":
        if image.mode not in ("I", "I;16"):
            image = image.convert("I")
    else:
        if not _keeps_alpha(image, options) and image.has_transparency_data:
            image = flatten_image(image, options.bgcolor)
        colors = options.colors
        if colors is None:
            colors = 256 if (options.paletted or mode == "P") else 0
        elif colors == 0 and mode == "P":
            colors = 256
        if colors > 0:
            image = _quantize(image, colors, options.quantizer, force=mode == "P")
        elif image.mode not in _PNG_MODES:
            image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    image.save(out, "PNG", **_PNG_SAVE_OPTIONS)


def _quantize(image: Image.Image, colors: int, quantizer: str | None, force: bool) -> Image.Image:
    """Palette version of ``image`` with at most ``colors`` colours, keeping alpha."""
    if image.mode == "P":
        palette_size = len(image.getpalette() or ()) // 3
        if palette_size <= colors:
            return image
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    elif image.mode in ("1", "L", "I", "I;16", "F") and not force:
        # Grey and high bit depth images are already compact or must stay exact.
        return image
    elif image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    if image.mode == "RGBA":
        method = Image.Quantize.FASTOCTREE  # the only quantizer that keeps alpha
    else:
        # fastoctree is MapProxy's default too: tiles match pixel for pixel.
        method = _QUANTIZERS.get((quantizer or "fastoctree").lower(), Image.Quantize.FASTOCTREE)
    quantized = image.quantize(colors, method=method)
    # FASTOCTREE always returns a full palette; trimming unused entries lets the PNG
    # writer pick a smaller bit depth (a few-colour tile shrinks several times). Only
    # worth its cost (remap_palette) when the bit depth does go down.
    palette = quantized.getpalette() or []
    used = quantized.getcolors(_SMALL_PALETTE)
    if used is not None and len(used) < len(palette) // 3:
        indexes = sorted(int(index) for _count, index in used)  # type: ignore[arg-type]
        quantized = quantized.remap_palette(indexes)
    return quantized


def _encode_jpeg(image: Image.Image, options: ImageOptions, out: IO[bytes]) -> None:
    if image.mode not in ("RGB", "L", "CMYK"):
        image = _opaque(image, options)
    image.save(out, "JPEG", quality=options.jpeg_quality)


def _encode_gif(image: Image.Image, options: ImageOptions, out: IO[bytes]) -> None:
    if not _keeps_alpha(image, options):
        image = _opaque(image, options)
    elif image.mode not in ("RGBA", "P"):
        image = image.convert("RGBA")
    # Pillow builds an adaptive palette with one transparent index for RGBA input.
    image.save(out, "GIF")


def _encode_webp(image: Image.Image, options: ImageOptions, out: IO[bytes]) -> None:
    if _keeps_alpha(image, options):
        if image.mode != "RGBA":
            image = image.convert("RGBA")
    else:
        image = _opaque(image, options)
        if image.mode != "RGB":
            image = image.convert("RGB")
    image.save(out, "WEBP", quality=options.jpeg_quality)


def _encode_tiff(
    image: Image.Image,
    options: ImageOptions,
    out: IO[bytes],
    bbox: BBox | None = None,
    srs: SRS | None = None,
) -> None:
    compression = options.tiff_compression
    if compression == "raw":
        compression = None
    target = options.mode if options.mode in ("RGB", "RGBA", "L", "I") else None
    if compression == "jpeg" and target not in ("RGB", "L"):
        target = None  # JPEG compression cannot store alpha or 32 bit integers
    if (
        target in ("RGB", "L")
        or compression == "jpeg"
        or (target is None and not _keeps_alpha(image, options))
    ):
        image = _opaque(image, options)
    elif target is None and image.mode not in _TIFF_MODES:
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    if target is not None and image.mode != target:
        image = image.convert(target)
    params: dict[str, object] = {}
    if compression:
        params["compression"] = compression
    if bbox is not None and srs is not None:
        params["tiffinfo"] = _geotiff_tags(image.size, bbox, srs)
    image.save(out, "TIFF", **params)


def _geotiff_tags(
    size: tuple[int, int], bbox: BBox, srs: SRS
) -> TiffImagePlugin.ImageFileDirectory_v2:
    """GeoTIFF tags placing the image at ``bbox`` (x/y order, pixel is area)."""
    width, height = size
    minx, miny, maxx, maxy = bbox
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[_MODEL_PIXEL_SCALE] = ((maxx - minx) / width, (maxy - miny) / height, 0.0)
    tags.tagtype[_MODEL_PIXEL_SCALE] = TiffTags.DOUBLE
    tags[_MODEL_TIEPOINT] = (0.0, 0.0, 0.0, float(minx), float(maxy), 0.0)
    tags.tagtype[_MODEL_TIEPOINT] = TiffTags.DOUBLE
    keys = [(_GT_MODEL_TYPE, 2 if srs.is_latlong else 1), (_GT_RASTER_TYPE, 1)]
    epsg = _epsg_code(srs)
    if epsg is not None:
        keys.append((_GEOGRAPHIC_TYPE if srs.is_latlong else _PROJECTED_CS_TYPE, epsg))
    directory = [1, 1, 0, len(keys)]
    for key, value in keys:
        directory.extend((key, 0, 1, value))
    tags[_GEO_KEY_DIRECTORY] = tuple(directory)
    tags.tagtype[_GEO_KEY_DIRECTORY] = TiffTags.SHORT
    return tags


def _epsg_code(srs: SRS) -> int | None:
    """EPSG number for GeoTIFF keys (which are 16 bit), or None."""
    code = _EPSG_ALIASES.get(srs.code)
    if code is None:
        prefix, _, number = srs.code.partition(":")
        code = int(number) if prefix == "EPSG" and number.isdigit() else srs.crs.to_epsg()
    if code is None or not 0 < code < 65536:
        return None
    return int(code)


def _encode_mixed(image: Image.Image, options: ImageOptions, out: IO[bytes]) -> None:
    if has_transparency(image):
        _encode_png(image, options, out)
    else:
        _encode_jpeg(image, options, out)


_Encoder = Callable[[Image.Image, ImageOptions, IO[bytes]], None]

_ENCODERS: dict[str, _Encoder] = {
    "image/png": _encode_png,
    "image/jpeg": _encode_jpeg,
    "image/gif": _encode_gif,
    "image/tiff": _encode_tiff,
    "image/geotiff": _encode_tiff,
    "image/webp": _encode_webp,
    "image/mixed": _encode_mixed,
}
