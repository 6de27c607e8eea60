"""The common case decoded without Pillow: a PNG or JPEG already at the model's size and channels.

Cameras and inspection lines usually send crops at the model's resolution. For those, Pillow's
per-image Python (opening, plugin parsing, mode handling) costs more than the decoding itself, and
it holds the interpreter lock that the worker's other stages need. torchvision's decoders (the same
libpng and libjpeg-turbo that Pillow links) decode such an image in one call with pixels identical
to Pillow's (tests/unit/test_native_decode.py compares them byte for byte), so this is a faster route
to the same input, not another decoder.

Only an image whose header says it needs nothing else takes this route: 8-bit grey or RGB PNG, grey
or 3-component JPEG, exactly ``isize`` square, within the limits. Everything else (resizing, channel
conversion, palettes, 16-bit, other formats, anything that fails here) goes through Pillow as
before, so every rejection keeps its reason.
"""

from __future__ import annotations

import struct
import warnings
from typing import Any

import numpy as np

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3}  # colour type -> channels, for the types decoded as they are (grey, RGB)
# Start-of-frame markers carry the frame size; C4 (Huffman tables), C8 (reserved) and CC (arithmetic
# conditioning) share the range but are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_decoders: Any = None  # torchvision.io, imported on first use (the decode processes start without torch)


def header(data: bytes) -> tuple[str, int, int, int] | None:
    """(format, width, height, channels) of a PNG or JPEG that could be decoded as it is, else None."""
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 33 and data[12:16] == b"IHDR":
        w, h, depth, colour = struct.unpack(">IIBB", data[16:26])
        channels = _PNG_CHANNELS.get(colour)
        return ("png", w, h, channels) if depth == 8 and channels else None
    if data.startswith(b"\xff\xd8"):
        return _jpeg_header(data)
    return None


def _jpeg_header(data: bytes) -> tuple[str, int, int, int] | None:
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            channels = data[i + 9]
            return ("jpeg", w, h, channels) if channels in (1, 3) else None
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def decode_exact(data: bytes, isize: int, channels: int, max_pixels: int, min_side: int) -> np.ndarray | None:
    """``channels x isize x isize`` uint8 pixels, or None when this image must go through Pillow."""
    head = header(data)
    if head is None:
        return None
    fmt, w, h, c = head
    if (w, h, c) != (isize, isize, channels) or w * h > max_pixels or isize < min_side:
        return None
    global _decoders  # one import per process, on first use
    if _decoders is None:
        import torch
        import torchvision.io

        # Filters set once here (warnings.catch_warnings per call is process-wide and not thread-safe):
        # torch warns that the bytes are read-only (the decoders only read them), and torchvision 0.29
        # that its decoders will move to TorchCodec (not in this project's pinned set; they still ship here).
        warnings.filterwarnings("ignore", message="The given buffer is not writable", category=UserWarning)
        warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision", category=DeprecationWarning)
        _decoders = (torch, torchvision.io)
    torch, io = _decoders
    try:
        raw = torch.frombuffer(data, dtype=torch.uint8)  # no copy: the decoders only read it
        out = io.decode_png(raw) if fmt == "png" else io.decode_jpeg(raw)
    except RuntimeError:
        return None  # corrupt or truncated: Pillow decodes it again and names the reason
    if out.dtype != torch.uint8 or tuple(out.shape) != (channels, isize, isize):
        return None  # e.g. a transparency chunk the decoder expanded to alpha
    return out.numpy()
