"""Reproject tile mosaics with one vectorised remap (OpenCV) instead of a Pillow mesh.

The source pixel position of every destination pixel comes from a coarse grid of
transformed points, bilinearly interpolated; the grid is refined until the
interpolation matches the projection. OpenCV (``opencv-python-headless``, the ``fast``
extra) samples the source; without it, or where the transformation fails somewhere
in the request (outside a projection's domain), callers fall back to the Pillow mesh.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from mapproxy.image.result import ImageResult
from mapproxy.srs import SRS, BBox
from mapproxy.util.lazy import lazy_module

if TYPE_CHECKING:
    import pyproj
else:
    pyproj = lazy_module("pyproj")  # loaded with the first transformation

cv2: Any
try:
    import cv2
except ImportError:  # optional: the Pillow mesh is used instead
    cv2 = None
else:
    # Server processes are sized to the cores already; OpenCV's own thread pool would
    # only add CPU time (threads spinning between the small operations of a request).
    cv2.setNumThreads(1)

# Destination pixels between grid points (even): coarsest first, refined while too
# curved. Coarse first as MapProxy's own mesh: its images are matched more closely.
_GRID_STEPS = (512, 256, 128, 64, 32, 16, 8, 4, 2)
# Largest accepted error (source pixels) of the interpolated position at a cell centre.
_TOLERANCE_PIXELS = 0.5
# Modes a tile may have to be pasted into an RGB(A) mosaic without losing data.
_COLOR_MODES = frozenset({"P", "RGB", "RGBA", "L", "LA", "PA", "1"})

_Array = np.ndarray[Any, Any]


def is_available() -> bool:
    """True if OpenCV is installed, so `warp_tiles` can be used."""
    return cv2 is not None


@dataclass(frozen=True, slots=True)
class SourceMaps:
    """Source pixel position (x, y; pixel centres at integers) of each destination pixel.

    ``reduce_factor`` > 1 means the source should be shrunk by that factor first (the
    maps are for the full-size source); ``inside`` is True if every position lies
    within the source image.
    """

    map_x: _Array
    map_y: _Array
    reduce_factor: int
    inside: bool


def source_maps(
    src_bbox: BBox,
    src_size: tuple[int, int],
    src_srs: SRS,
    dst_bbox: BBox,
    dst_size: tuple[int, int],
    dst_srs: SRS,
) -> SourceMaps | None:
    """Maps for `cv2.remap`; None if some point fails to transform or stays too curved."""
    dst_width, dst_height = dst_size
    src_width, src_height = src_size
    dst_res = ((dst_bbox[2] - dst_bbox[0]) / dst_width, (dst_bbox[3] - dst_bbox[1]) / dst_height)
    src_res = ((src_bbox[2] - src_bbox[0]) / src_width, (src_bbox[3] - src_bbox[1]) / src_height)
    forward = _transformer(dst_srs, src_srs)
    backward = _transformer(src_srs, dst_srs)
    longitude_wraps = dst_srs.is_latlong

    def source_pixels(xs: _Array, ys: _Array) -> tuple[_Array, _Array] | None:
        """Source pixel positions of destination pixel positions (edges at integers)."""
        dst_x = dst_bbox[0] + xs * dst_res[0]
        dst_y = dst_bbox[3] - ys * dst_res[1]
        src_x, src_y = forward.transform(dst_x, dst_y, errcheck=False)
        # Outside its domain a projection may return finite nonsense: check the way back.
        back_x, back_y = backward.transform(src_x, src_y, errcheck=False)
        error_x = back_x - dst_x
        with np.errstate(invalid="ignore"):
            if longitude_wraps:
                error_x = (error_x + 180.0) % 360.0 - 180.0
            valid = (np.abs(error_x) <= dst_res[0]) & (np.abs(back_y - dst_y) <= dst_res[1])
        if not valid.all():
            return None
        return (src_x - src_bbox[0]) / src_res[0], (src_bbox[3] - src_y) / src_res[1]

    for step in _GRID_STEPS:
        columns = math.ceil(dst_width / step)
        rows = math.ceil(dst_height / step)
        grid_x, grid_y = np.meshgrid(
            np.arange(columns + 1, dtype=np.float64) * step,
            np.arange(rows + 1, dtype=np.float64) * step,
        )
        # Cell centres and edge midpoints: conformal projections curve like x^2 - y^2,
        # which cancels out at the centre but not on the edges.
        xs = np.arange(columns + 1, dtype=np.float64) * step
        ys = np.arange(rows + 1, dtype=np.float64) * step
        middle_x, middle_y = xs[:-1] + step / 2, ys[:-1] + step / 2
        checks = [
            np.meshgrid(middle_x, middle_y),
            np.meshgrid(middle_x, ys),
            np.meshgrid(xs, middle_y),
        ]
        found = source_pixels(
            np.concatenate([grid_x.ravel()] + [x.ravel() for x, _y in checks]),
            np.concatenate([grid_y.ravel()] + [y.ravel() for _x, y in checks]),
        )
        if found is None:
            return None
        nodes = (rows + 1) * (columns + 1)
        node_x = found[0][:nodes].reshape(rows + 1, columns + 1)
        node_y = found[1][:nodes].reshape(rows + 1, columns + 1)
        if _is_linear(node_x, found[0][nodes:]) and _is_linear(node_y, found[1][nodes:]):
            break
    else:
        return None

    map_x = _interpolate(node_x - 0.5, step, dst_size)
    map_y = _interpolate(node_y - 0.5, step, dst_size)
    inside = bool(
        map_x.min() >= -0.5
        and map_y.min() >= -0.5
        and map_x.max() <= src_width - 0.5
        and map_y.max() <= src_height - 0.5
    )
    return SourceMaps(map_x, map_y, _reduce_factor(node_x, node_y, step), inside)


def _is_linear(nodes: _Array, checked: _Array) -> bool:
    """True if cell centres and edge midpoints (in `source_maps` order) match the bilinear
    interpolation of the nodes within the tolerance."""
    centres = (nodes[:-1, :-1] + nodes[1:, :-1] + nodes[:-1, 1:] + nodes[1:, 1:]) / 4
    along_x = (nodes[:, :-1] + nodes[:, 1:]) / 2
    along_y = (nodes[:-1, :] + nodes[1:, :]) / 2
    expected = np.concatenate((centres.ravel(), along_x.ravel(), along_y.ravel()))
    return bool(np.abs(expected - checked).max() <= _TOLERANCE_PIXELS)


def _interpolate(nodes: _Array, step: int, size: tuple[int, int]) -> _Array:
    """Bilinear interpolation of grid values (every ``step`` pixels) at all pixel centres."""
    rows, columns = nodes.shape
    # cv2.resize puts node i at output pixel centre (i + 0.5) * step - 0.5: the pixel
    # centres of our image start half a step into the enlarged image.
    enlarged = cv2.resize(
        nodes.astype(np.float32),
        (columns * step, rows * step),
        interpolation=cv2.INTER_LINEAR,
    )
    offset = step // 2
    width, height = size
    return np.ascontiguousarray(enlarged[offset : offset + height, offset : offset + width])


def _reduce_factor(node_x: _Array, node_y: _Array, step: int) -> int:
    """Integer source reduction so that resampling does not alias when shrinking."""
    along_x = np.hypot(np.diff(node_x, axis=1)[:-1, :], np.diff(node_y, axis=1)[:-1, :])
    along_y = np.hypot(np.diff(node_x, axis=0)[:, :-1], np.diff(node_y, axis=0)[:, :-1])
    scales = np.minimum(along_x, along_y)
    if scales.max() < 2 * step:  # the usual case: no reduction, no median needed
        return 1
    scale = float(np.median(scales)) / step
    return max(1, int(scale)) if math.isfinite(scale) else 1


@lru_cache(maxsize=256)
def _transformer(from_srs: SRS, to_srs: SRS) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(from_srs.crs, to_srs.crs, always_xy=True)


def assemble_tile_array(
    tiles: Sequence[ImageResult | None],
    grid_size: tuple[int, int],
    tile_size: tuple[int, int],
) -> _Array | None:
    """Decode ``tiles`` (row-major, None = empty) once into one RGB or RGBA array.

    RGB when every tile is present and opaque, else RGBA with transparent gaps.
    None for tiles of another size or of modes that RGB(A) cannot hold (16 bit, float).
    """
    columns, rows = grid_size
    tile_width, tile_height = tile_size
    images: list[Image.Image | None] = []
    image: Image.Image | None
    with_alpha = False
    for tile in tiles:
        if tile is None:
            images.append(None)
            with_alpha = True
            continue
        image = tile.as_image()
        if image.size != (tile_width, tile_height) or image.mode not in _COLOR_MODES:
            return None
        with_alpha = with_alpha or image.has_transparency_data
        images.append(image)
    mode = "RGBA" if with_alpha else "RGB"
    shape = (rows * tile_height, columns * tile_width, len(mode))
    canvas = np.zeros(shape, np.uint8) if with_alpha else np.empty(shape, np.uint8)
    for index, image in enumerate(images):
        if image is None:
            continue
        row, column = divmod(index, columns)
        top, left = row * tile_height, column * tile_width
        if image.mode != mode:
            image = image.convert(mode)
        canvas[top : top + tile_height, left : left + tile_width] = np.asarray(image)
    return canvas


_INTERPOLATIONS = {"nearest": "INTER_NEAREST", "bilinear": "INTER_LINEAR", "bicubic": "INTER_CUBIC"}


def warp_array(source: _Array, maps: SourceMaps, resampling: str) -> _Array:
    """Sample the RGB(A) ``source`` at ``maps``; the result is RGBA where it has gaps.

    Sources with alpha are warped premultiplied, so colours of transparent pixels do not
    bleed into their neighbours.
    """
    interpolation = getattr(cv2, _INTERPOLATIONS[resampling.lower()])
    map_x, map_y = maps.map_x, maps.map_y
    if maps.reduce_factor > 1:
        source = _reduced(source, maps.reduce_factor)
        map_x = (map_x + 0.5) / maps.reduce_factor - 0.5
        map_y = (map_y + 0.5) / maps.reduce_factor - 0.5
    height, width = source.shape[:2]
    if source.shape[2] == 3:
        result = cv2.remap(source, map_x, map_y, interpolation, borderMode=cv2.BORDER_REPLICATE)
        if maps.inside:
            return result  # type: ignore[no-any-return]
        alpha = (map_x >= -0.5) & (map_x <= width - 0.5) & (map_y >= -0.5) & (map_y <= height - 0.5)
        return np.dstack((result, alpha.astype(np.uint8) * 255))
    if interpolation == cv2.INTER_NEAREST:
        return cv2.remap(  # type: ignore[no-any-return]
            source, map_x, map_y, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
    premultiplied = _premultiplied(source)
    result = cv2.remap(
        premultiplied, map_x, map_y, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return _unpremultiplied(result)


def _reduced(source: _Array, factor: int) -> _Array:
    """``source`` shrunk by an integer ``factor`` (box filter; edges padded to full boxes)."""
    height, width = source.shape[:2]
    pad_y, pad_x = -height % factor, -width % factor
    if pad_x or pad_y:
        source = np.pad(source, ((0, pad_y), (0, pad_x), (0, 0)), mode="edge")
    size = ((width + pad_x) // factor, (height + pad_y) // factor)
    return cv2.resize(source, size, interpolation=cv2.INTER_AREA)  # type: ignore[no-any-return]


def _premultiplied(source: _Array) -> _Array:
    alpha = source[:, :, 3:4].astype(np.uint16)
    result = source.copy()
    result[:, :, :3] = (source[:, :, :3] * alpha + 127) // 255
    return result


def _unpremultiplied(source: _Array) -> _Array:
    alpha = source[:, :, 3:4].astype(np.uint16)
    colors = source[:, :, :3].astype(np.uint16) * 255 + alpha // 2
    with np.errstate(divide="ignore", invalid="ignore"):
        colors = np.where(alpha > 0, colors // np.maximum(alpha, 1), 0)
    result = source.copy()
    result[:, :, :3] = np.minimum(colors, 255)
    return result


def warp_tiles(
    tiles: Sequence[ImageResult | None],
    grid_size: tuple[int, int],
    tile_size: tuple[int, int],
    src_bbox: BBox,
    src_srs: SRS,
    dst_bbox: BBox,
    dst_size: tuple[int, int],
    dst_srs: SRS,
    resampling: str,
) -> Image.Image | None:
    """Assemble ``tiles`` and reproject them to ``dst_bbox``/``dst_size`` in ``dst_srs``.

    RGB if the result is opaque, else RGBA. None if OpenCV is missing or the request
    needs the Pillow mesh (see the module docstring); nothing is decoded then.
    """
    if cv2 is None or resampling.lower() not in _INTERPOLATIONS:
        return None
    columns, rows = grid_size
    src_size = (columns * tile_size[0], rows * tile_size[1])
    maps = source_maps(src_bbox, src_size, src_srs, dst_bbox, dst_size, dst_srs)
    if maps is None:
        return None
    source = assemble_tile_array(tiles, grid_size, tile_size)
    if source is None:
        return None
    return Image.fromarray(warp_array(source, maps, resampling))
