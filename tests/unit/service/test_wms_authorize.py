"""WMS capabilities for one authorization answer: listing, queryable flag, fast path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lxml import etree
from werkzeug.test import Client
from werkzeug.wrappers import Request

from mapproxy.layer.base import WMSLayer
from mapproxy.service.wms.service import WMSService
from mapproxy.source.base import MapExtent
from mapproxy.srs import get_srs

WORLD = MapExtent((-180.0, -90.0, 180.0, 90.0), get_srs("EPSG:4326"))
CAPABILITIES = {"SERVICE": "WMS", "REQUEST": "GetCapabilities", "VERSION": "1.1.1"}


class FakeLayer:
    transparent = False
    extent = WORLD

    def get_map(self, query: Any) -> Any:
        raise AssertionError("capabilities must not render")


def make_service() -> WMSService:
    root = WMSLayer(
        None,
        "Root",
        WORLD,
        children=[
            WMSLayer("roads", "Roads", WORLD, map_layers=[FakeLayer()], queryable=True),
            WMSLayer("plain", "Plain", WORLD, map_layers=[FakeLayer()]),
        ],
    )
    return WMSService(root, {"title": "Test"})


def client_with(service: WMSService, answer: Callable[..., Any] | None) -> Client:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if answer is not None:
            environ["mapproxy.authorize"] = answer
        return service.handle(Request(environ))(environ, start_response)

    return Client(app)


def queryable_by_name(response: Any) -> dict[str, str | None]:
    root = etree.fromstring(response.data)
    return {
        str(layer.findtext("Name")): layer.get("queryable")
        for layer in root.iter("Layer")
        if layer.findtext("Name")
    }


def test_queryable_needs_the_featureinfo_feature() -> None:
    service = make_service()

    def answer(service_name: str, layers: list[str], **kwargs: Any) -> Any:
        return {
            "authorized": "partial",
            "layers": {"roads": {"map": True}, "plain": {"map": True, "featureinfo": True}},
        }

    response = client_with(service, answer).get("/service", query_string=CAPABILITIES)
    assert queryable_by_name(response) == {"roads": None, "plain": None}

    def answer_with_featureinfo(service_name: str, layers: list[str], **kwargs: Any) -> Any:
        return {"authorized": "partial", "layers": {"roads": {"map": True, "featureinfo": True}}}

    response = client_with(service, answer_with_featureinfo).get(
        "/service", query_string=CAPABILITIES
    )
    assert queryable_by_name(response) == {"roads": "1"}


def test_full_answer_serves_the_prebuilt_document() -> None:
    service = make_service()
    unrestricted = client_with(service, None).get("/service", query_string=CAPABILITIES)

    def full(service_name: str, layers: list[str], **kwargs: Any) -> Any:
        return {"authorized": "full"}

    response = client_with(service, full).get("/service", query_string=CAPABILITIES)
    assert response.data == unrestricted.data
    assert queryable_by_name(response) == {"roads": "1", "plain": None}


def test_partial_answer_listing_everything_equals_the_prebuilt_document() -> None:
    service = make_service()
    unrestricted = client_with(service, None).get("/service", query_string=CAPABILITIES)

    def everything(service_name: str, layers: list[str], **kwargs: Any) -> Any:
        rules = {"map": True, "featureinfo": True}
        return {"authorized": "partial", "layers": {name: rules for name in layers}}

    for version in ("1.0.0", "1.1.1", "1.3.0"):
        query = {**CAPABILITIES, "VERSION": version}
        expected = client_with(service, None).get("/service", query_string=query).data
        response = client_with(service, everything).get("/service", query_string=query)
        assert response.data == expected, version
    assert unrestricted.status_code == 200
