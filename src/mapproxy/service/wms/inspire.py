"""INSPIRE view service metadata: ``inspire_vs:ExtendedCapabilities`` of WMS 1.3.0.

``services.wms.inspire_md`` is either ``linked`` (a MetadataUrl pointing at an
external service metadata record) or ``embedded`` (the record inline). Both end with
the supported and the response language.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

from mapproxy.service.base import xml_safe

INSPIRE_COMMON_NS = "http://inspire.ec.europa.eu/schemas/common/1.0"
INSPIRE_VS_NS = "http://inspire.ec.europa.eu/schemas/inspire_vs/1.0"
INSPIRE_VS_SCHEMA = "http://inspire.ec.europa.eu/schemas/inspire_vs/1.0/inspire_vs.xsd"
INSPIRE_DEFAULT_STYLE = "inspire_common:DEFAULT"

# namespace declarations and schemaLocation pair added to the 1.3.0 root element
INSPIRE_NAMESPACES = (
    f' xmlns:inspire_common="{INSPIRE_COMMON_NS}" xmlns:inspire_vs="{INSPIRE_VS_NS}"'
)
INSPIRE_SCHEMA_LOCATION = f" {INSPIRE_VS_NS} {INSPIRE_VS_SCHEMA}"

# (config key, element) in the order the elements appear
_DATES = (
    ("date_of_publication", "DateOfPublication"),
    ("date_of_creation", "DateOfCreation"),
    ("date_of_last_revision", "DateOfLastRevision"),
)


def _text(value: Any) -> str:
    return escape(xml_safe(str(value)))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def leaf(self, indent: str, name: str, value: Any) -> None:
        self.lines.append(f"{indent}<inspire_common:{name}>{_text(value)}</inspire_common:{name}>")

    def open(self, indent: str, name: str) -> None:
        self.lines.append(f"{indent}<inspire_common:{name}>")

    def close(self, indent: str, name: str) -> None:
        self.lines.append(f"{indent}</inspire_common:{name}>")

    def locator(self, indent: str, entry: Mapping[str, Any], name: str = "ResourceLocator") -> None:
        self.open(indent, name)
        self.leaf(indent + "  ", "URL", entry.get("url", ""))
        if entry.get("media_type"):
            self.leaf(indent + "  ", "MediaType", entry["media_type"])
        self.close(indent, name)

    def dates(self, indent: str, entry: Mapping[str, Any]) -> None:
        for key, name in _DATES:
            if entry.get(key) is not None:
                self.leaf(indent, name, entry[key])

    def citation(self, indent: str, entry: Mapping[str, Any]) -> None:
        """Title, dates, URIs and resource locators of a specification or vocabulary."""
        if entry.get("title") is not None:
            self.leaf(indent, "Title", entry["title"])
        self.dates(indent, entry)
        for uri in _entries(entry.get("uris")):
            self.leaf(indent, "URI", uri)
        for locator in _mappings(entry.get("resource_locators")):
            self.locator(indent, locator)


def _entries(value: Any) -> Sequence[Any]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return value
    return (value,)


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in _entries(value) if isinstance(item, Mapping)]


def extended_capabilities(md: Mapping[str, Any], indent: str = "  ") -> list[str]:
    """The ``inspire_vs:ExtendedCapabilities`` element as lines (empty without ``md``)."""
    if not md:
        return []
    out = _Writer()
    inner = indent + "  "
    out.lines.append(f"{indent}<inspire_vs:ExtendedCapabilities>")
    if md.get("type") == "embedded":
        _embedded(out, md, inner)
    else:
        metadata_url = md.get("metadata_url")
        if isinstance(metadata_url, Mapping):
            out.locator(inner, metadata_url, "MetadataUrl")
    language = (md.get("languages") or {}).get("default")
    if language is not None:
        out.open(inner, "SupportedLanguages")
        out.open(inner + "  ", "DefaultLanguage")
        out.leaf(inner + "    ", "Language", language)
        out.close(inner + "  ", "DefaultLanguage")
        out.close(inner, "SupportedLanguages")
        out.open(inner, "ResponseLanguage")
        out.leaf(inner + "  ", "Language", language)
        out.close(inner, "ResponseLanguage")
    out.lines.append(f"{indent}</inspire_vs:ExtendedCapabilities>")
    return out.lines


def _embedded(out: _Writer, md: Mapping[str, Any], indent: str) -> None:
    deeper = indent + "  "
    for locator in _mappings(md.get("resource_locators")):
        out.locator(indent, locator)
    out.leaf(indent, "ResourceType", "service")
    temporal = md.get("temporal_reference")
    if isinstance(temporal, Mapping):
        out.open(indent, "TemporalReference")
        out.dates(deeper, temporal)
        out.close(indent, "TemporalReference")
    for conformity in _mappings(md.get("conformities")):
        out.open(indent, "Conformity")
        out.open(deeper, "Specification")
        out.citation(deeper + "  ", conformity)
        out.close(deeper, "Specification")
        if conformity.get("degree") is not None:
            out.leaf(deeper, "Degree", conformity["degree"])
        out.close(indent, "Conformity")
    for contact in _mappings(md.get("metadata_points_of_contact")):
        out.open(indent, "MetadataPointOfContact")
        if contact.get("organisation_name") is not None:
            out.leaf(deeper, "OrganisationName", contact["organisation_name"])
        if contact.get("email") is not None:
            out.leaf(deeper, "EmailAddress", contact["email"])
        out.close(indent, "MetadataPointOfContact")
    if md.get("metadata_date") is not None:
        out.leaf(indent, "MetadataDate", md["metadata_date"])
    out.leaf(indent, "SpatialDataServiceType", "view")
    for keyword in _entries(md.get("mandatory_keywords")):
        out.open(indent, "MandatoryKeyword")
        out.leaf(deeper, "KeywordValue", keyword)
        out.close(indent, "MandatoryKeyword")
    for keyword in _mappings(md.get("keywords")):
        out.open(indent, "Keyword")
        out.open(deeper, "OriginatingControlledVocabulary")
        out.citation(deeper + "  ", keyword)
        out.close(deeper, "OriginatingControlledVocabulary")
        out.leaf(deeper, "KeywordValue", keyword.get("keyword_value", ""))
        out.close(indent, "Keyword")


# keys each type needs, as the reference requires them
REQUIRED_KEYS = {
    "linked": ("metadata_url", "languages"),
    "embedded": (
        "resource_locators",
        "temporal_reference",
        "conformities",
        "metadata_points_of_contact",
        "mandatory_keywords",
        "metadata_date",
        "languages",
    ),
}


def missing_keys(md: Mapping[str, Any]) -> list[str]:
    """Required keys of ``md``'s type that it lacks."""
    return [key for key in REQUIRED_KEYS.get(str(md.get("type")), ()) if md.get(key) is None]
