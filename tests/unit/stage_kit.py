"""What the stage tests share: real records, real small models, real queues and a stage run on its own thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from kafka.consumer.fetcher import ConsumerRecord

from ganomaly.artifact import load_artifact, save_artifact
from ganomaly.data.images import InputSpec
from ganomaly.model import GanomalyConfig, Generator, calibrate
from producers import encode_png
from worker.model_holder import ServingModel, serving_model, warm_up

CPU = torch.device("cpu")
GREY = InputSpec()  # the default: 32x32, one channel


def record(offset: int, value: bytes | None, *, topic: str = "in", partition: int = 0, key: bytes | None = None,
           headers: list[tuple[str, bytes]] | None = None, timestamp: int | None = None) -> ConsumerRecord:
    """A record as kafka-python's consumer hands it over."""
    return ConsumerRecord(topic, partition, -1, offset, int(time.time() * 1000) if timestamp is None else timestamp, 0, key, value,
                          headers or [], None, len(key or b""), len(value or b""), -1)


def grey_png(seed: int = 0, side: int = 28) -> bytes:
    return encode_png(np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8))


def colour_png(seed: int = 0, side: int = 28) -> bytes:
    return encode_png(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))


def artifact_dir(path: Path, spec: InputSpec = GREY, seed: int = 0) -> Path:
    """A small real (untrained) GANomaly artifact for ``spec``."""
    torch.manual_seed(seed)
    save_artifact(path, Generator(GanomalyConfig(isize=spec.isize, nc=spec.channels, nz=8, ngf=8)), spec,
                  calibrate(np.linspace(0, 1, 200), target_fpr=0.05), data={})
    return path


def model(path: Path, spec: InputSpec = GREY, seed: int = 0, threshold: float | None = None) -> ServingModel:
    """A real serving model, warmed up, as the worker makes it."""
    m = serving_model(load_artifact(artifact_dir(path, spec, seed)), CPU, None, threshold)
    warm_up(m)
    return m


def in_thread(run: Callable[[], None]) -> threading.Thread:
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def wait_until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
