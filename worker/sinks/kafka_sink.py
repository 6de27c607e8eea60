"""Results, alerts and dead letters to Kafka through one idempotent producer."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from ganomaly.connections.kafka import headers_dict
from ganomaly.contracts import messages as m
from ganomaly.contracts.headers import CE_ID, CE_SPECVERSION, CE_SUBJECT, CE_TYPE_ALERT, CE_TYPE_RESULT, cloudevent_headers, continue_trace
from ganomaly.contracts.results import alert_json
from worker.retry import retry_until_done
from worker.sinks.outputs import OutputBatch

log = structlog.get_logger("worker")
# The producer's own max_request_size (raised by send) or the broker's limit for the topic (a failed future).
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


class KafkaSink:
    def __init__(self, producer: KafkaProducer, *, results_topic: str, alerts_topic: str, dlq_topic: str, shadow_topic: str, worker_id: str,
                 abort: threading.Event, backoff_max_s: float, timeout_s: float,
                 on_retry: Callable[[BaseException], None] | None = None, on_value_omitted: Callable[[], None] | None = None) -> None:
        self.producer = producer
        self.on_retry, self.on_value_omitted = on_retry, on_value_omitted
        self.results_topic, self.alerts_topic, self.dlq_topic, self.shadow_topic = results_topic, alerts_topic, dlq_topic, shadow_topic
        self.worker_id = worker_id
        self.abort = abort
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s

    def _sends(self, batch: OutputBatch) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        fixed: dict[tuple[str, int], tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]] = {}
        for r, key in zip(batch.results, batch.keys, strict=True):
            # A result built without one (not by the worker's scorer) still gets a valid trace context.
            traceparent = r.traceparent or str(continue_trace(None, r.trace_id))
            hdrs = [("model-version", r.model_version.encode()), ("input", r.id.encode()), (m.H_TRACEPARENT, traceparent.encode())]
            if r.trace_id:
                hdrs.append((m.H_TRACE, r.trace_id.encode()))
            # Results and alerts of one input share a source: the input topic, where the occurrence (the scoring of that record) happened.
            # The event headers that depend only on the input topic and the scoring time are made once per batch, not per record.
            shared = (r.input.topic, r.scored_at_ms)
            if shared not in fixed:
                event = {"source": f"/ganomaly/{r.input.topic}", "time_ms": r.scored_at_ms}
                fixed[shared] = (cloudevent_headers(ce_id="", ce_type=CE_TYPE_RESULT, **event)[2:],
                                 cloudevent_headers(ce_id="", ce_type=CE_TYPE_ALERT, **event)[2:])
            result_ce, alert_ce = fixed[shared]
            subject = [(CE_SUBJECT, r.image_id.encode())] if r.image_id else []
            out.append((self.results_topic, {"key": key, "value": r.to_json(),
                                             "headers": [*hdrs, *_ce_head(r.id), *result_ce, *subject]}))
            if r.is_anomaly:
                fp = m.fingerprint(r.input)
                out.append((self.alerts_topic, {"key": (r.source or r.id).encode(), "value": alert_json(r),
                                                "headers": [*hdrs, ("fingerprint", fp.encode()), *_ce_head(fp), *alert_ce, *subject]}))
        for r in batch.shadow:
            out.append((self.shadow_topic, {"key": r.id.encode(), "value": r.to_json(), "headers": [("model-version", r.model_version.encode())]}))
        for d in batch.dead:
            hdrs = [h for h in d.headers if not h[0].startswith("dlq-")] + [
                (m.H_DLQ_REASON, d.reason.encode()),
                (m.H_DLQ_ERROR, d.error_class.encode()),
                (m.H_DLQ_MESSAGE, d.message[:1000].encode()),
                (m.H_DLQ_ATTEMPTS, str(d.attempts).encode()),
                (m.H_DLQ_TOPIC, d.topic.encode()),
                (m.H_DLQ_PARTITION, str(d.partition).encode()),
                (m.H_DLQ_OFFSET, str(d.offset).encode()),
                (m.H_DLQ_WORKER, self.worker_id.encode()),
                (m.H_DLQ_MODEL, d.model_version.encode()),
            ]
            out.append((self.dlq_topic, {"key": d.key, "value": d.value, "headers": hdrs}))
        return out

    def write(self, batch: OutputBatch) -> None:
        pending = self._sends(batch)

        def attempt() -> None:
            nonlocal pending
            futures = []
            for t, kw in pending:
                try:
                    fut = self.producer.send(t, **kw)
                except _TOO_LARGE:
                    if not self._sheddable(t, kw):
                        raise
                    kw = self._without_value(kw)
                    fut = self.producer.send(t, **kw)
                futures.append((t, kw, fut))
            self.producer.flush(timeout=self.timeout_s)
            failed = []
            for t, kw, fut in futures:
                try:
                    fut.get(timeout=self.timeout_s)
                except _TOO_LARGE:
                    failed.append((t, self._without_value(kw) if self._sheddable(t, kw) else kw))
                except KafkaError:
                    failed.append((t, kw))
            if failed:
                pending = failed  # re-send only what was not acknowledged
                msg = f"{len(failed)} of {len(futures)} sends not acknowledged"
                raise KafkaError(msg)

        retry_until_done(attempt, what="kafka-produce", abort=self.abort, retry_on=(KafkaError, TimeoutError),
                         backoff_max_s=self.backoff_max_s, on_retry=self.on_retry)

    def _sheddable(self, topic: str, kw: dict[str, Any]) -> bool:
        """A dead letter still carrying its original bytes (the only record that can be too large)."""
        return topic == self.dlq_topic and not any(k == m.H_DLQ_VALUE_OMITTED for k, _ in kw["headers"])

    def _without_value(self, kw: dict[str, Any]) -> dict[str, Any]:
        # Retrying a record the topic will never take would stop every partition of the worker, and
        # dropping it would lose the input silently. Without its bytes it still names the input
        # (dlq-topic/partition/offset, where the original stays until retention) and its size and hash.
        value: bytes = kw["value"]
        hdrs = [*kw["headers"], (m.H_DLQ_VALUE_OMITTED, b"too_large"), (m.H_DLQ_VALUE_BYTES, str(len(value)).encode()),
                (m.H_DLQ_VALUE_SHA256, hashlib.sha256(value).hexdigest().encode())]
        h = headers_dict(kw["headers"])
        log.warning("dead_letter_value_omitted", topic=h.get(m.H_DLQ_TOPIC), partition=h.get(m.H_DLQ_PARTITION),
                    offset=h.get(m.H_DLQ_OFFSET), value_bytes=len(value), reason=h.get(m.H_DLQ_REASON))
        if self.on_value_omitted is not None:
            self.on_value_omitted()
        return {**kw, "value": b"", "headers": hdrs}


def _ce_head(ce_id: str) -> list[tuple[str, bytes]]:
    """The first two CloudEvents headers (spec version, id), in cloudevent_headers' order."""
    return [(CE_SPECVERSION, b"1.0"), (CE_ID, ce_id.encode())]
