"""Feedback topic -> NormalSet: record verdicts, then fetch their images from the input topic by coordinates."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import structlog
from pydantic import ValidationError

from ganomaly.connections.kafka import KafkaSettings, make_consumer
from ganomaly.connections.records import fetch_records
from ganomaly.connections.startup import StartupWait, connect_kafka
from ganomaly.contracts.messages import Feedback
from trainer.normal_set import NormalSet

log = structlog.get_logger("trainer.ingest")


def ingest_feedback(kafka: KafkaSettings, topic: str, group_id: str, ns: NormalSet, *, idle_ms: int = 2000,
                    wait: StartupWait | None = None) -> dict[str, Any]:
    """Consume new verdicts (committing only after the index is saved) and fetch missing bytes.

    Returns counts by outcome ("new", "updated", ..., "fetched", "unavailable") and, under
    "unavailable_reasons", how many images could not be had for each reason.
    ``wait`` bounds how long the broker is waited for (default: 30 s)."""
    counts: dict[str, Any] = defaultdict(int)
    unavailable: dict[str, int] = {}  # why -> how many
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
                    if ref is None:  # an image id alone: nothing says where its bytes are, so it can never be trained on
                        unavailable["no input coordinates"] = unavailable.get("no input coordinates", 0) + 1
                        log.warning("feedback_image_unavailable", subject=fb.subject, reason="no input coordinates",
                                    partition=r.partition, offset=r.offset)
                        continue
                    counts[ns.upsert(fb.subject, fb.verdict, fb.at_ms, fb.by, ref.model_dump())] += 1
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
        fetched, reasons = fetch_missing(kafka.config(), ns)
        for why, n in reasons.items():
            unavailable[why] = unavailable.get(why, 0) + n
        counts["fetched"], counts["unavailable"] = fetched, sum(unavailable.values())
        if unavailable:
            counts["unavailable_reasons"] = unavailable
        ns.save()
        c.commit()  # only now: the verdicts are durable in the index
    finally:
        c.close()
    return dict(counts)


def fetch_missing(common: dict[str, Any], ns: NormalSet, timeout_s: float = 20.0) -> tuple[int, dict[str, int]]:
    """Assign + seek for each referenced record; returns (fetched, {why unavailable: how many}).

    A verdict whose coordinates name a missing topic or partition, or an offset outside the partition's
    records (deleted by retention, or past its end), is unavailable at once, its reason logged and kept in
    the index; only the records that exist are waited for, up to ``timeout_s`` per partition."""
    want: dict[str, dict[int, dict[int, str]]] = defaultdict(lambda: defaultdict(dict))
    for e in ns.missing_bytes():
        ref = e.ref or {}
        want[str(ref["topic"])][int(ref["partition"])][int(ref["offset"])] = e.subject
    if not want:
        return 0, {}
    unavailable: dict[str, int] = defaultdict(int)

    def give_up(subject: str, reason: str) -> None:
        unavailable[reason] += 1
        ns.set_unavailable(subject, reason)
        log.warning("feedback_image_unavailable", subject=subject, reason=reason)

    c = make_consumer(common, group_id=None)
    fetched = 0
    try:
        for topic, parts in want.items():
            got = fetch_records(c, topic, {part: set(offsets) for part, offsets in parts.items()}, timeout_s)
            for (part, off), value in got.items():
                subject = parts[part][off]
                if isinstance(value, str):
                    give_up(subject, value)
                else:
                    ns.put_bytes(subject, value)
                    fetched += 1
    finally:
        c.close()
    return fetched, dict(unavailable)
