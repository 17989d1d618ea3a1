"""TMS 1.0.0 (/tms): documents, profile level offsets, sw rows, layer names, errors."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from tile_service_helpers import (
    PNG,
    FakeTileManager,
    aligned_geodetic,
    coords_of,
    global_geodetic,
    global_mercator,
    global_webmercator,
    make_client,
    make_layer,
    mutated_paths,
    sqrt2_webmercator,
    utm_grid,
)

from mapproxy.errors import SourceError, TileOutsideGrid
from mapproxy.grid.tile_grid import TileCoord
from mapproxy.service.base import tile_etag
from mapproxy.service.tms import TileService, is_sqrt2_grid, tms_levels

MD = {
    "title": "Test Title",
    "abstract": "Some abstract",
    "keyword_list": [{"vocabulary": "Name", "keywords": ["foo", "bar"]}],
    "contact": {"person": "Jane", "organization": "Org", "email": "a@b.c"},
}
XML = "text/xml; charset=utf-8"
OUTSIDE = "The requested tile is outside the bounding box of the tile map."


@pytest.fixture
def layers():
    return {
        "osm_merc": make_layer("osm", global_webmercator(), title="OSM"),
        "osm_geo": make_layer("osm", global_geodetic(), title="OSM"),
        "geo_geo": make_layer("geo", global_geodetic(), "Geo", "image/jpeg", "jpeg"),
        "geo_utm": make_layer("geo", utm_grid(), "Geo", "image/jpeg", "jpeg"),
    }


@pytest.fixture
def client(layers):
    return make_client(TileService(list(layers.values()), MD))


def tms_error(response) -> str:
    assert response.headers["Content-Type"] == XML
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    root = ET.fromstring(response.data)
    assert root.tag == "TileMapServerError"
    return root.findtext("Message")


def test_root_resource_links_the_service(client):
    for path in ("/tms", "/tms/"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == XML
        assert response.get_data(as_text=True) == (
            '<?xml version="1.0"?>\n'
            "    <Services>\n"
            '    <TileMapService title="Test Title" version="1.0.0"\n'
            '        href="http://localhost/tms/1.0.0/" />\n'
            "</Services>"
        )


def test_capabilities_list_every_tile_map(client):
    for path in ("/tms/1.0.0", "/tms/1.0.0/"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == XML
        root = ET.fromstring(response.data)
        assert root.tag == "TileMapService"
        assert root.findtext("Title") == "Test Title"
        assert root.findtext("Abstract") == "Some abstract"
        assert root.findtext("KeywordList") == '"foo" "bar"'
        assert root.findtext("ContactInformation/ContactPersonPrimary/ContactPerson") == "Jane"
        maps = [
            (m.get("title"), m.get("srs"), m.get("profile"), m.get("href"))
            for m in root.iter("TileMap")
        ]
        assert maps == [
            ("OSM", "OSGEO:41001", "global-mercator", "http://localhost/tms/1.0.0/osm/EPSG3857"),
            ("OSM", "EPSG:4326", "global-geodetic", "http://localhost/tms/1.0.0/osm/EPSG4326"),
            ("Geo", "EPSG:4326", "global-geodetic", "http://localhost/tms/1.0.0/geo/EPSG4326"),
            ("Geo", "EPSG:25832", "local", "http://localhost/tms/1.0.0/geo/EPSG25832"),
        ]


def test_capabilities_without_md_have_empty_title_and_no_optional_parts(layers):
    client = make_client(TileService([layers["osm_merc"]], {}))
    text = client.get("/tms/1.0.0/").get_data(as_text=True)
    assert "<Title></Title>" in text
    assert "KeywordList" not in text
    assert "ContactInformation" not in text
    assert text.endswith("</TileMapService>\n")


def test_titles_are_escaped():
    layer = make_layer("osm", global_webmercator(), title='OSM <"&">')
    client = make_client(TileService([layer], {"title": "A & B"}))
    for path in ("/tms", "/tms/1.0.0/", "/tms/1.0.0/osm/EPSG3857"):
        ET.fromstring(client.get(path).data)
    root = ET.fromstring(client.get("/tms/1.0.0/").data)
    assert root.find("TileMaps/TileMap").get("title") == 'OSM <"&">'


def test_tile_map_of_global_mercator_starts_at_tms_level_0_with_2x2_tiles(client):
    response = client.get("/tms/1.0.0/osm/EPSG3857")
    assert response.status_code == 200
    root = ET.fromstring(response.data)
    assert root.tag == "TileMap"
    assert root.get("version") == "1.0.0"
    assert root.findtext("SRS") == "OSGEO:41001"
    assert root.findtext("Abstract") == ""
    bbox = root.find("BoundingBox")
    assert bbox.attrib == {
        "minx": "-20037508.342789244",
        "miny": "-20037508.342789244",
        "maxx": "20037508.342789244",
        "maxy": "20037508.342789244",
    }
    assert root.find("Origin").attrib == {"x": "-20037508.342789244", "y": "-20037508.342789244"}
    assert root.find("TileFormat").attrib == {
        "width": "256",
        "height": "256",
        "mime-type": "image/png",
        "extension": "png",
    }
    assert root.find("TileSets").get("profile") == "global-mercator"
    tile_sets = root.findall("TileSets/TileSet")
    assert len(tile_sets) == 19
    assert tile_sets[0].attrib == {
        "href": "http://localhost/tms/1.0.0/osm/EPSG3857/0",
        "units-per-pixel": "78271.51696402048",
        "order": "0",
    }
    assert tile_sets[18].get("units-per-pixel") == "0.29858214173896974"


def test_tile_map_exact_text_for_local_grid(client):
    text = client.get("/tms/1.0.0/geo/EPSG25832").get_data(as_text=True)
    assert text == (
        '<?xml version="1.0"?>\n'
        ' <TileMap version="1.0.0">\n'
        "  <Title>Geo</Title>\n"
        "  <Abstract></Abstract>\n"
        "  <SRS>EPSG:25832</SRS>\n"
        '  <BoundingBox minx="200000.0" miny="5000000.0" maxx="800000.0" maxy="6000000.0" />\n'
        '  <Origin x="200000.0" y="5000000.0" />\n'
        '  <TileFormat width="256" height="256" mime-type="image/jpeg" extension="jpeg" />\n'
        '  <TileSets profile="local">\n'
        '    <TileSet href="http://localhost/tms/1.0.0/geo/EPSG25832/0" '
        'units-per-pixel="1000.0" order="0" />\n'
        '    <TileSet href="http://localhost/tms/1.0.0/geo/EPSG25832/1" '
        'units-per-pixel="500.0" order="1" />\n'
        '    <TileSet href="http://localhost/tms/1.0.0/geo/EPSG25832/2" '
        'units-per-pixel="250.0" order="2" />\n'
        "  </TileSets>\n"
        "</TileMap>"
    )


def test_tile_map_hrefs_reuse_the_requested_layer_form(client):
    for path, prefix in [
        ("/tms/1.0.0/osm", "http://localhost/tms/1.0.0/osm/"),
        ("/tms/1.0.0/osm_EPSG4326", "http://localhost/tms/1.0.0/osm_EPSG4326/"),
        ("/tms/1.0.0/osm/EPSG4326", "http://localhost/tms/1.0.0/osm/EPSG4326/"),
    ]:
        root = ET.fromstring(client.get(path).data)
        assert root.findtext("SRS") == "EPSG:4326"
        first = root.find("TileSets/TileSet")
        assert first.get("href") == prefix + "0"
        assert first.get("units-per-pixel") == "0.703125"


def test_urls_follow_proxy_headers(client):
    headers = {"X-Forwarded-Host": "tiles.example.org", "X-Forwarded-Proto": "https"}
    root = ET.fromstring(
        client.get("/tms/1.0.0/", headers=headers, base_url="http://localhost/mp").data
    )
    assert root.find("TileMaps/TileMap").get("href") == (
        "https://tiles.example.org/mp/tms/1.0.0/osm/EPSG3857"
    )


@pytest.mark.parametrize(
    ("path", "key", "expected"),
    [
        # global-mercator: TMS level 0 is internal level 1; rows count from the south.
        ("/tms/1.0.0/osm/EPSG3857/0/0/0.png", "osm_merc", TileCoord(0, 1, 1)),
        ("/tms/1.0.0/osm/EPSG3857/1/0/0.png", "osm_merc", TileCoord(0, 3, 2)),
        ("/tms/1.0.0/osm/EPSG3857/1/3/1.png", "osm_merc", TileCoord(3, 2, 2)),
        ("/tms/1.0.0/osm/EPSG3857/18/0/0.png", "osm_merc", TileCoord(0, 524287, 19)),
        ("/tms/1.0.0/osm_EPSG3857/0/1/1.png", "osm_merc", TileCoord(1, 0, 1)),
        # global-geodetic: sw grid, level offset, rows unchanged.
        ("/tms/1.0.0/osm/EPSG4326/0/1/0.png", "osm_geo", TileCoord(1, 0, 1)),
        ("/tms/1.0.0/osm/EPSG4326/1/3/1.png", "osm_geo", TileCoord(3, 1, 2)),
        # without grid part: name, then name_EPSG900913, then name_EPSG4326
        ("/tms/1.0.0/osm/0/0/0.png", "osm_geo", TileCoord(0, 0, 1)),
        # local profile: no offset
        ("/tms/1.0.0/geo/EPSG25832/0/0/0.jpeg", "geo_utm", TileCoord(0, 0, 0)),
        ("/tms/1.0.0/geo/EPSG25832/2/2/3.jpeg", "geo_utm", TileCoord(2, 3, 2)),
        # trailing slash and ?origin (ignored by /tms)
        ("/tms/1.0.0/osm/EPSG3857/0/0/0.png/", "osm_merc", TileCoord(0, 1, 1)),
        ("/tms/1.0.0/osm/EPSG3857/0/0/0.png?origin=nw", "osm_merc", TileCoord(0, 1, 1)),
    ],
)
def test_tile_coordinates(client, layers, path, key, expected):
    response = client.get(path)
    assert response.status_code == 200, response.data
    assert response.data == PNG
    assert response.headers["Content-Type"] == f"image/{layers[key].extension}"
    assert coords_of(layers[key]) == [expected]


def test_layer_lookup_prefers_epsg900913_over_epsg4326():
    merc = make_layer("osm", global_mercator())
    geo = make_layer("osm", global_geodetic())
    client = make_client(TileService([geo, merc], {}))
    assert client.get("/tms/1.0.0/osm/0/0/0.png").status_code == 200
    assert coords_of(merc) == [TileCoord(0, 0, 1)]
    assert coords_of(geo) == []


def test_epsg3857_is_no_lookup_fallback():
    client = make_client(TileService([make_layer("osm", global_webmercator())], {}))
    response = client.get("/tms/1.0.0/osm/0/0/0.png")
    assert response.status_code == 404
    assert tms_error(response) == "unknown layer: osm"


def test_exact_internal_name_without_grid_part(client, layers):
    assert client.get("/tms/1.0.0/geo_EPSG25832/0/0/0.jpeg").status_code == 200
    assert coords_of(layers["geo_utm"]) == [TileCoord(0, 0, 0)]


def test_grid_names_are_used_with_use_grid_names(layers):
    client = make_client(TileService(list(layers.values()), MD, use_grid_names=True))
    root = ET.fromstring(client.get("/tms/1.0.0/").data)
    hrefs = [m.get("href") for m in root.iter("TileMap")]
    assert hrefs[0] == "http://localhost/tms/1.0.0/osm/GLOBAL_WEBMERCATOR"
    assert hrefs[3] == "http://localhost/tms/1.0.0/geo/utm"
    assert client.get("/tms/1.0.0/osm/GLOBAL_WEBMERCATOR/0/0/0.png").status_code == 200
    assert coords_of(layers["osm_merc"]) == [TileCoord(0, 1, 1)]
    for path, message in [
        ("/tms/1.0.0/osm/EPSG3857/0/0/0.png", "unknown layer: osm"),
        ("/tms/1.0.0/osm/0/0/0.png", "unknown layer: osm"),
        ("/tms/1.0.0/osm_EPSG3857/0/0/0.png", "unknown layer: osm_EPSG3857"),
        ("/tms/1.0.0/osm_GLOBAL_WEBMERCATOR", "unknown layer: osm_GLOBAL_WEBMERCATOR"),
    ]:
        response = client.get(path)
        assert response.status_code == 404
        assert tms_error(response) == message


def test_grid_name_is_not_a_layer_form_without_use_grid_names(client):
    response = client.get("/tms/1.0.0/osm/GLOBAL_WEBMERCATOR/0/0/0.png")
    assert response.status_code == 404
    assert tms_error(response) == "unknown layer: osm"


def test_two_grids_with_the_same_srs_keep_the_first_slot_and_the_last_layer():
    first = make_layer("osm", global_webmercator("a"), title="first")
    other = make_layer("other", global_geodetic())
    last = make_layer("osm", global_webmercator("b", levels=5), title="last")
    client = make_client(TileService([first, other, last], {}))
    root = ET.fromstring(client.get("/tms/1.0.0/").data)
    assert [m.get("title") for m in root.iter("TileMap")] == ["last", "OTHER"]
    assert client.get("/tms/1.0.0/osm/EPSG3857/0/0/0.png").status_code == 200
    assert coords_of(last) == [TileCoord(0, 1, 1)]


def test_sqrt2_grids_publish_every_second_level():
    grid = sqrt2_webmercator()
    assert is_sqrt2_grid(grid.resolutions)
    assert tms_levels(grid) == (2, 4)
    assert not is_sqrt2_grid(global_webmercator().resolutions)
    assert tms_levels(global_webmercator(levels=3)) == (1, 2)
    assert tms_levels(utm_grid()) == (0, 1, 2)
    layer = make_layer("osm", grid)
    client = make_client(TileService([layer], {}, use_grid_names=True))
    root = ET.fromstring(client.get("/tms/1.0.0/osm/sq2").data)
    assert [t.get("units-per-pixel") for t in root.iter("TileSet")] == [
        "78271.51696402048",
        "39135.75848201024",
    ]
    assert client.get("/tms/1.0.0/osm/sq2/0/0/0.png").status_code == 200
    assert client.get("/tms/1.0.0/osm/sq2/1/0/0.png").status_code == 200
    assert client.get("/tms/1.0.0/osm/sq2/2/0/0.png").status_code == 404
    assert coords_of(layer) == [TileCoord(0, 1, 2), TileCoord(0, 3, 4)]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/tms/1.0.0/foo", "unknown layer: foo"),
        ("/tms/1.0.0/foo/EPSG3857/0/0/0.png", "unknown layer: foo"),
        (
            "/tms/1.0.0/osm/EPSG4326/0/0/0.jpeg",
            "invalid format (jpeg). this tile set only supports (png)",
        ),
        (
            "/tms/1.0.0/osm/EPSG3857/0/0/0.PNG",
            "invalid format (PNG). this tile set only supports (png)",
        ),
        ("/tms/1.0.0/osm/EPSG4326/0/5/0.png", OUTSIDE),
        ("/tms/1.0.0/osm/EPSG4326/0/0/1.png", OUTSIDE),
        ("/tms/1.0.0/osm/EPSG4326/-1/0/0.png", OUTSIDE),
        ("/tms/1.0.0/osm/EPSG3857/0/-1/0.png", OUTSIDE),
        ("/tms/1.0.0/osm/EPSG3857/0/0/-1.png", OUTSIDE),
        ("/tms/1.0.0/osm/EPSG3857/19/0/0.png", OUTSIDE),
        ("/tms/1.0.0/osm/EPSG3857/1/" + "9" * 5000 + "/0.png", OUTSIDE),
        ("/tms/1.0.0/osm/EPSG3857/-" + "9" * 5000 + "/0/0.png", OUTSIDE),
        ("/tms/foo", "invalid request (/tms/foo)"),
        ("/tms/1.0.0/osm/EPSG3857/", "invalid request (/tms/1.0.0/osm/EPSG3857/)"),
        ("/tms/1.0.0/osm/EPSG3857/0", "invalid request (/tms/1.0.0/osm/EPSG3857/0)"),
        ("/tms/1.0.0/osm/EPSG3857/0/0/0", "invalid request (/tms/1.0.0/osm/EPSG3857/0/0/0)"),
        (
            "/tms/1.0.0/osm/EPSG3857/a/0/0.png",
            "invalid request (/tms/1.0.0/osm/EPSG3857/a/0/0.png)",
        ),
        (
            "/tms/1.0.0/osm/EPSG3857/1.5/0/0.png",
            "invalid request (/tms/1.0.0/osm/EPSG3857/1.5/0/0.png)",
        ),
        ("/tms/2.0.0/", "invalid request (/tms/2.0.0/)"),
    ],
)
def test_client_errors_are_404_tile_map_server_errors(client, layers, path, message):
    response = client.get(path)
    assert response.status_code == 404
    assert tms_error(response) == message
    assert all(coords_of(layer) == [] for layer in layers.values())


def test_error_messages_are_escaped(client):
    response = client.get("/tms/1.0.0/<a&b>")
    assert response.status_code == 404
    assert tms_error(response) == "unknown layer: <a&b>"


def test_source_errors_are_500():
    layer = make_layer(
        "osm", global_webmercator(), manager=FakeTileManager(SourceError("upstream down"))
    )
    response = make_client(TileService([layer], {})).get("/tms/1.0.0/osm/EPSG3857/0/0/0.png")
    assert response.status_code == 500
    assert tms_error(response) == "upstream down"


def test_tile_outside_grid_from_the_tile_manager_is_404():
    manager = FakeTileManager(TileOutsideGrid("nope"))
    layer = make_layer("osm", global_webmercator(), manager=manager)
    response = make_client(TileService([layer], {})).get("/tms/1.0.0/osm/EPSG3857/0/0/0.png")
    assert response.status_code == 404
    assert tms_error(response) == OUTSIDE


def test_tile_without_data_is_served_as_returned():
    layer = make_layer("osm", global_webmercator(), manager=FakeTileManager(data=None))
    response = make_client(TileService([layer], {})).get("/tms/1.0.0/osm/EPSG3857/0/0/0.png")
    assert response.status_code == 200
    assert response.data == b""


def test_tile_cache_headers_and_conditional_get(layers):
    client = make_client(TileService(list(layers.values()), MD, max_tile_age_seconds=3600))
    response = client.get("/tms/1.0.0/osm/EPSG3857/0/0/0.png")
    etag = tile_etag(1700000000.5, len(PNG))
    assert response.headers["ETag"] == etag
    assert response.headers["Cache-control"] == "public, max-age=3600, s-maxage=3600"
    assert response.headers["Last-modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    cached = client.get("/tms/1.0.0/osm/EPSG3857/0/0/0.png", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.data == b""
    assert cached.headers["ETag"] == etag
    assert "Content-Type" not in cached.headers
    changed = client.get("/tms/1.0.0/osm/EPSG3857/0/0/0.png", headers={"If-None-Match": "x"})
    assert changed.status_code == 200


def test_png8_layers_serve_plain_png_content_type():
    layer = make_layer("osm", global_webmercator(), format="image/png; mode=8bit")
    client = make_client(TileService([layer], {}))
    assert client.get("/tms/1.0.0/osm/EPSG3857/0/0/0.png").headers["Content-Type"] == "image/png"
    root = ET.fromstring(client.get("/tms/1.0.0/osm/EPSG3857").data)
    assert root.find("TileFormat").get("mime-type") == "image/png; mode=8bit"


def test_sw_and_nw_variants_of_one_geodetic_grid_get_the_same_tms_rows():
    sw = make_layer("a", aligned_geodetic())
    client = make_client(TileService([sw], {}))
    assert client.get("/tms/1.0.0/a/EPSG4326/0/1/0.png").status_code == 200
    # aligned geodetic grid: level 0 has 2x1 tiles; TMS level 0 = internal level 1 (4x2)
    assert coords_of(sw) == [TileCoord(1, 0, 1)]


def test_malformed_paths_never_give_server_errors(client):
    seeds = [
        "/tms",
        "/tms/1.0.0/",
        "/tms/1.0.0/osm/EPSG3857",
        "/tms/1.0.0/osm/EPSG3857/1/0/0.png",
        "/tms/1.0.0/osm/0/0/0.png",
        "/tms/1.0.0/geo/EPSG25832/2/1/1.jpeg",
    ]
    checked = 0
    for path in mutated_paths(seeds, 600, seed=20240501):
        if not re.match(r"^/tms(?:$|[/?])", path):
            continue
        response = client.get(path)
        checked += 1
        assert response.status_code < 500, path
        assert response.headers["Content-Type"] in (XML, "image/png", "image/jpeg"), path
        if response.status_code != 200:
            assert response.status_code == 404, path
            tms_error(response)
    assert checked > 300
