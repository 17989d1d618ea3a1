from __future__ import annotations

import math
from itertools import pairwise

import pytest

from mapproxy.grid.resolutions import (
    UNIT_FACTOR_DEGREES,
    compute_resolutions,
    res_to_scale,
    scale_to_res,
)

MERCATOR_BBOX = (-20037508.342789244, -20037508.342789244, 20037508.342789244, 20037508.342789244)


def test_global_geodetic_resolutions():
    res = compute_resolutions((-180, -90, 180, 90), (256, 256))
    assert len(res) == 20
    assert res[0] == 1.40625
    assert res[1] == 0.703125
    assert res[-1] == 2.682209014892578e-06


def test_global_mercator_resolutions():
    res = compute_resolutions(MERCATOR_BBOX, (256, 256))
    assert len(res) == 20
    assert res[0] == 156543.03392804097
    assert res[-1] == 0.29858214173896974


def test_first_res_fits_bbox_into_one_tile():
    res = compute_resolutions((0, 0, 1000, 500), (256, 256), num_levels=2)
    assert res == [1000 / 256, 1000 / 512]
    res = compute_resolutions((0, 0, 500, 1000), (512, 256), num_levels=1)
    assert res == [1000 / 256]


def test_explicit_res_is_sorted_descending_and_wins():
    res = compute_resolutions((0, 0, 1, 1), (256, 256), res=[1, 10, 5], min_res=99, num_levels=7)
    assert res == [10.0, 5.0, 1.0]
    assert all(isinstance(r, float) for r in res)


def test_min_res_and_num_levels():
    assert compute_resolutions((0, 0, 1, 1), (256, 256), min_res=1000, num_levels=4) == [
        1000,
        500,
        250,
        125,
    ]
    assert compute_resolutions(
        (0, 0, 1, 1), (256, 256), min_res=900, num_levels=3, res_factor=3
    ) == [900, 300, 100]


def test_min_res_max_res_num_levels_are_log_evenly_spaced():
    res = compute_resolutions((0, 0, 1, 1), (256, 256), min_res=1000, max_res=10, num_levels=3)
    assert len(res) == 3
    assert res[0] == 1000
    assert res[1] == pytest.approx(100)
    assert res[2] == 10

    res = compute_resolutions((0, 0, 1, 1), (256, 256), min_res=1000, max_res=3, num_levels=7)
    ratios = [a / b for a, b in pairwise(res)]
    assert ratios == pytest.approx([ratios[0]] * 6)
    assert res[-1] == 3


def test_log_even_with_default_min_res():
    res = compute_resolutions(MERCATOR_BBOX, (256, 256), max_res=1.0, num_levels=5)
    assert res[0] == 156543.03392804097
    assert res[-1] == 1.0
    assert len(res) == 5


def test_max_res_only_stops_while_next_is_strictly_greater():
    res = compute_resolutions((0, 0, 1, 1), (256, 256), min_res=1000, max_res=125)
    assert res == [1000, 500, 250]
    res = compute_resolutions((0, 0, 1, 1), (256, 256), min_res=1000, max_res=124.9)
    assert res == [1000, 500, 250, 125]


def test_max_res_only_keeps_first_level_even_if_finer():
    assert compute_resolutions((0, 0, 1, 1), (256, 256), min_res=10, max_res=50) == [10]


def test_sqrt2_has_40_levels_by_default():
    res = compute_resolutions((0, 0, 1, 1), (256, 256), min_res=1000, res_factor="sqrt2")
    assert len(res) == 40
    assert res[1] == pytest.approx(1000 / math.sqrt(2))
    assert res[2] == pytest.approx(500)
    assert res[-1] == pytest.approx(1000 / 2**19.5)


def test_sqrt2_with_explicit_num_levels():
    res = compute_resolutions((0, 0, 1, 1), (256, 256), min_res=8, res_factor="sqrt2", num_levels=3)
    assert res == pytest.approx([8, 8 / math.sqrt(2), 4])


def test_invalid_arguments_raise_value_error():
    with pytest.raises(ValueError):
        compute_resolutions((0, 0, 1, 1), (256, 256), res_factor="half")
    with pytest.raises(ValueError):
        compute_resolutions((0, 0, 1, 1), (256, 256), min_res=10, max_res=1, res_factor=1)
    with pytest.raises(ValueError):
        compute_resolutions((0, 0, 1, 1), (256, 256), num_levels=0)


def test_res_to_scale_uses_ogc_pixel_size():
    # 0.28 / 1000 (not 0.00028) gives the reference's WMTS scale denominator.
    assert res_to_scale(156543.03392804097) == 559082264.0287176
    assert res_to_scale(1.40625 * UNIT_FACTOR_DEGREES) == pytest.approx(559082264.0287178)


def test_scale_to_res_round_trip_and_dpi():
    assert scale_to_res(100000) == pytest.approx(28.0)
    assert scale_to_res(res_to_scale(12.5)) == pytest.approx(12.5)
    assert scale_to_res(1000, dpi=25.4) == pytest.approx(1.0)
    assert res_to_scale(1.0, dpi=25.4) == pytest.approx(1000.0)
