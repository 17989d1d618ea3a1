"""WMS request parsing: versions, request types, GetMap validation order and messages."""

from __future__ import annotations

import pytest

from mapproxy.image.options import ImageOptions
from mapproxy.service.base import InvalidRequest
from mapproxy.service.wms.request import (
    FormatTable,
    GetMapParser,
    ImageSizeTooLarge,
    exceptions_mode,
    negotiate_version,
    parse_bbox,
    parse_bgcolor,
    parse_size_value,
    request_type,
    request_version,
)
from mapproxy.srs import get_srs

ALL_VERSIONS = ("1.0.0", "1.1.0", "1.1.1", "1.3.0")

VALID_111 = {
    "service": "WMS",
    "version": "1.1.1",
    "request": "GetMap",
    "layers": "roads",
    "styles": "",
    "srs": "EPSG:4326",
    "bbox": "-10,40,10,60",
    "width": "200",
    "height": "100",
    "format": "image/png",
}


@pytest.fixture
def parser() -> GetMapParser:
    srs = {code: get_srs(code) for code in ("EPSG:4326", "EPSG:3857", "CRS:84", "EPSG:25832")}
    formats = FormatTable(["image/png", "image/jpeg", "image/GeoTIFF"])
    return GetMapParser(["roads", "rivers"], formats, srs, max_output_pixels=1000 * 1000)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (None, "1.3.0"),
        ("", "1.3.0"),
        ("garbage", "1.3.0"),
        ("1.1.1", "1.1.1"),
        ("1.0.0", "1.0.0"),
        ("0.9.0", "1.0.0"),
        ("1.0.5", "1.0.0"),
        ("1.1.0", "1.1.0"),
        ("1.2.0", "1.1.1"),
        ("1.3.0", "1.3.0"),
        ("2.0.0", "1.3.0"),
    ],
)
def test_version_negotiation(requested: str | None, expected: str) -> None:
    assert negotiate_version(requested, ALL_VERSIONS) == expected


def test_version_negotiation_respects_configured_versions() -> None:
    assert negotiate_version("1.3.0", ["1.1.1"]) == "1.1.1"
    assert negotiate_version("1.0.0", ["1.1.1", "1.3.0"]) == "1.1.1"
    assert negotiate_version("1.2.0", ["1.0.0", "1.3.0"]) == "1.0.0"


def test_version_falls_back_to_wmtver() -> None:
    assert request_version({"wmtver": "1.0.0"}, ALL_VERSIONS) == "1.0.0"
    assert request_version({"version": "1.1.1", "wmtver": "1.0.0"}, ALL_VERSIONS) == "1.1.1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("GetMap", "GetMap"),
        ("getmap", "GetMap"),
        ("map", "GetMap"),
        ("GETCAPABILITIES", "GetCapabilities"),
        ("capabilities", "GetCapabilities"),
        ("feature_info", "GetFeatureInfo"),
        ("GetFeatureInfo", "GetFeatureInfo"),
        ("GetLegendGraphic", "GetLegendGraphic"),
    ],
)
def test_request_type_names(value: str, expected: str) -> None:
    assert request_type({"request": value}, "1.1.1") == expected


def test_unknown_request_type() -> None:
    with pytest.raises(InvalidRequest) as info:
        request_type({"request": "GetStuff"}, "1.1.1")
    assert info.value.message == "unknown WMS request type 'getstuff'"


def test_legend_graphic_only_in_111_and_130() -> None:
    with pytest.raises(InvalidRequest, match="unknown WMS request type 'getlegendgraphic'"):
        request_type({"request": "GetLegendGraphic"}, "1.1.0")
    assert request_type({"request": "GetLegendGraphic"}, "1.3.0") == "GetLegendGraphic"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1,2,3,4", (1.0, 2.0, 3.0, 4.0)),
        ("-180,-90,180,90", (-180.0, -90.0, 180.0, 90.0)),
        ("1,2,3", None),
        ("1,2,3,4,5", None),
        ("a,b,c,d", None),
        ("3,2,1,4", None),
        ("1,4,3,2", None),
        ("1,1,1,1", None),
        ("nan,0,1,1", None),
        ("0,0,inf,1", None),
        ("", None),
    ],
)
def test_parse_bbox(value: str, expected: tuple[float, ...] | None) -> None:
    assert parse_bbox(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("256", 256),
        ("256.9", 256),
        ("1e3", 1000),
        ("0", None),
        ("-5", None),
        ("0.5", None),
        ("abc", None),
        ("nan", None),
        ("inf", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_size_value(value: str | None, expected: int | None) -> None:
    assert parse_size_value(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0xFF0000", (255, 0, 0)),
        ("0x00ff80", (0, 255, 128)),
        ("#0000FF", (0, 0, 255)),
        ("0xGG0000", (255, 255, 255)),
        ("red", (255, 255, 255)),
        (None, (255, 255, 255)),
    ],
)
def test_parse_bgcolor(value: str | None, expected: tuple[int, int, int]) -> None:
    assert parse_bgcolor(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("application/vnd.ogc.se_inimage", "inimage"),
        ("INIMAGE", "inimage"),
        ("application/vnd.ogc.se_blank", "blank"),
        ("BLANK", "blank"),
        ("application/vnd.ogc.se_xml", "xml"),
        ("XML", "xml"),
        (None, "xml"),
    ],
)
def test_exceptions_mode(value: str | None, expected: str) -> None:
    assert exceptions_mode(value) == expected


def test_valid_getmap_is_parsed(parser: GetMapParser) -> None:
    request = parser.parse(VALID_111 | {"transparent": "TRUE", "bgcolor": "0x112233"}, "1.1.1")
    assert request.layers == ("roads",)
    assert request.bbox == (-10.0, 40.0, 10.0, 60.0)
    assert request.size == (200, 100)
    assert request.srs == get_srs("EPSG:4326")
    assert request.format.name == "image/png"
    assert request.transparent is True
    assert request.bgcolor == (0x11, 0x22, 0x33)


def test_float_sizes_are_truncated(parser: GetMapParser) -> None:
    request = parser.parse(VALID_111 | {"width": "200.7", "height": "99.999"}, "1.1.1")
    assert request.size == (200, 99)


def test_dimensions_are_collected(parser: GetMapParser) -> None:
    params = VALID_111 | {"time": "2020-01-01", "elevation": "100", "dim_band": "red"}
    request = parser.parse(params, "1.1.1")
    assert request.dimensions == {"time": "2020-01-01", "elevation": "100", "dim_band": "red"}


def _error(parser: GetMapParser, params: dict[str, str], version: str) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parser.parse(params, version)
    return info.value


def test_missing_parameters_are_listed_in_order(parser: GetMapParser) -> None:
    params = {k: v for k, v in VALID_111.items() if k not in ("bbox", "format", "srs")}
    error = _error(parser, params, "1.1.1")
    assert error.message == "missing parameters ['srs', 'bbox', 'format']"
    assert error.code is None


def test_missing_crs_in_130(parser: GetMapParser) -> None:
    params = VALID_111 | {"version": "1.3.0"}
    assert _error(parser, params, "1.3.0").message == "missing parameters ['crs']"


def test_100_getmap_needs_wmtver(parser: GetMapParser) -> None:
    params = VALID_111 | {"version": "1.0.0"}
    assert _error(parser, params, "1.0.0").message == "missing parameters ['wmtver']"
    params = {k: v for k, v in VALID_111.items() if k != "version"} | {"wmtver": "1.0.0"}
    assert parser.parse(params | {"format": "PNG"}, "1.0.0").format.name == "image/png"


def test_validation_order_and_messages(parser: GetMapParser) -> None:
    """Every check fails at once; fixing them one by one reveals the next message."""
    params = VALID_111 | {
        "bbox": "10,10,0,0",
        "styles": "fancy",
        "width": "2000",
        "height": "2000",
        "layers": "roads,nope",
        "format": "image/bmp",
        "srs": "EPSG:9999",
    }
    fixes = [
        ("bbox", "0,0,10,10", "invalid bbox 10,10,0,0", None),
        ("styles", "default,", "unsupported styles: fancy", "StyleNotDefined"),
        ("width", "100", "image size too large", None),
        ("layers", "roads,rivers", "unknown layer: nope", "LayerNotDefined"),
        ("format", "image/jpeg", "unsupported image format: image/bmp", "InvalidFormat"),
        ("srs", "EPSG:3857", "unsupported srs: EPSG:9999", "InvalidSRS"),
    ]
    for name, fixed_value, message, code in fixes:
        error = _error(parser, params, "1.1.1")
        assert (error.message, error.code) == (message, code)
        params[name] = fixed_value
    parser.parse(params, "1.1.1")


def test_too_large_is_its_own_error_type(parser: GetMapParser) -> None:
    with pytest.raises(ImageSizeTooLarge):
        parser.parse(VALID_111 | {"width": "1001", "height": "1000"}, "1.1.1")
    assert parser.parse(VALID_111 | {"width": "1000", "height": "1000"}, "1.1.1")


@pytest.mark.parametrize("width", ["abc", "0", "-1", "nan", "", "1e999"])
def test_invalid_width(parser: GetMapParser, width: str) -> None:
    assert _error(parser, VALID_111 | {"width": width}, "1.1.1").message == f"invalid width {width}"


def test_invalid_height(parser: GetMapParser) -> None:
    assert _error(parser, VALID_111 | {"height": "x"}, "1.1.1").message == "invalid height x"


def test_allowed_styles(parser: GetMapParser) -> None:
    params = VALID_111 | {
        "layers": "roads,rivers,roads",
        "styles": "default,,inspire_common:DEFAULT",
    }
    assert parser.parse(params, "1.1.1").layers == ("roads", "rivers", "roads")


def test_unsupported_crs_in_130(parser: GetMapParser) -> None:
    params = VALID_111 | {"version": "1.3.0", "crs": "EPSG:31467"}
    error = _error(parser, params, "1.3.0")
    assert (error.message, error.code) == ("unsupported crs: EPSG:31467", "InvalidCRS")


def test_srs_is_compared_upper_cased(parser: GetMapParser) -> None:
    assert parser.parse(VALID_111 | {"srs": "epsg:3857"}, "1.1.1").srs == get_srs("EPSG:3857")


@pytest.mark.parametrize(
    ("crs", "bbox", "expected"),
    [
        ("EPSG:4326", "40,-10,60,10", (-10.0, 40.0, 10.0, 60.0)),
        ("CRS:84", "-10,40,10,60", (-10.0, 40.0, 10.0, 60.0)),
        ("EPSG:3857", "0,1,100,101", (0.0, 1.0, 100.0, 101.0)),
        ("EPSG:25832", "0,1,100,101", (0.0, 1.0, 100.0, 101.0)),
    ],
)
def test_130_bbox_follows_crs_axis_order(
    parser: GetMapParser, crs: str, bbox: str, expected: tuple[float, ...]
) -> None:
    params = {k: v for k, v in VALID_111.items() if k != "srs"}
    params |= {"version": "1.3.0", "crs": crs, "bbox": bbox}
    assert parser.parse(params, "1.3.0").bbox == expected


def test_111_bbox_is_always_xy(parser: GetMapParser) -> None:
    assert parser.parse(VALID_111, "1.1.1").bbox == (-10.0, 40.0, 10.0, 60.0)


def test_format_table_accepts_option_keys_and_case() -> None:
    table = FormatTable(
        ["image/png", "png8", "image/GeoTIFF"],
        {"png8": ImageOptions(format="image/png; mode=8bit", colors=256)},
    )
    assert [f.name for f in table.formats] == [
        "image/png",
        "image/png; mode=8bit",
        "image/GeoTIFF",
    ]
    assert table.get("png8", "1.1.1").options.colors == 256  # type: ignore[union-attr]
    assert table.get("image/png; mode=8bit", "1.1.1").name == "image/png; mode=8bit"  # type: ignore[union-attr]
    assert table.get("image/geotiff", "1.1.1").name == "image/GeoTIFF"  # type: ignore[union-attr]
    assert table.get("PNG", "1.1.1") is None
    assert table.get("PNG", "1.0.0").name == "image/png"  # type: ignore[union-attr]
    assert table.names_100() == ["PNG"]


def test_exception_context_is_lenient(parser: GetMapParser) -> None:
    context = parser.exception_context(
        {"exceptions": "INIMAGE", "width": "abc", "format": "image/bmp"}, "1.1.1"
    )
    assert context.mode == "inimage"
    assert context.size == (256, 256)
    assert context.format is not None and context.format.name == "image/png"
    huge = parser.exception_context(
        {"exceptions": "INIMAGE", "width": "100000", "height": "100000"}, "1.1.1"
    )
    assert huge.size == (256, 256)
    sized = parser.exception_context(
        {
            "exceptions": "blank",
            "width": "30.5",
            "height": "20",
            "format": "image/jpeg",
            "transparent": "true",
            "bgcolor": "0x0000ff",
        },
        "1.3.0",
    )
    assert (sized.mode, sized.size, sized.transparent, sized.bgcolor) == (
        "blank",
        (30, 20),
        True,
        (0, 0, 255),
    )
    assert sized.format is not None and sized.format.name == "image/jpeg"
