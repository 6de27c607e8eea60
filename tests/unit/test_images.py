"""The shared decoder: faithful conversion, and every kind of bad input named."""

import io

import numpy as np
import pytest
from PIL import Image

from ganomaly.data.images import BadImage, DecodeLimits, InputSpec, array_to_input, decode_image
from tests.poison import poison_corpus


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_png_decodes_exactly_like_the_array() -> None:
    arr = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    spec = InputSpec()
    x = decode_image(_png(arr), spec)
    assert x.shape == (1, 32, 32) and x.dtype == np.float32
    assert np.array_equal(x, array_to_input(arr, spec))
    assert x.min() >= -1 and x.max() <= 1


def test_value_range_endpoints() -> None:
    x = array_to_input(np.array([[0, 255]] * 32, dtype=np.uint8).repeat(16, axis=1), InputSpec())
    assert x.min() == -1.0 and x.max() == 1.0


def test_convert_policy_converts_and_strict_refuses_channels() -> None:
    rgb = np.zeros((32, 32, 3), dtype=np.uint8)
    assert decode_image(_png(rgb), InputSpec(), DecodeLimits(channel_policy="convert")).shape == (1, 32, 32)
    with pytest.raises(BadImage) as e:
        decode_image(_png(rgb), InputSpec(), DecodeLimits(channel_policy="strict"))
    assert e.value.reason == "channels"
    assert decode_image(_png(rgb), InputSpec(channels=3), DecodeLimits(channel_policy="strict")).shape == (3, 32, 32)


@pytest.mark.parametrize("case", poison_corpus(), ids=lambda c: c[0])
def test_poison_is_refused_with_its_reason(case: tuple[str, bytes, str]) -> None:
    name, data, reason = case
    with pytest.raises(BadImage) as e:
        decode_image(data, InputSpec(), DecodeLimits(channel_policy="strict", max_bytes=1_000_000))
    assert e.value.reason == reason, f"{name}: {e.value}"


def test_custom_value_range_reaches_the_model_input() -> None:
    # MNIST-style mean/std normalisation is a linear map: 0 -> -0.4242, 255 -> 2.8215.
    spec = InputSpec(value_range=(-0.4242, 2.8215))
    arr = np.array([[0, 255]] * 32, dtype=np.uint8).repeat(16, axis=1)
    x = decode_image(_png(arr), spec)
    assert x.min() == pytest.approx(-0.4242) and x.max() == pytest.approx(2.8215)
    assert InputSpec.from_dict(spec.to_dict()) == spec


def test_pad_policy_centres_a_small_image_unresampled() -> None:
    arr = np.random.default_rng(1).integers(1, 256, (28, 28), dtype=np.uint8)
    spec = InputSpec(resize="pad")
    x = array_to_input(arr, spec)[0]
    inner = np.zeros((32, 32), bool)
    inner[2:30, 2:30] = True
    assert (x[~inner] == -1.0).all()  # the 2-pixel border is pixel 0
    assert np.allclose(x[inner].reshape(28, 28), arr / 255 * 2 - 1, atol=1e-6)  # no interpolation
    # the stretch of the same image interpolates: its pixels are not the array's
    assert not np.allclose(array_to_input(arr, InputSpec())[0, 2:30, 2:30], x[2:30, 2:30], atol=1e-3)
    assert np.array_equal(decode_image(_png(arr), spec)[0], x)  # the worker's bytes path agrees


@pytest.mark.parametrize("policy", ["letterbox", "pad"])
def test_letterbox_and_pad_keep_the_aspect_ratio_of_a_large_frame(policy: str) -> None:
    frame = np.full((40, 80), 200, dtype=np.uint8)  # 2:1, larger than the input: both policies shrink it
    x = array_to_input(frame, InputSpec(resize=policy))[0]  # type: ignore[arg-type]
    rows = (x > 0).any(axis=1)
    assert rows.sum() == 16 and rows[8:24].all()  # 32 wide -> 16 high, centred, the rest pixel 0
    assert (x[:8] == -1).all() and (x[24:] == -1).all()
    stretched = array_to_input(frame, InputSpec())[0]
    assert (stretched > 0).all()  # the stretch fills the square, distorting the frame


def test_letterbox_enlarges_a_small_image_and_pad_does_not() -> None:
    arr = np.full((8, 16), 255, dtype=np.uint8)
    lb = array_to_input(arr, InputSpec(resize="letterbox"))[0]
    pd = array_to_input(arr, InputSpec(resize="pad"))[0]
    assert (lb > 0).sum() == 32 * 16 and (pd > 0).sum() == 8 * 16


def test_unknown_resize_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown resize policy"):
        InputSpec.from_dict({"isize": 32, "channels": 1, "value_range": [-1, 1], "resize": "crop-centre"})
