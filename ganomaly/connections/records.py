"""Input records read back by their coordinates (topic, partition, offset), without a consumer group.

Shared by the trainer (the images of confirmed verdicts), ``explain`` and replay's contact sheet:
one consumer, each partition's range asked once, each partition read from its lowest wanted offset.
"""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

from ganomaly.connections.kafka import KafkaSettings, make_consumer
from ganomaly.connections.offsets import partition_ranges
from ganomaly.errors import UserError


def read_offsets(c: KafkaConsumer, tp: TopicPartition, offsets: set[int], timeout_s: float) -> dict[int, bytes]:
    """The values at ``offsets`` of ``tp`` (all within the partition's records) that arrive within ``timeout_s``."""
    want, got = set(offsets), {}
    c.assign([tp])
    c.seek(tp, min(want))
    deadline = time.monotonic() + timeout_s
    while want and time.monotonic() < deadline:
        for r in c.poll(timeout_ms=300).get(tp, []):
            if r.offset in want:
                want.discard(r.offset)
                got[r.offset] = r.value or b""
        if want and c.position(tp) > max(want):
            break
        if want and c.position(tp) < min(want) - 500:  # sparse offsets: jump instead of reading through
            c.seek(tp, min(want))
    return got


def fetch_records(c: KafkaConsumer, topic: str, wanted: dict[int, set[int]], timeout_s: float) -> dict[tuple[int, int], bytes | str]:
    """For each (partition, offset) in ``wanted``: its record's value, or why there is none (no such topic or partition,
    a negative offset, deleted by retention, past the partition's end, not fetched in time, no answer from the broker)."""
    out: dict[tuple[int, int], bytes | str] = {}
    try:
        ranges = partition_ranges(c, topic, set(wanted))
    except UserError as err:  # no fetch answer: the partitions' ends are unknown
        ranges = dict.fromkeys(wanted, f"no answer from the broker ({err})")
    for part, offsets in wanted.items():
        span = ranges[part]
        if isinstance(span, str):
            out |= {(part, off): span for off in offsets}
            continue
        begin, end = span
        inside = set()
        for off in offsets:
            if off < begin:
                out[(part, off)] = "deleted by retention" if off >= 0 else "negative offset"
            elif off >= end:
                out[(part, off)] = f"past the partition's end ({end})"
            else:
                inside.add(off)
        got = read_offsets(c, TopicPartition(topic, part), inside, timeout_s) if inside else {}
        out |= {(part, off): got.get(off, f"not fetched within {timeout_s:.0f}s") for off in inside}
    return out


def fetch_record(kafka: KafkaSettings, topic: str, partition: int, offset: int, *, timeout_s: float = 15.0) -> bytes:
    """The value of the record at ``topic:partition:offset``; a UserError says why there is none."""
    c = make_consumer(kafka.config(), group_id=None, enable_auto_commit=False)
    try:
        value = fetch_records(c, topic, {partition: {offset}}, timeout_s)[(partition, offset)]
    finally:
        c.close()
    if isinstance(value, str):
        msg = f"no input record {topic}:{partition}:{offset}: {value}"
        raise UserError(msg)
    return value
