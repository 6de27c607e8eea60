"""Anomaly maps onto the operator's picture: back through the resize policy, coloured, as PNG.

A map is made at the model's resolution (``isize`` square). The frame the camera sent was
stretched, letterboxed or padded into that square (``InputSpec.resize``); this module undoes
that geometry, so the heat lies on the pixels that caused it, and renders PNGs for a web page
or a contact sheet. Everything served is bounded in size (``MAX_SIDE``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

from ganomaly.data.images import InputSpec, _fitted_size

MAX_SIDE = 1024  # longest side of any rendered image: a 4K frame is shown at 1024, never served whole
# The colour scale is absolute, so that two images of one model compare at a glance: full colour at
# this share of the value range (|x - G(x)| of 0.5 in [-1, 1]); normal images stay dark.
DEFAULT_VMAX_SHARE = 0.25
_CMAP = colormaps["inferno"]


def default_vmax(spec: InputSpec) -> float:
    lo, hi = spec.value_range
    return DEFAULT_VMAX_SHARE * (hi - lo)


def model_window(w: int, h: int, spec: InputSpec) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of the ``isize`` square that holds a ``w`` x ``h`` frame's pixels."""
    n = spec.isize
    if (w, h) == (n, n):
        return 0, 0, n, n
    fw, fh = _fitted_size(w, h, spec)
    if (fw, fh) == (n, n):
        return 0, 0, n, n
    left, top = (n - fw) // 2, (n - fh) // 2  # as _fit pastes it
    return left, top, left + fw, top + fh


def map_to_frame(m: np.ndarray, w: int, h: int, spec: InputSpec) -> np.ndarray:
    """An ``isize`` x ``isize`` map -> ``h`` x ``w`` float32 on the original frame (padding cropped, then resized back)."""
    if m.shape != (spec.isize, spec.isize):
        msg = f"map of shape {m.shape} does not match the model's {spec.isize}x{spec.isize}"
        raise ValueError(msg)
    crop = Image.fromarray(np.ascontiguousarray(m, dtype=np.float32), mode="F").crop(model_window(w, h, spec))
    return np.asarray(crop.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


def _bounded(im: Image.Image) -> Image.Image:
    if max(im.size) <= MAX_SIDE:
        return im
    s = MAX_SIDE / max(im.size)
    return im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.BILINEAR)


def colour(m: np.ndarray, vmax: float) -> np.ndarray:
    """A map -> ``H×W×3`` uint8 in the inferno colour scale, full colour at ``vmax``."""
    rgba = _CMAP(np.clip(m / max(vmax, 1e-12), 0.0, 1.0))
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def overlay(frame: Image.Image, m: np.ndarray, spec: InputSpec, *, vmax: float | None = None, alpha: float = 0.55) -> Image.Image:
    """The frame with its map laid over it (the map weighted by its own strength: normal areas stay visible)."""
    frame = _bounded(frame.convert("RGB"))
    v = default_vmax(spec) if vmax is None else vmax
    on_frame = map_to_frame(m, frame.width, frame.height, spec)
    heat = colour(on_frame, v).astype(np.float32)
    a = alpha * np.clip(on_frame / max(v, 1e-12), 0.0, 1.0)[..., None]
    base = np.asarray(frame, dtype=np.float32)
    return Image.fromarray(((1 - a) * base + a * heat).round().astype(np.uint8), mode="RGB")


def heatmap(m: np.ndarray, spec: InputSpec, *, vmax: float | None = None, size: tuple[int, int] | None = None) -> Image.Image:
    """The map alone in colour, on the frame's geometry when ``size`` (w, h) is given."""
    if size is not None:
        m = map_to_frame(m, *size, spec)
    return _bounded(Image.fromarray(colour(m, default_vmax(spec) if vmax is None else vmax), mode="RGB"))


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


@dataclass(frozen=True)
class SheetItem:
    frame: Image.Image  # the original image as decoded
    map: np.ndarray  # isize x isize
    caption: str  # e.g. "score 0.412 (thr 0.233) label 1"
    spec: InputSpec | None = None  # the geometry from frame to map, when not the sheet's (a frame that is already the model's input)


def contact_sheet(items: Sequence[SheetItem], spec: InputSpec, *, cell: int = 160, cols: int = 6, vmax: float | None = None) -> Image.Image:
    """Each item as a pair of tiles (frame, frame + map) with its caption: what the model found anomalous, at a glance.

    ``vmax`` (full colour) defaults to the 99th percentile of all the sheet's maps.
    """
    if not items:
        msg = "a contact sheet needs at least one image"
        raise ValueError(msg)
    if vmax is None:
        # one scale for the whole sheet (its hottest 1 %): the pictures compare with each other, and a
        # weak model whose every pixel errs does not paint every tile in full colour
        vmax = float(np.percentile(np.stack([it.map for it in items]), 99)) or None
    cols = max(1, min(cols, len(items)))
    rows = -(-len(items) // cols)
    cap_h = 16
    sheet = Image.new("RGB", (cols * 2 * cell, rows * (cell + cap_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, it in enumerate(items):
        r, c = divmod(i, cols)
        x0, y0 = c * 2 * cell, r * (cell + cap_h)
        frame = it.frame.convert("RGB")
        s = cell / max(frame.size)
        size = (max(1, round(frame.width * s)), max(1, round(frame.height * s)))
        sheet.paste(frame.resize(size, Image.Resampling.NEAREST if s >= 2 else Image.Resampling.BILINEAR), (x0, y0))
        sheet.paste(overlay(frame, it.map, it.spec or spec, vmax=vmax).resize(size, Image.Resampling.NEAREST if s >= 2 else Image.Resampling.BILINEAR),
                    (x0 + cell, y0))
        draw.text((x0 + 2, y0 + cell + 2), it.caption[:48], fill=(0, 0, 0))
    return sheet
