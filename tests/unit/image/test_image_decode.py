"""decode_image: libspng for 8-bit truecolour PNGs, Pillow for everything else, same pixels."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mapproxy.image import decode
from mapproxy.image.decode import decode_image, spng_mode

pyspng = pytest.importorskip("pyspng")


def gradient(mode: str, size: tuple[int, int] = (97, 61)) -> Image.Image:
    width, height = size
    xs = np.linspace(0, 255, width, dtype=np.uint8)
    ys = np.linspace(255, 0, height, dtype=np.uint8)
    rgba = np.empty((height, width, 4), dtype=np.uint8)
    rgba[:, :, 0] = xs[np.newaxis, :]
    rgba[:, :, 1] = ys[:, np.newaxis]
    rgba[:, :, 2] = (xs[np.newaxis, :] // 2 + ys[:, np.newaxis] // 2).astype(np.uint8)
    rgba[:, :, 3] = 255 - xs[np.newaxis, :] // 3
    return Image.fromarray(rgba).convert(mode)


def png(image: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", **options)
    return out.getvalue()


def with_chunk(data: bytes, chunk_type: bytes, payload: bytes) -> bytes:
    """``data`` with a chunk inserted right after IHDR."""
    chunk = struct.pack(">I", len(payload)) + chunk_type + payload
    chunk += struct.pack(">I", zlib.crc32(chunk_type + payload))
    return data[:33] + chunk + data[33:]


def pillow(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture
def spng_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real_load = pyspng.load

    def counting_load(data: bytes, *args: object) -> np.ndarray:
        calls.append(len(data))
        return real_load(data, *args)

    monkeypatch.setattr(pyspng, "load", counting_load)
    monkeypatch.setattr(decode, "_pyspng", pyspng)
    return calls


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_truecolour_png_is_decoded_by_spng_with_pillows_pixels(mode, spng_calls):
    data = png(gradient(mode), compress_level=6)
    image = decode_image(data)
    assert spng_calls == [len(data)]
    assert image.mode == mode and image.size == (97, 61)
    assert np.array_equal(np.asarray(image), np.asarray(pillow(data)))


def test_gamma_chunk_changes_no_pixel(spng_calls):
    data = with_chunk(png(gradient("RGB")), b"gAMA", struct.pack(">I", 100000))
    image = decode_image(data)
    assert spng_calls
    assert np.array_equal(np.asarray(image), np.asarray(pillow(data)))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(png(gradient("RGB").quantize(64)), id="paletted"),
        pytest.param(png(gradient("L")), id="grey"),
        pytest.param(png(gradient("RGB").convert("I;16")), id="16-bit"),
        pytest.param(png(gradient("RGB"), transparency=(0, 255, 0)), id="rgb-with-trns"),
    ],
)
def test_other_pngs_are_decoded_by_pillow(data, spng_calls):
    image = decode_image(data)
    assert spng_calls == []
    expected = pillow(data)
    assert image.mode == expected.mode
    assert image.info.get("transparency") == expected.info.get("transparency")
    assert np.array_equal(np.asarray(image), np.asarray(expected))


def test_jpeg_and_garbage_go_to_pillow(spng_calls):
    out = io.BytesIO()
    gradient("RGB").save(out, "JPEG")
    assert decode_image(out.getvalue()).size == (97, 61)
    assert spng_mode(out.getvalue()) is None
    with pytest.raises(OSError):
        decode_image(b"not an image at all")
    assert spng_calls == []


def test_damaged_png_raises_like_pillow(spng_calls):
    data = png(gradient("RGB"))
    cut = data[: len(data) // 2]
    with pytest.raises(OSError):
        decode_image(cut)


def test_without_pyspng_pillow_decodes(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(decode, "_pyspng", None)
    data = png(gradient("RGBA"))
    assert np.array_equal(np.asarray(decode_image(data)), np.asarray(pillow(data)))


def test_spng_mode_reads_the_header():
    assert spng_mode(png(gradient("RGB"))) == "RGB"
    assert spng_mode(png(gradient("RGBA"))) == "RGBA"
    assert spng_mode(png(gradient("RGB").quantize(16))) is None
    data = bytearray(png(gradient("RGB")))
    data[28] = 1  # Adam7 interlacing (Pillow does not write it)
    assert spng_mode(bytes(data)) is None
    assert spng_mode(b"\x89PNG\r\n\x1a\n") is None
