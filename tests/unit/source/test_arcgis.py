from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from mapproxy.http import HTTPClient
from mapproxy.source.arcgis import ArcGISInfoSource, ArcGISSource, arcgis_format, sr_code
from mapproxy.source.base import MapQuery
from mapproxy.source.featureinfo import FeatureInfoQuery
from mapproxy.srs import get_srs


def test_format_and_sr_code() -> None:
    assert arcgis_format("image/png") == "png"
    assert arcgis_format("image/jpeg") == "jpeg"
    assert arcgis_format("image/png; mode=8bit") == "png"
    assert sr_code(get_srs("EPSG:25832")) == "25832"
    assert sr_code(get_srs("CRS:84")) == "4326"


def test_unsupported_srs_is_requested_in_a_supported_one() -> None:
    source = ArcGISSource(
        HTTPClient(),
        "http://example.org/rest/services/X/MapServer",
        {"layers": "show:1"},
        supported_srs=[get_srs("EPSG:3857")],
    )
    url = source.get_map_url(MapQuery((5.0, 50.0, 6.0, 51.0), (100, 100), get_srs("EPSG:4326")))
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    assert parts.path == "/rest/services/X/MapServer/export"
    assert params["bboxSR"] == params["imageSR"] == "3857"
    assert params["layers"] == "show:1"


def test_identify_point_in_reprojected_request() -> None:
    source = ArcGISSource(
        HTTPClient(), "http://example.org/MapServer", {}, supported_srs=[get_srs("EPSG:4326")]
    )
    info = ArcGISInfoSource(source)
    query = FeatureInfoQuery(
        (0.0, 0.0, 20037508.342789244, 20037508.342789244), (100, 100), get_srs("EPSG:3857"), (0, 0)
    )
    params = dict(parse_qsl(urlsplit(info.identify_url(query)).query))
    assert params["sr"] == "4326"
    x, y = (float(v) for v in params["geometry"].split(","))
    assert (x, y) == (0.0, 85.051129)
