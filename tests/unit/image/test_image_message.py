from __future__ import annotations

from mapproxy.image.message import draw_message, message_image, wrap_text
from mapproxy.image.options import ImageOptions


def test_message_is_drawn_on_transparent_image():
    result = message_image("unknown layer: foo", (200, 50), ImageOptions(transparent=True))
    image = result.as_image()
    assert image.size == (200, 50)
    assert image.mode == "RGBA"
    assert not result.cacheable
    assert result.transparent
    bbox = image.getbbox()
    assert bbox is not None
    assert bbox[0] < 20 and bbox[1] < 20  # text starts at the top left
    assert image.getpixel((199, 49))[3] == 0


def test_message_on_bgcolor_uses_text_colour():
    result = message_image("X", (40, 40), ImageOptions(bgcolor=(255, 255, 255)), color=(255, 0, 0))
    colors = {color for _count, color in result.as_image().getcolors(10000)}
    assert (255, 255, 255) in colors
    assert any(red > 200 and green < 100 for red, green, _blue in colors)


def test_multi_line_message_uses_several_lines():
    one = message_image("line", (200, 100), ImageOptions(transparent=True)).as_image().getbbox()
    two = message_image("line\nline", (200, 100), ImageOptions(transparent=True)).as_image()
    assert one is not None and two.getbbox() is not None
    assert two.getbbox()[3] > one[3] + 5  # type: ignore[index]


def test_long_text_is_wrapped_to_width():
    from mapproxy.image.message import _default_font

    font = _default_font(12)
    lines = wrap_text("a fairly long message " * 10 + "x" * 200, font, 100)
    assert len(lines) > 3
    assert all(font.getlength(line) <= 100 for line in lines)


def test_draw_message_centered_on_existing_image():
    image = message_image("", (100, 100), ImageOptions()).as_image()
    draw_message(image, "mid", placement="center")
    bbox = image.convert("L").point(lambda value: 255 - value).getbbox()
    assert bbox is not None
    assert 25 < (bbox[0] + bbox[2]) / 2 < 75
    assert 25 < (bbox[1] + bbox[3]) / 2 < 75
