"""Synthetic anomalies made from held-out *normal* images, for model selection without test labels.

The validation split holds normals only, so a validation loss says how well the model
fits normal data, not how well it separates anything. A pseudo-anomaly set gives the
selection step a separation signal that still never sees a real anomaly or the test
set: each transform below breaks a normal image's shape in a way no normal image has.

Every transform is pure tensor math on a batch already in the model's input range
(N, C, H, W); ``low`` is the range's lower end, i.e. the value of a black background
pixel, used to fill where a transform moves content away.

Measured (benchmarks/score_study.py, development classes 2 and 4, 12,000 images x 5
epochs): the latent score's AUROC on these pseudo-anomalies rises with training while
the test AUROC swings; per-epoch Spearman correlations range from -0.6 to +0.1. So no
training command selects by them; the module serves the study, and anyone trying a new
selection rule can measure it the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

Transform = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]


def vflip(x: torch.Tensor, low: float, rng: torch.Generator) -> torch.Tensor:
    """Upside down."""
    return torch.flip(x, dims=[-2])


def rot90(x: torch.Tensor, low: float, rng: torch.Generator) -> torch.Tensor:
    """A quarter turn (square inputs, so the shape is kept)."""
    return torch.rot90(x, 1, dims=[-2, -1])


def halfswap(x: torch.Tensor, low: float, rng: torch.Generator) -> torch.Tensor:
    """The top half of one image over the bottom half of another: chimeric shapes."""
    h = x.shape[-2] // 2
    other = x[torch.randperm(len(x), generator=rng)]
    out = x.clone()
    out[..., h:, :] = other[..., h:, :]
    return out


def blend(x: torch.Tensor, low: float, rng: torch.Generator) -> torch.Tensor:
    """The average of two images: a double exposure."""
    return 0.5 * (x + x[torch.randperm(len(x), generator=rng)])


def _squares(x: torch.Tensor, rng: torch.Generator, corners: int) -> Iterator[tuple[int, int, list[tuple[int, int]]]]:
    """Per image: (index, side, ``corners`` top-left corners where a square of that side fits).

    The side is a quarter to a half of the image's height.
    """
    n, _, hh, ww = x.shape
    side = torch.randint(hh // 4, hh // 2 + 1, (n,), generator=rng)
    for i in range(n):
        s = int(side[i])
        v = [int(c) for c in torch.randint(0, hh - s + 1, (2 * corners,), generator=rng)]
        yield i, s, [(v[2 * k], min(v[2 * k + 1], ww - s)) for k in range(corners)]


def cutpaste(x: torch.Tensor, low: float, rng: torch.Generator) -> torch.Tensor:
    """A patch copied to another place in the same image (CutPaste, Li et al. 2021)."""
    out = x.clone()
    for i, s, ((sy, sx), (dy, dx)) in _squares(x, rng, 2):
        out[i, :, dy : dy + s, dx : dx + s] = x[i, :, sy : sy + s, sx : sx + s]
    return out


def erase(x: torch.Tensor, low: float, rng: torch.Generator) -> torch.Tensor:
    """A patch set to background: a missing part."""
    out = x.clone()
    for i, s, ((y, xx),) in _squares(x, rng, 1):
        out[i, :, y : y + s, xx : xx + s] = low
    return out


TRANSFORMS: dict[str, Transform] = {
    "vflip": vflip,
    "rot90": rot90,
    "halfswap": halfswap,
    "blend": blend,
    "cutpaste": cutpaste,
    "erase": erase,
}


def make_pseudo_anomalies(x: torch.Tensor, low: float, names: list[str] | tuple[str, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    """One transformed copy of ``x`` per named transform, reproducibly for a given seed."""
    unknown = sorted(set(names) - TRANSFORMS.keys())
    if unknown:
        msg = f"unknown pseudo-anomaly transforms {unknown}; known: {sorted(TRANSFORMS)}"
        raise ValueError(msg)
    rng = torch.Generator().manual_seed(seed)
    return {name: TRANSFORMS[name](x, low, rng) for name in names}
