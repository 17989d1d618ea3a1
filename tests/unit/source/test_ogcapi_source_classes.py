from __future__ import annotations

import pytest

from mapproxy.source.ogcapi import bgcolor_param, crs_uri, srs_from_uri
from mapproxy.srs import get_srs


@pytest.mark.parametrize(
    ("color", "expected"),
    [("#11223344", "0x44112233"), ("#112233", "0x112233"), ("aabbccdd", "0xddaabbcc")],
)
def test_bgcolor_is_sent_alpha_first(color: str, expected: str) -> None:
    assert bgcolor_param(color) == expected


def test_crs_uris() -> None:
    assert crs_uri(get_srs("EPSG:3857")) == "http://www.opengis.net/def/crs/EPSG/0/3857"
    assert crs_uri(get_srs("CRS:84")) == "http://www.opengis.net/def/crs/EPSG/0/4326"
    srs = srs_from_uri("http://www.opengis.net/def/crs/EPSG/0/25832")
    assert srs is not None and srs.code == "EPSG:25832"
    crs84 = srs_from_uri("http://www.opengis.net/def/crs/OGC/1.3/CRS84")
    assert crs84 is not None and crs84.code == "CRS:84"
    assert srs_from_uri("urn:unknown") is None
