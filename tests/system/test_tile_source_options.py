"""Options of ``tile`` sources, checked by the exact URLs the upstream receives.

The expected URLs were recorded from MapProxy 7.0.0 (black box) with the same config.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from werkzeug.test import Client

from fakes.fake_upstream import FakeUpstream, status_handler

TEMPLATE = (
    "%(z)s/%(x)s/%(y)s.%(format)s?q=%(quadkey)s&tc=%(tc_path)s&tms=%(tms_path)s"
    "&arc=%(arcgiscache_path)s&bbox=%(bbox)s"
)

CONFIG = f"""
services:
  tms:
layers:
  - {{name: merc, title: m, sources: [merc_cache]}}
  - {{name: webm, title: w, sources: [webm_cache]}}
  - {{name: orig, title: o, sources: [orig_cache]}}
  - {{name: ranged, title: r, sources: [ranged_cache]}}
  - {{name: covered, title: c, sources: [covered_cache]}}
  - {{name: failing, title: f, sources: [failing_cache]}}
caches:
  merc_cache: {{grids: [GLOBAL_MERCATOR], sources: [merc], disable_storage: true}}
  webm_cache: {{grids: [GLOBAL_WEBMERCATOR], sources: [webm], disable_storage: true}}
  orig_cache: {{grids: [GLOBAL_WEBMERCATOR], sources: [orig], disable_storage: true}}
  ranged_cache: {{grids: [GLOBAL_WEBMERCATOR], sources: [ranged], disable_storage: true}}
  covered_cache: {{grids: [GLOBAL_WEBMERCATOR], sources: [covered], disable_storage: true}}
  failing_cache: {{grids: [GLOBAL_WEBMERCATOR], sources: [failing]}}
sources:
  merc:
    type: tile
    grid: GLOBAL_MERCATOR
    url: "{{url}}/merc/{TEMPLATE}"
  webm:
    type: tile
    grid: GLOBAL_WEBMERCATOR
    url: "{{url}}/webm/{TEMPLATE}"
  orig:
    type: tile
    grid: GLOBAL_WEBMERCATOR
    origin: sw
    url: "{{url}}/orig/%(z)s/%(x)s/%(y)s.png"
  ranged:
    type: tile
    grid: GLOBAL_WEBMERCATOR
    min_res: 10000  # levels 4 (9784 m/px) ..
    max_res: 1000   # .. 7 (1223 m/px)
    url: "{{url}}/ranged/%(z)s/%(x)s/%(y)s.png"
  covered:
    type: tile
    grid: GLOBAL_WEBMERCATOR
    coverage: {{bbox: [0, 0, 20037508.342789244, 20037508.342789244], srs: 'EPSG:3857'}}
    url: "{{url}}/covered/%(z)s/%(x)s/%(y)s.png"
  failing:
    type: tile
    grid: GLOBAL_WEBMERCATOR
    url: "{{url}}/failing/%(z)s/%(x)s/%(y)s.png"
    on_error:
      404: {{response: '#ff000080', cache: true}}
      other: {{response: transparent, cache: false}}
globals:
  cache: {{base_dir: ./cache_data}}
"""


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def app(make_app: Callable[..., Client], upstream: FakeUpstream) -> Client:
    return make_app(CONFIG.replace("{url}", upstream.url))


def upstream_url(upstream: FakeUpstream) -> str:
    request = upstream.recorded[-1]
    return request.path + ("?" + request.raw_query if request.raw_query else "")


# (TMS path, upstream URL sent by MapProxy 7.0.0); TMS level n is grid level n + 1
REFERENCE_URLS = [
    (
        "merc/EPSG900913/0/0/0.png",
        "/merc/1/0/0.png?q=0&tc=01/000/000/000/000/000/000&tms=1/0/0"
        "&arc=L01/R00000000/C00000000"
        "&bbox=-20037508.34278924,-20037508.34278924,0.00000000,0.00000000",
    ),
    (
        "merc/EPSG900913/3/5/1.png",
        "/merc/4/5/1.png?q=0103&tc=04/000/000/005/000/000/001&tms=4/5/1"
        "&arc=L04/R00000001/C00000005"
        "&bbox=-7514065.62854597,-17532819.79994059,-5009377.08569731,-15028131.25709193",
    ),
    (
        "webm/EPSG3857/0/0/0.png",
        "/webm/1/0/1.png?q=2&tc=01/000/000/000/000/000/001&tms=1/0/1"
        "&arc=L01/R00000001/C00000000"
        "&bbox=-20037508.34278924,-20037508.34278924,0.00000000,0.00000000",
    ),
    (
        "webm/EPSG3857/2/1/2.png",
        "/webm/3/1/5.png?q=203&tc=03/000/000/001/000/000/005&tms=3/1/5"
        "&arc=L03/R00000005/C00000001"
        "&bbox=-15028131.25709193,-10018754.17139462,-10018754.17139462,-5009377.08569731",
    ),
    (
        "webm/EPSG3857/3/5/1.png",
        "/webm/4/5/14.png?q=2321&tc=04/000/000/005/000/000/014&tms=4/5/14"
        "&arc=L04/R0000000e/C00000005"
        "&bbox=-7514065.62854597,-17532819.79994059,-5009377.08569731,-15028131.25709194",
    ),
    # ``origin`` is deprecated and ignored by MapProxy 7.0.0: the grid's numbering counts
    ("orig/EPSG3857/3/5/1.png", "/orig/4/5/14.png"),
]


@pytest.mark.parametrize(("path", "expected"), REFERENCE_URLS)
def test_template_variables_match_reference(
    app: Client, upstream: FakeUpstream, path: str, expected: str
) -> None:
    response = app.get("/tms/1.0.0/" + path)
    assert response.status_code == 200
    sent = upstream_url(upstream)
    if "&bbox=" in expected:
        # the last digit of a bbox may differ from MapProxy's float arithmetic
        sent_bbox = [float(v) for v in sent.split("&bbox=")[1].split(",")]
        expected_bbox = [float(v) for v in expected.split("&bbox=")[1].split(",")]
        assert sent_bbox == pytest.approx(expected_bbox, abs=2e-8)
        assert all(len(v.split(".")[1]) == 8 for v in sent.split("&bbox=")[1].split(","))
        sent, expected = sent.split("&bbox=")[0], expected.split("&bbox=")[0]
    if "merc/" in path and "q=" in expected:
        # documented difference: the quadkey is Bing's, also for south-west grids
        sent = sent.split("?q=")[0] + "&" + sent.split("&", 1)[1]
        expected = expected.split("?q=")[0] + "&" + expected.split("&", 1)[1]
    assert sent == expected


def test_origin_is_deprecated(
    make_app: Callable[..., Client], upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mapproxy.config"):
        make_app(CONFIG.replace("{url}", upstream.url))
    assert "sources.orig.origin: origin for tile sources is deprecated and ignored" in caplog.text


@pytest.mark.parametrize(
    ("tms_level", "requested"),
    [(2, False), (3, True), (6, True), (7, False)],  # grid levels 3 .. 8
)
def test_min_res_max_res_skip_levels_without_request(
    app: Client, upstream: FakeUpstream, tms_level: int, requested: bool
) -> None:
    response = app.get(f"/tms/1.0.0/ranged/EPSG3857/{tms_level}/0/0.png")
    assert response.status_code == 200
    if requested:
        assert [path for path, _ in upstream.requests] == [
            f"/ranged/{tms_level + 1}/0/{2 ** (tms_level + 1) - 1}.png"
        ]
    else:
        assert upstream.requests == []


def test_coverage_skips_tiles_outside(app: Client, upstream: FakeUpstream) -> None:
    assert app.get("/tms/1.0.0/covered/EPSG3857/0/0/0.png").status_code == 200  # south-west
    assert upstream.requests == []
    assert app.get("/tms/1.0.0/covered/EPSG3857/0/1/1.png").status_code == 200  # north-east
    assert [path for path, _ in upstream.requests] == ["/covered/1/1/0.png"]


def test_on_error_cache_true_stores_the_replacement_tile(
    app: Client, upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.handler = status_handler(404)
    first = app.get("/tms/1.0.0/failing/EPSG3857/0/0/0.png")
    assert first.status_code == 200
    second = app.get("/tms/1.0.0/failing/EPSG3857/0/0/0.png")
    assert second.data == first.data
    assert len(upstream.requests) == 1  # the second answer came from the cache
    stored = list((tmp_path / "cache_data").rglob("*.png"))
    assert [p.relative_to(tmp_path / "cache_data").as_posix() for p in stored] == [
        "failing_cache_EPSG3857/01/000/000/000/000/000/001.png"
    ]


def test_on_error_cache_false_is_not_stored(
    app: Client, upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.handler = status_handler(500)
    assert app.get("/tms/1.0.0/failing/EPSG3857/0/0/0.png").status_code == 200
    assert app.get("/tms/1.0.0/failing/EPSG3857/0/0/0.png").status_code == 200
    assert len(upstream.requests) == 2
    assert list((tmp_path / "cache_data").rglob("*.png")) == []
