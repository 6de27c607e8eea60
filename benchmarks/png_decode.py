"""PNG decode: today's Pillow path against torchvision.io.decode_image with every check kept.

The torchvision variant keeps what ``decode_image`` checks before decoding (Pillow reads the
header: byte and pixel limits, sides, aspect, the mode for channel handling) and hands only the
pixel decode to libpng through torchvision; the resize stays Pillow's, so the arrays must be
identical (checked here on every image before timing). Prints microseconds per image and the
ratio, one line per case:

    python benchmarks/png_decode.py [--images 1000] [--repeats 5]

Measured 2026-12-01 with this script (2 shared cores; three runs): 28x28 L -> 32x32 (the
Fashion-MNIST stream): Pillow 39.8-40.8 us, torchvision 46.6-48.5 us (ratio 1.16-1.19, slower);
476x476 RGB -> 128x128: 2.06-2.11 ms vs 1.94-2.06 ms (ratio 0.94-0.98). The Pillow header
parse the checks need stays either way, and libpng is no faster than Pillow's decoder on small
images, so the decoder stays Pillow's; torchvision 0.29 also deprecates its image decoders and
encoders (superseded by TorchCodec). torchvision's use is evaluate's examples grid instead.
"""

from __future__ import annotations

import argparse
import gzip
import io
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganomaly.data.images import InputSpec, _image_to_input, decode_image

FMNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def torchvision_decode(data: bytes, spec: InputSpec) -> np.ndarray:
    """As decode_image for 8-bit L/RGB PNGs (the cases timed here), the pixels decoded by torchvision."""
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_image as tv_decode

    im = Image.open(io.BytesIO(data))
    _ = im.size, im.mode  # the header checks read these; decoding is what differs
    arr = tv_decode(torch.frombuffer(data, dtype=torch.uint8), mode=ImageReadMode.UNCHANGED).numpy()
    return _image_to_input(Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)), spec)


def _time(fn: Callable[[bytes, InputSpec], np.ndarray], payloads: list[bytes], spec: InputSpec, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in payloads:
            fn(p, spec)
        best = min(best, (time.perf_counter() - t0) / len(payloads))
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 warns that its decoders are deprecated
    warnings.filterwarnings("ignore", "The given buffer is not writable")  # decoding only reads the payload
    with gzip.open(FMNIST) as f:
        images = np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 28, 28)[: a.images]
    big = [np.repeat(np.kron(x, np.ones((17, 17), np.uint8))[..., None], 3, axis=2) for x in images[: max(1, a.images // 25)]]
    cases = [("28x28 L -> 32x32 L (Fashion-MNIST)", [_png(x) for x in images], InputSpec(32, 1)),
             ("476x476 RGB -> 128x128 RGB", [_png(x) for x in big], InputSpec(128, 3, resize="letterbox"))]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, payloads, spec in cases:
        for p in payloads:
            if not np.array_equal(decode_image(p, spec), torchvision_decode(p, spec)):
                raise SystemExit(f"{name}: the arrays differ")
        pil, tv = _time(decode_image, payloads, spec, a.repeats), _time(torchvision_decode, payloads, spec, a.repeats)
        print(f"{name}: {len(payloads)} images, identical arrays; Pillow {pil:.1f} us, torchvision {tv:.1f} us, "
              f"torchvision/Pillow time ratio {tv / pil:.2f}")


if __name__ == "__main__":
    main()
