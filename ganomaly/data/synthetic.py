"""Synthetic camera frames: colour JPEGs of a textured, unevenly lit scene with a part in it, for
benchmarks and tests of camera-sized input (no downloads, reproducible from a seed)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FRAME = (640, 480)


def camera_frame(seed: int, *, anomaly: bool = False, size: tuple[int, int] = FRAME, quality: int = 85) -> bytes:
    """A conveyor-like scene: a smooth lit background with texture, a grey part near the centre, sensor noise.

    ``anomaly``: the part carries a large bright red blob (what a defect looks like to the model).
    """
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 90 + 50 * (xx / w) + 20 * np.sin(yy / 37.0 + seed % 7)  # uneven lighting
    texture = Image.fromarray(rng.integers(0, 256, (max(1, h // 8), max(1, w // 8)), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    base = light + 0.25 * (np.asarray(texture, dtype=np.float32) - 128)
    rgb = np.stack([base * 0.95, base, base * 1.08], axis=-1)
    im = Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    cx, cy = w // 2 + int(rng.integers(-w // 10, w // 10)), h // 2 + int(rng.integers(-h // 10, h // 10))
    rw, rh = w // 5 + int(rng.integers(-10, 10)), h // 5 + int(rng.integers(-10, 10))
    d.rounded_rectangle((cx - rw, cy - rh, cx + rw, cy + rh), radius=max(4, rw // 6), fill=(150, 155, 160), outline=(60, 60, 64), width=4)
    if anomaly:
        ax, ay = cx + int(rng.integers(-rw // 2, rw // 2)), cy + int(rng.integers(-rh // 2, rh // 2))
        d.ellipse((ax - rw // 3, ay - rh // 4, ax + rw // 3, ay + rh // 4), fill=(220, 40, 30))
    im = im.filter(ImageFilter.GaussianBlur(0.8))
    arr = np.asarray(im, dtype=np.int16) + rng.normal(0, 4, (h, w, 3)).astype(np.int16)  # sensor noise
    buf = io.BytesIO()
    Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
