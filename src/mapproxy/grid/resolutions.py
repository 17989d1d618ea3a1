"""Resolution lists for grids and conversions between resolutions and scales."""

from __future__ import annotations

import math
from collections.abc import Sequence

from mapproxy.srs import BBox

# Metres per degree at the equator; multiply a geographic res by this before
# converting it to a scale.
UNIT_FACTOR_DEGREES = 111319.4907932736

# OGC "standardized rendering pixel size" of 0.28 mm, in metres. Written as a
# division on purpose: 0.28 / 1000 differs from 0.00028 in binary and the
# reference's scale denominators are computed with the former.
OGC_PIXEL_SIZE = 0.28 / 1000

_INCH_IN_METRES = 0.0254

DEFAULT_NUM_LEVELS = 20
DEFAULT_NUM_LEVELS_SQRT2 = 40


def compute_resolutions(
    bbox: BBox,
    tile_size: tuple[int, int],
    res: Sequence[float] | None = None,
    res_factor: float | str = 2.0,
    num_levels: int | None = None,
    min_res: float | None = None,
    max_res: float | None = None,
) -> list[float]:
    """Resolutions of a grid, coarsest first, from the grid options (config.md §4).

    ``res`` wins when given (sorted descending). Otherwise the first level is
    ``min_res`` or the res that fits ``bbox`` into one tile; with ``max_res`` and
    ``num_levels`` the levels are spaced log-evenly down to ``max_res`` inclusive;
    with ``max_res`` alone levels are divided by ``res_factor`` while the next value
    stays strictly greater than ``max_res``; else ``num_levels`` levels (default 20,
    40 for ``res_factor='sqrt2'``) are divided by ``res_factor``.
    """
    if res is not None:
        return sorted((float(r) for r in res), reverse=True)

    factor = _res_factor_value(res_factor)
    if num_levels is None and max_res is None:
        num_levels = DEFAULT_NUM_LEVELS_SQRT2 if res_factor == "sqrt2" else DEFAULT_NUM_LEVELS
    if num_levels is not None and num_levels < 1:
        raise ValueError(f"num_levels must be at least 1, got {num_levels}")

    if min_res is None:
        width = bbox[2] - bbox[0]
        height = bbox[3] - bbox[1]
        first = max(width / tile_size[0], height / tile_size[1])
    else:
        first = float(min_res)
    if first <= 0:
        raise ValueError(f"first resolution must be positive, got {first}")

    if max_res is not None and num_levels is not None:
        return _log_even(first, float(max_res), num_levels)

    if max_res is not None:
        if factor <= 1:
            raise ValueError(f"res_factor must be greater than 1, got {res_factor}")
        limit = float(max_res)
        result = [first]
        while result[-1] / factor > limit:
            result.append(result[-1] / factor)
        return result

    assert num_levels is not None
    result = [first]
    while len(result) < num_levels:
        result.append(result[-1] / factor)
    return result


def _res_factor_value(res_factor: float | str) -> float:
    if res_factor == "sqrt2":
        return math.sqrt(2)
    try:
        return float(res_factor)
    except (TypeError, ValueError) as error:
        raise ValueError(f"invalid res_factor {res_factor!r}") from error


def _log_even(first: float, last: float, num_levels: int) -> list[float]:
    if last <= 0:
        raise ValueError(f"max_res must be positive, got {last}")
    if num_levels == 1:
        return [first]
    steps = num_levels - 1
    ratio = last / first
    result = [first * ratio ** (i / steps) for i in range(steps)]
    # Set the end point explicitly: first * (last / first) is not always last.
    result.append(last)
    return result


def res_to_scale(res: float, dpi: float | None = None) -> float:
    """Scale denominator of ``res`` (metres/pixel); OGC 0.28 mm pixel unless ``dpi``."""
    pixel_size = OGC_PIXEL_SIZE if dpi is None else _INCH_IN_METRES / dpi
    return res / pixel_size


def scale_to_res(scale: float, dpi: float | None = None) -> float:
    """Resolution (metres/pixel) of a scale denominator; OGC 0.28 mm pixel unless ``dpi``."""
    pixel_size = OGC_PIXEL_SIZE if dpi is None else _INCH_IN_METRES / dpi
    return scale * pixel_size
