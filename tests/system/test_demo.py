"""The /demo/ service: overview, layer viewers whose URLs work, static files, capabilities."""

from __future__ import annotations

import html
import io
import json
import re
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import pytest
from lxml import etree
from PIL import Image
from werkzeug.test import Client

CONFIG = """
services:
  demo:
  wms:
    srs: ['EPSG:4326', 'EPSG:3857', 'EPSG:25832']
    image_formats: ['image/png', 'image/jpeg']
    md: {title: Demo test}
  wmts:
  tms:
layers:
  - name: zeta
    title: Zeta debug
    sources: [zeta_cache]
  - name: alpha
    title: Alpha <debug> & co
    sources: [alpha_cache]
caches:
  zeta_cache:
    grids: [GLOBAL_WEBMERCATOR, GLOBAL_GEODETIC]
    sources: [dbg]
  alpha_cache:
    grids: [GLOBAL_WEBMERCATOR]
    sources: [dbg]
    format: image/jpeg
sources:
  dbg: {type: debug}
globals:
  cache:
    base_dir: ./cache_data
"""

PAGE_URL = "http://localhost/demo/"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Client:
    from mapproxy.wsgiapp import make_wsgi_app

    config = tmp_path_factory.mktemp("demo") / "mapproxy.yaml"
    config.write_text(CONFIG)
    return Client(make_wsgi_app(str(config)))


class Links(HTMLParser):
    """Collects hrefs, script/style sources and WMS layer forms of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "a" and "href" in values:
            self.hrefs.append(values["href"])
        elif tag == "script" and "src" in values:
            self.scripts.append(values["src"])
        elif tag == "link" and values.get("rel") == "stylesheet":
            self.styles.append(values["href"])
        elif tag == "form":
            self.forms.append({"hidden": {}, "options": [], "formats": []})
        elif tag == "input" and values.get("type") == "hidden" and self.forms:
            self.forms[-1]["hidden"][values["name"]] = values["value"]
        elif tag == "option" and self.forms:
            self.forms[-1]["options"].append(values["value"])
        elif tag == "button" and values.get("name") == "format" and self.forms:
            self.forms[-1]["formats"].append(values["value"])


def parse(text: str) -> Links:
    links = Links()
    links.feed(text)
    return links


def local_get(client: Client, url: str, base: str = PAGE_URL):  # type: ignore[no-untyped-def]
    """GET ``url`` resolved against ``base`` through the app (as a browser would)."""
    absolute = urljoin(base, url)
    parts = urlsplit(absolute)
    assert parts.netloc == "localhost", absolute
    return client.get(parts.path, query_string=parts.query)


def viewer_config(text: str) -> dict[str, Any]:
    match = re.search(r"window\.MAPPROXY_DEMO = (\{.*?\});</script>", text)
    assert match, "no viewer configuration in the page"
    return json.loads(match.group(1))  # type: ignore[no-any-return]


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- overview --------------------------------------------------------------------------


def test_overview_lists_all_layers(client: Client) -> None:
    response = client.get("/demo/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html"
    page = parse(response.text)

    # WMS: one form per named layer, sorted by name, offering the configured SRS/formats
    assert [form["hidden"]["wms_layer"] for form in page.forms] == ["alpha", "zeta"]
    for form in page.forms:
        assert form["options"] == ["EPSG:4326", "EPSG:3857", "EPSG:25832"]
        assert form["formats"] == ["image/png", "image/jpeg"]
    assert "Alpha &lt;debug&gt; &amp; co" in response.text

    queries = [dict(parse_qsl(href[1:])) for href in page.hrefs if href.startswith("?")]
    wmts = {(q["wmts_layer"], q["grid"]) for q in queries if "wmts_layer" in q}
    tms = {(q["tms_layer"], q["grid"]) for q in queries if "tms_layer" in q}
    # GLOBAL_GEODETIC (origin sw, not WMTS compatible) is only offered as TMS
    assert wmts == {("zeta", "GLOBAL_WEBMERCATOR"), ("alpha", "GLOBAL_WEBMERCATOR")}
    assert tms == wmts | {("zeta", "GLOBAL_GEODETIC")}


def test_overview_capabilities_links_work(client: Client) -> None:
    page = parse(client.get("/demo/").text)
    downloads = [href for href in page.hrefs if href.startswith("../")]
    assert sorted(downloads) == [
        "../service?REQUEST=GetCapabilities&SERVICE=WMS",
        "../service?REQUEST=GetCapabilities&SERVICE=WMTS",
        "../tms/1.0.0/",
        "../wmts/1.0.0/WMTSCapabilities.xml",
    ]
    for href in downloads:
        response = local_get(client, href)
        assert response.status_code == 200, href
        etree.fromstring(response.data)  # well-formed XML
    views = [href for href in page.hrefs if href.startswith("?") and "capabilities" in href]
    assert len(views) == 8  # view + view (external) for WMS, WMTS KVP, WMTS, TMS
    for href in views:
        response = local_get(client, href)
        assert response.status_code == 200, href
        assert "<pre" in response.text


def test_every_listed_viewer_link_opens_a_viewer(client: Client) -> None:
    page = parse(client.get("/demo/").text)
    links = {href for href in page.hrefs if "_layer=" in href}
    assert len(links) == 5
    for form in page.forms:
        for srs in form["options"]:
            for fmt in form["formats"]:
                query = f"?wms_layer={form['hidden']['wms_layer']}&srs={srs}&format={fmt}"
                links.add(query)
    for href in links:
        response = local_get(client, html.unescape(href))
        assert response.status_code == 200, href
        assert response.headers["Content-Type"] == "text/html"
        viewer = parse(response.text)
        assert "static/ol/ol.js" in viewer.scripts
        assert "static/viewer.js" in viewer.scripts
        for src in viewer.scripts + viewer.styles:
            assert local_get(client, src).status_code == 200, src
        viewer_config(response.text)


# --- viewers: the configuration's URLs must resolve through the same app ------------------


def test_wms_viewer_config_requests_images(client: Client) -> None:
    for srs in ("EPSG:4326", "EPSG:3857", "EPSG:25832"):
        for fmt in ("image/png", "image/jpeg"):
            response = client.get(
                "/demo/", query_string={"wms_layer": "zeta", "srs": srs, "format": fmt}
            )
            config = viewer_config(response.text)
            assert config["kind"] == "wms"
            assert (config["layer"], config["srs"], config["format"]) == ("zeta", srs, fmt)
            minx, miny, maxx, maxy = config["extent"]
            assert minx < maxx and miny < maxy
            getmap = {
                "SERVICE": "WMS",
                "REQUEST": "GetMap",
                "VERSION": config["version"],
                "LAYERS": config["layer"],
                "STYLES": "",
                "FORMAT": config["format"],
                "TRANSPARENT": "TRUE" if config["transparent"] else "FALSE",
                "SRS" if config["version"] == "1.1.1" else "CRS": config["srs"],
                "BBOX": ",".join(str(v) for v in config["extent"]),
                "WIDTH": "256",
                "HEIGHT": "256",
            }
            image = local_get(client, config["url"] + "?" + urlencode(getmap))
            assert image.status_code == 200, image.text[:300]
            assert image.mimetype == fmt
            assert decode(image.data).size == (256, 256)


def fill(template: str, z: int, x: int, y: int) -> str:
    return template.replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y))


@pytest.mark.parametrize(
    ("kind", "layer", "grid", "ext"),
    [
        ("wmts", "zeta", "GLOBAL_WEBMERCATOR", "png"),
        ("wmts", "alpha", "GLOBAL_WEBMERCATOR", "jpeg"),
        ("tms", "zeta", "GLOBAL_WEBMERCATOR", "png"),
        ("tms", "zeta", "GLOBAL_GEODETIC", "png"),
        ("tms", "alpha", "GLOBAL_WEBMERCATOR", "jpeg"),
    ],
)
def test_tile_viewer_config_requests_the_right_tiles(
    client: Client, kind: str, layer: str, grid: str, ext: str
) -> None:
    response = client.get("/demo/", query_string={f"{kind}_layer": layer, "grid": grid})
    assert response.status_code == 200
    config = viewer_config(response.text)
    assert config["kind"] == "tiles"
    assert "{z}" in config["url"] and "{x}" in config["url"] and "{y}" in config["url"]
    assert len(config["resolutions"]) == len(config["grid_rows"])
    assert config["tile_size"] == [256, 256]

    # the viewer counts rows from the top: row 0 of level 1 is the north-western tile
    tile = local_get(client, fill(config["url"], 1, 1, 0))
    assert tile.status_code == 200, tile.text[:300]
    assert tile.mimetype == f"image/{ext}"
    assert decode(tile.data).size == (256, 256)
    if grid == "GLOBAL_WEBMERCATOR":
        same = client.get(f"/wmts/{layer}/{grid}/1/1/0.{ext}")
    else:
        # global-geodetic TMS level 0 is internal level 1 (one row of tiles)
        same = client.get(f"/tms/1.0.0/{layer}/EPSG4326/0/1/0.{ext}")
    assert same.status_code == 200
    assert tile.data == same.data
    # a different tile is a different image, so the comparison above is meaningful
    other = local_get(client, fill(config["url"], 1, 0, 0))
    assert other.status_code == 200
    assert other.data != tile.data


def test_viewer_extent_lies_in_the_grid(client: Client) -> None:
    response = client.get("/demo/", query_string={"tms_layer": "zeta", "grid": "GLOBAL_GEODETIC"})
    config = viewer_config(response.text)
    assert config["srs"] == "EPSG:4326"
    assert config["units"] == "degrees"
    assert config["extent"] == [-180.0, -90.0, 180.0, 90.0]
    assert config["grid_extent"] == [-180.0, -90.0, 180.0, 90.0]


def test_viewer_config_cannot_break_out_of_the_script(client: Client) -> None:
    response = client.get(
        "/demo/", query_string={"wms_layer": "zeta", "srs": "EPSG:4326", "format": "</script>x"}
    )
    assert response.status_code == 200
    assert "</script>x" not in response.text
    assert viewer_config(response.text)["format"] == "</script>x"


# --- static files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("ol/ol.js", "application/javascript"),
        ("ol/ol.css", "text/css"),
        ("demo.css", "text/css"),
        ("viewer.js", "application/javascript"),
        ("ol/LICENSE.txt", "text/plain"),
    ],
)
def test_static_files_have_their_content_types(
    client: Client, name: str, content_type: str
) -> None:
    response = client.get(f"/demo/static/{name}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    expected = resources.files("mapproxy.service.demo").joinpath("static", *name.split("/"))
    assert response.data == expected.read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/demo/static/../x",
        "/demo/static/%2e%2e/x",
        "/demo/static/ol/../../service.py",
        "/demo/static/../service.py",
        "/demo/static/nope.js",
        "/demo/static/ol/nope.css",
        "/demo/static/",
        "/demo/static/ol",
    ],
)
def test_unknown_or_escaping_static_files_are_not_found(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "text/plain"
    assert response.text == "file not found"


@pytest.mark.parametrize(
    ("path", "headers", "location"),
    [
        ("/demo", {}, "http://localhost/demo/"),
        ("/demo/foo", {}, "http://localhost/demo/"),
        ("/demo/static", {}, "http://localhost/demo/"),
        ("/demo/index.html", {}, "http://localhost/demo/"),
        ("/demo", {"X-Script-Name": "/mp"}, "http://localhost/mp/demo/"),
        ("/demo/x", {"Host": "maps.example.org"}, "http://maps.example.org/demo/"),
    ],
)
def test_other_demo_paths_redirect_to_the_demo_page(
    client: Client, path: str, headers: dict[str, str], location: str
) -> None:
    response = client.get(path, headers=headers)
    assert response.status_code == 301
    assert response.headers["Location"] == location
    assert response.headers["Content-Type"] == "text/plain"
    assert response.data == b""


# --- capabilities views --------------------------------------------------------------------


def embedded_document(page: str) -> str:
    match = re.search(r'<pre class="code">(.*?)</pre>', page, re.DOTALL)
    assert match, "no embedded document"
    assert "<?xml" not in match.group(1), "the document is not escaped"
    return html.unescape(match.group(1))


@pytest.mark.parametrize(
    ("view", "direct_path", "direct_query", "root_tag"),
    [
        (
            "wms_capabilities",
            "/service",
            "REQUEST=GetCapabilities&SERVICE=WMS",
            "{http://www.opengis.net/wms}WMS_Capabilities",
        ),
        (
            "wmts_capabilities",
            "/wmts/1.0.0/WMTSCapabilities.xml",
            "",
            "{http://www.opengis.net/wmts/1.0}Capabilities",
        ),
        (
            "wmts_capabilities_kvp",
            "/service",
            "REQUEST=GetCapabilities&SERVICE=WMTS",
            "{http://www.opengis.net/wmts/1.0}Capabilities",
        ),
        ("tms_capabilities", "/tms/1.0.0/", "", "TileMapService"),
    ],
)
def test_capabilities_views_embed_the_escaped_document(
    client: Client, view: str, direct_path: str, direct_query: str, root_tag: str
) -> None:
    response = client.get("/demo/", query_string=view)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html"
    document = embedded_document(response.text)
    direct = client.get(direct_path, query_string=direct_query)
    assert document == direct.get_data(as_text=True)
    assert etree.fromstring(document.encode()).tag == root_tag
    link = "http://localhost" + direct_path + ("?" + direct_query if direct_query else "")
    assert f'<a href="{html.escape(link)}">' in response.text


def test_tms_capabilities_view_of_one_tile_map(client: Client) -> None:
    response = client.get(
        "/demo/", query_string={"tms_capabilities": "", "layer": "zeta", "srs": "EPSG4326"}
    )
    assert response.status_code == 200
    root = etree.fromstring(embedded_document(response.text).encode())
    assert root.tag == "TileMap"
    assert root.findtext("Title") == "Zeta debug"
    assert root.find("SRS").text == "EPSG:4326"


def test_demo_escapes_layer_titles_in_capabilities(client: Client) -> None:
    response = client.get("/demo/", query_string="wms_capabilities")
    assert "Alpha &amp;lt;debug&amp;gt; &amp;amp; co" in response.text


def test_demo_is_not_served_when_disabled(tmp_path: Path) -> None:
    from mapproxy.wsgiapp import make_wsgi_app

    config = tmp_path / "mapproxy.yaml"
    config.write_text(CONFIG.replace("  demo:\n", ""))
    client = Client(make_wsgi_app(str(config)))
    assert client.get("/demo/").status_code == 404
    assert client.get("/demo/static/ol/ol.js").status_code == 404
