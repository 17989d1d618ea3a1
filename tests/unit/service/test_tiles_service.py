"""/tiles: internal levels, row origin selection, optional 1.0.0 segment, plain-text errors."""

from __future__ import annotations

import re

import pytest
from tile_service_helpers import (
    PNG,
    FakeTileManager,
    coords_of,
    global_geodetic,
    global_webmercator,
    make_client,
    make_layer,
    mutated_paths,
    sqrt2_webmercator,
)

from mapproxy.errors import SourceError
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.service.base import tile_etag
from mapproxy.service.tms import TileService

TEXT = "text/plain; charset=utf-8"
OUTSIDE = "The requested tile is outside the bounding box of the tile map."


@pytest.fixture
def layers():
    return {
        "merc": make_layer("osm", global_webmercator()),
        "geo": make_layer("osm", global_geodetic()),
        "jpeg": make_layer("photo", global_webmercator(), format="image/jpeg", extension="jpeg"),
    }


def client_for(layers, **options):
    return make_client(TileService(list(layers.values()), {}, **options))


@pytest.mark.parametrize(
    ("path", "key", "expected"),
    [
        # no ?origin and no configured origin: rows follow the grid's own origin
        ("/tiles/osm/EPSG3857/1/0/0.png", "merc", TileCoord(0, 0, 1)),
        ("/tiles/osm/EPSG4326/2/0/0.png", "geo", TileCoord(0, 0, 2)),
        # never a TMS profile offset
        ("/tiles/osm/EPSG3857/0/0/0.png", "merc", TileCoord(0, 0, 0)),
        ("/tiles/osm/EPSG4326/0/0/0.png", "geo", TileCoord(0, 0, 0)),
        ("/tiles/osm/EPSG3857/19/0/0.png", "merc", TileCoord(0, 0, 19)),
        # ?origin converts to the grid's numbering
        ("/tiles/osm/EPSG3857/1/0/0.png?origin=sw", "merc", TileCoord(0, 1, 1)),
        ("/tiles/osm/EPSG3857/1/0/0.png?origin=nw", "merc", TileCoord(0, 0, 1)),
        ("/tiles/osm/EPSG4326/2/0/0.png?origin=nw", "geo", TileCoord(0, 1, 2)),
        ("/tiles/osm/EPSG4326/2/3/1.png?origin=sw", "geo", TileCoord(3, 1, 2)),
        ("/tiles/osm/EPSG3857/1/0/0.png?ORIGIN=sw", "merc", TileCoord(0, 1, 1)),
        ("/tiles/osm/EPSG3857/1/0/0.png?origin=SW", "merc", TileCoord(0, 1, 1)),
        ("/tiles/osm/EPSG3857/1/0/0.png?origin=foo", "merc", TileCoord(0, 0, 1)),
        # layer forms, the optional 1.0.0 segment, padding and a trailing slash
        ("/tiles/osm_EPSG3857/1/1/0.png", "merc", TileCoord(1, 0, 1)),
        ("/tiles/osm/1/1/0.png", "geo", TileCoord(1, 0, 1)),
        ("/tiles/1.0.0/osm/EPSG4326/1/0/0.png?origin=nw", "geo", TileCoord(0, 0, 1)),
        ("/tiles/1.0.0/osm_EPSG4326/1/1/0.png", "geo", TileCoord(1, 0, 1)),
        ("/tiles/osm/EPSG3857/01/00/1.png", "merc", TileCoord(0, 1, 1)),
        ("/tiles/osm/EPSG3857/1/0/0.png/", "merc", TileCoord(0, 0, 1)),
        ("/tiles/photo/EPSG3857/2/3/1.jpeg", "jpeg", TileCoord(3, 1, 2)),
    ],
)
def test_tile_coordinates(layers, path, key, expected):
    response = client_for(layers).get(path)
    assert response.status_code == 200, response.data
    assert response.data == PNG
    assert response.headers["Content-Type"] == layers[key].format
    assert coords_of(layers[key]) == [expected]


@pytest.mark.parametrize(
    ("path", "key", "expected"),
    [
        ("/tiles/osm/EPSG3857/1/0/0.png", "merc", TileCoord(0, 1, 1)),
        ("/tiles/osm/EPSG4326/2/0/0.png", "geo", TileCoord(0, 0, 2)),
        ("/tiles/osm/EPSG3857/1/0/0.png?origin=nw", "merc", TileCoord(0, 0, 1)),
    ],
)
def test_configured_origin_is_the_default(layers, path, key, expected):
    response = client_for(layers, origin="sw").get(path)
    assert response.status_code == 200
    assert coords_of(layers[key]) == [expected]


def test_configured_nw_origin_flips_sw_grids(layers):
    assert client_for(layers, origin="nw").get("/tiles/osm/EPSG4326/2/0/0.png").status_code == 200
    assert coords_of(layers["geo"]) == [TileCoord(0, 1, 2)]


def test_unknown_configured_origin_is_rejected(layers):
    with pytest.raises(ValueError, match="origin"):
        TileService(list(layers.values()), {}, origin="north")


def test_sqrt2_grids_use_every_second_level_without_offset():
    layer = make_layer("osm", sqrt2_webmercator())
    client = make_client(TileService([layer], {}, use_grid_names=True))
    assert client.get("/tiles/osm/sq2/0/0/0.png").status_code == 200
    assert client.get("/tiles/osm/sq2/1/0/1.png").status_code == 200
    assert client.get("/tiles/osm/sq2/2/0/0.png?origin=sw").status_code == 200
    assert client.get("/tiles/osm/sq2/3/0/0.png").status_code == 404
    assert coords_of(layer) == [TileCoord(0, 0, 0), TileCoord(0, 1, 2), TileCoord(0, 3, 4)]


def test_use_grid_names(layers):
    client = client_for(layers, use_grid_names=True)
    assert client.get("/tiles/osm/GLOBAL_GEODETIC/1/0/0.png").status_code == 200
    assert coords_of(layers["geo"]) == [TileCoord(0, 0, 1)]
    response = client.get("/tiles/osm/EPSG4326/1/0/0.png")
    assert response.status_code == 404
    assert response.get_data(as_text=True) == "unknown layer: osm"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/tiles", "invalid request (/tiles)"),
        ("/tiles/", "invalid request (/tiles/)"),
        ("/tiles/osm", "invalid request (/tiles/osm)"),
        ("/tiles/1.0.0", "invalid request (/tiles/1.0.0)"),
        ("/tiles/1.0.0/osm/EPSG3857", "invalid request (/tiles/1.0.0/osm/EPSG3857)"),
        ("/tiles/osm/EPSG3857/1/0/0", "invalid request (/tiles/osm/EPSG3857/1/0/0)"),
        ("/tiles/osm/EPSG3857/x/0/0.png", "invalid request (/tiles/osm/EPSG3857/x/0/0.png)"),
        ("/tiles/foo/EPSG4326/0/0/0.png", "unknown layer: foo"),
        ("/tiles/osm/EPSG9999/0/0/0.png", "unknown layer: osm"),
        (
            "/tiles/osm/EPSG4326/0/0/0.jpeg",
            "invalid format (jpeg). this tile set only supports (png)",
        ),
        ("/tiles/osm/EPSG4326/0/5/0.png", OUTSIDE),
        ("/tiles/osm/EPSG4326/0/0/1.png", OUTSIDE),
        ("/tiles/osm/EPSG4326/0/0/1.png?origin=nw", OUTSIDE),
        ("/tiles/osm/EPSG3857/20/0/0.png", OUTSIDE),
        ("/tiles/osm/EPSG3857/-1/0/0.png", OUTSIDE),
        ("/tiles/osm/EPSG3857/1/-1/0.png", OUTSIDE),
        ("/tiles/osm/EPSG3857/1/0/-1.png?origin=sw", OUTSIDE),
        ("/tiles/osm/EPSG3857/1/0/" + "7" * 6000 + ".png", OUTSIDE),
    ],
)
def test_client_errors_are_plain_text_404(layers, path, message):
    response = client_for(layers).get(path)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == TEXT
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert response.get_data(as_text=True) == message
    assert all(coords_of(layer) == [] for layer in layers.values())


def test_source_errors_are_plain_text_500():
    layer = make_layer("osm", global_webmercator(), manager=FakeTileManager(SourceError("timeout")))
    response = make_client(TileService([layer], {})).get("/tiles/osm/EPSG3857/1/0/0.png")
    assert response.status_code == 500
    assert response.headers["Content-Type"] == TEXT
    assert response.get_data(as_text=True) == "timeout"


def test_tile_cache_headers_and_conditional_get(layers):
    client = client_for(layers)
    response = client.get("/tiles/osm/EPSG3857/1/0/0.png")
    assert response.headers["Cache-control"] == "public, max-age=259200, s-maxage=259200"
    etag = response.headers["ETag"]
    assert etag == tile_etag(1700000000.5, len(PNG))
    cached = client.get("/tiles/osm/EPSG3857/1/0/0.png", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.data == b""
    later = client.get(
        "/tiles/osm/EPSG3857/1/0/0.png",
        headers={"If-Modified-Since": "Wed, 15 Nov 2023 00:00:00 GMT"},
    )
    assert later.status_code == 304
    earlier = client.get(
        "/tiles/osm/EPSG3857/1/0/0.png",
        headers={"If-Modified-Since": "Mon, 13 Nov 2023 00:00:00 GMT"},
    )
    assert earlier.status_code == 200


def test_malformed_paths_never_give_server_errors(layers):
    client = client_for(layers)
    seeds = [
        "/tiles/osm/EPSG3857/1/0/0.png",
        "/tiles/1.0.0/osm/EPSG4326/2/3/1.png?origin=nw",
        "/tiles/osm_EPSG3857/5/4/3.png",
        "/tiles/photo/EPSG3857/2/3/1.jpeg?origin=sw",
    ]
    checked = 0
    for path in mutated_paths(seeds, 600, seed=77):
        if not re.match(r"^/tiles(?:$|[/?])", path):
            continue
        response = client.get(path)
        checked += 1
        assert response.status_code in (200, 404), path
        if response.status_code == 404:
            assert response.headers["Content-Type"] == TEXT, path
    assert checked > 300
