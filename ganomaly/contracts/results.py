"""The one place a result record is made: the worker's scorer and replay's evaluation topic both call it.

What a result says beyond its input's coordinates follows from the score and the model: the
normalised score (0 at the held-out normals' median, 1 at the threshold), the decision
(``score > threshold``) and the latency (record time to scoring). Computing them here, once,
keeps the two writers from drifting apart.

The worker makes thousands a second, so it builds a batch at a time (:func:`build_results`):
plain slotted records with the :class:`~ganomaly.contracts.messages.Result` fields, each
serialised once by orjson, byte for byte what the pydantic model writes (tests/unit/test_results.py
checks that on random values), instead of validating and serialising a pydantic model per result
twice (Kafka, then Redis). The pydantic models stay the contract: the JSON Schema, and the parser.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import orjson

from ganomaly.contracts.headers import continue_trace
from ganomaly.contracts.messages import H_LABEL, H_SOURCE, H_TRACE, H_TRACEPARENT, InputRef, Result, fingerprint, severity

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


@dataclass(frozen=True, slots=True)
class Coordinates:
    """An input's topic, partition, offset and key: :class:`InputRef`'s fields, without validation."""

    topic: str
    partition: int
    offset: int
    key: str | None = None

    @property
    def id(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(slots=True)
class ScoredResult:
    """A result as the worker writes it: the fields of :class:`Result`, serialised once."""

    id: str
    input: Coordinates
    image_id: str | None
    source: str | None
    trace_id: str | None
    traceparent: str | None
    label: str | None
    score: float
    score_normalised: float
    threshold: float
    is_anomaly: bool
    model_version: str
    record_timestamp_ms: int
    scored_at_ms: int
    latency_ms: float
    worker: str
    _json: bytes | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> bytes:
        if self._json is None:
            i = self.input
            # Result's field order and aliases: the bytes Result(...).to_json() writes
            self._json = orjson.dumps({
                "schema": "ganomaly.result/v1", "id": self.id,
                "input": {"topic": i.topic, "partition": i.partition, "offset": i.offset, "key": i.key},
                "image_id": self.image_id, "source": self.source, "trace_id": self.trace_id, "traceparent": self.traceparent,
                "label": self.label, "score": self.score, "score_normalised": self.score_normalised, "threshold": self.threshold,
                "is_anomaly": self.is_anomaly, "model_version": self.model_version, "record_timestamp_ms": self.record_timestamp_ms,
                "scored_at_ms": self.scored_at_ms, "latency_ms": self.latency_ms, "worker": self.worker,
            })
        return self._json


# What writers read of a result: the worker's records, or the pydantic model others build.
ResultLike = Result | ScoredResult


def alert_json(r: ResultLike) -> bytes:
    """The alert record of an anomalous result: the bytes ``Alert.from_result(r).to_json()`` writes."""
    return orjson.dumps({
        "schema": "ganomaly.alert/v1", "fingerprint": fingerprint(r.input), "status": "firing", "severity": severity(r.score_normalised),
        "source": r.source, "summary": f"anomaly score {r.score:.4g} > threshold {r.threshold:.4g} ({r.model_version}) at {r.id}",
        "starts_at_ms": r.record_timestamp_ms, "result": orjson.Fragment(r.to_json()),
    })


@dataclass(frozen=True, slots=True)
class ScoredInput:
    """What the scorer knows of one input record: where it is, its headers, its timestamp."""

    ref: Coordinates
    headers: dict[str, str]
    record_timestamp_ms: int


def build_results(inputs: Sequence[ScoredInput], scores: np.ndarray, *, threshold: float, calibration: Calibration, model_version: str,
                  scored_at_ms: int, worker: str) -> list[ScoredResult]:
    """One batch's results, as :func:`build_result` makes each (tests/unit/test_results.py compares them)."""
    normalised = np.asarray(calibration.normalise(np.asarray(scores, dtype=np.float64), threshold)).tolist()
    out = []
    for inp, score, norm in zip(inputs, np.asarray(scores).tolist(), normalised, strict=True):
        h, ref = inp.headers, inp.ref
        trace_id = h.get(H_TRACE)
        out.append(ScoredResult(
            id=ref.id, input=ref, image_id=ref.key, source=h.get(H_SOURCE), trace_id=trace_id,
            traceparent=str(continue_trace(h.get(H_TRACEPARENT), trace_id)), label=h.get(H_LABEL), score=score,
            score_normalised=norm, threshold=threshold, is_anomaly=score > threshold, model_version=model_version,
            record_timestamp_ms=inp.record_timestamp_ms, scored_at_ms=scored_at_ms,
            latency_ms=float(scored_at_ms - inp.record_timestamp_ms), worker=worker))
    return out
