"""The one place a result record is made: the worker's scorer and replay's evaluation topic both call it.

What a result says beyond its input's coordinates follows from the score and the model: the
normalised score (0 at the held-out normals' median, 1 at the threshold), the decision
(``score > threshold``) and the latency (record time to scoring). Computing them here, once,
keeps the two writers from drifting apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ganomaly.contracts.messages import InputRef, Result

if TYPE_CHECKING:
    from ganomaly.model.calibration import Calibration


def build_result(ref: InputRef, *, score: float, threshold: float, calibration: Calibration, model_version: str,
                 record_timestamp_ms: int, scored_at_ms: int, worker: str, source: str | None = None, label: str | None = None,
                 trace_id: str | None = None, traceparent: str | None = None) -> Result:
    """The result of scoring the input at ``ref`` (whose key is the image id)."""
    return Result(
        id=ref.id, input=ref, image_id=ref.key, source=source, trace_id=trace_id, label=label, traceparent=traceparent,
        score=score, score_normalised=float(calibration.normalise(score, threshold)), threshold=threshold, is_anomaly=score > threshold,
        model_version=model_version, record_timestamp_ms=record_timestamp_ms, scored_at_ms=scored_at_ms,
        latency_ms=float(scored_at_ms - record_timestamp_ms), worker=worker,
    )
