"""The model in service, swappable between batches (hot reload lands with the trainer)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from ganomaly.artifact import Artifact
from ganomaly.model import Scorer


@dataclass(frozen=True)
class ServingModel:
    artifact: Artifact
    scorer: Scorer
    threshold: float

    @property
    def version(self) -> str:
        return self.artifact.version

    @property
    def expected_anomaly_rate(self) -> float:
        """The share of normal images the threshold was calibrated to flag (its target FPR), or NaN
        under a threshold override: the artifact keeps summary statistics of the held-out normals,
        not the scores, so the rate at another threshold is not known."""
        if self.threshold != self.artifact.threshold:
            return float("nan")
        return self.artifact.calibration.target_fpr


def warm_up(model: ServingModel, batch: int = 2) -> None:
    """One batch through the model before it serves: validates it and primes kernels."""
    spec = model.artifact.input_spec
    out = model.scorer.score(torch.zeros(batch, spec.channels, spec.isize, spec.isize))
    if not torch.isfinite(out.score).all():
        msg = f"model {model.version} produced non-finite scores on warm-up"
        raise ValueError(msg)


class ModelHolder:
    """Readers take ``current()`` once per batch, so a swap never splits a batch between models."""

    def __init__(self, model: ServingModel) -> None:
        self._model = model
        self._lock = threading.Lock()

    def current(self) -> ServingModel:
        with self._lock:
            return self._model

    def swap(self, model: ServingModel) -> ServingModel:
        with self._lock:
            old, self._model = self._model, model
            return old


def serving_model(artifact: Artifact, device: torch.device, amp: str | None, threshold_override: float | None) -> ServingModel:
    scorer = artifact.scorer(device, amp, traced=True)  # the worker's other threads hold the interpreter lock
    return ServingModel(artifact=artifact, scorer=scorer, threshold=threshold_override if threshold_override is not None else artifact.threshold)
