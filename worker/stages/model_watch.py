"""Models from the registry: the one to start with, and the watch that swaps in new versions while serving.

With ``--model-store``, the registry pointer in Redis names the current version and the store
holds its artifact. The watch polls the pointer; a new version is loaded, validated and warmed
up off the hot path and swapped in between batches. A version that fails is refused (once) and
the old model keeps serving.
"""

from __future__ import annotations

import threading
from pathlib import Path

import redis
import structlog
import torch

from ganomaly.artifact import load_artifact
from ganomaly.errors import ArtifactError
from ganomaly.registry import ModelStore, RedisPointer
from worker.metrics import Health, WorkerMetrics
from worker.model_holder import ModelHolder, ServingModel, serving_model, warm_up

log = structlog.get_logger("worker")


def load_serving(path: Path, device: torch.device, amp: str | None, threshold_override: float | None) -> ServingModel:
    """A model ready to serve: loaded (hash-checked), on its device, warmed up."""
    model = serving_model(load_artifact(path, device), device, amp, threshold_override)
    warm_up(model)
    return model


class ModelWatch:
    def __init__(self, pointer: RedisPointer | None, store: ModelStore | None, *, models: ModelHolder, device: torch.device,
                 amp: str | None, threshold_override: float | None, poll_s: float, metrics: WorkerMetrics, health: Health,
                 stop: threading.Event) -> None:
        self.pointer = pointer  # None without a model store: nothing to watch
        self.store = store
        self.models = models
        self.device, self.amp, self.threshold_override = device, amp, threshold_override
        self.poll_s = poll_s
        self.metrics = metrics
        self.health = health
        self.stop = stop
        self.refused_version: str | None = None

    def run(self) -> None:
        """Poll the registry pointer; load, validate and warm up a new version off the hot path, then swap."""
        if self.pointer is None or self.store is None:
            return
        while not self.stop.wait(self.poll_s):
            self.health.beat("models")
            try:
                ptr = self.pointer.get()
            except redis.RedisError as e:
                log.warning("registry_unreachable", error=str(e))
                continue
            if ptr is not None:
                self.consider(ptr.version)

    def consider(self, version: str) -> None:
        """Swap to ``version`` unless it serves already or was refused; refuse it if it does not load and warm up."""
        current = self.models.current().version
        if version in (current, self.refused_version):
            return
        assert self.store is not None
        try:
            model = load_serving(self.store.path_of(version), self.device, self.amp, self.threshold_override)
        except (ArtifactError, ValueError, RuntimeError, OSError) as e:
            self.refused_version = version
            self.metrics.model_refused.inc()
            log.error("model_refused", version=version, error=str(e), serving=current)
            return
        old = self.models.swap(model)
        self.metrics.set_model(model.version, model.threshold, model.expected_anomaly_rate)
        self.metrics.model_swaps.inc()
        log.info("model_swapped", old=old.version, new=model.version, threshold=model.threshold)
