"""WMS GetCapabilities documents: structure, metadata, bboxes, content types, OWSLib."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from lxml import etree
from owslib.wms import WebMapService
from werkzeug.test import Client
from werkzeug.wrappers import Request

from mapproxy.image.options import ImageOptions
from mapproxy.layer.base import ResolutionRange, WMSLayer
from mapproxy.service.wms.service import WMSService
from mapproxy.source.base import MapExtent
from mapproxy.srs import get_srs

WORLD = MapExtent((-180.0, -90.0, 180.0, 90.0), get_srs("EPSG:4326"))
GERMANY_UTM = MapExtent((280000.0, 5200000.0, 920000.0, 6100000.0), get_srs("EPSG:25832"))
WMS_NS = {"wms": "http://www.opengis.net/wms", "xlink": "http://www.w3.org/1999/xlink"}
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"

SERVICE_MD = {
    "title": "Test WMS & Co",
    "abstract": "An abstract\n\nwith a blank line <and> markup",
    "online_resource": "http://example.org/about",
    "contact": {
        "person": "Jane Doe",
        "position": "Technical Director",
        "organization": "Example Org",
        "address": "Main Street 1",
        "city": "Oldenburg",
        "postcode": "26121",
        "state": "Lower Saxony",
        "country": "Germany",
        "phone": "+49 441 123",
        "fax": "+49 441 124",
        "email": "info@example.org",
    },
    "fees": "free",
    "access_constraints": "Only for testing",
    "keyword_list": [
        {"vocabulary": "GEMET", "keywords": ["roads", "rivers"]},
        {"keywords": ["misc"]},
    ],
}


def make_client(service: WMSService) -> Client:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return service.handle(Request(environ))(environ, start_response)

    return Client(app)


class FakeLayer:
    """A map layer that is never asked for images here."""

    transparent = False

    def __init__(self, extent: MapExtent = WORLD) -> None:
        self.extent = extent

    def get_map(self, query: Any) -> Any:
        raise AssertionError("capabilities must not render")


@pytest.fixture
def root() -> WMSLayer:
    return WMSLayer(
        "root",
        "Root Layer",
        WORLD,
        children=[
            WMSLayer(
                "roads",
                "Roads <&>",
                WORLD,
                map_layers=[FakeLayer()],
                queryable=True,
                md={
                    "abstract": "All the roads",
                    "keyword_list": [{"vocabulary": "x", "keywords": ["asphalt"]}],
                    "attribution": {
                        "title": "(c) Roads Inc.",
                        "url": "http://roads.example.org",
                        "logo": {
                            "url": "http://roads.example.org/logo.png",
                            "width": 100,
                            "height": 50,
                            "format": "image/png",
                        },
                    },
                    "identifier": [
                        {"url": "http://authority.example.org", "name": "auth", "value": "r-1"}
                    ],
                    "metadata": [
                        {
                            "url": "http://md.example.org/r",
                            "type": "ISO19115:2003",
                            "format": "text/xml",
                        },
                        {"url": "http://md.example.org/tc", "type": "TC211", "format": "text/xml"},
                    ],
                    "data": [{"url": "http://data.example.org/r.zip", "format": "application/zip"}],
                    "feature_list": [{"url": "http://fl.example.org", "format": "text/csv"}],
                },
            ),
            WMSLayer(
                None,
                "Group",
                GERMANY_UTM,
                children=[
                    WMSLayer(
                        "utm",
                        "UTM",
                        GERMANY_UTM,
                        map_layers=[FakeLayer(GERMANY_UTM)],
                        res_range=ResolutionRange(min_res=1000.0, max_res=10.0),
                    )
                ],
            ),
        ],
    )


@pytest.fixture
def service(root: WMSLayer) -> WMSService:
    return WMSService(
        root,
        SERVICE_MD,
        srs=["EPSG:4326", "EPSG:3857", "EPSG:25832", "CRS:84"],
        bbox_srs=["EPSG:4326", "EPSG:3857", "EPSG:31467"],
        image_formats=["image/png", "image/jpeg", "png8"],
        format_options={"png8": ImageOptions(format="image/png; mode=8bit")},
        max_output_pixels=3000 * 2000,
    )


@pytest.fixture
def client(service: WMSService) -> Client:
    return make_client(service)


def caps(client: Client, version: str, **headers: str) -> Any:
    query = {"SERVICE": "WMS", "REQUEST": "GetCapabilities", "VERSION": version}
    return client.get("/service", query_string=query, headers=headers)


@pytest.mark.parametrize(
    ("version", "content_type", "root_tag"),
    [
        ("1.0.0", "text/xml; charset=utf-8", "WMT_MS_Capabilities"),
        ("1.1.0", "application/vnd.ogc.wms_xml", "WMT_MS_Capabilities"),
        ("1.1.1", "application/vnd.ogc.wms_xml", "WMT_MS_Capabilities"),
        ("1.3.0", "text/xml; charset=utf-8", "{http://www.opengis.net/wms}WMS_Capabilities"),
    ],
)
def test_content_type_and_root_per_version(
    client: Client, version: str, content_type: str, root_tag: str
) -> None:
    response = caps(client, version)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    root = etree.fromstring(response.data)
    assert root.tag == root_tag
    assert root.get("version") == version
    assert "\n\n" not in response.text
    assert all(line.strip() for line in response.text.splitlines())


def test_version_negotiation(client: Client) -> None:
    assert etree.fromstring(caps(client, "1.2.0").data).get("version") == "1.1.1"
    assert etree.fromstring(caps(client, "7.0.0").data).get("version") == "1.3.0"
    response = client.get("/service", query_string={"REQUEST": "GetCapabilities"})
    assert etree.fromstring(response.data).get("version") == "1.3.0"
    response = client.get("/service", query_string={"REQUEST": "capabilities", "WMTVER": "1.0.0"})
    assert etree.fromstring(response.data).get("version") == "1.0.0"


def test_configured_versions_only() -> None:
    service = WMSService(WMSLayer("r", "R", WORLD), {}, versions=["1.1.1"])
    response = caps(make_client(service), "1.3.0")
    assert response.headers["Content-Type"] == "application/vnd.ogc.wms_xml"


def test_111_service_section(client: Client) -> None:
    root = etree.fromstring(caps(client, "1.1.1").data)
    assert root.findtext("Service/Name") == "OGC:WMS"
    assert root.findtext("Service/Title") == "Test WMS & Co"
    assert root.findtext("Service/Abstract") == "An abstract\nwith a blank line <and> markup"
    assert root.xpath("Service/KeywordList/Keyword/text()") == ["roads", "rivers", "misc"]
    assert root.find("Service/OnlineResource").get(XLINK_HREF) == "http://example.org/about"
    contact = root.find("Service/ContactInformation")
    assert contact.findtext("ContactPersonPrimary/ContactPerson") == "Jane Doe"
    assert contact.findtext("ContactPersonPrimary/ContactOrganization") == "Example Org"
    assert contact.findtext("ContactPosition") == "Technical Director"
    assert contact.findtext("ContactAddress/AddressType") == "postal"
    assert contact.findtext("ContactAddress/City") == "Oldenburg"
    assert contact.findtext("ContactAddress/StateOrProvince") == "Lower Saxony"
    assert contact.findtext("ContactAddress/PostCode") == "26121"
    assert contact.findtext("ContactVoiceTelephone") == "+49 441 123"
    assert contact.findtext("ContactFacsimileTelephone") == "+49 441 124"
    assert contact.findtext("ContactElectronicMailAddress") == "info@example.org"
    assert root.findtext("Service/Fees") == "free"
    assert root.findtext("Service/AccessConstraints") == "Only for testing"


def test_111_doctype_and_requests(client: Client) -> None:
    response = caps(client, "1.1.1")
    assert "WMS_MS_Capabilities.dtd" in response.text
    assert "<!ELEMENT VendorSpecificCapabilities EMPTY>" in response.text
    root = etree.fromstring(response.data)
    request = root.find("Capability/Request")
    assert request.xpath("GetCapabilities/Format/text()") == ["application/vnd.ogc.wms_xml"]
    assert request.xpath("GetMap/Format/text()") == [
        "image/png",
        "image/jpeg",
        "image/png; mode=8bit",
    ]
    assert request.xpath("GetFeatureInfo/Format/text()") == [
        "text/plain",
        "text/html",
        "application/vnd.ogc.gml",
    ]
    assert request.find("GetLegendGraphic") is None
    hrefs = {e.get(XLINK_HREF) for e in request.iter("OnlineResource")}
    assert hrefs == {"http://localhost/service?"}
    assert root.xpath("Capability/Exception/Format/text()") == [
        "application/vnd.ogc.se_xml",
        "application/vnd.ogc.se_inimage",
        "application/vnd.ogc.se_blank",
    ]


def test_111_layer_tree(client: Client) -> None:
    root = etree.fromstring(caps(client, "1.1.1").data)
    top = root.find("Capability/Layer")
    assert top.findtext("Name") == "root"
    assert top.xpath("SRS/text()") == ["EPSG:4326", "EPSG:3857", "EPSG:25832", "CRS:84"]
    assert root.xpath("//Layer/Layer//SRS") == []
    bbox = top.find("LatLonBoundingBox")
    assert [float(bbox.get(k)) for k in ("minx", "miny", "maxx", "maxy")] == [
        -180.0,
        -89.999999,
        180.0,
        89.999999,
    ]
    # 31467 is not offered, so only 4326 and 3857 (the native 4326 is already listed)
    assert top.xpath("BoundingBox/@SRS") == ["EPSG:4326", "EPSG:3857"]
    roads = top.find("Layer")
    assert roads.get("queryable") == "1"
    assert roads.findtext("Title") == "Roads <&>"
    assert roads.xpath("MetadataURL/@type") == ["TC211"]
    group = top.findall("Layer")[1]
    assert group.find("Name") is None
    assert group.findtext("Title") == "Group"
    assert group.get("queryable") is None
    utm = group.find("Layer")
    assert utm.findtext("Name") == "utm"
    # native SRS is appended to the bbox_srs list when offered
    assert utm.xpath("BoundingBox/@SRS") == ["EPSG:4326", "EPSG:3857", "EPSG:25832"]
    native = utm.xpath("BoundingBox[@SRS='EPSG:25832']")[0]
    assert float(native.get("minx")) == 280000.0
    assert float(native.get("maxy")) == 6100000.0
    hint = utm.find("ScaleHint")
    assert float(hint.get("min")) == pytest.approx(10.0 * math.sqrt(2))
    assert float(hint.get("max")) == pytest.approx(1000.0 * math.sqrt(2))
    ll = utm.find("LatLonBoundingBox")
    assert 5.0 < float(ll.get("minx")) < 6.0
    assert 55.0 < float(ll.get("maxy")) < 56.0


def test_mercator_bbox_of_world_layer_is_clipped(client: Client) -> None:
    root = etree.fromstring(caps(client, "1.1.1").data)
    bbox = root.xpath("Capability/Layer/BoundingBox[@SRS='EPSG:3857']")[0]
    assert float(bbox.get("maxx")) == pytest.approx(20037508.34, abs=1)
    assert float(bbox.get("maxy")) == pytest.approx(20037508.34, abs=1)


def test_130_service_and_capability(client: Client) -> None:
    response = caps(client, "1.3.0")
    root = etree.fromstring(response.data)
    assert root.nsmap[None] == "http://www.opengis.net/wms"
    assert root.nsmap["sld"] == "http://www.opengis.net/sld"
    assert "sld_capabilities.xsd" in root.get(
        "{http://www.w3.org/2001/XMLSchema-instance}schemaLocation"
    )
    ns = WMS_NS
    assert root.findtext("wms:Service/wms:Name", namespaces=ns) == "WMS"
    assert root.findtext("wms:Service/wms:MaxWidth", namespaces=ns) == "2449"
    assert root.findtext("wms:Service/wms:MaxHeight", namespaces=ns) == "2449"
    assert root.xpath("wms:Service/wms:KeywordList/wms:Keyword/@vocabulary", namespaces=ns) == [
        "GEMET",
        "GEMET",
    ]
    assert root.xpath(
        "wms:Capability/wms:Request/wms:GetCapabilities/wms:Format/text()", namespaces=ns
    ) == ["text/xml"]
    assert root.xpath(
        "wms:Capability/wms:Request/wms:GetFeatureInfo/wms:Format/text()", namespaces=ns
    ) == ["text/plain", "text/html", "text/xml"]
    assert root.xpath("wms:Capability/wms:Exception/wms:Format/text()", namespaces=ns) == [
        "XML",
        "INIMAGE",
        "BLANK",
    ]


def test_130_layers(client: Client) -> None:
    root = etree.fromstring(caps(client, "1.3.0").data)
    ns = WMS_NS
    top = root.find("wms:Capability/wms:Layer", ns)
    assert top.xpath("wms:CRS/text()", namespaces=ns) == [
        "EPSG:4326",
        "EPSG:3857",
        "EPSG:25832",
        "CRS:84",
    ]
    geo = top.find("wms:EX_GeographicBoundingBox", ns)
    assert float(geo.findtext("wms:westBoundLongitude", namespaces=ns)) == -180.0
    assert float(geo.findtext("wms:northBoundLatitude", namespaces=ns)) == 89.999999
    # EPSG:4326 in lat/lon axis order
    bbox = top.xpath("wms:BoundingBox[@CRS='EPSG:4326']", namespaces=ns)[0]
    assert [float(bbox.get(k)) for k in ("minx", "miny", "maxx", "maxy")] == [
        -90.0,
        -180.0,
        90.0,
        180.0,
    ]
    roads = top.find("wms:Layer", ns)
    assert roads.findtext("wms:Abstract", namespaces=ns) == "All the roads"
    assert roads.xpath("wms:KeywordList/wms:Keyword/text()", namespaces=ns) == ["asphalt"]
    attribution = roads.find("wms:Attribution", ns)
    assert attribution.findtext("wms:Title", namespaces=ns) == "(c) Roads Inc."
    assert attribution.find("wms:OnlineResource", ns).get(XLINK_HREF) == (
        "http://roads.example.org"
    )
    logo = attribution.find("wms:LogoURL", ns)
    assert (logo.get("width"), logo.get("height")) == ("100", "50")
    assert roads.find("wms:AuthorityURL", ns).get("name") == "auth"
    identifier = roads.find("wms:Identifier", ns)
    assert (identifier.get("authority"), identifier.text) == ("auth", "r-1")
    assert roads.xpath("wms:MetadataURL/@type", namespaces=ns) == ["ISO19115:2003", "TC211"]
    assert roads.find("wms:DataURL/wms:OnlineResource", ns).get(XLINK_HREF) == (
        "http://data.example.org/r.zip"
    )
    assert roads.findtext("wms:FeatureListURL/wms:Format", namespaces=ns) == "text/csv"
    utm = root.xpath("//wms:Layer[wms:Name='utm']", namespaces=ns)[0]
    assert float(utm.findtext("wms:MinScaleDenominator", namespaces=ns)) == pytest.approx(
        10.0 / 0.00028
    )
    assert float(utm.findtext("wms:MaxScaleDenominator", namespaces=ns)) == pytest.approx(
        1000.0 / 0.00028
    )
    native = utm.xpath("wms:BoundingBox[@CRS='EPSG:25832']", namespaces=ns)[0]
    assert float(native.get("minx")) == 280000.0  # easting first: 25832 is east/north


def test_100_document(client: Client) -> None:
    root = etree.fromstring(caps(client, "1.0.0").data)
    assert root.findtext("Service/OnlineResource") == "http://example.org/about"
    assert [e.tag for e in root.find("Capability/Request/Map/Format")] == ["PNG", "JPEG"]
    get = root.find("Capability/Request/Map/DCPType/HTTP/Get")
    assert get.get("onlineResource") == "http://localhost/service?"
    assert root.findtext("Capability/Layer/SRS") == "EPSG:4326 EPSG:3857 EPSG:25832 CRS:84"


def test_online_resource_follows_proxy_headers(client: Client) -> None:
    response = client.get(
        "/service",
        query_string={"REQUEST": "GetCapabilities", "VERSION": "1.1.1"},
        headers={"X-Forwarded-Host": "maps.example.com", "X-Forwarded-Proto": "https"},
        environ_overrides={"SCRIPT_NAME": "/mapproxy"},
    )
    root = etree.fromstring(response.data)
    hrefs = {e.get(XLINK_HREF) for e in root.find("Capability/Request").iter("OnlineResource")}
    assert hrefs == {"https://maps.example.com/mapproxy/service?"}


def test_online_resource_is_escaped(service: WMSService) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return service.handle(Request(environ))(environ, start_response)

    response = Client(app).get(
        "/service",
        query_string={"REQUEST": "GetCapabilities", "VERSION": "1.3.0"},
        headers={"X-Forwarded-Host": 'evil"<&>.example'},
    )
    root = etree.fromstring(response.data)
    href = root.find("wms:Capability/wms:Request/wms:GetMap//wms:OnlineResource", WMS_NS)
    assert href.get(XLINK_HREF) == 'http://evil"<&>.example/service?'


def test_metadata_with_control_characters_stays_well_formed() -> None:
    layer = WMSLayer("l\x00ayer", "Ti\x07tle", WORLD, md={"abstract": "a\x1bb"})
    service = WMSService(layer, {"title": "x\x00y", "keyword_list": [{"keywords": ["k\x02"]}]})
    for version in ("1.0.0", "1.1.1", "1.3.0"):
        root = etree.fromstring(caps(make_client(service), version).data)
        assert root is not None


def test_service_online_resource_defaults_to_request_url() -> None:
    service = WMSService(WMSLayer("r", "R", WORLD), {})
    root = etree.fromstring(caps(make_client(service), "1.1.1").data)
    assert root.findtext("Service/Title") == "MapProxy WMS"
    assert root.find("Service/OnlineResource").get(XLINK_HREF) == "http://localhost/service"
    assert root.findtext("Service/Fees") == "none"
    assert root.findtext("Service/AccessConstraints") == "none"
    assert root.find("Service/ContactInformation") is None


def test_bbox_srs_with_explicit_bbox() -> None:
    service = WMSService(
        WMSLayer("r", "R", WORLD),
        {},
        srs=["EPSG:4326", "EPSG:3857"],
        bbox_srs=[{"srs": "EPSG:4326", "bbox": [0, 0, 20, 10]}, "EPSG:3857"],
    )
    root = etree.fromstring(caps(make_client(service), "1.1.1").data)
    bbox = root.xpath("Capability/Layer/BoundingBox[@SRS='EPSG:4326']")[0]
    assert [float(bbox.get(k)) for k in ("minx", "miny", "maxx", "maxy")] == [0, 0, 20, 10]


def test_featureinfo_types() -> None:
    service = WMSService(WMSLayer("r", "R", WORLD), {}, featureinfo_types=["json", "xml"])
    root = etree.fromstring(caps(make_client(service), "1.1.1").data)
    assert root.xpath("Capability/Request/GetFeatureInfo/Format/text()") == [
        "application/json",
        "application/vnd.ogc.gml",
    ]


@pytest.mark.parametrize("version", ["1.1.1", "1.3.0"])
def test_owslib_parses_capabilities(client: Client, version: str) -> None:
    data = caps(client, version).data
    wms = WebMapService("http://localhost/service", version=version, xml=data)
    assert wms.identification.title == "Test WMS & Co"
    assert wms.provider.contact.name == "Jane Doe"
    assert set(wms.contents) == {"root", "roads", "utm"}
    roads = wms["roads"]
    assert roads.title == "Roads <&>"
    assert roads.queryable == 1
    assert roads.boundingBoxWGS84 == pytest.approx((-180.0, -89.999999, 180.0, 89.999999))
    assert "EPSG:4326" in wms["root"].crsOptions
    assert [op.name for op in wms.operations][:2] == ["GetCapabilities", "GetMap"]
    assert "image/png" in wms.getOperationByName("GetMap").formatOptions
    assert wms.getOperationByName("GetMap").methods[0]["url"] == "http://localhost/service?"
    utm = wms["utm"]
    assert utm.boundingBoxWGS84[0] == pytest.approx(5.9, abs=0.5)
