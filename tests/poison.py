"""A corpus of inputs the decoder must refuse, with the reason each must get.

Shared by the decoder's unit tests and the worker's dead-letter integration test.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _png_bomb(side: int = 30_000) -> bytes:
    """A tiny PNG (tens of KB) that claims side x side grey pixels: a decompression bomb."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = zlib.compress(b"\x00" * (side + 1) * 64, 9)  # a few rows; the header is what matters
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def poison_corpus() -> list[tuple[str, bytes, str]]:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    png, jpg = _encode(grey, "PNG"), _encode(rng.integers(0, 256, (64, 64), dtype=np.uint8), "JPEG")
    return [
        ("zero-bytes", b"", "empty"),
        ("truncated-png", png[: len(png) // 2], "truncated"),
        ("truncated-jpeg", jpg[: len(jpg) // 2], "truncated"),
        ("text", b"this is not an image, it is a log line\n" * 3, "undecodable"),
        ("png-header-only", png[:16], "truncated"),
        ("decompression-bomb", _png_bomb(), "bomb"),
        ("absurd-dimensions", _encode(np.zeros((2, 4000), dtype=np.uint8), "PNG"), "dimensions"),
        ("wrong-channels-rgba", _encode(rng.integers(0, 256, (28, 28, 4), dtype=np.uint8), "PNG"), "channels"),
        ("oversized", b"\x89PNG" + b"\x00" * 1_100_000, "too_large"),
    ]
