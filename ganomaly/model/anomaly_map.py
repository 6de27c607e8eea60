"""Where an image departs from normal: GANomaly's per-pixel reconstruction error.

The generator reconstructs every image it scores; ``|x - G(x)|`` averaged over channels
and smoothed is the map (the paper's contextual loss, kept per pixel). The map is in the
model's input value units at the model's resolution: bringing it onto the original frame
is the data layer's job (``ganomaly.data.overlay``), since only the input spec knows how the
frame was resized.
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as tvf

# Smoothing: the error of a DCGAN reconstruction is speckled at single pixels; a blur of
# about 1/16 of the side keeps defects of a few pixels visible while removing the speckle.
DEFAULT_SIGMA_FRACTION = 1 / 16


def pixel_error_maps(x: torch.Tensor, x_hat: torch.Tensor, *, sigma: float | None = None) -> torch.Tensor:
    """``B×C×H×W`` inputs and reconstructions -> ``B×H×W`` float32 maps, smoothed by a Gaussian of ``sigma`` pixels.

    ``sigma`` defaults to ``H * DEFAULT_SIGMA_FRACTION``; 0 leaves the map unsmoothed.
    """
    if x.shape != x_hat.shape or x.dim() != 4:
        msg = f"expected two B×C×H×W tensors of one shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}"
        raise ValueError(msg)
    err = (x.float() - x_hat.float()).abs().mean(dim=1, keepdim=True)
    s = x.shape[-2] * DEFAULT_SIGMA_FRACTION if sigma is None else sigma
    if s > 0:
        k = 2 * int(3 * s) + 1  # +-3 sigma holds 99.7 % of the kernel's mass
        k = min(k, 2 * (min(x.shape[-2:]) // 2) - 1) if min(x.shape[-2:]) > 2 else 1
        if k > 1:
            err = tvf.gaussian_blur(err, kernel_size=[k, k], sigma=[s, s])
    return err[:, 0]
