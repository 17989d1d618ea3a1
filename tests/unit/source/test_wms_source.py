from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest

from fakes.fake_upstream import (  # tests/ is on sys.path (tests/conftest.py)
    FakeUpstream,
    image_handler,
    png_bytes,
    service_exception_handler,
    status_handler,
)
from mapproxy.errors import SourceError
from mapproxy.http import HTTPClient
from mapproxy.source.base import MapQuery
from mapproxy.source.wms import WMSSource
from mapproxy.srs import get_srs

EPSG4326 = get_srs("EPSG:4326")
EPSG3857 = get_srs("EPSG:3857")

COMMON_111 = {
    "request": "GetMap",
    "service": "WMS",
    "version": "1.1.1",
    "format": "image/png",
    "styles": "",
}


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def make_source(upstream: FakeUpstream, path: str = "/service", **kwargs: object) -> WMSSource:
    client = kwargs.pop("client", None) or HTTPClient(timeout_seconds=5)
    params = kwargs.pop("params", None) or {"layers": "roads,rivers"}
    return WMSSource(client, upstream.url + path, params, **kwargs)  # type: ignore[arg-type]


def query_4326(size: tuple[int, int] = (512, 256), **kwargs: object) -> MapQuery:
    return MapQuery((-180.0, -90.0, 180.0, 90.0), size, EPSG4326, **kwargs)  # type: ignore[arg-type]


def test_getmap_111_sends_exact_params(upstream: FakeUpstream) -> None:
    source = make_source(upstream)
    result = source.get_map(query_4326())
    assert upstream.requests == [
        (
            "/service",
            {
                **COMMON_111,
                "layers": "roads,rivers",
                "bbox": "-180.0,-90.0,180.0,90.0",
                "width": "512",
                "height": "256",
                "srs": "EPSG:4326",
            },
        )
    ]
    assert result.format == "image/png"
    assert result.as_bytes() == png_bytes((512, 256))
    assert result.as_image().size == (512, 256)


def test_getmap_130_uses_crs_and_lat_lon_axis_order_for_4326(upstream: FakeUpstream) -> None:
    source = make_source(upstream, version="1.3.0")
    source.get_map(query_4326())
    (_, query) = upstream.requests[0]
    assert query == {
        **COMMON_111,
        "version": "1.3.0",
        "layers": "roads,rivers",
        "bbox": "-90.0,-180.0,90.0,180.0",
        "width": "512",
        "height": "256",
        "crs": "EPSG:4326",
    }


def test_getmap_130_keeps_east_north_order_for_webmercator(upstream: FakeUpstream) -> None:
    source = make_source(upstream, version="1.3.0")
    source.get_map(MapQuery((0.0, 10.0, 1000.0, 2000.0), (100, 200), EPSG3857))
    (_, query) = upstream.requests[0]
    assert query["bbox"] == "0.0,10.0,1000.0,2000.0"
    assert query["crs"] == "EPSG:3857"
    assert "srs" not in query


def test_transparent_styles_and_extra_params(upstream: FakeUpstream) -> None:
    source = make_source(
        upstream,
        params={"layers": "a", "styles": "s1", "transparent": True, "MAP": "/x.map", "dpi": 96},
    )
    assert source.transparent
    result = source.get_map(query_4326())
    (_, query) = upstream.requests[0]
    assert query["transparent"] == "TRUE"
    assert query["styles"] == "s1"
    assert query["MAP"] == "/x.map"  # extra parameters keep their spelling, as in MapProxy
    assert query["dpi"] == "96"
    assert result.transparent


def test_not_transparent_sends_no_transparent_param(upstream: FakeUpstream) -> None:
    make_source(upstream).get_map(query_4326())
    assert "transparent" not in upstream.requests[0][1]


def test_url_with_query_params_is_merged(upstream: FakeUpstream) -> None:
    source = make_source(upstream, path="/cgi?map=/data/world.map&SERVICE=wms&layers=old")
    url = source.get_map_url(query_4326())
    assert url.startswith(upstream.url + "/cgi?map=/data/world.map&")
    names = [name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)]
    assert len(names) == len({name.lower() for name in names})
    source.get_map(query_4326())
    (path, query) = upstream.requests[0]
    assert path == "/cgi"
    assert query["map"] == "/data/world.map"
    assert query["service"] == "WMS"
    assert query["layers"] == "roads,rivers"


def test_get_map_url_is_the_requested_url(upstream: FakeUpstream) -> None:
    source = make_source(upstream)
    url = source.get_map_url(query_4326())
    source.get_map(query_4326())
    assert upstream.url + upstream.requests[0][0] + "?" + upstream.recorded[0].raw_query == url
    assert "bbox=-180.0,-90.0,180.0,90.0" in url
    assert "srs=EPSG:4326" in url
    assert "format=image/png" in url


def test_unsupported_srs_is_requested_in_supported_srs_and_reprojected(
    upstream: FakeUpstream,
) -> None:
    upstream.handler = image_handler(color=(0, 0, 255, 255))
    source = make_source(upstream, supported_srs=[EPSG4326])
    bbox = (-2000000.0, -1000000.0, 2000000.0, 1000000.0)
    result = source.get_map(MapQuery(bbox, (400, 200), EPSG3857))
    (_, query) = upstream.requests[0]
    assert query["srs"] == "EPSG:4326"
    minx, miny, maxx, maxy = (float(v) for v in query["bbox"].split(","))
    expected = EPSG3857.transform_bbox_to(EPSG4326, bbox)
    assert (minx, miny, maxx, maxy) == pytest.approx(expected)
    # square pixels of the finer axis: the height stays, the width grows (as MapProxy 7.0.0)
    assert (query["width"], query["height"]) == ("402", "200")
    image = result.as_image()
    assert image.size == (400, 200)
    assert image.convert("RGBA").getpixel((200, 100)) == (0, 0, 255, 255)


@pytest.mark.parametrize(
    ("bbox", "size", "expected"),
    [
        ((20.0, 50.0, 22.2, 52.2), (256, 256), ("256", "408")),
        ((20.0, 50.0, 30.0, 52.0), (300, 200), ("629", "200")),
        ((-10.0, -60.0, 10.0, 60.0), (200, 500), ("200", "1509")),
        ((5.0, 47.0, 15.0, 55.0), (1000, 700), ("1000", "1275")),
    ],
)
def test_reprojected_request_size_matches_reference(
    upstream: FakeUpstream,
    bbox: tuple[float, float, float, float],
    size: tuple[int, int],
    expected: tuple[str, str],
) -> None:
    # sizes MapProxy 7.0.0 asks its upstream for with the same requests
    source = make_source(upstream, supported_srs=[EPSG3857])
    result = source.get_map(MapQuery(bbox, size, EPSG4326))
    (_, query) = upstream.requests[0]
    assert query["srs"] == "EPSG:3857"
    assert (query["width"], query["height"]) == expected
    assert result.as_image().size == size


def test_supported_srs_choice(upstream: FakeUpstream) -> None:
    source = make_source(
        upstream,
        supported_srs=[get_srs("EPSG:4258"), get_srs("EPSG:25832"), EPSG3857],
    )
    assert source.source_srs(get_srs("EPSG:900913")) == EPSG3857
    assert source.source_srs(get_srs("EPSG:31467")) == get_srs("EPSG:25832")
    assert source.source_srs(EPSG4326) == get_srs("EPSG:4258")
    only_projected = make_source(upstream, supported_srs=[get_srs("EPSG:25832")])
    assert only_projected.source_srs(EPSG4326) == get_srs("EPSG:25832")
    preferred = make_source(
        upstream,
        supported_srs=[get_srs("EPSG:25832"), EPSG3857],
        preferred_src_proj={"EPSG:31467": [EPSG3857]},
    )
    assert preferred.source_srs(get_srs("EPSG:31467")) == EPSG3857


def test_equivalent_srs_code_is_not_reprojected(upstream: FakeUpstream) -> None:
    source = make_source(upstream, supported_srs=[get_srs("EPSG:900913")])
    bbox = (0.0, 0.0, 1000.0, 1000.0)
    source.get_map(MapQuery(bbox, (256, 256), EPSG3857))
    (_, query) = upstream.requests[0]
    assert query["srs"] == "EPSG:900913"
    assert query["bbox"] == "0.0,0.0,1000.0,1000.0"


def test_unsupported_format_is_requested_in_first_supported_and_converted(
    upstream: FakeUpstream,
) -> None:
    upstream.handler = image_handler(color=(0, 255, 0), format="JPEG")
    source = make_source(upstream, supported_formats=["image/jpeg", "image/gif"])
    result = source.get_map(query_4326(format="image/png"))
    assert upstream.requests[0][1]["format"] == "image/jpeg"
    assert result.format == "image/png"
    image = result.as_image()
    assert image.size == (512, 256)
    r, g, b = image.convert("RGB").getpixel((10, 10))
    assert g > 240 and r < 15 and b < 15


def test_supported_format_is_requested_as_is(upstream: FakeUpstream) -> None:
    source = make_source(upstream, supported_formats=["png", "image/jpeg"])
    source.get_map(query_4326(format="image/png"))
    assert upstream.requests[0][1]["format"] == "png"


def test_service_exception_is_source_error_with_hidden_details(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.handler = service_exception_handler("layer roads not defined")
    source = make_source(upstream)
    with (
        caplog.at_level(logging.WARNING, logger="mapproxy.source.wms"),
        pytest.raises(SourceError) as excinfo,
    ):
        source.get_map(query_4326())
    assert str(excinfo.value) == (
        "No image returned from source WMS (see logs for URL and reason)."
    )
    assert "layer roads not defined" in caplog.text
    assert upstream.url in caplog.text


def test_service_exception_message_with_details(upstream: FakeUpstream) -> None:
    upstream.handler = service_exception_handler("layer roads &amp; rivers not defined")
    source = make_source(upstream, client=HTTPClient(hide_error_details=False))
    url = source.get_map_url(query_4326())
    with pytest.raises(SourceError) as excinfo:
        source.get_map(query_4326())
    assert str(excinfo.value) == (
        f'No image returned from source WMS "{url}": layer roads & rivers not defined'
    )


def test_undecodable_image_is_source_error(upstream: FakeUpstream) -> None:
    upstream.handler = status_handler(200, body=b"not really a png", content_type="image/png")
    source = make_source(upstream, client=HTTPClient(hide_error_details=False))
    with pytest.raises(SourceError, match="No image returned from source WMS"):
        source.get_map(query_4326())


def test_image_with_wrong_content_type_is_accepted(upstream: FakeUpstream) -> None:
    upstream.handler = status_handler(
        200, body=png_bytes((512, 256)), content_type="application/octet-stream"
    )
    result = make_source(upstream).get_map(query_4326())
    assert result.format == "image/png"


def test_http_error_messages(upstream: FakeUpstream) -> None:
    upstream.handler = status_handler(500)
    with pytest.raises(SourceError) as excinfo:
        make_source(upstream).get_map(query_4326())
    assert str(excinfo.value) == "HTTP Error (see logs for URL and reason)."
    source = make_source(upstream, client=HTTPClient(hide_error_details=False))
    with pytest.raises(SourceError) as excinfo:
        source.get_map(query_4326())
    assert str(excinfo.value) == f'HTTP Error "{source.get_map_url(query_4326())}": 500'


def test_timeout_is_source_error_within_two_seconds(upstream: FakeUpstream) -> None:
    upstream.handler = upstream.sleep_handler(5)
    source = make_source(upstream, client=HTTPClient(timeout_seconds=0.5))
    start = time.monotonic()
    with pytest.raises(SourceError, match=r"^No response from URL \(see logs"):
        source.get_map(query_4326())
    assert time.monotonic() - start < 2.0


def test_on_error_status_response_with_cache(upstream: FakeUpstream) -> None:
    upstream.handler = status_handler(500)
    source = make_source(upstream, on_error={500: {"response": "#ff0000", "cache": True}})
    result = source.get_map(query_4326(size=(64, 32)))
    assert result.cacheable
    image = result.as_image()
    assert image.size == (64, 32)
    assert image.convert("RGBA").getpixel((5, 5)) == (255, 0, 0, 255)


def test_on_error_other_catches_timeouts_and_is_not_cached(upstream: FakeUpstream) -> None:
    upstream.handler = upstream.sleep_handler(5)
    source = make_source(
        upstream,
        client=HTTPClient(timeout_seconds=0.3),
        on_error={"other": {"response": "transparent"}},
    )
    result = source.get_map(query_4326(size=(32, 32)))
    assert not result.cacheable
    assert result.transparent
    assert result.as_image().convert("RGBA").getpixel((0, 0))[3] == 0


def test_on_error_other_catches_service_exceptions_and_other_status(
    upstream: FakeUpstream,
) -> None:
    source = make_source(
        upstream,
        on_error={
            404: {"response": [0, 0, 255], "cache": True},
            "other": {"response": "#00ff0080"},
        },
    )
    upstream.handler = service_exception_handler()
    result = source.get_map(query_4326(size=(8, 8)))
    assert result.as_image().convert("RGBA").getpixel((0, 0)) == (0, 255, 0, 128)
    assert not result.cacheable
    upstream.handler = status_handler(503)
    assert source.get_map(query_4326(size=(8, 8))).as_image().getpixel((0, 0)) == (
        0,
        255,
        0,
        128,
    )
    upstream.handler = status_handler(404)
    result = source.get_map(query_4326(size=(8, 8)))
    assert result.as_image().convert("RGBA").getpixel((0, 0)) == (0, 0, 255, 255)
    assert result.cacheable


def test_on_error_without_matching_entry_raises(upstream: FakeUpstream) -> None:
    upstream.handler = status_handler(500)
    source = make_source(upstream, on_error={404: {"response": "transparent"}})
    with pytest.raises(SourceError):
        source.get_map(query_4326())


def test_transparent_color_with_tolerance(upstream: FakeUpstream) -> None:
    upstream.handler = image_handler(color=(252, 255, 250), format="JPEG")
    source = make_source(upstream, transparent_color="#ffffff", transparent_color_tolerance=5)
    result = source.get_map(query_4326(size=(16, 16)))
    assert result.transparent
    assert result.as_image().convert("RGBA").getpixel((3, 3))[3] == 0

    upstream.handler = image_handler(color=(200, 255, 255))
    result = source.get_map(query_4326(size=(16, 16)))
    assert result.as_image().convert("RGBA").getpixel((3, 3))[3] == 255


def test_outside_resolution_range_returns_blank_without_request(upstream: FakeUpstream) -> None:
    # 360 deg / 512 px ~ 78 km/px
    too_coarse = make_source(upstream, min_res=1000)
    result = too_coarse.get_map(query_4326())
    assert upstream.requests == []
    assert result.transparent
    assert result.as_image().getpixel((0, 0))[3] == 0
    too_fine = make_source(upstream, max_res=100000)
    too_fine.get_map(query_4326())
    assert upstream.requests == []
    in_range = make_source(upstream, min_res=100000, max_res=1000)
    in_range.get_map(query_4326())
    assert len(upstream.requests) == 1


def test_source_attributes(upstream: FakeUpstream) -> None:
    source = make_source(upstream, opacity=0.5)
    assert source.supports_meta_tiles is True
    assert source.request_transparent is False
    assert source.transparent is True  # layers below show through
    assert source.extent is None
    assert source.opacity == 0.5
