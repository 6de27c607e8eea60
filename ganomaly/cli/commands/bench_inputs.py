"""What the stream benchmarks feed a worker: Fashion-MNIST PNGs or synthetic camera frames, and an untrained model of a shape
(speed does not depend on the weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def png_images(n: int, size: int, ch: int, data_dir: Path) -> list[bytes]:
    from PIL import Image

    from ganomaly.data.idx import load_split
    from producers import encode_png

    base, _ = load_split(data_dir, "t10k")
    out = []
    for i in range(n):
        a = base[i % len(base)]
        if a.shape != (size, size):
            a = np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BILINEAR))
        if ch == 3:
            a = np.stack([a, np.roll(a, 1, 0), np.roll(a, 1, 1)], axis=-1)
        out.append(encode_png(a))
    return out


def camera_frames(n: int) -> list[bytes]:
    from ganomaly.data.synthetic import camera_frame

    distinct = [camera_frame(i) for i in range(min(n, 200))]  # enough to defeat caches; generating thousands is slow
    return [distinct[i % len(distinct)] for i in range(n)]


def untrained_artifact(size: int, ch: int, root: Path, width: int = 64, *, camera: bool = False, jpeg_draft: bool = False) -> Path:
    import torch

    from ganomaly.artifact import save_artifact
    from ganomaly.data.images import InputSpec
    from ganomaly.model import GanomalyConfig, Generator, calibrate

    torch.manual_seed(0)  # the same weights for the draft and the full-decode variant
    g = Generator(GanomalyConfig(isize=size, nc=ch, ngf=width))
    out = root / f"untrained-{size}x{ch}-w{width}{'-camera' if camera else ''}{'-draft' if jpeg_draft else ''}"
    spec = InputSpec(isize=size, channels=ch, resize="letterbox", jpeg_draft=jpeg_draft) if camera else InputSpec(isize=size, channels=ch)
    save_artifact(out, g, spec, calibrate(np.linspace(0, 1, 100)), training={"note": "untrained, for benchmarks"})
    return out
