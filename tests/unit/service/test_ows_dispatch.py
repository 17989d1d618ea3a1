"""OWS dispatcher: route /service, /ows and /wms requests by the SERVICE parameter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from lxml import etree
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from mapproxy.service.ows import OWSDispatcher

OWS = {"ows": "http://www.opengis.net/ows/1.1"}


class RecordingService:
    """A service that answers with its name and records the requests it got."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[Request] = []

    def handle(self, request: Request) -> Response:
        self.requests.append(request)
        return Response(self.name, mimetype="text/plain")


def make_client(dispatcher: OWSDispatcher) -> Client:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return dispatcher.handle(Request(environ))(environ, start_response)

    return Client(app)


@pytest.fixture
def services() -> tuple[RecordingService, RecordingService]:
    return RecordingService("wms"), RecordingService("wmts")


@pytest.fixture
def client(services: tuple[RecordingService, RecordingService]) -> Client:
    return make_client(OWSDispatcher(*services))


def exception_of(response: Any) -> tuple[str | None, str | None, str | None]:
    root = etree.fromstring(response.data)
    assert root.tag == "{http://www.opengis.net/ows/1.1}ExceptionReport"
    assert root.get("version") == "1.0.0"
    exception = root.find("ows:Exception", OWS)
    return (
        exception.get("exceptionCode"),
        exception.get("locator"),
        exception.findtext("ows:ExceptionText", namespaces=OWS),
    )


@pytest.mark.parametrize(
    ("service", "expected"), [("WMS", "wms"), ("wms", "wms"), ("WmTs", "wmts"), ("WMTS", "wmts")]
)
def test_dispatch_by_service(client: Client, service: str, expected: str) -> None:
    response = client.get("/service", query_string={"SERVICE": service, "REQUEST": "x"})
    assert response.status_code == 200
    assert response.text == expected


def test_parameter_names_are_case_insensitive(client: Client) -> None:
    assert client.get("/ows", query_string={"sErViCe": "wmts"}).text == "wmts"


@pytest.mark.parametrize(
    "query",
    [{"REQUEST": "GetMap"}, {"WMTVER": "1.0.0", "REQUEST": "map"}, {"request": "GetMap"}],
)
def test_missing_service_is_wms_for_old_clients(client: Client, query: dict[str, str]) -> None:
    response = client.get("/wms", query_string=query)
    assert response.text == "wms"


@pytest.mark.parametrize(
    "query",
    [{}, {"REQUEST": "getmap"}, {"REQUEST": "GetCapabilities"}, {"WMTVER": "1.1.1"}],
)
def test_missing_service(client: Client, query: dict[str, str]) -> None:
    response = client.get("/service", query_string=query)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert "Cache-Control" not in response.headers
    assert exception_of(response) == (
        "MissingParameterValue",
        "service",
        "The service parameter is missing",
    )


def test_unknown_service(client: Client) -> None:
    response = client.get("/service", query_string={"SERVICE": "WFS"})
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    assert exception_of(response) == (
        "InvalidParameterValue",
        "service",
        'The value of the service parameter "wfs" is invalid',
    )


def test_service_value_is_escaped(client: Client) -> None:
    response = client.get("/service", query_string={"SERVICE": '<x"&\x00>'})
    assert exception_of(response)[2] == 'The value of the service parameter "<x"&>" is invalid'


def test_disabled_services_are_unknown() -> None:
    wms = RecordingService("wms")
    client = make_client(OWSDispatcher(wms, None))
    response = client.get("/service", query_string={"SERVICE": "WMTS"})
    assert response.status_code == 400
    assert exception_of(response)[0] == "InvalidParameterValue"
    no_wms = make_client(OWSDispatcher(None, RecordingService("wmts")))
    assert no_wms.get("/service", query_string={"SERVICE": "WMS"}).status_code == 400
    response = no_wms.get("/service", query_string={"REQUEST": "GetMap"})
    assert exception_of(response)[0] == "MissingParameterValue"


def test_post_form_parameters(client: Client) -> None:
    response = client.post("/service", data={"SERVICE": "WMTS"})
    assert response.text == "wmts"
