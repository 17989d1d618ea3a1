"""Scale, crop and reproject images between bboxes and SRS."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from statistics import median
from typing import TYPE_CHECKING

from PIL import Image

from mapproxy.errors import TransformationError
from mapproxy.image.result import ImageResult
from mapproxy.image.tile import assemble_tiles
from mapproxy.srs import SRS, BBox, Point
from mapproxy.util.lazy import lazy_module

if TYPE_CHECKING:
    import pyproj
else:
    pyproj = lazy_module("pyproj")  # loaded with the first transformation

RESAMPLING_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}

# Modes the transform code works in directly; others are converted first.
_DIRECT_MODES = frozenset({"RGB", "RGBA", "L", "LA", "I", "F"})
_ALPHA_MODES = {"RGB": "RGBA", "L": "LA", "RGBA": "RGBA", "LA": "LA"}

# Mesh: initial cells per axis, adaptive refinement depth and quad budget.
_MIN_CELLS = 8
_MAX_CELLS = 32
_CELL_PIXELS = 64
_MAX_DEPTH = 5
_MAX_QUADS = 4096
# Largest accepted deviation (in destination pixels) between the bilinear
# interpolation of a quad and the real transformation at its centre.
_TOLERANCE_PIXELS = 0.5
# Tolerance (in pixels) when comparing pixel boxes to image bounds.
_EPSILON = 1e-6

_Quad = tuple[int, int, int, int]
_MeshEntry = tuple[_Quad, tuple[float, float, float, float, float, float, float, float]]


def resampling_filter(name: str) -> Image.Resampling:
    """PIL filter for ``nearest``, ``bilinear`` or ``bicubic``; raises ValueError otherwise."""
    try:
        return RESAMPLING_FILTERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown resampling method {name!r}") from None


def transform_image(
    image: Image.Image,
    src_bbox: BBox,
    src_srs: SRS,
    dst_bbox: BBox,
    dst_size: tuple[int, int],
    dst_srs: SRS,
    resampling: str = "bicubic",
) -> Image.Image:
    """Resample ``image`` (covering ``src_bbox`` in ``src_srs``) to ``dst_bbox``/``dst_size``.

    Bboxes are x/y order. Areas not covered by the source (or outside the valid area
    of a projection) are transparent; the result is RGBA/LA then. With equal SRS this
    is a crop/scale; the input image itself is returned when nothing changes.
    """
    resample = resampling_filter(resampling)
    dst_size = (int(dst_size[0]), int(dst_size[1]))
    image = _transformable(image)
    if src_srs.is_same_as(dst_srs):
        return _scale_image(image, src_bbox, dst_bbox, dst_size, resample)
    return _reproject_image(image, src_bbox, src_srs, dst_bbox, dst_size, dst_srs, resample)


def transform_tiles(
    tiles: Sequence[ImageResult | None],
    grid_size: tuple[int, int],
    tile_size: tuple[int, int],
    src_bbox: BBox,
    src_srs: SRS,
    dst_bbox: BBox,
    dst_size: tuple[int, int],
    dst_srs: SRS,
    resampling: str = "bicubic",
) -> Image.Image:
    """Assemble ``tiles`` (row-major, None = empty) and fit them to ``dst_bbox``/``dst_size``.

    Like `assemble_tiles` (transparent) followed by `transform_image`; reprojections use
    one OpenCV remap when possible (see `mapproxy.image.warp`), else the Pillow mesh.
    """
    if not src_srs.is_same_as(dst_srs):
        # numpy/OpenCV cost each server process ~50 MB: load them on the first reprojection
        from mapproxy.image.warp import warp_tiles

        warped = warp_tiles(
            tiles, grid_size, tile_size, src_bbox, src_srs, dst_bbox, dst_size, dst_srs, resampling
        )
        if warped is not None:
            return warped
    image = assemble_tiles(tiles, grid_size, tile_size, transparent=True)
    return transform_image(image, src_bbox, src_srs, dst_bbox, dst_size, dst_srs, resampling)


def _transformable(image: Image.Image) -> Image.Image:
    """``image`` in a mode PIL can resample with every filter."""
    if image.mode in _DIRECT_MODES:
        return image
    if image.mode == "1":
        return image.convert("L")
    if image.mode in ("I;16", "I;16B", "I;16L"):
        return image.convert("I")
    return image.convert("RGBA" if image.has_transparency_data else "RGB")


def _with_alpha(image: Image.Image) -> Image.Image:
    """``image`` with an alpha band (grey and colour images only)."""
    mode = _ALPHA_MODES.get(image.mode)
    if mode is None or mode == image.mode:
        return image
    return image.convert(mode)


def _scale_image(
    image: Image.Image,
    src_bbox: BBox,
    dst_bbox: BBox,
    dst_size: tuple[int, int],
    resample: Image.Resampling,
) -> Image.Image:
    """Crop/scale within one SRS, keeping parts outside ``src_bbox`` transparent."""
    src_width, src_height = image.size
    dst_width, dst_height = dst_size
    src_res_x = (src_bbox[2] - src_bbox[0]) / src_width
    src_res_y = (src_bbox[3] - src_bbox[1]) / src_height
    # dst_bbox in source pixel coordinates (y down).
    left = (dst_bbox[0] - src_bbox[0]) / src_res_x
    right = (dst_bbox[2] - src_bbox[0]) / src_res_x
    top = (src_bbox[3] - dst_bbox[3]) / src_res_y
    bottom = (src_bbox[3] - dst_bbox[1]) / src_res_y
    eps = _EPSILON * max(src_width, src_height, 1)
    inside = (
        left >= -eps and top >= -eps and right <= src_width + eps and (bottom <= src_height + eps)
    )

    if (
        abs((right - left) - dst_width) < eps
        and abs((bottom - top) - dst_height) < eps
        and abs(left - round(left)) < eps
        and abs(top - round(top)) < eps
    ):
        # Same resolution on whole pixels: a plain crop, no resampling.
        x, y = round(left), round(top)
        if inside and (x, y) == (0, 0) and dst_size == image.size:
            return image
        if not inside:
            image = _with_alpha(image)
        return image.crop((x, y, x + dst_width, y + dst_height))

    if inside:
        box = (
            max(0.0, left),
            max(0.0, top),
            min(float(src_width), right),
            min(float(src_height), bottom),
        )
        return image.resize(dst_size, resample, box=box)

    image = _with_alpha(image)
    canvas = Image.new(image.mode, dst_size, 0)
    # Whole destination pixels covered by the source, mapped back to exact source boxes.
    scale_x = dst_width / (right - left)
    scale_y = dst_height / (bottom - top)
    dst_left = max(0, round((0 - left) * scale_x))
    dst_top = max(0, round((0 - top) * scale_y))
    dst_right = min(dst_width, round((src_width - left) * scale_x))
    dst_bottom = min(dst_height, round((src_height - top) * scale_y))
    if dst_right <= dst_left or dst_bottom <= dst_top:
        return canvas
    box = (
        max(0.0, left + dst_left / scale_x),
        max(0.0, top + dst_top / scale_y),
        min(float(src_width), left + dst_right / scale_x),
        min(float(src_height), top + dst_bottom / scale_y),
    )
    part = image.resize((dst_right - dst_left, dst_bottom - dst_top), resample, box=box)
    canvas.paste(part, (dst_left, dst_top))
    return canvas


def _reproject_image(
    image: Image.Image,
    src_bbox: BBox,
    src_srs: SRS,
    dst_bbox: BBox,
    dst_size: tuple[int, int],
    dst_srs: SRS,
    resample: Image.Resampling,
) -> Image.Image:
    """Reproject with an adaptively refined PIL mesh of destination quads."""
    dst_width, dst_height = dst_size
    src_width, src_height = image.size
    dst_res_x = (dst_bbox[2] - dst_bbox[0]) / dst_width
    dst_res_y = (dst_bbox[3] - dst_bbox[1]) / dst_height
    src_res_x = (src_bbox[2] - src_bbox[0]) / src_width
    src_res_y = (src_bbox[3] - src_bbox[1]) / src_height

    # Destination pixel corner (x, y) -> source pixel position, None where it fails.
    positions: dict[tuple[float, float], Point | None] = {}

    def resolve(keys: set[tuple[float, float]]) -> None:
        missing = [key for key in keys if key not in positions]
        if not missing:
            return
        points = [(dst_bbox[0] + x * dst_res_x, dst_bbox[3] - y * dst_res_y) for x, y in missing]
        transformed = _transform_checked(dst_srs, src_srs, points, (dst_res_x, dst_res_y))
        for key, point in zip(missing, transformed, strict=True):
            if point is None:
                positions[key] = None
            else:
                positions[key] = (
                    (point[0] - src_bbox[0]) / src_res_x,
                    (src_bbox[3] - point[1]) / src_res_y,
                )

    xs = _cell_edges(dst_width)
    ys = _cell_edges(dst_height)
    resolve({(x, y) for x in xs for y in ys})
    quads = [
        (xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(len(ys) - 1) for i in range(len(xs) - 1)
    ]
    factor = _reduce_factor(quads, positions)
    mesh, has_gaps = _refine_mesh(quads, positions, resolve, image.size)

    if factor > 1:
        image = image.reduce(factor)
        mesh = [(box, _scaled(quad, 1 / factor)) for box, quad in mesh]
        src_width, src_height = image.size
    if has_gaps or not _mesh_inside(mesh, src_width, src_height):
        image = _with_alpha(image)
    if not mesh:
        return Image.new(image.mode, dst_size, 0)
    return image.transform(dst_size, Image.Transform.MESH, mesh, resample)


def _cell_edges(length: int) -> list[int]:
    """Pixel positions of the initial mesh cell edges along one axis."""
    cells = min(length, max(_MIN_CELLS, min(_MAX_CELLS, math.ceil(length / _CELL_PIXELS))))
    cells = max(cells, 1)
    return sorted({round(i * length / cells) for i in range(cells + 1)})


def _quad_corners(
    quad: _Quad, positions: dict[tuple[float, float], Point | None]
) -> list[Point | None]:
    """Source positions of the NW, SW, SE, NE corners of ``quad``."""
    x0, y0, x1, y1 = quad
    return [positions[(x0, y0)], positions[(x0, y1)], positions[(x1, y1)], positions[(x1, y0)]]


def _reduce_factor(quads: list[_Quad], positions: dict[tuple[float, float], Point | None]) -> int:
    """Integer source reduction so that mesh resampling does not alias when shrinking."""
    scales: list[float] = []
    for quad in quads:
        corners = _quad_corners(quad, positions)
        nw, sw, _se, ne = corners
        if nw is None or sw is None or ne is None:
            continue
        width = math.dist(nw, ne) / (quad[2] - quad[0])
        height = math.dist(nw, sw) / (quad[3] - quad[1])
        scales.append(min(width, height))
    if not scales:
        return 1
    return max(1, int(median(scales)))


def _refine_mesh(
    quads: list[_Quad],
    positions: dict[tuple[float, float], Point | None],
    resolve: Callable[[set[tuple[float, float]]], None],
    src_size: tuple[int, int],
) -> tuple[list[_MeshEntry], bool]:
    """Split quads until bilinear interpolation matches the projection; drop failing quads.

    Quads that fail to transform or lie beyond one side of the source are dropped, and
    so are quads that stay curved at the depth limit and reach outside the source (a
    discontinuity like the back side of a transverse mercator, or the source's edge).
    Returns the PIL mesh and whether some destination area was left uncovered.
    """
    mesh: list[_MeshEntry] = []
    has_gaps = False
    for depth in range(_MAX_DEPTH + 1):
        keys: set[tuple[float, float]] = set()
        for x0, y0, x1, y1 in quads:
            keys.update(((x0, y0), (x0, y1), (x1, y1), (x1, y0), ((x0 + x1) / 2, (y0 + y1) / 2)))
        resolve(keys)
        next_quads: list[_Quad] = []
        for quad in quads:
            x0, y0, x1, y1 = quad
            corners = [corner for corner in _quad_corners(quad, positions) if corner is not None]
            complete = len(corners) == 4
            if complete:
                centre = positions[((x0 + x1) / 2, (y0 + y1) / 2)]
                if centre is not None and _is_outside([*corners, centre], src_size):
                    has_gaps = True
                    continue
                if centre is not None and _is_linear(quad, corners, centre):
                    mesh.append((quad, _flatten(corners)))
                    continue
            can_split = (
                depth < _MAX_DEPTH
                and (x1 - x0 >= 2 or y1 - y0 >= 2)
                and len(mesh) + len(next_quads) + 4 <= _MAX_QUADS
            )
            if can_split:
                next_quads.extend(_split(quad))
            elif complete and _is_inside(corners, src_size):
                # Still curved but within the source: the best we can do.
                mesh.append((quad, _flatten(corners)))
            else:
                has_gaps = True
        quads = next_quads
        if not quads:
            break
    return mesh, has_gaps


def _is_inside(points: list[Point], src_size: tuple[int, int]) -> bool:
    """True if all ``points`` lie within the source image."""
    width, height = src_size
    return all(0 <= x <= width and 0 <= y <= height for x, y in points)


def _is_outside(points: list[Point], src_size: tuple[int, int]) -> bool:
    """True if all ``points`` lie beyond the same edge of the source image."""
    width, height = src_size
    return (
        all(x < 0 for x, _y in points)
        or all(y < 0 for _x, y in points)
        or all(x > width for x, _y in points)
        or all(y > height for _x, y in points)
    )


def _is_linear(quad: _Quad, corners: list[Point], centre: Point) -> bool:
    """True if the quad's bilinear interpolation hits the real ``centre`` position.

    The deviation is measured in destination pixels (through the quad's local scale),
    so stretched areas near singularities keep being refined.
    """
    x0, y0, x1, y1 = quad
    nw, sw, se, ne = corners
    # The bilinear interpolation at the quad centre is the mean of its corners.
    error_x = centre[0] - (nw[0] + sw[0] + se[0] + ne[0]) / 4
    error_y = centre[1] - (nw[1] + sw[1] + se[1] + ne[1]) / 4
    # Source pixels per destination pixel along the quad's x and y edges.
    ax, ay = (ne[0] - nw[0]) / (x1 - x0), (ne[1] - nw[1]) / (x1 - x0)
    bx, by = (sw[0] - nw[0]) / (y1 - y0), (sw[1] - nw[1]) / (y1 - y0)
    det = ax * by - ay * bx
    if not abs(det) > 1e-12:
        return error_x == 0 and error_y == 0
    dst_error_x = (by * error_x - bx * error_y) / det
    dst_error_y = (ax * error_y - ay * error_x) / det
    return abs(dst_error_x) <= _TOLERANCE_PIXELS and abs(dst_error_y) <= _TOLERANCE_PIXELS


def _split(quad: _Quad) -> list[_Quad]:
    x0, y0, x1, y1 = quad
    xs = (x0, (x0 + x1) // 2, x1) if x1 - x0 >= 2 else (x0, x1)
    ys = (y0, (y0 + y1) // 2, y1) if y1 - y0 >= 2 else (y0, y1)
    return [
        (xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(len(ys) - 1) for i in range(len(xs) - 1)
    ]


def _flatten(corners: list[Point]) -> tuple[float, float, float, float, float, float, float, float]:
    nw, sw, se, ne = corners
    return (nw[0], nw[1], sw[0], sw[1], se[0], se[1], ne[0], ne[1])


def _scaled(
    quad: tuple[float, float, float, float, float, float, float, float], factor: float
) -> tuple[float, float, float, float, float, float, float, float]:
    a, b, c, d, e, f, g, h = quad
    return (
        a * factor,
        b * factor,
        c * factor,
        d * factor,
        e * factor,
        f * factor,
        g * factor,
        h * factor,
    )


def _mesh_inside(mesh: list[_MeshEntry], width: int, height: int) -> bool:
    """True if every mesh corner lies within the source image."""
    eps = 1e-3
    for _box, quad in mesh:
        for i in range(0, 8, 2):
            if not (-eps <= quad[i] <= width + eps and -eps <= quad[i + 1] <= height + eps):
                return False
    return True


def _transform_checked(
    from_srs: SRS, to_srs: SRS, points: list[Point], tolerance: tuple[float, float]
) -> list[Point | None]:
    """Transform ``points``, rejecting those that do not transform back within ``tolerance``.

    Outside its domain a projection may return finite nonsense (e.g. transverse
    mercator far from its zone); the round trip exposes those points.
    """
    forward = _transform_points(from_srs, to_srs, points)
    valid = [index for index, point in enumerate(forward) if point is not None]
    backward = _transform_points(to_srs, from_srs, [forward[index] for index in valid])  # type: ignore[misc]
    for index, point in zip(valid, backward, strict=True):
        if point is None:
            forward[index] = None
            continue
        dx = point[0] - points[index][0]
        if from_srs.is_latlong:
            dx = (dx + 180.0) % 360.0 - 180.0
        if not (abs(dx) <= tolerance[0] and abs(point[1] - points[index][1]) <= tolerance[1]):
            forward[index] = None
    return forward


def _transform_points(from_srs: SRS, to_srs: SRS, points: list[Point]) -> list[Point | None]:
    """Transform ``points``; points that cannot be transformed come back as None."""
    if not points:
        return []
    try:
        return list(from_srs.transform_to(to_srs, points))
    except TransformationError:
        pass
    # Some points failed: transform again without error checking and keep the finite ones.
    xs = [x for x, _y in points]
    ys = [y for _x, y in points]
    out_x, out_y = _lenient_transformer(from_srs, to_srs).transform(xs, ys, errcheck=False)
    return [
        (x, y) if math.isfinite(x) and math.isfinite(y) else None
        for x, y in zip(out_x, out_y, strict=True)
    ]


@lru_cache(maxsize=256)
def _lenient_transformer(from_srs: SRS, to_srs: SRS) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(from_srs.crs, to_srs.crs, always_xy=True)
