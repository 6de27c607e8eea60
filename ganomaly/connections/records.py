"""One input record read back by its coordinates (topic, partition, offset), without a consumer group."""

from __future__ import annotations

import time

from kafka import TopicPartition

from ganomaly.connections.kafka import KafkaSettings, make_consumer
from ganomaly.connections.offsets import partition_ranges
from ganomaly.errors import UserError


def fetch_record(kafka: KafkaSettings, topic: str, partition: int, offset: int, *, timeout_s: float = 15.0) -> bytes:
    """The value of the record at ``topic:partition:offset``; a UserError says why there is none
    (no such topic or partition, deleted by retention, past the end, not fetched in time)."""
    where = f"{topic}:{partition}:{offset}"
    c = make_consumer(kafka.config(), group_id=None, enable_auto_commit=False)
    try:
        span = partition_ranges(c, topic, {partition}, timeout_s)[partition]
        if isinstance(span, str):
            msg = f"no input record {where}: {span}"
            raise UserError(msg)
        begin, end = span
        if offset < begin:
            msg = f"no input record {where}: deleted by retention (the partition now begins at {begin})"
            raise UserError(msg)
        if offset >= end:
            msg = f"no input record {where}: past the partition's end ({end})"
            raise UserError(msg)
        tp = TopicPartition(topic, partition)
        c.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for r in c.poll(timeout_ms=300).get(tp, []):
                if r.offset == offset:
                    return r.value or b""
            if c.position(tp) > offset:
                break
        msg = f"no input record {where}: not fetched within {timeout_s:.0f}s"
        raise UserError(msg)
    finally:
        c.close()
