"""Model-sized PNGs and JPEGs skip Pillow (ganomaly/data/native_decode.py): the same pixels, and everything else as before."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from ganomaly.data import native_decode
from ganomaly.data.images import BadImage, DecodeLimits, InputSpec, decode_pixels, pixels_to_input
from ganomaly.data.native_decode import decode_exact, header
from ganomaly.data.synthetic import camera_frame
from tests.poison import poison_corpus


def _encode(arr: np.ndarray, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _pillow(data: bytes) -> np.ndarray:
    a = np.asarray(Image.open(io.BytesIO(data)))
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _frames(size: int, channels: int) -> list[np.ndarray]:
    """Real-looking content: camera frames cut down to the model's size (and greyed for 1 channel)."""
    out = []
    for i in range(6):
        im = Image.open(io.BytesIO(camera_frame(i))).resize((size, size))
        out.append(np.asarray(im.convert("L") if channels == 1 else im))
    return out


@pytest.mark.parametrize(("fmt", "kw"), [("PNG", {}), ("PNG", {"optimize": True}), ("JPEG", {"quality": 85}),
                                         ("JPEG", {"quality": 70, "progressive": True}), ("JPEG", {"quality": 95, "subsampling": 0})])
@pytest.mark.parametrize(("size", "channels"), [(32, 1), (32, 3), (128, 3), (64, 1)])
def test_model_sized_images_decode_to_exactly_pillows_pixels(fmt: str, kw: dict[str, object], size: int, channels: int) -> None:
    for arr in _frames(size, channels):
        data = _encode(arr, fmt, **kw)
        got = decode_exact(data, size, channels, 10**9, 8)
        assert got is not None, "took Pillow's route"
        assert got.dtype == np.uint8 and np.array_equal(got, _pillow(data))


def test_headers_are_read_without_decoding() -> None:
    grey, rgb = _frames(48, 1)[0], _frames(40, 3)[0]
    assert header(_encode(grey, "PNG")) == ("png", 48, 48, 1)
    assert header(_encode(rgb, "PNG")) == ("png", 40, 40, 3)
    assert header(_encode(grey, "JPEG")) == ("jpeg", 48, 48, 1)
    assert header(_encode(rgb, "JPEG", progressive=True)) == ("jpeg", 40, 40, 3)
    assert header(camera_frame(0)) == ("jpeg", 640, 480, 3)
    for other in (b"", b"GIF89a....", _encode(rgb, "BMP"), b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n" + b"\0" * 8):
        assert header(other) is None


def _palette() -> bytes:
    return _encode(np.asarray(Image.fromarray(_frames(32, 3)[0]).convert("P")), "PNG")


@pytest.mark.parametrize(("name", "data", "spec"), [
    ("another size", lambda: _encode(_frames(40, 1)[0], "PNG"), InputSpec(isize=32)),
    ("colour for grey", lambda: _encode(_frames(32, 3)[0], "PNG"), InputSpec(isize=32)),
    ("grey for colour", lambda: _encode(_frames(32, 1)[0], "JPEG"), InputSpec(isize=32, channels=3)),
    ("palette", _palette, InputSpec(isize=32, channels=3)),
    ("16-bit", lambda: _encode(_frames(32, 1)[0].astype(np.uint16) * 257, "PNG"), InputSpec(isize=32)),
    ("RGBA", lambda: _encode(np.dstack([_frames(32, 3)[0], np.full((32, 32), 200, np.uint8)]), "PNG"), InputSpec(isize=32, channels=3)),
])
def test_anything_else_takes_pillows_route_and_decodes_as_it_always_did(name: str, data: object, spec: InputSpec) -> None:
    payload = data() if callable(data) else data
    assert decode_exact(payload, spec.isize, spec.channels, 10**9, 8) is None, name
    assert decode_pixels(payload, spec).shape == (spec.channels, spec.isize, spec.isize)


def test_a_grey_png_with_a_transparency_chunk_decodes_as_pillow_decodes_it() -> None:
    data = _encode(_frames(32, 1)[0], "PNG", transparency=0)  # Pillow keeps it grey ("L"), as does libpng here
    assert np.array_equal(decode_pixels(data, InputSpec(isize=32)), _pillow(data))


def test_limits_still_apply_and_broken_images_keep_their_reasons() -> None:
    data = _encode(_frames(32, 1)[0], "PNG")
    assert decode_exact(data, 32, 1, 32 * 32 - 1, 8) is None  # over max_pixels: Pillow's route names it
    with pytest.raises(BadImage) as e:
        decode_pixels(data, InputSpec(isize=32), DecodeLimits(max_pixels=1000))
    assert e.value.reason == "bomb"
    with pytest.raises(BadImage) as e:
        decode_pixels(data[: len(data) // 2], InputSpec(isize=32))
    assert e.value.reason in ("truncated", "undecodable")
    jpeg = _encode(_frames(32, 3)[0], "JPEG")
    with pytest.raises(BadImage):
        decode_pixels(jpeg[: len(jpeg) // 2], InputSpec(isize=32, channels=3))


def test_the_poison_corpus_is_refused_as_before() -> None:
    spec = InputSpec(isize=28, resize="pad")  # the corpus's images are 28x28 and 64x64: some at the model's size
    for name, payload, reason in poison_corpus():
        with pytest.raises(BadImage) as e:
            decode_pixels(payload, spec, DecodeLimits(channel_policy="strict", max_bytes=1_000_000))  # as test_images.py
        assert e.value.reason == reason, name
        assert native_decode.decode_exact(payload, 28, 1, 40_000_000, 8) is None, name


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (-0.4242, 2.8215), (0.0, 1.0), (-3.7, 11.3)])
def test_a_batch_converted_by_torch_equals_each_image_converted_by_numpy(value_range: tuple[float, float]) -> None:
    every = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    by_numpy = pixels_to_input(every[0], value_range)
    by_torch = pixels_to_input(torch.from_numpy(every), value_range)
    assert by_numpy.dtype == np.float32 and by_torch.dtype == torch.float32
    assert np.array_equal(by_torch[0].numpy(), by_numpy)
