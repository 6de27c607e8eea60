"""``ganomaly bench model``: scoring and training throughput on this machine.

Prints one JSON line per measurement. ``baseline`` is the original code's scoring
path (train-mode-free, plain fp32, NCHW, ``torch.no_grad``); ``fast`` is ours
(eval, channels_last, inference_mode); ``bf16``/``fp16`` add autocast. Timings are
the median over repeated batches after warm-up. (``bench stream`` lives with the
worker.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.commands.common import DEVICE, resolve_device
from worker.model import GanomalyConfig, Generator, Scorer
from worker.model.scoring import latent_score
from worker.training.fit import TrainConfig, fit


class BenchModelSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_BENCH_", frozen=True)

    shapes: str = Field("32x1,64x3,128x3", description="comma-separated SIZExCHANNELS")
    batch_sizes: str = Field("1,16,64,256")
    variants: str = Field("baseline,fast,bf16", description="baseline, fast, bf16, fp16 (fp16 on CUDA only)")
    seconds: float = Field(2.0, gt=0, description="time budget per measurement (at least 3 timed batches)")
    train_images: int = Field(1280, ge=128, description="images for the training-throughput measurement (0 skips)")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (default: torch's choice)")
    device: str = DEVICE
    log_level: str = "warning"


def _sync(device: torch.device) -> None:
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
    x = torch.rand(n, cfg.nc, cfg.isize, cfg.isize) * 2 - 1
    res = fit(cfg, TrainConfig(epochs=1, batch_size=64), x, x[:64], device=device)
    return res.history[0].images_per_s


def run(s: BenchModelSettings) -> list[dict[str, Any]]:
    device = resolve_device(s.device)
    if s.threads:
        torch.set_num_threads(s.threads)
    rows = []
    env = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        torch.backends.cudnn.benchmark = True
    for shape in s.shapes.split(","):
        size, ch = (int(v) for v in shape.lower().split("x"))
        cfg = GanomalyConfig(isize=size, nc=ch)
        for variant in s.variants.split(","):
            if variant == "fp16" and device.type != "cuda":
                continue
            for b in (int(v) for v in s.batch_sizes.split(",")):
                ips = bench_scoring(cfg, b, variant, device, s.seconds)
                row = {"bench": "score", "shape": f"{size}x{size}x{ch}", "variant": variant, "batch": b, "images_per_s": round(ips, 1), **env}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if s.train_images:
        for shape in s.shapes.split(",")[:1]:
            size, ch = (int(v) for v in shape.lower().split("x"))
            ips = bench_training(GanomalyConfig(isize=size, nc=ch), s.train_images, device)
            row = {"bench": "train", "shape": f"{size}x{size}x{ch}", "batch": 64, "images_per_s": ips, **env}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


BENCH_SUBPARSERS: dict[str, argparse._SubParsersAction] = {}


def register(sub: argparse._SubParsersAction) -> dict[str, type[BaseSettings]]:
    from worker.settings_cli import add_settings_arguments

    p = sub.add_parser("bench", help="benchmarks: model (scoring/training throughput), stream (end to end)")
    bsub = p.add_subparsers(dest="bench_target", required=True)
    BENCH_SUBPARSERS["bench"] = bsub  # `bench stream` registers itself here
    pm = bsub.add_parser("model", help="scoring and training throughput", description=__doc__)
    add_settings_arguments(pm, BenchModelSettings)
    return {"model": BenchModelSettings}
