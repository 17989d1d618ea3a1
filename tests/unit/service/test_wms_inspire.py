"""INSPIRE view service metadata (``services.wms.inspire_md``) in WMS 1.3.0 capabilities.

Expected elements were taken from the reference MapProxy 7.0.0 run as a black box on
the same configurations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree
from werkzeug.test import Client

from mapproxy.errors import ConfigurationError
from mapproxy.wsgiapp import make_wsgi_app

NS = {
    "wms": "http://www.opengis.net/wms",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "ic": "http://inspire.ec.europa.eu/schemas/common/1.0",
    "vs": "http://inspire.ec.europa.eu/schemas/inspire_vs/1.0",
}

LINKED = {
    "type": "linked",
    "metadata_url": {
        "media_type": "application/vnd.iso.19139+xml",
        "url": "http://example.org/metadata?id=1&x=<y>",
    },
    "languages": {"default": "eng"},
}

EMBEDDED: dict[str, Any] = {
    "type": "embedded",
    "resource_locators": [
        {"url": "http://example.org/metadata", "media_type": "application/vnd.iso.19139+xml"}
    ],
    "temporal_reference": {"date_of_creation": "2015-05-01", "date_of_last_revision": "2016-01-02"},
    "metadata_points_of_contact": [{"organisation_name": "Acme", "email": "acme@example.org"}],
    "conformities": [
        {
            "title": "COMMISSION REGULATION (EU) No 1089/2010",
            "date_of_publication": "2010-12-08",
            "uris": ["OJ:L:2010:323:0011:0102:EN:PDF"],
            "resource_locators": [
                {"url": "http://eur-lex.europa.eu/x", "media_type": "application/pdf"}
            ],
            "degree": "notEvaluated",
        }
    ],
    "mandatory_keywords": ["infoMapAccessService", "humanGeographicViewer"],
    "keywords": [
        {"title": "Thesaurus", "date_of_creation": "2015-05-01", "keyword_value": "Beispiel"}
    ],
    "metadata_date": "2015-07-23",
    "languages": {"default": "ger"},
}


def build(tmp_path: Path, inspire_md: dict[str, Any] | None) -> Client:
    wms: dict[str, Any] = {"md": {"title": "INSPIRE test"}}
    if inspire_md is not None:
        wms["inspire_md"] = inspire_md
    config = {
        "services": {"wms": wms},
        "layers": [
            {"name": "with_legend", "title": "L1", "sources": ["s"], "legendurl": "file://x.png"},
            {"name": "plain", "title": "L2", "sources": ["s"]},
        ],
        "sources": {"s": {"type": "debug"}},
    }
    path = tmp_path / "mapproxy.yaml"
    path.write_text(yaml.safe_dump(config))
    return Client(make_wsgi_app(str(path)))


def capabilities(client: Client, version: str = "1.3.0") -> etree._Element:
    query = {"SERVICE": "WMS", "REQUEST": "GetCapabilities", "VERSION": version}
    response = client.get("/service", query_string=query)
    assert response.status_code == 200
    return etree.fromstring(response.data)


def values(root: etree._Element, path: str) -> list[str]:
    return [node.text for node in root.xpath(path, namespaces=NS)]


def test_linked_metadata(tmp_path: Path) -> None:
    root = capabilities(build(tmp_path, LINKED))
    assert root.nsmap["inspire_vs"] == NS["vs"]
    assert root.nsmap["inspire_common"] == NS["ic"]
    location = root.get(f"{{{NS['xsi']}}}schemaLocation").split()
    assert location[-2:] == [
        NS["vs"],
        "http://inspire.ec.europa.eu/schemas/inspire_vs/1.0/inspire_vs.xsd",
    ]
    ext = root.xpath("/wms:WMS_Capabilities/wms:Capability/vs:ExtendedCapabilities", namespaces=NS)
    assert len(ext) == 1
    # after Exception, before the root Layer
    assert etree.QName(ext[0].getprevious()).localname == "Exception"
    assert etree.QName(ext[0].getnext()).localname == "Layer"
    assert [etree.QName(child).localname for child in ext[0]] == [
        "MetadataUrl",
        "SupportedLanguages",
        "ResponseLanguage",
    ]
    assert values(ext[0], "ic:MetadataUrl/ic:URL") == ["http://example.org/metadata?id=1&x=<y>"]
    assert values(ext[0], "ic:MetadataUrl/ic:MediaType") == ["application/vnd.iso.19139+xml"]
    assert values(ext[0], "ic:SupportedLanguages/ic:DefaultLanguage/ic:Language") == ["eng"]
    assert values(ext[0], "ic:ResponseLanguage/ic:Language") == ["eng"]


def test_embedded_metadata(tmp_path: Path) -> None:
    root = capabilities(build(tmp_path, EMBEDDED))
    (ext,) = root.xpath("//vs:ExtendedCapabilities", namespaces=NS)
    assert [etree.QName(child).localname for child in ext] == [
        "ResourceLocator",
        "ResourceType",
        "TemporalReference",
        "Conformity",
        "MetadataPointOfContact",
        "MetadataDate",
        "SpatialDataServiceType",
        "MandatoryKeyword",
        "MandatoryKeyword",
        "Keyword",
        "SupportedLanguages",
        "ResponseLanguage",
    ]
    assert values(ext, "ic:ResourceLocator/ic:URL") == ["http://example.org/metadata"]
    assert values(ext, "ic:ResourceType") == ["service"]
    assert [
        etree.QName(c).localname for c in ext.xpath("ic:TemporalReference/*", namespaces=NS)
    ] == [
        "DateOfCreation",
        "DateOfLastRevision",
    ]
    assert values(ext, "ic:TemporalReference/ic:DateOfCreation") == ["2015-05-01"]
    spec = "ic:Conformity/ic:Specification/"
    assert values(ext, spec + "ic:Title") == ["COMMISSION REGULATION (EU) No 1089/2010"]
    assert values(ext, spec + "ic:DateOfPublication") == ["2010-12-08"]
    assert values(ext, spec + "ic:URI") == ["OJ:L:2010:323:0011:0102:EN:PDF"]
    assert values(ext, spec + "ic:ResourceLocator/ic:MediaType") == ["application/pdf"]
    assert values(ext, "ic:Conformity/ic:Degree") == ["notEvaluated"]
    assert values(ext, "ic:MetadataPointOfContact/ic:OrganisationName") == ["Acme"]
    assert values(ext, "ic:MetadataPointOfContact/ic:EmailAddress") == ["acme@example.org"]
    assert values(ext, "ic:MetadataDate") == ["2015-07-23"]
    assert values(ext, "ic:SpatialDataServiceType") == ["view"]
    assert values(ext, "ic:MandatoryKeyword/ic:KeywordValue") == [
        "infoMapAccessService",
        "humanGeographicViewer",
    ]
    vocabulary = "ic:Keyword/ic:OriginatingControlledVocabulary/"
    assert values(ext, vocabulary + "ic:Title") == ["Thesaurus"]
    assert values(ext, vocabulary + "ic:DateOfCreation") == ["2015-05-01"]
    assert values(ext, "ic:Keyword/ic:KeywordValue") == ["Beispiel"]
    assert values(ext, "ic:ResponseLanguage/ic:Language") == ["ger"]


def test_yaml_dates_are_written_as_iso_dates(tmp_path: Path) -> None:
    config = (
        "services:\n  wms:\n    inspire_md:\n      type: embedded\n"
        "      resource_locators: []\n      temporal_reference: {date_of_creation: 2015-05-01}\n"
        "      metadata_points_of_contact: []\n      conformities: []\n"
        "      mandatory_keywords: []\n      metadata_date: 2015-07-23\n"
        "      languages: {default: eng}\n"
        "layers:\n  - {name: l, title: L, sources: [s]}\nsources:\n  s: {type: debug}\n"
    )
    path = tmp_path / "mapproxy.yaml"
    path.write_text(config)
    root = capabilities(Client(make_wsgi_app(str(path))))
    assert values(root, "//ic:MetadataDate") == ["2015-07-23"]
    assert values(root, "//ic:TemporalReference/ic:DateOfCreation") == ["2015-05-01"]


@pytest.mark.parametrize("inspire_md", [LINKED, EMBEDDED])
def test_legend_styles_are_inspire_default_in_130_only(
    tmp_path: Path, inspire_md: dict[str, Any]
) -> None:
    client = build(tmp_path, inspire_md)
    root = capabilities(client)
    assert values(root, "//wms:Layer[wms:Name='with_legend']/wms:Style/wms:Name") == [
        "inspire_common:DEFAULT"
    ]
    assert root.xpath("//wms:Layer[wms:Name='plain']/wms:Style", namespaces=NS) == []
    old = capabilities(client, "1.1.1")
    assert [n.text for n in old.xpath("//Layer[Name='with_legend']/Style/Name")] == ["default"]
    assert b"inspire" not in etree.tostring(old)
    params = {
        "SERVICE": "WMS",
        "VERSION": "1.3.0",
        "REQUEST": "GetMap",
        "LAYERS": "with_legend,plain",
        "STYLES": "inspire_common:DEFAULT,inspire_common:DEFAULT",
        "CRS": "EPSG:4326",
        "BBOX": "-90,-180,90,180",
        "WIDTH": "20",
        "HEIGHT": "10",
        "FORMAT": "image/png",
    }
    response = client.get("/service", query_string=params)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"


def test_without_inspire_md_nothing_is_added(tmp_path: Path) -> None:
    root = capabilities(build(tmp_path, None))
    assert "inspire_vs" not in root.nsmap
    assert "inspire" not in root.get(f"{{{NS['xsi']}}}schemaLocation")
    assert root.xpath("//vs:ExtendedCapabilities", namespaces=NS) == []
    assert values(root, "//wms:Layer[wms:Name='with_legend']/wms:Style/wms:Name") == ["default"]


@pytest.mark.parametrize(
    ("inspire_md", "missing"),
    [
        ({"type": "linked", "languages": {"default": "eng"}}, "metadata_url"),
        ({**EMBEDDED, "metadata_date": None}, "metadata_date"),
    ],
)
def test_missing_required_keys_are_configuration_errors(
    tmp_path: Path, inspire_md: dict[str, Any], missing: str
) -> None:
    md = {key: value for key, value in inspire_md.items() if value is not None}
    with pytest.raises(ConfigurationError, match=missing):
        build(tmp_path, md)


def test_unknown_type_and_nested_keys_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        build(tmp_path, {**LINKED, "type": "other"})
    with pytest.raises(ConfigurationError, match="default"):
        build(tmp_path, {**LINKED, "languages": {}})
