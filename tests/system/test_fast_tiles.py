"""The cached-tile fast path answers exactly as the general path (status, headers, body)."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from fakes.fake_upstream import FakeUpstream

CONFIG = """
services:
  tms:
    use_grid_names: true
  wmts:
    restful: true
    kvp: true
  wms:
    md: {{title: Fast path}}
layers:
  - {{name: osm, title: OSM, sources: [osm_cache]}}
  - {{name: sw, title: SW grid, sources: [sw_cache]}}
  - {{name: linked, title: Linked, sources: [linked_cache]}}
  - {{name: jpeg, title: JPEG, sources: [jpeg_cache]}}
  - {{name: refresh, title: Refresh, sources: [refresh_cache]}}
  - {{name: mbt, title: MBTiles, sources: [mbt_cache]}}
caches:
  osm_cache:
    grids: [webmercator]
    sources: [upstream]
    meta_size: [1, 1]
    meta_buffer: 0
    cache: {{type: file, directory: {tiles}/osm, directory_layout: tms}}
  sw_cache:
    grids: [GLOBAL_MERCATOR]
    sources: [upstream]
    meta_size: [1, 1]
    meta_buffer: 0
    cache: {{type: file, directory: {tiles}/sw}}
  linked_cache:
    grids: [webmercator]
    sources: [upstream]
    meta_size: [1, 1]
    meta_buffer: 0
    link_single_color_images: true
    cache: {{type: file, directory: {tiles}/linked}}
  jpeg_cache:
    grids: [webmercator]
    sources: [upstream]
    format: image/jpeg
    meta_size: [1, 1]
    meta_buffer: 0
    cache: {{type: file, directory: {tiles}/jpeg, directory_layout: quadkey}}
  refresh_cache:
    grids: [webmercator]
    sources: [upstream]
    meta_size: [1, 1]
    meta_buffer: 0
    refresh_before: {{hours: 1}}
    cache: {{type: file, directory: {tiles}/refresh}}
  mbt_cache:
    grids: [webmercator]
    sources: [upstream]
    meta_size: [1, 1]
    meta_buffer: 0
    cache: {{type: mbtiles, filename: {tiles}/mbt.mbtiles}}
sources:
  upstream:
    type: wms
    req: {{url: "{url}/service", layers: base}}
grids:
  webmercator:
    base: GLOBAL_WEBMERCATOR
"""

KVP = (
    "SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={layer}&STYLE=default"
    "&TILEMATRIXSET={grid}&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&FORMAT=image%2Fpng"
)

# (path, query) of tiles that are seeded first and then served by the fast path
HITS = [
    ("/wmts/osm/webmercator/2/1/2.png", ""),
    ("/wmts/osm/webmercator/02/01/2.png", ""),
    ("/wmts/sw/GLOBAL_MERCATOR/2/3/0.png", ""),
    ("/wmts/linked/webmercator/1/0/1.png", ""),
    ("/wmts/jpeg/webmercator/3/5/2.jpeg", ""),
    ("/service", KVP.format(layer="osm", grid="webmercator", z=2, x=1, y=2)),
    ("/ows", KVP.format(layer="osm", grid="webmercator", z=2, x=1, y=2).lower()),
    ("/service", KVP.format(layer="sw", grid="GLOBAL_MERCATOR", z=2, x=3, y=0)),
    ("/tms/1.0.0/osm/webmercator/1/1/1.png", ""),
    ("/tms/1.0.0/sw/GLOBAL_MERCATOR/1/3/3.png", ""),
    ("/tms/1.0.0/linked/webmercator/0/0/0.png", ""),
    ("/tiles/osm/webmercator/2/1/2.png", ""),
    ("/tiles/1.0.0/osm/webmercator/2/1/1.png", ""),
    ("/tiles/sw/GLOBAL_MERCATOR/2/3/3.png", ""),
]

# cached tiles of layers the fast path never serves
INELIGIBLE = [
    ("/wmts/refresh/webmercator/2/1/2.png", ""),  # refresh_before
    ("/wmts/mbt/webmercator/2/1/2.png", ""),  # not a file cache
]

# requests the fast path must leave to the general path (after seeding the hits)
OTHERS = [
    *INELIGIBLE,
    ("/wmts/osm/webmercator/2/1/3.png", ""),  # miss
    ("/wmts/osm/webmercator/2/1/2.jpeg", ""),  # wrong format
    ("/wmts/osm/webmercator/9/1/2.png", ""),  # outside the grid
    ("/wmts/osm/webmercator/2/1/-2.png", ""),
    ("/wmts/osm/webmercator/2/1/2.png/", ""),  # trailing slash
    ("/wmts/nope/webmercator/2/1/2.png", ""),
    ("/wmts/osm/nope/2/1/2.png", ""),
    ("/wmts/1.0.0/WMTSCapabilities.xml", ""),
    ("/service", KVP.format(layer="osm", grid="webmercator", z=2, x=1, y=3)),
    ("/service", KVP.format(layer="osm", grid="webmercator", z=2, x=1, y=2) + "&STYLES=x"),
    ("/service", KVP.format(layer="osm", grid="webmercator", z=2, x=1, y=2) + "&layer=sw"),
    ("/service", KVP.format(layer="osm", grid="webmercator", z=2, x=1, y=2)[15:]),
    ("/tms/1.0.0/osm/webmercator/9/1/1.png", ""),
    ("/tms/1.0.0/osm/webmercator/1/1/1.jpeg", ""),
    ("/tms/1.0.0/osm/webmercator", ""),
    ("/tiles/osm/webmercator/2/1/2.png", "origin=nw"),
    ("/tiles/1.0.0/2/1/2.png", ""),
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def app(make_app: Callable[..., Client], upstream: FakeUpstream, tmp_path: Path) -> Iterator[Any]:
    client = make_app(CONFIG.format(url=upstream.url, tiles=tmp_path / "tiles"))
    wsgi_app = client.app  # type: ignore[attr-defined]
    assert wsgi_app.fast_tiles is not None
    for path, query in [*HITS, *INELIGIBLE]:
        client.get(path, query_string=query)
    yield wsgi_app


def environ_for(
    path: str, query: str = "", method: str = "GET", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "localhost",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def call(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status, header list and body of one WSGI call."""
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"] = status
        seen["headers"] = list(headers)

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return seen["status"], seen["headers"], body


def both_paths(app: Any, make_environ: Callable[[], dict[str, Any]]) -> tuple[Any, Any, bool]:
    """(fast-path answer, general-path answer, whether the fast path answered)."""
    answered = app.fast_tiles(make_environ(), lambda *args: None) is not None
    fast = call(app, make_environ())
    fast_tiles, app.fast_tiles = app.fast_tiles, None
    try:
        general = call(app, make_environ())
    finally:
        app.fast_tiles = fast_tiles
    return fast, general, answered


@pytest.mark.parametrize(("path", "query"), HITS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_hits_are_answered_by_the_fast_path_like_the_general_path(
    app: Any, path: str, query: str, method: str
) -> None:
    fast, general, answered = both_paths(app, lambda: environ_for(path, query, method))
    assert answered
    assert fast == general
    status, headers, body = fast
    assert status == "200 OK"
    names = [name for name, _ in headers]
    assert names[:5] == ["Content-Type", "Content-Length", "ETag", "Last-modified", "Cache-control"]
    assert len(body) == (0 if method == "HEAD" else int(dict(headers)["Content-Length"]))


@pytest.mark.parametrize(("path", "query"), OTHERS)
def test_other_requests_take_the_general_path(app: Any, path: str, query: str) -> None:
    fast, general, answered = both_paths(app, lambda: environ_for(path, query))
    assert not answered
    assert fast[0] == general[0]
    assert fast[1] == general[1]


def test_served_bytes_are_the_stored_file(app: Any, tmp_path: Path) -> None:
    _, headers, body = call(app, environ_for("/wmts/osm/webmercator/2/1/2.png"))
    # tms layout; GLOBAL_WEBMERCATOR counts rows from the north like WMTS
    assert body == (tmp_path / "tiles/osm/2/1/2.png").read_bytes()
    assert dict(headers)["Content-Type"] == "image/png"
    _, headers, body = call(app, environ_for("/wmts/jpeg/webmercator/3/5/2.jpeg"))
    assert body == (tmp_path / "tiles/jpeg/121.jpeg").read_bytes()
    assert dict(headers)["Content-Type"] == "image/jpeg"


def conditional_headers(app: Any, path: str) -> list[dict[str, str]]:
    _, headers, _ = call(app, environ_for(path))
    etag = dict(headers)["ETag"]
    modified = dict(headers)["Last-modified"]
    return [
        {"If-None-Match": f'"{etag}"'},
        {"If-None-Match": f'W/"{etag}", "other"'},
        {"If-None-Match": "*"},
        {"If-None-Match": '"other"'},
        {"If-None-Match": '"other"', "If-Modified-Since": modified},
        {"If-Modified-Since": modified},
        {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"},
        {"If-Modified-Since": "not a date"},
    ]


@pytest.mark.parametrize(
    ("path", "query"), [HITS[0], HITS[5], HITS[8], HITS[11]], ids=["rest", "kvp", "tms", "tiles"]
)
def test_conditional_requests_match_the_general_path(app: Any, path: str, query: str) -> None:
    statuses = []
    for headers in conditional_headers(
        app, path if not query else "/wmts/osm/webmercator/2/1/2.png"
    ):
        fast, general, answered = both_paths(
            app, lambda h=headers: environ_for(path, query, headers=h)
        )
        assert answered
        assert fast == general
        statuses.append(fast[0])
    assert (
        statuses
        == ["304 NOT MODIFIED"] * 3 + ["200 OK", "200 OK", "304 NOT MODIFIED"] + ["200 OK"] * 2
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Script-Name": "/mapproxy"},
        {"X-Forwarded-Host": "maps.example.org", "X-Forwarded-Proto": "https"},
        {"Forwarded": "host=maps.example.org;proto=https"},
    ],
)
def test_proxy_headers_keep_responses_identical(app: Any, headers: dict[str, str]) -> None:
    fast, general, answered = both_paths(
        app, lambda: environ_for("/wmts/osm/webmercator/2/1/2.png", headers=headers)
    )
    assert answered
    assert fast == general
    assert fast[0] == "200 OK"


def test_script_name_prefix_in_path_is_stripped_before_the_fast_path(app: Any) -> None:
    def make() -> dict[str, Any]:
        return environ_for(
            "/mapproxy/tms/1.0.0/osm/webmercator/1/1/1.png",
            headers={"X-Script-Name": "/mapproxy"},
        )

    fast = call(app, make())
    fast_tiles, app.fast_tiles = app.fast_tiles, None
    try:
        general = call(app, make())
    finally:
        app.fast_tiles = fast_tiles
    assert fast == general
    assert fast[0] == "200 OK"


def test_authorize_callback_is_honoured(app: Any) -> None:
    calls = []

    def authorize(service: str, layers: list[str], **kwargs: Any) -> dict[str, Any]:
        calls.append((service, layers))
        return {"authorized": "none"}

    for path, query in [HITS[0], HITS[5], HITS[8]]:
        environ = environ_for(path, query)
        environ["mapproxy.authorize"] = authorize
        status, _, _ = call(app, environ)
        assert status.startswith("403")
    assert [service for service, _ in calls] == ["wmts", "wmts", "tms"]


def test_decorate_callback_is_honoured(app: Any) -> None:
    decorated = []

    def decorate(image: Any, service: str, layers: list[str], **kwargs: Any) -> Any:
        decorated.append(service)
        return image

    environ = environ_for(*HITS[0])
    environ["mapproxy.decorate_img"] = decorate
    status, _, _ = call(app, environ)
    assert status == "200 OK"
    assert decorated == ["wmts"]


def test_request_interceptors_see_every_request(app: Any) -> None:
    from mapproxy import wsgiapp

    seen = []

    def intercept(request: Any) -> Any:
        seen.append(request.path)
        return request

    wsgiapp.register_request_interceptor(intercept)
    try:
        status, _, _ = call(app, environ_for(*HITS[0]))
    finally:
        wsgiapp._request_interceptors.remove(intercept)
    assert status == "200 OK"
    assert seen == [HITS[0][0]]


def test_cut_off_tile_is_created_again_by_the_general_path(
    app: Any, upstream: FakeUpstream, tmp_path: Path
) -> None:
    tile = tmp_path / "tiles/osm/2/1/2.png"
    complete = tile.read_bytes()
    tile.write_bytes(complete[: len(complete) // 2])
    upstream.reset()
    assert app.fast_tiles(environ_for(*HITS[0]), lambda *args: None) is None
    status, _, body = call(app, environ_for(*HITS[0]))
    assert status == "200 OK"
    assert len(upstream.requests) == 1
    assert body == tile.read_bytes()
    assert len(body) > len(complete) // 2


def test_symlinked_tile_reports_the_link_time(app: Any, tmp_path: Path) -> None:
    links = [p for p in (tmp_path / "tiles/linked").rglob("*.png") if p.is_symlink()]
    assert links
    link = links[0]
    os.utime(link, (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    relative = link.relative_to(tmp_path / "tiles/linked").with_suffix("")
    z, x1, x2, x3, y1, y2, y3 = (int(part) for part in relative.parts)
    x, y = x1 * 1_000_000 + x2 * 1000 + x3, y1 * 1_000_000 + y2 * 1000 + y3
    # TMS counts rows from the south and its level 0 is the grid's level 1
    path = f"/tms/1.0.0/linked/webmercator/{z - 1}/{x}/{2**z - 1 - y}.png"
    fast, general, answered = both_paths(app, lambda: environ_for(path))
    assert answered
    assert fast == general
    assert dict(fast[1])["Last-modified"] == "Sun, 09 Sep 2001 01:46:40 GMT"
