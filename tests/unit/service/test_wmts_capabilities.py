"""WMTS capabilities: OWSLib compatibility, tile matrices, URLs and service metadata."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from owslib.wmts import WebMapTileService
from tile_service_helpers import (
    aligned_geodetic,
    global_geodetic,
    global_webmercator,
    make_client,
    make_layer,
    utm_grid,
)

from mapproxy.service.wmts import WMTSRestService, WMTSService
from mapproxy.service.wmts.tile_sets import matrix_identifier, scale_denominator

WMTS = "{http://www.opengis.net/wmts/1.0}"
OWS = "{http://www.opengis.net/ows/1.1}"
XLINK = "{http://www.w3.org/1999/xlink}"
CAPS = "/wmts/1.0.0/WMTSCapabilities.xml"

MD = {
    "title": "Test Title",
    "abstract": "Some abstract",
    "keyword_list": [{"vocabulary": "Name", "keywords": ["foo", "bar"]}, {"keywords": ["baz"]}],
    "contact": {
        "person": "Jane",
        "position": "Boss",
        "organization": "Org",
        "address": "Street 1",
        "city": "Town",
        "state": "State",
        "postcode": 12345,
        "country": "Nowhere",
        "phone": "+1",
        "fax": "+2",
        "email": "a@b.c",
    },
    "online_resource": "http://example.org/",
    "fees": "free",
    "access_constraints": "none & co",
}


@pytest.fixture
def layers():
    return [
        make_layer("osm", global_webmercator(), title="OSM <Layer>"),
        make_layer("osm", aligned_geodetic()),
        make_layer("osm", global_geodetic()),
        make_layer("geo", aligned_geodetic(), "Geo", "image/jpeg", "jpeg"),
        make_layer("geo", utm_grid(), "Geo", "image/jpeg", "jpeg"),
        make_layer("local", utm_grid(), "Local only"),
    ]


@pytest.fixture
def rest_caps(layers) -> str:
    response = make_client(WMTSRestService(layers, MD)).get(CAPS)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/xml"
    return response.get_data(as_text=True)


@pytest.fixture
def kvp_caps(layers) -> str:
    response = make_client(WMTSService(layers, MD)).get(
        "/service?SERVICE=WMTS&REQUEST=GetCapabilities"
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/xml"
    return response.get_data(as_text=True)


@pytest.mark.parametrize("caps_fixture", ["rest_caps", "kvp_caps"])
def test_owslib_reads_layers_and_tile_matrix_sets(request, caps_fixture):
    caps = request.getfixturevalue(caps_fixture)
    wmts = WebMapTileService("http://localhost/service", xml=caps.encode())
    assert wmts.identification.title == "Test Title"
    assert wmts.identification.abstract == "Some abstract"
    assert wmts.identification.type == "OGC WMTS"
    assert wmts.identification.version == "1.0.0"
    assert wmts.identification.fees == "free"
    assert wmts.identification.accessconstraints == "none & co"
    assert wmts.provider.name == "Org"
    assert wmts.provider.url == "http://example.org/"
    assert wmts.provider.contact.email == "a@b.c"
    assert list(wmts.contents) == ["osm", "geo"]
    osm = wmts.contents["osm"]
    assert osm.title == "OSM <Layer>"
    assert osm.formats == ["image/png"]
    assert sorted(osm.tilematrixsetlinks) == ["GLOBAL_WEBMERCATOR", "geo2"]
    assert osm.boundingBoxWGS84 == pytest.approx(
        (-180.0, -85.0511287798066, 180.0, 85.0511287798066)
    )
    assert wmts.contents["geo"].formats == ["image/jpeg"]
    assert list(wmts.contents["geo"].tilematrixsetlinks) == ["geo2"]
    assert list(wmts.tilematrixsets) == ["GLOBAL_WEBMERCATOR", "geo2"]
    merc = wmts.tilematrixsets["GLOBAL_WEBMERCATOR"]
    assert merc.crs == "urn:ogc:def:crs:EPSG:3857"
    assert list(merc.tilematrix) == [f"{i:02d}" for i in range(20)]
    level0 = merc.tilematrix["00"]
    assert level0.scaledenominator == 559082264.0287176
    assert level0.topleftcorner == (-20037508.342789244, 20037508.342789244)
    assert (level0.tilewidth, level0.tileheight, level0.matrixwidth, level0.matrixheight) == (
        256,
        256,
        1,
        1,
    )
    assert merc.tilematrix["19"].matrixwidth == 524288
    geo = wmts.tilematrixsets["geo2"]
    assert geo.crs == "urn:ogc:def:crs:EPSG:4326"
    assert (geo.tilematrix["00"].matrixwidth, geo.tilematrix["00"].matrixheight) == (2, 1)
    assert (geo.tilematrix["02"].matrixwidth, geo.tilematrix["02"].matrixheight) == (8, 4)


def test_owslib_builds_rest_tile_urls(rest_caps):
    wmts = WebMapTileService("http://localhost/wmts", xml=rest_caps.encode())
    osm = wmts.contents["osm"]
    assert osm.resourceURLs == [
        {
            "format": "image/png",
            "resourceType": "tile",
            "template": "http://localhost/wmts/osm/{TileMatrixSet}/{TileMatrix}/{TileCol}/{TileRow}.png",
        }
    ]


def test_tile_matrix_text(rest_caps):
    assert (
        "    <TileMatrixSet>\n"
        "      <ows:Identifier>GLOBAL_WEBMERCATOR</ows:Identifier>\n"
        "      <ows:SupportedCRS>urn:ogc:def:crs:EPSG:3857</ows:SupportedCRS>\n"
        "      <TileMatrix>\n"
        "        <ows:Identifier>00</ows:Identifier>\n"
        "        <ScaleDenominator>559082264.0287176</ScaleDenominator>\n"
        "        <TopLeftCorner>-20037508.342789244 20037508.342789244</TopLeftCorner>\n"
        "        <TileWidth>256</TileWidth>\n"
        "        <TileHeight>256</TileHeight>\n"
        "        <MatrixWidth>1</MatrixWidth>\n"
        "        <MatrixHeight>1</MatrixHeight>\n"
        "      </TileMatrix>\n"
    ) in rest_caps
    # geographic: lat/lon axis order, scale from degrees
    assert (
        "        <ows:Identifier>00</ows:Identifier>\n"
        "        <ScaleDenominator>279541132.01435894</ScaleDenominator>\n"
        "        <TopLeftCorner>90.0 -180.0</TopLeftCorner>\n"
    ) in rest_caps
    assert "<ScaleDenominator>1066.3647919249</ScaleDenominator>" in rest_caps
    assert "<ows:Identifier>utm</ows:Identifier>" not in rest_caps
    assert "GLOBAL_GEODETIC" not in rest_caps


@pytest.mark.parametrize(
    ("res", "geographic", "expected"),
    [
        (156543.03392804097, False, "559082264.0287176"),
        (156543.03392804097 / 2**19, False, "1066.3647919249"),
        (0.703125, True, "279541132.01435894"),
        (0.28, False, "1000"),
        (0.00028, False, "1"),
        (1.0, False, "3571.4285714286"),
    ],
)
def test_scale_denominator(res, geographic, expected):
    assert scale_denominator(res, geographic) == expected


def test_matrix_identifiers_are_zero_padded():
    assert [matrix_identifier(level) for level in (0, 9, 10, 123)] == ["00", "09", "10", "123"]


def test_rest_caps_layer_and_urls(rest_caps):
    root = ET.fromstring(rest_caps)
    layer = root.find(f"{WMTS}Contents/{WMTS}Layer")
    assert layer.findtext(f"{OWS}Identifier") == "osm"
    assert layer.findtext(f"{OWS}Abstract") == ""
    style = layer.find(f"{WMTS}Style")
    assert style.get("isDefault") == "true"
    assert style.findtext(f"{OWS}Identifier") == "default"
    assert layer.findtext(f"{OWS}WGS84BoundingBox/{OWS}LowerCorner") == "-180.0 -85.0511287798066"
    resource = layer.find(f"{WMTS}ResourceURL")
    assert resource.attrib == {
        "format": "image/png",
        "resourceType": "tile",
        "template": "http://localhost/wmts/osm/{TileMatrixSet}/{TileMatrix}/{TileCol}/{TileRow}.png",
    }
    gets = root.findall(f".//{OWS}Get")
    assert [g.get(f"{XLINK}href") for g in gets] == ["http://localhost/wmts?"] * 3
    assert [v.text for v in root.iter(f"{OWS}Value")] == ["RESTful"] * 3
    assert [op.get("name") for op in root.iter(f"{OWS}Operation")] == [
        "GetCapabilities",
        "GetTile",
        "GetFeatureInfo",
    ]
    metadata = root.find(f"{WMTS}ServiceMetadataURL")
    assert metadata.get(f"{XLINK}href") == "http://localhost/wmts/1.0.0/WMTSCapabilities.xml"
    assert rest_caps.endswith(
        '  <ServiceMetadataURL xlink:href="http://localhost/wmts/1.0.0/WMTSCapabilities.xml"/>\n'
        "</Capabilities>"
    )


def test_rest_caps_follow_proxy_headers_and_script_name(layers):
    client = make_client(WMTSRestService(layers, MD))
    response = client.get(
        CAPS,
        headers={"X-Forwarded-Host": "maps.example.org", "X-Forwarded-Proto": "https"},
        base_url="http://localhost/mp",
    )
    root = ET.fromstring(response.data)
    assert root.find(f".//{OWS}Get").get(f"{XLINK}href") == "https://maps.example.org/mp/wmts?"
    template = root.find(f".//{WMTS}ResourceURL").get("template")
    assert template.startswith("https://maps.example.org/mp/wmts/osm/")
    assert root.find(f"{WMTS}ServiceMetadataURL").get(f"{XLINK}href") == (
        "https://maps.example.org/mp/wmts/1.0.0/WMTSCapabilities.xml"
    )


def test_custom_template_in_resource_urls(layers):
    template = "/{Layer}/{Style}/{TileMatrixSet}-{TileMatrix}-{TileCol}-{TileRow}/tile.{Format}"
    client = make_client(WMTSRestService(layers, {}, template=template))
    root = ET.fromstring(client.get(CAPS).data)
    templates = [r.get("template") for r in root.iter(f"{WMTS}ResourceURL")]
    assert templates == [
        "http://localhost/wmts/osm/{Style}/{TileMatrixSet}-{TileMatrix}-{TileCol}-{TileRow}/tile.png",
        "http://localhost/wmts/geo/{Style}/{TileMatrixSet}-{TileMatrix}-{TileCol}-{TileRow}/tile.jpeg",
    ]


def test_service_metadata(rest_caps):
    root = ET.fromstring(rest_caps)
    ident = root.find(f"{OWS}ServiceIdentification")
    keywords = [(k.get("vocabulary"), k.text) for k in ident.iter(f"{OWS}Keyword")]
    assert keywords == [("Name", "foo"), ("Name", "bar"), (None, "baz")]
    assert ident.findtext(f"{OWS}AccessConstraints") == "none & co"
    provider = root.find(f"{OWS}ServiceProvider")
    assert provider.findtext(f"{OWS}ProviderName") == "Org"
    contact = provider.find(f"{OWS}ServiceContact")
    assert contact.findtext(f"{OWS}IndividualName") == "Jane"
    assert contact.findtext(f"{OWS}PositionName") == "Boss"
    info = contact.find(f"{OWS}ContactInfo")
    assert info.findtext(f"{OWS}Phone/{OWS}Voice") == "+1"
    assert info.findtext(f"{OWS}Phone/{OWS}Facsimile") == "+2"
    assert info.findtext(f"{OWS}Address/{OWS}AdministrativeArea") == "State"
    assert info.findtext(f"{OWS}Address/{OWS}PostalCode") == "12345"


def test_minimal_metadata_defaults():
    client = make_client(WMTSRestService([make_layer("osm", global_webmercator())], {}))
    text = client.get(CAPS).get_data(as_text=True)
    assert "<ows:Title></ows:Title>" in text
    assert "<ows:Fees>none</ows:Fees>" in text
    assert "<ows:AccessConstraints>none</ows:AccessConstraints>" in text
    assert "ServiceProvider" not in text
    assert "Keywords" not in text


def test_capabilities_without_layers_are_valid(layers):
    client = make_client(WMTSRestService([make_layer("local", utm_grid())], {}))
    wmts = WebMapTileService("http://localhost/wmts", xml=client.get(CAPS).data)
    assert list(wmts.contents) == []
