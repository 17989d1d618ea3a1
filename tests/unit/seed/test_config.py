"""seed.yaml level selection and validation."""

from __future__ import annotations

import pytest

from mapproxy.grid import TileGrid
from mapproxy.seed.config import SeedConfigurationError, _levels, validate_seed_conf
from mapproxy.srs import get_srs

HALF = 20037508.342789244
GRID = TileGrid(
    get_srs("EPSG:3857"), (-HALF, -HALF, HALF, HALF), [2 * HALF / 256 / 2**z for z in range(20)]
)


@pytest.mark.parametrize(
    ("conf", "levels"),
    [
        ({}, list(range(20))),
        ({"levels": [30, 2, 2, 1]}, [1, 2]),
        ({"levels": {"from": 18, "to": 40}}, [18, 19]),
        ({"levels": {"to": 2}}, [0, 1, 2]),
        # closest level as for requests (stretch factor 1.15), as in MapProxy 7.0.0
        ({"resolutions": [100000, 1000]}, [1, 8]),
    ],
)
def test_levels_are_clipped_sorted_and_unique(conf, levels):
    assert _levels(GRID, conf) == levels


def test_structure_errors_raise_invalid_configuration(caplog):
    with pytest.raises(SeedConfigurationError, match="invalid configuration"):
        validate_seed_conf({"cleanups": {"a": {"caches": ["c"], "remove_all": "yes"}}})
    assert "'yes' in cleanups.a.remove_all not of type bool" in caplog.text
