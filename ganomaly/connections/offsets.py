"""Where a partition's records begin and end, measured the way Tansu needs (shared by replay, feedback and the trainer).

A partition's end is the larger of the ListOffsets answer and the high watermark a fetch
reports: Tansu answers ListOffsets with the base offset of the last record batch when a
producer packed several records into one (too early by up to a batch); its fetch responses
carry the true high watermark, and Apache Kafka's two answers agree.
"""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

from ganomaly.errors import UserError


def fixed_ends(c: KafkaConsumer, tps: list[TopicPartition], timeout_s: float) -> dict[TopicPartition, int]:
    """Each partition's end now: the larger of ListOffsets and the high watermark of a fetch from there.

    ``tps`` must be assigned to ``c`` (this seeks them); raises UserError when a partition gives no fetch answer
    within ``timeout_s``."""
    listed = c.end_offsets(tps)
    for tp in tps:
        c.seek(tp, listed[tp])
    deadline = time.monotonic() + timeout_s
    # The records this returns (the tail Tansu's ListOffsets left out) are read again later, from the start.
    while any(c.highwater(tp) is None for tp in tps):
        if time.monotonic() > deadline:
            missing = sorted(tp.partition for tp in tps if c.highwater(tp) is None)
            msg = f"topic {tps[0].topic}: no fetch answer for partitions {missing} within {timeout_s:.0f}s, so their end is unknown"
            raise UserError(msg)
        c.poll(timeout_ms=200, update_offsets=False)
    return {tp: max(listed[tp], c.highwater(tp)) for tp in tps}  # type: ignore[type-var]


def partition_ranges(c: KafkaConsumer, topic: str, partitions: set[int], timeout_s: float = 10.0) -> dict[int, tuple[int, int] | str]:
    """For each asked partition of ``topic``: its offsets ``(begin, end)`` now, or why there are none
    ("no such topic", "no such partition"). Assigns ``c`` to the partitions that exist (replacing its assignment).

    Never asks the broker about a partition it does not have: kafka-python then retries until its
    request timeout (30 s) and raises KafkaTimeoutError."""
    have = c.partitions_for_topic(topic) or set()
    out: dict[int, tuple[int, int] | str] = {p: ("no such topic" if not have else "no such partition") for p in partitions if p not in have}
    tps = [TopicPartition(topic, p) for p in sorted(partitions) if p in have]
    if tps:
        c.assign(tps)
        begins = c.beginning_offsets(tps)
        ends = fixed_ends(c, tps, timeout_s)
        out |= {tp.partition: (begins[tp], ends[tp]) for tp in tps}
    return out
