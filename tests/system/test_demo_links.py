"""Demo page links to OGC API and KML: shown only for enabled services, each one answers 200."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urljoin

import pytest
from werkzeug.test import Client

CONFIG = """
services:
  demo:
  tms:
{services}
layers:
  - name: one
    title: One
    sources: [one_cache]
  - name: two
    title: Two
    sources: [two_cache]
caches:
  one_cache:
    grids: [GLOBAL_WEBMERCATOR, GLOBAL_GEODETIC]
    sources: [debug]
    disable_storage: true
  two_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [debug]
    format: image/jpeg
    disable_storage: true
sources:
  debug: {{type: debug}}
"""

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def _app(make_app: Callable[..., Client], services: str) -> Client:
    return make_app(CONFIG.format(services=services))


def _links(client: Client, prefix: str) -> list[str]:
    response = client.get("/demo/")
    assert response.status_code == 200
    hrefs = re.findall(r'href="([^"]*)"', response.get_data(as_text=True))
    return [href.replace("&amp;", "&") for href in hrefs if href.startswith(prefix)]


def _follow(client: Client, href: str) -> tuple[int, str]:
    url = urljoin("http://localhost/demo/", href)
    response = client.get(url, headers={"Accept": BROWSER_ACCEPT})
    return response.status_code, response.headers.get("Content-Type", "")


def test_ogcapi_links(make_app: Callable[..., Client]) -> None:
    client = _app(make_app, "  ogcapi:")
    links = _links(client, "../ogcapi")
    assert links == [
        "../ogcapi",
        "../ogcapi?f=json",
        "../ogcapi/api",
        "../ogcapi/api?f=json",
        "../ogcapi/collections",
        "../ogcapi/collections?f=json",
    ]
    for href in links:
        status, content_type = _follow(client, href)
        assert status == 200, href
        if href.endswith("f=json"):
            assert "json" in content_type, href
        else:
            assert content_type.startswith("text/html"), href


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            "  kml:",
            [
                "../kml/one/EPSG3857",
                "../kml/one/EPSG4326",
                "../kml/two/EPSG3857",
            ],
        ),
        (
            "  kml: {use_grid_names: true}",
            [
                "../kml/one/GLOBAL_WEBMERCATOR",
                "../kml/one/GLOBAL_GEODETIC",
                "../kml/two/GLOBAL_WEBMERCATOR",
            ],
        ),
    ],
)
def test_kml_links(make_app: Callable[..., Client], options: str, expected: list[str]) -> None:
    client = _app(make_app, options)
    links = _links(client, "../kml/")
    assert sorted(links) == sorted(expected)
    for href in links:
        status, content_type = _follow(client, href)
        assert status == 200, href
        assert content_type.startswith("application/vnd.google-earth.kml+xml"), href


def test_no_links_for_disabled_services(make_app: Callable[..., Client]) -> None:
    client = _app(make_app, "")
    assert _links(client, "../ogcapi") == []
    assert _links(client, "../kml") == []
    body = client.get("/demo/").get_data(as_text=True)
    assert "<h2>OGC API</h2>" not in body
    assert "<h2>KML</h2>" not in body
