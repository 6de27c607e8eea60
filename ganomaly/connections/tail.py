"""The last records of every partition of a topic, read without a consumer group (the console's recent scores).

Each partition's end is fixed once, the Tansu-safe way (:func:`ganomaly.connections.offsets.partition_ranges`),
then its last ``per_partition`` records before that end are read; records written meanwhile are left out,
so one call reads a fixed amount however busy the topic is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from ganomaly.connections.kafka import KafkaSettings, make_consumer
from ganomaly.connections.offsets import partition_ranges
from ganomaly.errors import UserError


@dataclass(frozen=True)
class TailRecord:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes


def read_tail(kafka: KafkaSettings, topic: str, per_partition: int, *, timeout_s: float = 10.0) -> list[TailRecord]:
    """The last ``per_partition`` records of each partition of ``topic`` (fewer where a partition holds fewer),
    by partition then offset. A UserError when the topic does not exist (it is never created) or a partition's
    records do not arrive within ``timeout_s``."""
    if per_partition < 1:
        msg = f"per_partition must be at least 1, got {per_partition}"
        raise ValueError(msg)
    c = make_consumer(kafka.config(), group_id=None, enable_auto_commit=False)
    try:
        have = c.partitions_for_topic(topic)
        if not have:
            msg = f"topic {topic} does not exist on {kafka.bootstrap_servers}"
            raise UserError(msg)
        ranges = partition_ranges(c, topic, set(have), timeout_s)
        todo: dict[TopicPartition, tuple[int, int]] = {}
        for part, span in ranges.items():
            if isinstance(span, str):  # the topic went away between the two metadata answers
                msg = f"topic {topic} partition {part}: {span}"
                raise UserError(msg)
            begin, end = span
            if end > begin:
                todo[TopicPartition(topic, part)] = (max(begin, end - per_partition), end)
        out: list[TailRecord] = []
        if todo:
            c.assign(list(todo))
            for tp, (start, _) in todo.items():
                c.seek(tp, start)
            out = _read_until_ends(c, todo, timeout_s)
    finally:
        c.close()
    return sorted(out, key=lambda r: (r.partition, r.offset))


def _read_until_ends(c: KafkaConsumer, todo: dict[TopicPartition, tuple[int, int]], timeout_s: float) -> list[TailRecord]:
    """Poll ``c`` (assigned and positioned) until every partition in ``todo`` reached its end."""
    out: list[TailRecord] = []
    pending = dict(todo)
    deadline = time.monotonic() + timeout_s
    while pending:
        if time.monotonic() > deadline:
            parts = sorted(tp.partition for tp in pending)
            msg = f"topic {next(iter(pending)).topic}: the last records of partitions {parts} did not arrive within {timeout_s:.0f}s"
            raise UserError(msg)
        for tp, records in c.poll(timeout_ms=200).items():
            if tp not in pending:
                continue
            end = pending[tp][1]
            out.extend(TailRecord(partition=r.partition, offset=r.offset, timestamp_ms=r.timestamp, key=r.key, value=r.value or b"")
                       for r in records if r.offset < end)
            if c.position(tp) >= end:
                pending.pop(tp)
                c.pause(tp)  # reached its end: what was written since is not asked for
    return out
