"""Layer ``min_scale``/``max_scale``: the small scale number is the fine limit (as MapProxy)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import pytest
from PIL import Image
from werkzeug.test import Client

CONFIG = """
services:
  wms:
layers:
  - name: l1
    title: l1
    sources: [dbg]
    min_scale: 1000
    max_scale: 100000
sources:
  dbg:
    type: debug
"""


def _getmap(client: Client, res: float) -> Image.Image:
    size = 256 * res
    response = client.get(
        "/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&LAYERS=l1&SRS=EPSG:3857"
        f"&BBOX=0,0,{size},{size}&WIDTH=256&HEIGHT=256&FORMAT=image/png&STYLES="
    )
    assert response.status_code == 200
    return Image.open(io.BytesIO(response.data)).convert("RGBA")


def test_capabilities_list_the_scale_range(make_app: Callable[..., Client]) -> None:
    client = make_app(CONFIG)
    caps = client.get("/service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0")
    text = caps.get_data(as_text=True)
    assert re.findall(r"<MinScaleDenominator>([^<]*)<", text) == ["1000.0"]
    assert re.findall(r"<MaxScaleDenominator>([^<]*)<", text) == ["100000.0"]


@pytest.mark.parametrize(
    ("res", "drawn"),
    [
        (0.1, False),  # scale 1:357, finer than min_scale
        (1.0, True),  # 1:3571
        (10.0, True),  # 1:35714
        (100.0, False),  # 1:357143, coarser than max_scale
    ],
)
def test_layer_is_drawn_only_inside_the_scale_range(
    make_app: Callable[..., Client], res: float, drawn: bool
) -> None:
    image = _getmap(make_app(CONFIG), res)
    # the debug source draws dark text and tile borders; outside the range it is blank
    darkest = min(band[0] for band in image.getextrema()[:3])
    assert (darkest < 128) is drawn
