"""Merge layer images bottom to top with alpha compositing and per-layer opacity."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image

from mapproxy.image.blank import blank_image, create_blank
from mapproxy.image.options import ImageOptions
from mapproxy.image.result import ImageResult
from mapproxy.image.transform import resampling_filter


def merge_images(
    results: Sequence[ImageResult],
    size: tuple[int, int],
    options: ImageOptions,
    opacities: Sequence[float | None] | None = None,
) -> ImageResult:
    """Composite ``results`` (first = bottom) onto a transparent or ``bgcolor`` canvas.

    ``opacities`` runs parallel to ``results`` (0.0-1.0, None = as is); by default each
    result's ``opacity`` (as in MapProxy, a single result's opacity is ignored). A single
    opaque input of ``size`` is returned untouched (not decoded). Layers below an opaque,
    full-opacity layer are skipped without decoding. The result is cacheable only if all
    inputs are, and its ``transparent`` is ``options.transparent``.
    """
    if opacities is None:
        opacities = [r.opacity for r in results] if len(results) > 1 else [None] * len(results)
    elif len(opacities) != len(results):
        raise ValueError("merge_images needs one opacity per result")
    if not results:
        return blank_image(size, options)
    size = (int(size[0]), int(size[1]))
    transparent = bool(options.transparent)
    cacheable = all(result.cacheable for result in results)
    plain_canvas = not transparent or len(options.bgcolor) < 4

    if len(results) == 1 and _is_full_opacity(opacities[0]) and plain_canvas:
        result = results[0]
        if (transparent or not result.transparent) and _result_size(result) == size:
            return result

    # Walk top-down so layers hidden below an opaque layer are never decoded.
    layers: list[tuple[Image.Image, float | None]] = []
    resample = resampling_filter(options.resampling)
    top_opaque: ImageResult | None = None
    for result, opacity in zip(reversed(results), reversed(opacities), strict=True):
        if opacity is not None and opacity <= 0.0:
            continue
        image = result.as_image()
        if image.size != size:
            image = image.resize(size, resample)
        if _is_full_opacity(opacity):
            opacity = None
        layers.append((image, opacity))
        if opacity is None and not image.has_transparency_data:
            top_opaque = result
            break
    layers.reverse()

    if not layers:
        return ImageResult(
            create_blank(size, options), size=size, transparent=transparent, cacheable=cacheable
        )
    if len(layers) == 1 and top_opaque is not None and plain_canvas:
        image = layers[0][0]
        if image is top_opaque.as_image() and (cacheable or not top_opaque.cacheable):
            return top_opaque

    canvas = _start_canvas(layers[0], size, options)
    if canvas is None:
        canvas = create_blank(size, options)
    else:
        layers = layers[1:]
    for image, opacity in layers:
        _composite(canvas, image, opacity)
    return ImageResult(canvas, size=size, transparent=transparent, cacheable=cacheable)


def _is_full_opacity(opacity: float | None) -> bool:
    return opacity is None or opacity >= 1.0


def _result_size(result: ImageResult) -> tuple[int, int] | None:
    """Size of ``result``, reading only the image header when it holds bytes."""
    if result.size is not None:
        return (int(result.size[0]), int(result.size[1]))
    with Image.open(io.BytesIO(result.as_bytes())) as image:
        return image.size


def _start_canvas(
    bottom: tuple[Image.Image, float | None], size: tuple[int, int], options: ImageOptions
) -> Image.Image | None:
    """The bottom layer as a fresh canvas when it covers the canvas colour exactly."""
    image, opacity = bottom
    if opacity is not None:
        return None
    if options.transparent:
        if len(options.bgcolor) == 4:
            return None
        return image.convert("RGBA")  # a copy even if already RGBA
    if image.has_transparency_data:
        return None
    return image.convert("RGB")


def _composite(canvas: Image.Image, image: Image.Image, opacity: float | None) -> None:
    """Draw ``image`` over ``canvas`` in place (RGBA: Porter-Duff over; RGB: alpha blend)."""
    has_alpha = image.has_transparency_data
    if canvas.mode == "RGBA":
        layer = image if image.mode == "RGBA" else image.convert("RGBA")
        if opacity is not None:
            alpha = _scaled_alpha(layer, opacity)
            if layer is image:
                layer = image.copy()  # never modify the caller's image
            layer.putalpha(alpha)
        canvas.alpha_composite(layer)
        return
    if has_alpha:
        layer = image if image.mode == "RGBA" else image.convert("RGBA")
        if opacity is None:
            canvas.paste(layer, (0, 0), layer)
        else:
            # blend where the layer is opaque (0.5 gives 127 on every channel, as MapProxy)
            blended = Image.blend(canvas, layer.convert(canvas.mode), opacity)
            canvas.paste(blended, (0, 0), layer.getchannel("A"))
    elif opacity is None:
        canvas.paste(image, (0, 0))
    else:
        # blend, not an 8-bit mask: 0.5 gives 127 on every channel, as in MapProxy
        canvas.paste(Image.blend(canvas, image.convert(canvas.mode), opacity), (0, 0))


def _scaled_alpha(image: Image.Image, opacity: float) -> Image.Image:
    """Alpha band of an RGBA image multiplied by ``opacity``."""
    table = [int(value * opacity) for value in range(256)]  # truncated, as in MapProxy
    return image.getchannel("A").point(table)
