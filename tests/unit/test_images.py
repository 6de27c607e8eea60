"""The shared decoder: faithful conversion, and every kind of bad input named."""

import io

import numpy as np
import pytest
from PIL import Image

from tests.poison import poison_corpus
from worker.data.images import BadImage, DecodeLimits, InputSpec, array_to_input, decode_image


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
