"""BandMergeSource: target bands as clipped sums of weighted source bands."""

from __future__ import annotations

import pytest
from PIL import Image

from mapproxy.image.result import ImageResult
from mapproxy.source.band_merge import BandInput, BandMergeSource, result_mode
from mapproxy.source.base import MapExtent, MapQuery
from mapproxy.srs import SRS

QUERY = MapQuery((0.0, 0.0, 1000.0, 1000.0), (8, 4), SRS("EPSG:3857"))


class SolidSource:
    """Answers every query with one colour and records the queries."""

    supports_meta_tiles = True

    def __init__(
        self, color: tuple[int, ...], mode: str = "RGB", transparent: bool = False
    ) -> None:
        self.color = color
        self.mode = mode
        self.transparent = transparent
        self.extent: MapExtent | None = None
        self.queries: list[MapQuery] = []
        self.cacheable = True

    def get_map(self, query: MapQuery) -> ImageResult:
        self.queries.append(query)
        image = Image.new(self.mode, query.size, self.color)  # type: ignore[arg-type]
        return ImageResult(image, cacheable=self.cacheable)


def test_rgb_bands_are_weighted_sums_clipped_to_255() -> None:
    red, green, blue = (
        SolidSource((200, 10, 20)),
        SolidSource((30, 150, 60)),
        SolidSource((5, 40, 90)),
    )
    merged = BandMergeSource(
        [red, green, blue],
        {
            "r": [BandInput(0, 0)],
            "g": [BandInput(1, 1, 0.5), BandInput(2, 2, 2.0)],  # 75 + 180 -> 255
            "b": [BandInput(0, 2), BandInput(1, 0, 0.1)],  # 20 + 3
        },
    )
    result = merged.get_map(QUERY)
    image = result.as_image()
    assert image.mode == "RGB" and image.size == (8, 4)
    assert image.getpixel((0, 0)) == (200, 255, 23)
    assert image.getpixel((7, 3)) == (200, 255, 23)
    assert not result.transparent


def test_each_source_is_asked_once_per_request() -> None:
    red, green = SolidSource((200, 10, 20)), SolidSource((30, 150, 60))
    merged = BandMergeSource(
        [red, green],
        {"r": [BandInput(0, 0)], "g": [BandInput(0, 1), BandInput(1, 1)], "b": [BandInput(0, 2)]},
    )
    merged.get_map(QUERY)
    assert red.queries == [QUERY]
    assert green.queries == [QUERY]


def test_luminance_result_and_truncation_of_each_weighted_band() -> None:
    """150 * 0.37 = 55.5 counts as 55 for each entry (MapProxy 7.0.0: 55 + 55 + 45 = 155)."""
    green = SolidSource((30, 150, 60))
    merged = BandMergeSource(
        [green], {"l": [BandInput(0, 1, 0.37), BandInput(0, 1, 0.37), BandInput(0, 1, 0.3)]}
    )
    image = merged.get_map(QUERY).as_image()
    assert image.mode == "L"
    assert image.getpixel((3, 2)) == 155


def test_alpha_band_gives_rgba_and_unset_bands_are_zero() -> None:
    red, green = SolidSource((200, 10, 20)), SolidSource((30, 150, 60))
    merged = BandMergeSource([red, green], {"r": [BandInput(0, 0)], "a": [BandInput(1, 1)]})
    result = merged.get_map(QUERY)
    assert result.transparent and merged.transparent
    assert result.as_image().getpixel((0, 0)) == (200, 0, 0, 150)


def test_alpha_of_a_transparent_source_can_be_read() -> None:
    source = SolidSource((10, 20, 30, 40), mode="RGBA", transparent=True)
    merged = BandMergeSource([source], {"l": [BandInput(0, 3, 2.0)]})
    assert merged.get_map(QUERY).as_image().getpixel((0, 0)) == 80


def test_missing_source_band_adds_nothing() -> None:
    grey = SolidSource((77,), mode="L")
    merged = BandMergeSource([grey], {"r": [BandInput(0, 0)], "g": [BandInput(0, 2)]})
    assert merged.get_map(QUERY).as_image().getpixel((0, 0)) == (77, 0, 0)


def test_result_is_not_cacheable_if_a_source_result_is_not() -> None:
    red, green = SolidSource((1, 2, 3)), SolidSource((4, 5, 6))
    green.cacheable = False
    merged = BandMergeSource([red, green], {"r": [BandInput(0, 0)], "g": [BandInput(1, 1)]})
    assert merged.get_map(QUERY).cacheable is False


def test_meta_tiles_only_if_all_sources_support_them() -> None:
    red, green = SolidSource((1, 2, 3)), SolidSource((4, 5, 6))
    green.supports_meta_tiles = False  # type: ignore[misc]
    assert not BandMergeSource(
        [red, green], {"r": [BandInput(0, 0)], "g": [BandInput(1, 0)]}
    ).supports_meta_tiles
    assert BandMergeSource([red], {"r": [BandInput(0, 0)]}).supports_meta_tiles


@pytest.mark.parametrize(
    ("bands", "mode"), [(["l"], "L"), (["r", "g"], "RGB"), (["b", "a"], "RGBA")]
)
def test_result_mode(bands: list[str], mode: str) -> None:
    assert result_mode(bands) == mode


def test_luminance_cannot_be_combined() -> None:
    with pytest.raises(ValueError, match="band l cannot be combined"):
        BandMergeSource([SolidSource((1, 2, 3))], {"l": [BandInput(0, 0)], "r": [BandInput(0, 0)]})
