"""Anomaly scoring: the paper's latent score, batched, in eval mode, with no autograd."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

import torch

from ganomaly.model.anomaly_map import pixel_error_maps
from ganomaly.model.networks import Generator

ScoreKind = Literal["latent", "recon", "hybrid"]
SCORE_KINDS: tuple[str, ...] = ("latent", "recon", "hybrid")


class ScoreBatch(NamedTuple):
    """Per-image results for one batch (1-D float32 tensors on the CPU)."""

    score: torch.Tensor  # the anomaly score of the scorer's kind (the paper's latent score by default)
    recon_error: torch.Tensor | None = None  # mean |x - G(x)| per image, when asked for
    latent: torch.Tensor | None = None  # the paper's latent score, when the kind is not "latent"
    maps: torch.Tensor | None = None  # B×H×W smoothed |x - G(x)| (ganomaly.model.anomaly_map), when asked for


@dataclass(frozen=True)
class ScoreSpec:
    """Which score an artifact ships, and the normal-data statistics it needs.

    - latent: mean_k (z_k - z'_k)^2, the paper's score (default);
    - recon:  mean |x - G(x)|, the contextual (reconstruction) error;
    - hybrid: the sum of both, each standardised by its mean and std on held-out normals.
    """

    kind: str = "latent"
    latent_mean: float = 0.0
    latent_std: float = 1.0
    recon_mean: float = 0.0
    recon_std: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in SCORE_KINDS:
            msg = f"score kind must be one of {SCORE_KINDS}, got {self.kind!r}"
            raise ValueError(msg)

    def combine(self, latent: torch.Tensor, recon: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "latent":
            return latent
        assert recon is not None
        if self.kind == "recon":
            return recon
        return (latent - self.latent_mean) / max(self.latent_std, 1e-12) + (recon - self.recon_mean) / max(self.recon_std, 1e-12)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def latent_score(z: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:
    """``mean_k (z_k - z'_k)^2`` per sample; latents are ``B×nz[×1×1]``."""
    return (z.flatten(1).float() - z_hat.flatten(1).float()).pow(2).mean(dim=1)


def _trace(generator: Generator, device: torch.device) -> Any:
    """The generator as one TorchScript graph, for a process whose other threads need the interpreter lock.

    An eager forward pass takes the interpreter lock back between each of its ~40 operations; in the
    stream worker the decode, sink and poll threads hold it meanwhile, so each operation waits its turn
    (up to the 5 ms switch interval). A traced module runs the whole graph in C++ without the lock:
    measured at the worker's pipeline ceiling (``bench stream --width 4``) 1,686 / 1,802 images/s traced
    against 1,122 / 1,014 eager. The same ATen kernels on the same layout: the scores are bitwise those
    of the eager module (tests/unit/test_scoring.py checks several batch sizes and shapes).
    ``torch.jit.trace`` is deprecated in favour of ``torch.compile``/``torch.export`` (their compiled
    code still calls back into Python per kernel, or needs a compiler toolchain at run time); it is
    kept to this one use, and only its warning is silenced.
    """
    c = generator.config
    example = torch.zeros(2, c.nc, c.isize, c.isize, device=device).contiguous(memory_format=torch.channels_last)
    # a filter for good (catch_warnings is process-wide and not thread-safe: a hot swap traces beside running threads)
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace", category=FutureWarning)
    with torch.inference_mode():
        return torch.jit.trace(generator, example, check_trace=False)


class Scorer:
    """Runs a generator for scoring only.

    Puts the network in eval mode (BatchNorm uses its running statistics, so a score
    never depends on the other images in the batch), converts it to channels_last
    (faster convolutions on CPUs with oneDNN and on tensor cores), and runs under
    ``torch.inference_mode``. ``amp`` is "bf16", "fp16" or None: autocast for
    compute, with the latent difference always taken in fp32.
    """

    def __init__(self, generator: Generator, device: torch.device | str = "cpu", amp: str | None = None, spec: ScoreSpec | None = None,
                 *, traced: bool = False) -> None:
        self.device = torch.device(device)
        self.spec = spec or ScoreSpec()
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
        self.network: Any = self.generator  # what forward passes call: the generator, or its trace
        if traced and amp is None:
            self.network = _trace(self.generator, self.device)

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.amp is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _executor(self) -> contextlib.AbstractContextManager[object]:
        # The traced graph run as it is: TorchScript's optimising executor profiles and re-specialises
        # for each new batch size (a 0.6 s first call, tens of ms on each size a live stream brings),
        # with no gain here (no fusion on the CPU). The setting is per thread.
        return torch.jit.optimized_execution(False) if self.network is not self.generator else contextlib.nullcontext()

    def score(self, images: torch.Tensor, *, with_recon: bool = False, with_maps: bool = False) -> ScoreBatch:
        """Score ``B×C×H×W`` images in the model's input value range; moves them to the device (non-blocking from pinned memory)."""
        with torch.inference_mode():
            x = images.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with self._autocast(), self._executor():
                x_hat, z, z_hat = self.network(x)
            latent = latent_score(z, z_hat).cpu()
            need_recon = with_recon or self.spec.kind != "latent"
            recon = (x.float() - x_hat.float()).abs().flatten(1).mean(dim=1).cpu() if need_recon else None
            score = self.spec.combine(latent, recon)
            maps = pixel_error_maps(x, x_hat).cpu() if with_maps else None
        return ScoreBatch(score=score, recon_error=recon, latent=latent if self.spec.kind != "latent" else None, maps=maps)
