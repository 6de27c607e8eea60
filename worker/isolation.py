"""Scoring a batch so that an image the model cannot score costs only itself.

A decoded image has the model's shape and value range, so the model should score it; when it
does not (CUDA out of memory for the batch, a kernel error, a non-finite score from a broken
model), the batch is retried one image at a time and only the images that still fail are
returned as failures, for the dead-letter topic. Without this, one such image would kill the
scoring thread, and with it every partition of the worker, and come back on every redelivery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import structlog
import torch

log = structlog.get_logger("worker")


@dataclass(frozen=True)
class Failure:
    reason: str  # "model_error" or "non_finite_score": the dead letter's dlq-reason
    error_class: str
    message: str

    @classmethod
    def of(cls, reason: str, error: BaseException) -> Failure:
        return cls(reason, type(error).__name__, str(error))


def score_isolating_failures(score: Callable[[torch.Tensor], np.ndarray], x: torch.Tensor) -> tuple[np.ndarray, dict[int, Failure]]:
    """Scores for ``x`` (NaN where failed) and the failures by index."""
    failures: dict[int, Failure] = {}
    try:
        scores = np.asarray(score(x), dtype=np.float64)
    except Exception as e:  # noqa: BLE001 - torch's errors (CUDA OOM included) and any other: find the images at fault
        log.warning("batch_failed_retrying_singly", error=f"{type(e).__name__}: {e}"[:200], size=len(x))
        scores = np.full(len(x), np.nan)
        for i in range(len(x)):
            try:
                scores[i] = float(np.asarray(score(x[i : i + 1]), dtype=np.float64)[0])
            except Exception as e:  # noqa: BLE001 - whatever it is, it is this image's, not the partition's
                failures[i] = Failure.of("model_error", e)
    for i in np.flatnonzero(~np.isfinite(scores)).tolist():
        # a NaN compares False with any threshold, so it would pass as normal: never let it through
        failures.setdefault(i, Failure("non_finite_score", "ValueError", f"the model scored this image {scores[i]}"))
    return scores, failures
