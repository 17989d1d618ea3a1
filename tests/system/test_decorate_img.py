"""The ``mapproxy.decorate_img`` and ``mapproxy.request`` environ hooks.

Arguments (ImageResult with ``as_image``, service names, leaf layer names, query extents)
and kept tile ETag/cache headers were observed on MapProxy 7.0.0 with a debug source.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from werkzeug.test import Client

from mapproxy.image.result import ImageResult

M = 20037508.342789244

CONFIG = """
globals:
  cache:
    base_dir: {base_dir}
services:
  wms:
    md: {{title: t}}
  tms:
    use_grid_names: true
  wmts:
layers:
  - name: grp
    title: Group
    layers:
      - {{name: a, title: A, sources: [s]}}
      - {{name: b, title: B, sources: [s]}}
  - name: tiles
    title: Tiles
    sources: [c]
caches:
  c:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [s]
sources:
  s:
    type: debug
"""

WMS = (
    "/service?SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&LAYERS={layers}&STYLES="
    "&SRS=EPSG:4326&BBOX=-10,-10,10,10&WIDTH=100&HEIGHT=100&FORMAT=image/png"
)
TMS = "/tms/1.0.0/tiles/GLOBAL_WEBMERCATOR/1/0/1.png"
WMTS = "/wmts/tiles/GLOBAL_WEBMERCATOR/1/0/0.png"


class Recorder:
    def __init__(self, returns: str = "result") -> None:
        self.calls: list[dict[str, Any]] = []
        self.returns = returns

    def __call__(
        self,
        image: Any,
        service: str,
        layers: list[str],
        environ: dict[str, Any] | None = None,
        query_extent: Any = None,
    ) -> Any:
        assert environ is not None
        self.calls.append(
            {
                "image": image,
                "service": service,
                "layers": layers,
                "query_extent": query_extent,
                "request": environ.get("mapproxy.request"),
            }
        )
        if self.returns == "same":
            return image
        img = image.as_image().convert("RGBA")
        ImageDraw.Draw(img).rectangle((0, 0, 9, 9), fill=(255, 0, 0, 255))
        return img if self.returns == "pil" else ImageResult(img)


@pytest.fixture
def app(make_app: Callable[..., Client], tmp_path: Path) -> Any:
    return make_app(CONFIG.format(base_dir=tmp_path / "cache")).app  # type: ignore[attr-defined]


def client_with(app: Any, recorder: Recorder | None) -> Client:
    def middleware(environ: dict[str, Any], start_response: Any) -> Any:
        if recorder is not None:
            environ["mapproxy.decorate_img"] = recorder
        return app(environ, start_response)

    return Client(middleware)


def pixel(body: bytes, xy: tuple[int, int] = (2, 2)) -> tuple[int, ...]:
    return Image.open(io.BytesIO(body)).convert("RGBA").getpixel(xy)  # type: ignore[return-value]


@pytest.mark.parametrize("returns", ["result", "pil"])
def test_wms_map_decorated(app: Any, returns: str) -> None:
    recorder = Recorder(returns)
    response = client_with(app, recorder).get(WMS.format(layers="grp"))
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert pixel(response.data) == (255, 0, 0, 255)
    assert pixel(response.data, (50, 50)) != (255, 0, 0, 255)
    (call,) = recorder.calls
    assert isinstance(call["image"], ImageResult)
    assert call["service"] == "wms.map"
    assert call["layers"] == ["a", "b"]
    assert call["query_extent"] == ("EPSG:4326", (-10.0, -10.0, 10.0, 10.0))
    assert call["request"] is not None


def test_wms_layers_in_request_order(app: Any) -> None:
    recorder = Recorder("same")
    client_with(app, recorder).get(WMS.format(layers="b,a"))
    assert recorder.calls[0]["layers"] == ["b", "a"]


def test_wms_without_decorator_unchanged(app: Any) -> None:
    plain = client_with(app, None).get(WMS.format(layers="grp"))
    same = client_with(app, Recorder("same")).get(WMS.format(layers="grp"))
    assert plain.status_code == 200
    assert pixel(plain.data) != (255, 0, 0, 255)
    assert plain.data == same.data


@pytest.mark.parametrize(
    ("url", "service", "extent"),
    [
        (TMS, "tms", (-M, -M / 2, -M / 2, 0.0)),
        (WMTS, "wmts", (-M, 0.0, 0.0, M)),
    ],
)
def test_tile_decorated(app: Any, url: str, service: str, extent: tuple[float, ...]) -> None:
    plain = client_with(app, None).get(url)
    assert plain.status_code == 200
    assert pixel(plain.data) != (255, 0, 0, 255)
    recorder = Recorder()
    response = client_with(app, recorder).get(url)
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert pixel(response.data) == (255, 0, 0, 255)
    # decorated tiles keep the cache headers (as MapProxy)
    assert response.headers["ETag"]
    assert response.headers["Last-modified"] == plain.headers["Last-modified"]
    assert response.headers["Cache-control"].startswith("public, max-age=")
    (call,) = recorder.calls
    assert isinstance(call["image"], ImageResult)
    assert call["image"].as_bytes() == plain.data
    assert call["service"] == service
    assert call["layers"] == ["tiles"]
    srs, bbox = call["query_extent"]
    assert srs == "EPSG:3857"
    assert bbox == pytest.approx(extent)


def test_tile_returned_unchanged_is_served_untouched(app: Any) -> None:
    plain = client_with(app, None).get(WMTS)
    same = client_with(app, Recorder("same")).get(WMTS)
    assert same.data == plain.data
    assert same.headers["ETag"] == plain.headers["ETag"]


def test_mapproxy_request_in_environ(app: Any) -> None:
    seen: dict[str, Any] = {}

    def middleware(environ: dict[str, Any], start_response: Any) -> Any:
        result = app(environ, start_response)
        seen.update(environ)
        return result

    Client(middleware).get(WMS.format(layers="a"))
    request = seen["mapproxy.request"]
    assert list(request.layers) == ["a"]
