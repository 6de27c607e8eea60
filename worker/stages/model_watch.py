"""Models from the registry: the one to start with, and the watch that swaps in new versions while serving.

With ``--model-store``, the registry pointer in Redis names the current version and the store
holds its artifact. The watch polls the pointer; a new version is loaded, validated and warmed
up off the hot path and swapped in between batches. A version that fails is refused (once) and
the old model keeps serving.

Each poll also reads the operator's threshold for the version served (``ganomaly.thresholds``):
a change swaps in the same model with the new threshold, no reload; a new version starts at its
own operator threshold, or its calibrated one. A ``--threshold`` flag wins over both.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import redis
import structlog
import torch

from ganomaly.artifact import load_artifact
from ganomaly.errors import ArtifactError
from ganomaly.registry import ModelStore, RedisPointer
from ganomaly.thresholds import OperatorThresholds, ThresholdChange, effective_threshold, servable
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
                 stop: threading.Event, thresholds: OperatorThresholds | None = None) -> None:
        self.pointer = pointer  # None without a model store: nothing to watch
        self.thresholds = thresholds  # None: the served thresholds are the artifacts' (or the flag)
        self.store = store
        self.models = models
        self.device, self.amp, self.threshold_override = device, amp, threshold_override
        self.poll_s = poll_s
        self.metrics = metrics
        self.health = health
        self.stop = stop
        self.refused_version: str | None = None
        self._logged: set[tuple[str, int]] = set()  # operator changes already logged as ignored or refused: once each

    def run(self) -> None:
        """Poll the registry pointer; load, validate and warm up a new version off the hot path, then swap."""
        if self.pointer is None or self.store is None:
            return
        self.check()  # at once: the version served from start-up gets its operator threshold without waiting a poll
        while not self.stop.wait(self.poll_s):
            self.check()

    def check(self) -> None:
        """One poll: the pointer, then the operator's threshold for the version now served."""
        assert self.pointer is not None
        self.health.beat("models")
        try:
            ptr = self.pointer.get()
        except redis.RedisError as e:
            log.warning("registry_unreachable", error=str(e))
            return
        if ptr is not None:
            self.consider(ptr.version)
        self.follow_threshold()

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
        model, source = self._thresholded(model, self._operator(version))  # its first batch already uses it
        old = self.models.swap(model)
        self.metrics.set_model(model.version, model.threshold, model.expected_anomaly_rate)
        self.metrics.model_swaps.inc()
        log.info("model_swapped", old=old.version, new=model.version, threshold=model.threshold, threshold_source=source)

    def follow_threshold(self) -> None:
        """Serve the effective threshold of the current version: same artifact and scorer, no reload."""
        if self.thresholds is None:
            return
        model = self.models.current()
        try:
            change = self.thresholds.latest(model.version)
        except redis.RedisError as e:
            log.warning("operator_threshold_unreadable", version=model.version, error=str(e))
            return  # keep serving what serves
        new, source = self._thresholded(model, change)
        if new.threshold == model.threshold:
            return
        self.models.swap(new)  # only this thread swaps, so nothing came in between current() and here
        self.metrics.set_model(new.version, new.threshold, new.expected_anomaly_rate)
        log.info("threshold_changed", version=new.version, old=model.threshold, new=new.threshold, source=source,
                 by=change.by if change is not None else None, note=change.note if change is not None else None)

    def _operator(self, version: str) -> ThresholdChange | None:
        """The latest operator change for a version about to serve; None when there is none or Redis fails (the next poll retries)."""
        if self.thresholds is None:
            return None
        try:
            return self.thresholds.latest(version)
        except redis.RedisError as e:
            log.warning("operator_threshold_unreadable", version=version, error=str(e))
            return None

    def _thresholded(self, model: ServingModel, change: ThresholdChange | None) -> tuple[ServingModel, str]:
        """``model`` with the effective threshold given the operator's latest ``change`` (a clear, or None: the artifact's)."""
        value, source = effective_threshold(model.artifact.threshold, change, self.threshold_override)
        median = model.artifact.calibration.median
        if source == "operator" and not servable(value, median):  # set without the CLI's check: the normalised score has no scale
            self._log_once(model.version, change, "operator_threshold_refused", served=model.artifact.threshold,
                           reason=f"at or below the held-out normals' median score {median:.6g}")
            value, source = effective_threshold(model.artifact.threshold, None, self.threshold_override)
        elif source == "cli" and change is not None and change.threshold is not None:
            self._log_once(model.version, change, "operator_threshold_ignored", served=value, reason="this worker's --threshold flag wins")
        return (model if value == model.threshold else dataclasses.replace(model, threshold=value)), source

    def _log_once(self, version: str, change: ThresholdChange | None, event: str, **kw: object) -> None:
        assert change is not None
        if (version, change.at_ms) not in self._logged:  # once per change, not on every poll
            self._logged.add((version, change.at_ms))
            log.warning(event, version=version, operator=change.threshold, by=change.by, **kw)
