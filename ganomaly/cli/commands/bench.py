"""``ganomaly bench model``: scoring and training throughput on this machine.

Prints one JSON line per measurement. ``baseline`` is the original code's scoring
path (train-mode-free, plain fp32, NCHW, ``torch.no_grad``); ``fast`` is ours
(eval, channels_last, inference_mode); ``bf16``/``fp16`` add autocast. Timings are
the median over repeated batches after warm-up. (``bench stream`` lives with the
worker.)
"""

from __future__ import annotations

import json
import re
import statistics
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PositiveInt, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ganomaly.cli.commands.common import DEVICE
from ganomaly.device import resolve_device
from ganomaly.settings import CommaList, LogLevel

if TYPE_CHECKING:
    import torch

    from ganomaly.model import GanomalyConfig

Variant = Literal["baseline", "fast", "bf16", "fp16"]


class BenchModelSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_BENCH_", frozen=True)

    shapes: CommaList[str] = Field(["32x1", "64x3", "128x3"], min_length=1, description="SIZExCHANNELS each")
    batch_sizes: CommaList[PositiveInt] = Field([1, 16, 64, 256], min_length=1)
    variants: CommaList[Variant] = Field(["baseline", "fast", "bf16"], min_length=1, description="fp16 runs on CUDA only")
    seconds: float = Field(2.0, gt=0, description="time budget per measurement (at least 3 timed batches)")
    train_images: int = Field(1280, ge=0, description="images for the training-throughput measurement (0 skips; else at least 64)")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (default: torch's choice)")
    device: str = DEVICE
    log_level: LogLevel = "warning"

    @field_validator("shapes")
    @classmethod
    def _shapes_ok(cls, v: list[str]) -> list[str]:
        for shape in v:
            check_shape(shape)
        return v

    @field_validator("train_images")
    @classmethod
    def _one_batch(cls, v: int) -> int:
        if 0 < v < 64:
            msg = "0 skips the training measurement; otherwise give at least one batch (64)"
            raise ValueError(msg)
        return v


def _shape(text: str) -> tuple[int, int]:
    size, ch = text.lower().split("x")
    return int(size), int(ch)


def check_shape(text: str) -> str:
    """SIZExCHANNELS with a side the networks take (a multiple of 16) and 1 or 3 channels."""
    m = re.fullmatch(r"(\d+)x([13])", text.strip().lower())
    if m is None or int(m[1]) < 16 or int(m[1]) % 16:
        msg = f"shape {text!r}: use SIZExCHANNELS with a side that is a multiple of 16 and 1 or 3 channels, e.g. 32x1 or 64x3"
        raise ValueError(msg)
    return text


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batches(fn: Any, device: torch.device, budget_s: float) -> float:
    """Median seconds per call after two warm-up calls."""
    fn()
    fn()
    _sync(device)
    times: list[float] = []
    t_end = time.monotonic() + budget_s
    while len(times) < 3 or time.monotonic() < t_end:
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if len(times) >= 200:
            break
    return statistics.median(times)


def bench_scoring(cfg: GanomalyConfig, batch: int, variant: str, device: torch.device, budget_s: float) -> float:
    import torch

    from ganomaly.model import Generator, Scorer
    from ganomaly.model.scoring import latent_score

    g = Generator(cfg)
    x = torch.rand(batch, cfg.nc, cfg.isize, cfg.isize) * 2 - 1
    if variant == "baseline":
        g = g.to(device).eval()
        xd = x.to(device)

        def fn() -> None:
            with torch.no_grad():
                _, z, zh = g(xd)
                latent_score(z, zh).cpu()
    else:
        scorer = Scorer(g, device, {"fast": None, "bf16": "bf16", "fp16": "fp16"}[variant])
        xs = x.pin_memory() if device.type == "cuda" else x

        def fn() -> None:
            scorer.score(xs)
    return batch / time_batches(fn, device, budget_s)


def bench_training(cfg: GanomalyConfig, n: int, device: torch.device) -> float:
    import torch

    from ganomaly.training.fit import TrainConfig, fit

    x = torch.rand(n, cfg.nc, cfg.isize, cfg.isize) * 2 - 1
    res = fit(cfg, TrainConfig(epochs=1, batch_size=64), x, x[:64], device=device)
    return res.history[0].images_per_s


def run(s: BenchModelSettings) -> list[dict[str, Any]]:
    import torch

    from ganomaly.model import GanomalyConfig

    device = resolve_device(s.device)
    if s.threads:
        torch.set_num_threads(s.threads)
    rows = []
    env = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        torch.backends.cudnn.benchmark = True
    for shape in s.shapes:
        size, ch = _shape(shape)
        cfg = GanomalyConfig(isize=size, nc=ch)
        for variant in s.variants:
            if variant == "fp16" and device.type != "cuda":
                continue
            for b in s.batch_sizes:
                ips = bench_scoring(cfg, b, variant, device, s.seconds)
                row = {"bench": "score", "shape": f"{size}x{size}x{ch}", "variant": variant, "batch": b, "images_per_s": round(ips, 1), **env}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if s.train_images:
        for shape in s.shapes[:1]:
            size, ch = _shape(shape)
            ips = bench_training(GanomalyConfig(isize=size, nc=ch), s.train_images, device)
            row = {"bench": "train", "shape": f"{size}x{size}x{ch}", "batch": 64, "images_per_s": ips, **env}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows

