"""OGC API and the ``mapproxy.authorize`` callback: listing filter, partial maps/tiles, clipping.

MapProxy 7 never calls the callback for OGC API (everything is public there); we call
it with ``ogcapi.collections`` (feature ``map`` or ``tile``), ``ogcapi.map`` (``map``)
and ``ogcapi.tile`` (``tile``) so that OGC API does not bypass the other services' rules.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image
from werkzeug.test import Client

from fakes.fake_upstream import FakeUpstream, image_handler

CONFIG = """
services:
  ogcapi:
    default_dataset_layers: [red, grp]
layers:
  - name: red
    title: Red layer
    sources: [red_cache]
  - name: grp
    title: Group
    layers:
      - name: blue
        title: Blue
        sources: [blue_wms]
      - name: green
        title: Green
        sources: [green_wms]
caches:
  red_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [red_wms]
sources:
  red_wms:
    type: wms
    req: {{url: "{url}/red", layers: red}}
  blue_wms:
    type: wms
    req: {{url: "{url}/blue", layers: blue, transparent: true}}
  green_wms:
    type: wms
    req: {{url: "{url}/green", layers: green, transparent: true}}
"""

RED = (255, 0, 0, 255)
BLUE = (0, 0, 255, 255)
GREEN = (0, 255, 0, 255)
WEST = {"geometry": [-180, -89, 0, 89], "srs": "EPSG:4326"}
TILE = "/ogcapi/collections/{}/map/tiles/WebMercatorQuad/1/0/{}"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    colors = {"/red": RED, "/blue": BLUE, "/green": GREEN}

    def handle(request):  # type: ignore[no-untyped-def]
        return image_handler(colors[request.path[:6].rstrip("/")])(request)

    with FakeUpstream(handle) as server:
        yield server


@pytest.fixture
def client(make_app: Callable[..., Client], upstream: FakeUpstream) -> Client:
    return make_app(CONFIG.format(url=upstream.url))


class Recorder:
    """An authorize callback answering ``answer`` and recording its calls."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.calls: list[tuple[str, list[str], Any]] = []

    def __call__(self, service: str, layers: list[str], **kw: Any) -> dict[str, Any]:
        self.calls.append((service, list(layers), kw.get("query_extent")))
        return self.answer

    def get(self, client: Client, path: str) -> Any:
        return client.get(path, environ_overrides={"mapproxy.authorize": self})


def _partial(**layers: dict[str, Any]) -> Recorder:
    return Recorder({"authorized": "partial", "layers": layers})


def _image(response: Any) -> Image.Image:
    image = Image.open(io.BytesIO(response.data))
    image.load()
    return image.convert("RGBA")


def test_documents_without_layers_stay_public(client: Client) -> None:
    auth = Recorder({"authorized": "none"})
    for path in ("/ogcapi", "/ogcapi/conformance", "/ogcapi/api", "/ogcapi/tileMatrixSets"):
        assert auth.get(client, path).status_code == 200, path
    assert auth.calls == []


def test_collections_list_is_filtered(client: Client) -> None:
    auth = _partial(red={"map": True}, green={"tile": True})
    response = auth.get(client, "/ogcapi/collections")
    ids = [c["id"] for c in json.loads(response.data)["collections"]]
    assert ids == ["red", "grp", "green"]
    assert auth.calls == [("ogcapi.collections", ["red", "blue", "green"], None)]
    assert auth.get(client, "/ogcapi/collections/red").status_code == 200
    assert auth.get(client, "/ogcapi/collections/blue").status_code == 403
    assert auth.get(client, "/ogcapi/collections/blue/map/tiles").status_code == 403
    tileset = "/ogcapi/collections/green/map/tiles/WebMercatorQuad"
    assert auth.get(client, tileset).status_code == 200


def _spatial(client: Client, auth: Recorder, name: str) -> dict[str, Any]:
    response = auth.get(client, f"/ogcapi/collections/{name}")
    assert response.status_code == 200
    listed = json.loads(auth.get(client, "/ogcapi/collections").data)["collections"]
    entry = next(c for c in listed if c["id"] == name)
    document = json.loads(response.data)
    assert entry["extent"] == document["extent"]
    return document["extent"]["spatial"]  # type: ignore[no-any-return]


def test_collection_extents_shrink_to_limited_to(client: Client) -> None:
    auth = _partial(red={"map": True, "limited_to": WEST}, blue={"map": True})
    spatial = _spatial(client, auth, "red")
    west, south, east, north = spatial["bbox"][0]
    assert (west, east) == (-180.0, pytest.approx(0.0, abs=1e-6))
    assert south == pytest.approx(-85.0511287798, abs=1e-6)
    assert north == pytest.approx(85.0511287798, abs=1e-6)
    storage = spatial["storageCrsBbox"][0]
    assert storage[0] == pytest.approx(-20037508.34, abs=1)
    assert storage[2] == pytest.approx(0.0, abs=1e-3)
    # layers without their own limit keep their extent
    public = json.loads(client.get("/ogcapi/collections/blue").data)["extent"]["spatial"]
    assert _spatial(client, auth, "blue") == public


def test_request_limited_to_shrinks_every_collection(client: Client) -> None:
    auth = Recorder(
        {
            "authorized": "partial",
            "limited_to": WEST,
            "layers": {"red": {"map": True}, "blue": {"map": True}},
        }
    )
    assert _spatial(client, auth, "blue")["bbox"][0] == [-180.0, -89.0, 0.0, 89.0]
    assert _spatial(client, auth, "grp")["bbox"][0] == [-180.0, -89.0, 0.0, 89.0]
    assert _spatial(client, auth, "red")["bbox"][0][2] == pytest.approx(0.0, abs=1e-6)


def test_collection_outside_limited_to_is_hidden(client: Client) -> None:
    arctic = {"geometry": [0, 86, 10, 89], "srs": "EPSG:4326"}
    auth = _partial(red={"map": True, "limited_to": arctic}, blue={"map": True})
    response = auth.get(client, "/ogcapi/collections")
    ids = [c["id"] for c in json.loads(response.data)["collections"]]
    assert ids == ["grp", "blue"]
    assert auth.get(client, "/ogcapi/collections/red").status_code == 403
    assert auth.get(client, "/ogcapi/collections/red/map/tiles").status_code == 403


@pytest.mark.parametrize(
    ("answer", "status"),
    [({"authorized": "none"}, 403), ({"authorized": "unauthenticated"}, 401)],
)
def test_denials(client: Client, answer: dict[str, Any], status: int) -> None:
    auth = Recorder(answer)
    for path in ("/ogcapi/collections", "/ogcapi/collections/red", TILE.format("red", "0.png")):
        response = auth.get(client, path)
        assert response.status_code == status, path
        assert json.loads(response.data)["status"] == status
    assert auth.get(client, "/ogcapi/map.png?width=8").status_code == status


def test_map_calls_with_query_extent(client: Client) -> None:
    auth = Recorder({"authorized": "full"})
    bbox = "-10,-10,10,10"
    response = auth.get(client, f"/ogcapi/collections/grp/map.png?bbox={bbox}&width=20")
    assert response.status_code == 200
    service, layers, extent = auth.calls[0]
    assert (service, layers) == ("ogcapi.map", ["blue", "green"])
    assert extent[0] == "CRS:84"
    assert extent[1] == pytest.approx((-10, -10, 10, 10))


def test_requested_layer_not_permitted_is_forbidden(client: Client) -> None:
    auth = _partial(blue={"map": True})
    assert auth.get(client, "/ogcapi/collections/red/map.png?width=8").status_code == 403
    # tiles need the tile feature
    assert auth.get(client, TILE.format("blue", "0.png")).status_code == 403


def test_group_draws_only_permitted_sub_layers(client: Client) -> None:
    auth = _partial(green={"map": True})
    response = auth.get(client, "/ogcapi/collections/grp/map.png?bbox=-10,-10,10,10&width=8")
    assert response.status_code == 200
    assert _image(response).getpixel((4, 4)) == GREEN
    assert "no-cache" in response.headers["Cache-Control"]


def test_dataset_map_leaves_out_unpermitted_group_members(client: Client) -> None:
    # the dataset's layers are requested like WMS LAYERS: red must be permitted
    auth = _partial(red={"map": True}, blue={"map": True})
    response = auth.get(client, "/ogcapi/map.png?bbox=-10,-10,10,10&width=8")
    assert response.status_code == 200
    assert _image(response).getpixel((4, 4)) == BLUE
    assert _partial(blue={"map": True}).get(client, "/ogcapi/map.png").status_code == 403


def test_map_is_clipped_to_limited_to(client: Client) -> None:
    auth = _partial(red={"map": True, "limited_to": WEST})
    path = "/ogcapi/collections/red/map.png?bbox=-20,-10,20,10&width=40&transparent=true"
    image = _image(auth.get(client, path))
    assert image.getpixel((5, 5)) == RED
    assert image.getpixel((35, 5))[3] == 0
    # the request-wide limit applies to maps as well
    auth = Recorder({"authorized": "partial", "limited_to": WEST, "layers": {"red": {"map": True}}})
    image = _image(auth.get(client, path))
    assert image.getpixel((5, 5)) == RED
    assert image.getpixel((35, 5))[3] == 0


def test_cached_tiles_are_masked_like_tms(client: Client) -> None:
    auth = _partial(red={"tile": True, "limited_to": WEST})
    inside = auth.get(client, TILE.format("red", "0.png"))
    assert inside.status_code == 200
    assert "ETag" in inside.headers  # fully inside: the cached tile unchanged
    assert _image(inside).getpixel((128, 128)) == RED
    outside = auth.get(client, TILE.format("red", "1.png"))
    assert outside.status_code == 200
    assert outside.headers["Content-Type"] == "image/png"
    assert _image(outside).getpixel((128, 128))[3] == 0
    assert "ETag" not in outside.headers
    # a tile straddling the limit is masked: left half red, right half transparent
    east = {"geometry": [-180, -89, 90, 89], "srs": "EPSG:4326"}
    auth = _partial(red={"tile": True, "limited_to": east})
    image = _image(auth.get(client, TILE.format("red", "1.png")))
    assert image.getpixel((10, 200)) == RED
    assert image.getpixel((250, 200))[3] == 0


def test_layer_limit_wins_over_request_limit_for_tiles(client: Client) -> None:
    everywhere = {"geometry": [-180, -89, 180, 89], "srs": "EPSG:4326"}
    auth = Recorder(
        {
            "authorized": "partial",
            "limited_to": WEST,
            "layers": {"red": {"tile": True, "limited_to": everywhere}},
        }
    )
    image = _image(auth.get(client, TILE.format("red", "1.png")))
    assert image.getpixel((128, 128)) == RED
    service, layers, extent = auth.calls[0]
    assert (service, layers, extent[0]) == ("ogcapi.tile", ["red"], "EPSG:3857")


def test_rendered_tiles_draw_permitted_layers_only(client: Client) -> None:
    auth = _partial(blue={"tile": True, "limited_to": WEST}, green={"map": True})
    image = _image(auth.get(client, TILE.format("grp", "0.png")))
    assert image.getpixel((128, 128)) == BLUE
    image = _image(auth.get(client, TILE.format("grp", "1.png")))
    assert image.getpixel((128, 128))[3] == 0
