from __future__ import annotations

from collections.abc import Callable

import pytest
from werkzeug.test import Client

from mapproxy.errors import ConfigurationError
from mapproxy.source.mapnik import mapnik_available

CONFIG = """
layers:
  - {name: m, title: m, sources: [world]}
sources:
  world:
    type: mapnik
    mapfile: world.xml
"""


@pytest.mark.skipif(mapnik_available(), reason="mapnik is installed")
def test_missing_mapnik_package_is_a_configuration_error(
    make_app: Callable[..., Client],
) -> None:
    with pytest.raises(ConfigurationError) as error:
        make_app(CONFIG, **{"world.xml": "<Map/>"})
    assert str(error.value) == (
        "sources.world: the mapnik source needs the mapnik Python package (not installed)"
    )


@pytest.mark.skipif(not mapnik_available(), reason="mapnik is not installed")
def test_missing_mapfile_is_a_configuration_error(make_app: Callable[..., Client]) -> None:
    with pytest.raises(ConfigurationError, match=r"sources\.world\.mapfile"):
        make_app(CONFIG)
