"""Per-frame decode cost of 640x480 JPEG camera frames into a 3x128x128 letterbox model input, three ways.

- Pillow, full decode, then letterbox (what an artifact without jpeg_draft does);
- Pillow with draft(): the JPEG decoder's DCT scaling to the smallest 1/2, 1/4, 1/8 size still at
  least the letterbox's 128x96 (160x120 here), then letterbox (an artifact with jpeg_draft);
- torchvision.io.decode_jpeg (libjpeg-turbo, full size) and an antialiased resize in torch;
- with a CUDA device named: nvJPEG, the frames decoded in batches of 64 on the GPU
  (``decode_jpeg(list, device="cuda")``), resized there the same way.

Prints ms per frame (one thread, after a warm-up) and the mean and largest absolute pixel difference
from the full decode, in 1/255 units. The worker decodes with Pillow (the decode the model was
calibrated on) whenever a frame must be resized, as these must; the other rows say what another
decoder would save and how far its pixels are.
Usage: PYTHONPATH=. python scripts/jpeg_decode_compare.py [FRAMES] [DEVICE]
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torchvision
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as tvf

from ganomaly.data.images import InputSpec, decode_image
from ganomaly.data.synthetic import camera_frame

FULL = InputSpec(isize=128, channels=3, resize="letterbox")
DRAFT = InputSpec(isize=128, channels=3, resize="letterbox", jpeg_draft=True)


def _torchvision(data: bytes) -> np.ndarray:
    return _letterbox(decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)).numpy()


def _letterbox(img: torch.Tensor) -> torch.Tensor:
    """3x480x640 uint8 (any device) -> the model input of FULL: 128x96 antialiased, padded to 128x128, in (-1, 1)."""
    img = tvf.resize(img, [96, 128], antialias=True)
    canvas = torch.zeros(3, 128, 128, dtype=torch.uint8, device=img.device)
    canvas[:, 16:112] = img
    return canvas.float() * (2 / 255) - 1


def _nvjpeg(frames: list[bytes], device: str) -> tuple[float, list[np.ndarray]]:
    """ms per frame decoding and letterboxing on the GPU in batches of 64 (after a warm-up batch)."""
    data = [torch.frombuffer(bytearray(f), dtype=torch.uint8) for f in frames]

    def run() -> list[torch.Tensor]:
        out = []
        for i in range(0, len(data), 64):
            out += [_letterbox(img) for img in decode_jpeg(data[i : i + 64], mode=ImageReadMode.RGB, device=device)]
        torch.cuda.synchronize()
        return out

    run()
    t = time.perf_counter()
    out = run()
    return (time.perf_counter() - t) / len(frames) * 1000, [x.cpu().numpy() for x in out]


def _time(frames: list[bytes], fn: Callable[[bytes], np.ndarray]) -> tuple[float, list[np.ndarray]]:
    for f in frames[:10]:
        fn(f)
    t = time.perf_counter()
    out = [fn(f) for f in frames]
    return (time.perf_counter() - t) / len(frames) * 1000, out


def _diff(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
    d = [np.abs(x - y) * 255 / 2 for x, y in zip(a, b, strict=True)]  # (-1, 1) back to pixel levels
    return float(np.mean([x.mean() for x in d])), float(max(x.max() for x in d))


def main(n: int, device: str = "cpu") -> None:
    torch.set_num_threads(1)
    frames = [camera_frame(i, anomaly=i % 10 == 0) for i in range(n)]
    ms_full, full = _time(frames, lambda f: decode_image(f, FULL))
    ms_draft, draft = _time(frames, lambda f: decode_image(f, DRAFT))
    ms_tv, tv = _time(frames, _torchvision)
    print(f"{n} frames of 640x480, JPEG q85, {statistics.mean(map(len, frames)) / 1024:.0f} KiB each; torchvision {torchvision.__version__}")
    print(f"pillow full decode + letterbox   {ms_full:6.2f} ms/frame")
    print(f"pillow draft decode + letterbox  {ms_draft:6.2f} ms/frame  {ms_full / ms_draft:.2f}x faster; "
          "|diff| from full: mean {:.2f}/255, max {:.0f}/255".format(*_diff(full, draft)))
    print(f"torchvision decode_jpeg + resize {ms_tv:6.2f} ms/frame  {ms_full / ms_tv:.2f}x faster; "
          "|diff| from full: mean {:.2f}/255, max {:.0f}/255".format(*_diff(full, tv)))
    if device.startswith("cuda") and torch.cuda.is_available():
        ms_gpu, gpu = _nvjpeg(frames, device)
        print(f"nvJPEG on {torch.cuda.get_device_name(0)}, batches of 64 + resize {ms_gpu:6.3f} ms/frame  {ms_full / ms_gpu:.1f}x faster; "
              "|diff| from full: mean {:.2f}/255, max {:.0f}/255".format(*_diff(full, gpu)))


if __name__ == "__main__":
    frames, dev = (sys.argv[1:] + ["200", "cpu"][len(sys.argv) - 1 :])[:2]
    if not frames.isdigit() or int(frames) < 20 or not re.fullmatch(r"cpu|cuda(:\d+)?", dev):
        print(f"error: usage: jpeg_decode_compare.py [FRAMES >= 20] [cpu|cuda[:N]] (got {' '.join(sys.argv[1:])})", file=sys.stderr)
        sys.exit(2)
    if dev != "cpu" and not torch.cuda.is_available():
        print(f"error: {dev} asked, but this machine has no CUDA device: no nvJPEG row to measure", file=sys.stderr)
        sys.exit(2)
    main(int(frames), dev)
