"""Message contracts of the worker's topics and Redis entries (JSON Schema via ``ganomaly schemas``).

Input records carry the encoded image as the value (no envelope), so producers need
nothing but a Kafka client; metadata travels in headers.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Input headers (all optional).
H_CONTENT_TYPE = "content-type"
H_SOURCE = "source"
H_LABEL = "label"  # "normal" / "anomaly": used by evaluation only, never by scoring
H_TRACE = "trace-id"
H_TRACEPARENT = "traceparent"  # W3C Trace Context; continued on results and alerts (ganomaly/contracts/headers.py)

# Dead-letter headers added next to the original ones.
H_DLQ_REASON = "dlq-reason"
H_DLQ_ERROR = "dlq-error-class"
H_DLQ_MESSAGE = "dlq-error-message"
H_DLQ_ATTEMPTS = "dlq-attempts"
H_DLQ_TOPIC = "dlq-topic"
H_DLQ_PARTITION = "dlq-partition"
H_DLQ_OFFSET = "dlq-offset"
H_DLQ_WORKER = "dlq-worker"
H_DLQ_MODEL = "dlq-model-version"
# Only when the dead-letter topic refused the original bytes as too large (see DeadLetterHeaders).
H_DLQ_VALUE_OMITTED = "dlq-value-omitted"
H_DLQ_VALUE_BYTES = "dlq-value-bytes"
H_DLQ_VALUE_SHA256 = "dlq-value-sha256"


class InputRef(BaseModel):
    """Where the scored record lives: enough to fetch its bytes again (assign + seek)."""

    model_config = ConfigDict(frozen=True)
    topic: str
    partition: int
    offset: int
    key: str | None = Field(None, description="the input record key (image id), if any")

    @property
    def id(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


class Result(BaseModel):
    """One per valid input record, on the results topic and in Redis.

    Kafka headers of a result record: ``model-version``, ``input`` (the result id), ``trace-id`` (when the
    input had one), ``traceparent`` (W3C Trace Context) and CloudEvents 1.0 binary mode (``ResultEventHeaders``).
    """

    schema_: Literal["ganomaly.result/v1"] = Field("ganomaly.result/v1", alias="schema")
    id: str = Field(description="topic:partition:offset of the input; stable across redeliveries")
    input: InputRef
    image_id: str | None = Field(None, description="record key, else None")
    source: str | None = Field(None, description="camera/line id from the source header")
    trace_id: str | None = Field(None, description="the input's trace-id header")
    traceparent: str | None = Field(
        None, description="W3C traceparent of the worker's scoring of this input: the input's trace (its traceparent, else its trace-id "
                          "when that is a W3C trace id, else a new one) with a new parent id; also the traceparent header of the result "
                          "and alert records")
    label: str | None = Field(None, description="the input's label header, carried for evaluation")
    score: float = Field(description="GANomaly latent score, mean over latent dims of (z - z')^2")
    score_normalised: float = Field(description="0 at the validation median, 1 at the threshold")
    threshold: float
    is_anomaly: bool = Field(description="score > threshold")
    model_version: str
    record_timestamp_ms: int
    scored_at_ms: int
    latency_ms: float = Field(description="from record timestamp to scored")
    worker: str

    model_config = ConfigDict(populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


def fingerprint(ref: InputRef) -> str:
    """Stable alert id: the same input always yields the same fingerprint (dedupe on redelivery)."""
    return hashlib.sha256(ref.id.encode()).hexdigest()[:20]


def severity(score_normalised: float) -> str:
    """How far over the threshold, measured in (threshold - median) spans."""
    if score_normalised >= 3.0:
        return "critical"
    if score_normalised >= 2.0:
        return "major"
    return "minor"


class Alert(BaseModel):
    """An anomalous result, shaped for alert services (Alertmanager-like fields).

    Kafka headers of an alert record: those of its result plus ``fingerprint``, and CloudEvents 1.0 binary
    mode with ``ce_id`` = the fingerprint and ``ce_type`` = io.ganomaly.alert.v1 (``AlertEventHeaders``).
    """

    schema_: Literal["ganomaly.alert/v1"] = Field("ganomaly.alert/v1", alias="schema")
    fingerprint: str
    status: Literal["firing"] = "firing"
    severity: Literal["minor", "major", "critical"]
    source: str | None
    summary: str
    starts_at_ms: int
    result: Result

    model_config = ConfigDict(populate_by_name=True)

    @classmethod
    def from_result(cls, r: Result) -> Alert:
        return cls(
            fingerprint=fingerprint(r.input),
            severity=severity(r.score_normalised),  # type: ignore[arg-type]
            source=r.source,
            summary=f"anomaly score {r.score:.4g} > threshold {r.threshold:.4g} ({r.model_version}) at {r.id}",
            starts_at_ms=r.record_timestamp_ms,
            result=r,
        )

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class DeadLetterHeaders(BaseModel):
    """Headers added to a dead-lettered record; its value is the original bytes, its other headers the originals."""

    dlq_reason: str = Field(alias=H_DLQ_REASON, description="empty, too_large, undecodable, truncated, bomb, dimensions, channels, ...")
    dlq_error_class: str = Field(alias=H_DLQ_ERROR)
    dlq_error_message: str = Field(alias=H_DLQ_MESSAGE)
    dlq_attempts: int = Field(alias=H_DLQ_ATTEMPTS)
    dlq_topic: str = Field(alias=H_DLQ_TOPIC)
    dlq_partition: int = Field(alias=H_DLQ_PARTITION)
    dlq_offset: int = Field(alias=H_DLQ_OFFSET)
    dlq_worker: str = Field(alias=H_DLQ_WORKER)
    dlq_model_version: str = Field(alias=H_DLQ_MODEL, description="the model that refused the input: its input spec (decoding) or its forward pass (scoring)")
    dlq_value_omitted: Literal["too_large"] | None = Field(
        None, alias=H_DLQ_VALUE_OMITTED,
        description="set when the original bytes were too large for the dead-letter topic (the producer's max request or the broker's "
                    "limit): the value is then empty and the original stays at dlq-topic/partition/offset until the input's retention ends")
    dlq_value_bytes: int | None = Field(None, alias=H_DLQ_VALUE_BYTES, description="size of the omitted original")
    dlq_value_sha256: str | None = Field(None, alias=H_DLQ_VALUE_SHA256, description="SHA-256 of the omitted original, to check a fetched copy")


class ResultEventHeaders(BaseModel):
    """Kafka headers of a result record (CloudEvents 1.0, Kafka protocol binding, binary content mode; W3C Trace Context).

    ``ce_id`` is the result id (input topic:partition:offset): one event per input, the same on every
    redelivery of that input, so consumers that deduplicate on (``ce_source``, ``ce_id``) see each
    decision once, as the Redis per-result key and the alert fingerprint do.
    Dead letters carry none of these of their own: a dead letter is the input record itself, re-routed
    with its original headers (its own ``traceparent`` or ``ce_*`` if it had them) plus the dlq-* headers.
    """

    ce_specversion: Literal["1.0"]
    ce_id: str = Field(description="the result id, topic:partition:offset of the input")
    ce_source: str = Field(description="URI reference /ganomaly/<input topic>")
    ce_type: Literal["io.ganomaly.result.v1"]
    ce_time: str = Field(description="RFC 3339 UTC time of scoring (scored_at_ms)")
    ce_subject: str | None = Field(None, description="the image id (input record key), when present")
    content_type: Literal["application/json"] = Field(alias="content-type", description="the CloudEvents datacontenttype")
    traceparent: str = Field(pattern=r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                             description="W3C traceparent: the input's trace continued with the worker's own parent id (see Result.traceparent)")
    trace_id: str | None = Field(None, alias="trace-id", description="the input's trace-id header, when it had one")
    model_version: str = Field(alias="model-version")
    input: str = Field(description="the result id")


class AlertEventHeaders(ResultEventHeaders):
    """Kafka headers of an alert record: its result's, with the alert's CloudEvents type and id."""

    ce_id: str = Field(description="the alert fingerprint: the same input always gives the same id")
    ce_type: Literal["io.ganomaly.alert.v1"]  # type: ignore[assignment]
    fingerprint: str


class WorkerStatus(BaseModel):
    """The Redis hash ``{prefix}:worker:{id}`` (refreshed each batch, expires when the worker dies)."""

    worker: str
    model_version: str
    threshold: float
    assigned: str = Field(description="comma-separated topic-partition list")
    in_flight: int
    scored_total: int
    dead_letters_total: int
    updated_ms: int


def all_schemas() -> dict[str, dict[str, Any]]:
    return {
        "result": Result.model_json_schema(by_alias=True),
        "alert": Alert.model_json_schema(by_alias=True),
        "result-headers": ResultEventHeaders.model_json_schema(by_alias=True),
        "alert-headers": AlertEventHeaders.model_json_schema(by_alias=True),
        "dead-letter-headers": DeadLetterHeaders.model_json_schema(by_alias=True),
        "worker-status": WorkerStatus.model_json_schema(by_alias=True),
        "feedback": Feedback.model_json_schema(by_alias=True),
    }


class Feedback(BaseModel):
    """An operator's or alert service's verdict on one input, on the feedback topic.

    Keyed by ``subject`` (the input id, else the image id) so a compacted topic keeps the
    latest verdict per image; a later verdict overrides (retracts) an earlier one.
    """

    schema_: Literal["ganomaly.feedback/v1"] = Field("ganomaly.feedback/v1", alias="schema")
    verdict: Literal["normal", "anomaly"]
    input: InputRef | None = Field(None, description="input coordinates (from a result or alert); required to fetch the image")
    result_id: str | None = Field(None, description="topic:partition:offset as in results and alerts")
    image_id: str | None = None
    by: str = Field(description="who decided (user or service)")
    at_ms: int = Field(description="when the verdict was given")
    note: str | None = None

    model_config = ConfigDict(populate_by_name=True)

    @property
    def subject(self) -> str:
        if self.input is not None:
            return self.input.id
        if self.result_id:
            return self.result_id
        if self.image_id:
            return f"image:{self.image_id}"
        msg = "feedback needs input coordinates, a result id or an image id"
        raise ValueError(msg)

    def ref(self) -> InputRef | None:
        if self.input is not None:
            return self.input
        if self.result_id:
            topic, part, off = self.result_id.rsplit(":", 2)
            return InputRef(topic=topic, partition=int(part), offset=int(off), key=self.image_id)
        return None

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
