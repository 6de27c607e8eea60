"""Feedback topic -> NormalSet: record verdicts, then fetch their images from the input topic by coordinates."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import structlog
from kafka import TopicPartition
from pydantic import ValidationError

from ganomaly.connections.kafka import KafkaSettings, make_consumer
from ganomaly.connections.startup import StartupWait, connect_kafka
from ganomaly.contracts.messages import Feedback
from trainer.normal_set import NormalSet

log = structlog.get_logger("trainer.ingest")


def ingest_feedback(kafka: KafkaSettings, topic: str, group_id: str, ns: NormalSet, *, idle_ms: int = 2000,
                    wait: StartupWait | None = None) -> dict[str, int]:
    """Consume new verdicts (committing only after the index is saved) and fetch missing bytes.

    ``wait`` bounds how long the broker is waited for (default: 30 s)."""
    counts: dict[str, int] = defaultdict(int)
    c = connect_kafka(wait or StartupWait(30.0), kafka, lambda cfg: make_consumer(
        cfg, topic, group_id=group_id, session_timeout_ms=6000, heartbeat_interval_ms=1000))
    try:
        started = time.monotonic()
        last: float | None = None  # idleness counts from the assignment, not from the (slow) group join
        while True:
            batch = c.poll(timeout_ms=300)
            if last is None and c.assignment():
                last = time.monotonic()
            recs = [r for rs in batch.values() for r in rs]
            for r in recs:
                try:
                    fb = Feedback.model_validate_json(r.value)
                    ref = fb.ref()
                    counts[ns.upsert(fb.subject, fb.verdict, fb.at_ms, fb.by, ref.model_dump() if ref else None)] += 1
                except (ValidationError, ValueError) as e:
                    counts["invalid"] += 1
                    log.warning("invalid_feedback", partition=r.partition, offset=r.offset, error=str(e)[:200])
            if recs:
                last = time.monotonic()
            if last is not None and time.monotonic() - last > idle_ms / 1000:
                break
            if last is None and time.monotonic() - started > 60:
                log.warning("feedback_group_not_assigned", topic=topic, group_id=group_id)
                break
        fetched, unavailable = fetch_missing(kafka.config(), ns)
        counts["fetched"], counts["unavailable"] = fetched, unavailable
        ns.save()
        c.commit()  # only now: the verdicts are durable in the index
    finally:
        c.close()
    return dict(counts)


def fetch_missing(common: dict[str, Any], ns: NormalSet, timeout_s: float = 20.0) -> tuple[int, int]:
    """Assign + seek for each referenced record; returns (fetched, unavailable)."""
    want: dict[TopicPartition, dict[int, str]] = defaultdict(dict)
    for e in ns.missing_bytes():
        ref = e.ref or {}
        want[TopicPartition(ref["topic"], int(ref["partition"]))][int(ref["offset"])] = e.subject
    if not want:
        return 0, 0
    c = make_consumer(common, group_id=None)
    fetched = 0
    try:
        for tp, offsets in want.items():
            c.assign([tp])
            begin = c.beginning_offsets([tp])[tp]
            remaining = dict(offsets)
            for off in sorted(remaining):
                if off < begin:  # deleted by retention
                    remaining.pop(off)
            if not remaining:
                continue
            c.seek(tp, min(remaining))
            deadline = time.monotonic() + timeout_s
            while remaining and time.monotonic() < deadline:
                for r in c.poll(timeout_ms=300).get(tp, []):
                    subj = remaining.pop(r.offset, None)
                    if subj is not None:
                        ns.put_bytes(subj, r.value or b"")
                        fetched += 1
                if remaining and c.position(tp) > max(remaining):
                    break
                if remaining:
                    nxt = min(remaining)
                    if c.position(tp) < nxt - 500:  # sparse offsets: jump instead of reading through
                        c.seek(tp, nxt)
    finally:
        c.close()
    total = sum(len(v) for v in want.values())
    return fetched, total - fetched
