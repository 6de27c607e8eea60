"""Bytes -> validated model input. One code path for folders, the stream worker and replay.

Every rejection raises :class:`BadImage` with a short machine-readable ``reason``
(used as the dead-letter header and metric label) and a human message.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np
from PIL import Image, ImageFile

from ganomaly.data.native_decode import decode_exact

# Truncated files must fail, never be half-decoded into a plausible image.
ImageFile.LOAD_TRUNCATED_IMAGES = False

ChannelPolicy = Literal["convert", "strict"]
# How an image reaches the model's isize x isize (shipped in the artifact's input spec):
# - bilinear-stretch: resized to the square with PIL bilinear, aspect ratio not kept (the original code's)
# - letterbox: the longer side resized to isize, aspect ratio kept, the rest padded with pixel 0
# - pad: as letterbox but never enlarged; a smaller image sits unresampled in the centre of a
#   pixel-0 square (no interpolation blur; Fashion-MNIST's 28x28 gets a 2-pixel border)
ResizePolicy = Literal["bilinear-stretch", "letterbox", "pad"]
RESIZE_POLICIES: tuple[str, ...] = get_args(ResizePolicy)


class BadImage(ValueError):
    """An input that cannot be scored; ``reason`` is one of the REASONS keys."""

    REASONS = ("empty", "too_large", "undecodable", "truncated", "bomb", "dimensions", "channels")

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# Pixel value ranges a model can be trained on (pixel 0 -> low, 255 -> high).
TANH_RANGE: tuple[float, float] = (-1.0, 1.0)  # exactly the decoder's Tanh output range
# MNIST mean/std normalisation ((p/255 - 0.1307) / 0.3081), as the original code fed Fashion-MNIST.
# Bright pixels lie beyond what the Tanh decoder can produce; on the Fashion-MNIST table this
# raised the latent score's AUROC (leave-one-out mean 0.672 -> 0.714, one-class 0.913 -> 0.926)
# and lowered the reconstruction score's (0.641 -> 0.530), so the default depends on the score.
MNIST_STD_RANGE: tuple[float, float] = (-0.4242, 2.8215)


def default_value_range(score_kind: str) -> tuple[float, float]:
    """The input range ``train`` uses unless told: MNIST-style for the latent score, Tanh's for the others."""
    return MNIST_STD_RANGE if score_kind == "latent" else TANH_RANGE


@dataclass(frozen=True)
class InputSpec:
    """What the model expects; stored in the artifact manifest."""

    isize: int = 32
    channels: int = 1
    value_range: tuple[float, float] = TANH_RANGE
    resize: ResizePolicy = "bilinear-stretch"
    # JPEGs at least twice the size the resize needs are decoded at 1/2, 1/4 or 1/8 scale by the
    # JPEG decoder itself (Pillow's draft(): DCT scaling), then resized as usual: a 640x480 camera
    # frame for a 128x128 model decodes 2-3x faster with pixels within ~1/255 of a full decode.
    # Part of the spec so that training and serving decode alike; manifests written before it
    # existed lack it and decode fully, as they always did.
    jpeg_draft: bool = False

    def __post_init__(self) -> None:
        # an artifact from a newer release may name a policy this one lacks: refuse, never guess
        if self.resize not in RESIZE_POLICIES:
            msg = f"unknown resize policy {self.resize!r} (known: {', '.join(RESIZE_POLICIES)})"
            raise ValueError(msg)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["value_range"] = list(self.value_range)
        if not self.jpeg_draft:
            # absent, not false: a spec without draft decoding writes the manifest it always wrote,
            # so its version id stays what it was
            del d["jpeg_draft"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        return cls(isize=int(d["isize"]), channels=int(d["channels"]), value_range=tuple(d["value_range"]), resize=d["resize"],
                   jpeg_draft=bool(d.get("jpeg_draft", False)))


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000  # width*height read from the header before decoding
    min_side: int = 8
    max_aspect: float = 16.0
    channel_policy: ChannelPolicy = "convert"


_BANDS_FOR = {1: "L", 3: "RGB"}


def array_to_input(arr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 ``H×W`` or ``H×W×C`` (C matching the spec) -> float32 ``C×isize×isize`` in the spec's value range (pixel 0 -> low, 255 -> high).

    Resizing goes through PIL here for every source (IDX arrays and encoded bytes
    alike) so that a PNG of a dataset image scores exactly like the array.
    """
    return _image_to_input(Image.fromarray(arr, mode="L" if arr.ndim == 2 else "RGB"), spec)


def _image_to_input(im: Image.Image, spec: InputSpec) -> np.ndarray:
    """An ``L`` or ``RGB`` image -> float32 ``C×isize×isize`` in the spec's value range."""
    return pixels_to_input(_image_to_pixels(im, spec), spec.value_range)


def _image_to_pixels(im: Image.Image, spec: InputSpec) -> np.ndarray:
    """An ``L`` or ``RGB`` image -> uint8 ``C×isize×isize`` (resized by the spec's policy)."""
    out = np.asarray(_fit(im, spec))
    return np.ascontiguousarray(out[None] if out.ndim == 2 else out.transpose(2, 0, 1))


def pixels_to_input(pixels: Any, value_range: tuple[float, float]) -> Any:
    """uint8 pixels (one image or a batch; a numpy array or a torch tensor, on any device) -> float32
    in ``value_range`` (pixel 0 -> low, 255 -> high).

    The same two float32 operations for both kinds, so a batch converted by torch on the worker's
    device equals, bit for bit, what numpy gives for each image (tests/unit/test_images.py checks
    all 256 values): the worker moves uint8 pixels (a quarter of the bytes) and converts per batch.
    """
    lo, hi = value_range
    x = pixels.astype(np.float32) if isinstance(pixels, np.ndarray) else pixels.float()
    return x * ((hi - lo) / 255.0) + lo


def _fit(im: Image.Image, spec: InputSpec) -> Image.Image:
    """``im`` brought to isize x isize by the spec's resize policy."""
    n = spec.isize
    if im.size == (n, n):
        return im
    size = _fitted_size(*im.size, spec)
    if size != im.size:
        im = im.resize(size, Image.Resampling.BILINEAR)
    if im.size == (n, n):  # bilinear-stretch always; letterbox of a square image
        return im
    canvas = Image.new(im.mode, (n, n), 0)
    canvas.paste(im, ((n - im.width) // 2, (n - im.height) // 2))
    return canvas


def _fitted_size(w: int, h: int, spec: InputSpec) -> tuple[int, int]:
    """The size ``_fit`` resizes a ``w`` x ``h`` image to before any padding."""
    n = spec.isize
    if spec.resize == "bilinear-stretch":
        return n, n
    scale = n / max(w, h)
    if spec.resize == "pad":
        scale = min(scale, 1.0)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _draft(im: Image.Image, spec: InputSpec) -> None:
    """Let the JPEG decoder scale down by 1/2, 1/4 or 1/8 to no less than the size the resize needs."""
    if spec.jpeg_draft and im.format == "JPEG":
        im.draft(None, _fitted_size(*im.size, spec))


@dataclass(frozen=True)
class Converted:
    """A decoded image whose channel count was changed to the model's (``convert`` policy): the
    worker counts and logs these, so a colour camera on a grayscale model is visible."""

    x: np.ndarray
    from_channels: int
    to_channels: int


def decode_image(data: bytes, spec: InputSpec, limits: DecodeLimits | None = None) -> np.ndarray:
    """Decode and validate encoded image bytes; returns ``C×isize×isize`` float32."""
    out = decode_image_noting_conversion(data, spec, limits)
    return out.x if isinstance(out, Converted) else out


def decode_image_noting_conversion(data: bytes, spec: InputSpec, limits: DecodeLimits | None = None) -> np.ndarray | Converted:
    """As :func:`decode_image`, but an image whose channels were converted comes back as :class:`Converted`."""
    out = decode_pixels_noting_conversion(data, spec, limits)
    if isinstance(out, Converted):
        return Converted(pixels_to_input(out.x, spec.value_range), out.from_channels, out.to_channels)
    return pixels_to_input(out, spec.value_range)


def decode_pixels(data: bytes, spec: InputSpec, limits: DecodeLimits | None = None) -> np.ndarray:
    """As :func:`decode_image`, as uint8 ``C×isize×isize`` pixels."""
    out = decode_pixels_noting_conversion(data, spec, limits)
    return out.x if isinstance(out, Converted) else out


def decode_pixels_noting_conversion(data: bytes, spec: InputSpec, limits: DecodeLimits | None = None) -> np.ndarray | Converted:
    """As :func:`decode_image_noting_conversion`, but uint8 ``C×isize×isize`` pixels (:func:`pixels_to_input` makes the input)."""
    lim = limits or DecodeLimits()
    if not data:
        raise BadImage("empty", "empty payload")
    if len(data) > lim.max_bytes:
        raise BadImage("too_large", f"payload of {len(data)} bytes exceeds max_bytes={lim.max_bytes}")
    exact = decode_exact(data, spec.isize, spec.channels, lim.max_pixels, lim.min_side)
    if exact is not None:
        return exact
    # The pixel bound is ours (max_pixels, from the header), not Pillow's global MAX_IMAGE_PIXELS:
    # Pillow still refuses more than twice that (DecompressionBombError) before we look. Its warning
    # is not turned into an error here, because warnings.catch_warnings changes process-wide state
    # and is not safe in the worker's concurrent decode threads.
    try:
        im = Image.open(io.BytesIO(data))
        w, h = im.size  # header only: nothing decoded yet
        if w * h > lim.max_pixels:
            raise BadImage("bomb", f"{w}x{h} = {w * h} pixels exceeds max_pixels={lim.max_pixels}")
        if min(w, h) < lim.min_side or max(w, h) / max(min(w, h), 1) > lim.max_aspect:
            raise BadImage("dimensions", f"{w}x{h} outside min_side={lim.min_side}, max_aspect={lim.max_aspect}")
        _draft(im, spec)
        im.load()
    except BadImage:
        raise
    except Image.DecompressionBombError as e:
        raise BadImage("bomb", f"decompression bomb: {e}") from e
    except OSError as e:
        reason = "truncated" if "truncated" in str(e).lower() or "broken data stream" in str(e).lower() else "undecodable"
        raise BadImage(reason, f"{type(e).__name__}: {e}") from e
    except (ValueError, SyntaxError, Image.UnidentifiedImageError, EOFError) as e:
        raise BadImage("undecodable", f"{type(e).__name__}: {e}") from e
    return _to_pixels(im, spec, lim.channel_policy)


def _to_pixels(im: Image.Image, spec: InputSpec, policy: ChannelPolicy) -> np.ndarray | Converted:
    want = _BANDS_FOR[spec.channels]
    if im.mode == "P":  # palette images carry RGB(A) colours
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = Image.fromarray((np.asarray(im, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8), "L")
    if im.mode == "1":
        im = im.convert("L")
    if im.mode != want:
        if policy == "strict":
            raise BadImage("channels", f"image mode {im.mode} ({len(im.getbands())} bands); the model expects {want}")
        return Converted(_image_to_pixels(im.convert(want), spec), len(im.getbands()), spec.channels)
    return _image_to_pixels(im, spec)


# What decoding one payload gives: the model input or its pixels (Converted, from decode_many_pixels,
# when its channels were changed to the model's), or (reason, error class, message) for a dead letter.
DecodeOutcome = np.ndarray | Converted | tuple[str, str, str]


def decode_many(payloads: list[bytes], spec: InputSpec, limits: DecodeLimits) -> list[DecodeOutcome]:
    """Each payload decoded on its own; a payload that cannot be is ``(reason, error class, message)``.

    What one task of a decode process runs: plain values cross the process boundary, and one bad
    image costs only its own entry.
    """
    return _decode_each(payloads, spec, limits, decode_image)


def decode_many_pixels(payloads: list[bytes], spec: InputSpec, limits: DecodeLimits) -> list[DecodeOutcome]:
    """As :func:`decode_many`, as uint8 pixels, with images whose channels were converted as :class:`Converted`
    (the worker's: it counts conversions, and converts pixels to the model's range a batch at a time)."""
    return _decode_each(payloads, spec, limits, decode_pixels_noting_conversion)


def _decode_each(payloads: list[bytes], spec: InputSpec, limits: DecodeLimits,
                 decode: Callable[[bytes, InputSpec, DecodeLimits], np.ndarray | Converted]) -> list[DecodeOutcome]:
    out: list[DecodeOutcome] = []
    for data in payloads:
        try:
            out.append(decode(data, spec, limits))
        except BadImage as e:
            out.append((e.reason, type(e).__name__, str(e)))
        except Exception as e:  # noqa: BLE001 - any decoder error is this payload's problem, not the chunk's
            out.append(("decode_error", type(e).__name__, str(e)))
    return out
