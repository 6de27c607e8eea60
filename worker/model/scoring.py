"""Anomaly scoring: the paper's latent score, batched, in eval mode, with no autograd."""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch

from worker.model.networks import Generator


class ScoreBatch(NamedTuple):
    """Per-image results for one batch (1-D float32 tensors on the CPU)."""

    score: torch.Tensor  # mean over latent dims of (z - z')^2: the GANomaly anomaly score
    recon_error: torch.Tensor | None = None  # mean |x - G(x)| per image, when asked for


def latent_score(z: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:
    """``mean_k (z_k - z'_k)^2`` per sample; latents are ``B×nz[×1×1]``."""
    return (z.flatten(1).float() - z_hat.flatten(1).float()).pow(2).mean(dim=1)


class Scorer:
    """Runs a generator for scoring only.

    Puts the network in eval mode (BatchNorm uses its running statistics, so a score
    never depends on the other images in the batch), converts it to channels_last
    (faster convolutions on CPUs with oneDNN and on tensor cores), and runs under
    ``torch.inference_mode``. ``amp`` is "bf16", "fp16" or None: autocast for
    compute, with the latent difference always taken in fp32.
    """

    def __init__(self, generator: Generator, device: torch.device | str = "cpu", amp: str | None = None) -> None:
        self.device = torch.device(device)
        if amp not in (None, "bf16", "fp16"):
            msg = f"amp must be None, 'bf16' or 'fp16', got {amp!r}"
            raise ValueError(msg)
        if amp == "fp16" and self.device.type != "cuda":
            msg = "fp16 autocast needs CUDA; use bf16 on the CPU"
            raise ValueError(msg)
        self.amp = amp
        self.generator = generator.to(self.device).eval().to(memory_format=torch.channels_last)
        for p in self.generator.parameters():
            p.requires_grad_(False)

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.amp is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def score(self, images: torch.Tensor, *, with_recon: bool = False) -> ScoreBatch:
        """Score ``B×C×H×W`` images in [-1, 1]; moves them to the device (non-blocking from pinned memory)."""
        with torch.inference_mode():
            x = images.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with self._autocast():
                x_hat, z, z_hat = self.generator(x)
            score = latent_score(z, z_hat).cpu()
            recon = (x.float() - x_hat.float()).abs().flatten(1).mean(dim=1).cpu() if with_recon else None
        return ScoreBatch(score=score, recon_error=recon)
