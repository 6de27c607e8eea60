"""Read a stretch of a topic with manual assignment: no group, no commits, production untouched.

A stretch is, per partition, [start, end) in offsets, or a time window
[start_ms, end_ms) on record timestamps, or "everything until the current end".
``offsets_for_times`` only positions the read; every record is still filtered by its
own timestamp (brokers differ: Tansu searches by append time). End offsets are
snapshotted at the start; because some brokers report them too early (Tansu, when a
producer batches records), reading continues past them while records older than the
snapshot keep arriving, and a partition ends at the first record newer than the
snapshot or after ``idle_ms`` without records.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from worker.errors import UserError


@dataclass(frozen=True)
class Stretch:
    start_offsets: dict[int, int] | int | None = None  # per partition, or one for all (default: the beginning)
    end_offsets: dict[int, int] | int | None = None  # exclusive; per partition or one for all (default: the current end)
    start_ms: int | None = None
    end_ms: int | None = None  # exclusive

    def start_for(self, partition: int) -> int | None:
        return self.start_offsets if isinstance(self.start_offsets, int) else (self.start_offsets or {}).get(partition)

    def end_for(self, partition: int) -> int | None:
        return self.end_offsets if isinstance(self.end_offsets, int) else (self.end_offsets or {}).get(partition)

    def accepts(self, ts: int) -> bool:
        return (self.start_ms is None or ts >= self.start_ms) and (self.end_ms is None or ts < self.end_ms)


def parse_offsets(spec: str | None) -> dict[int, int] | int | None:
    """"1000" (every partition) or "0:100,1:250"."""
    if not spec:
        return None
    spec = spec.strip()
    try:
        if ":" not in spec:
            return int(spec)
        return {int(p): int(o) for p, o in (part.split(":") for part in spec.split(","))}
    except ValueError as e:
        msg = f"bad offsets {spec!r}: use N or PARTITION:OFFSET,..."
        raise UserError(msg) from e


def read_stretch(common: dict[str, Any], topic: str, stretch: Stretch, *, partitions: list[int] | None = None,
                 idle_ms: int = 2000, max_records: int | None = None) -> Iterator[Any]:
    """Yield ConsumerRecords of the stretch, partition-interleaved, in offset order per partition."""
    c = KafkaConsumer(**common, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                      max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    try:
        parts = c.partitions_for_topic(topic)
        if not parts:
            msg = f"topic {topic!r} does not exist or has no partitions"
            raise UserError(msg)
        tps = [TopicPartition(topic, p) for p in sorted(parts) if partitions is None or p in partitions]
        c.assign(tps)
        snapshot_ms = int(time.time() * 1000)
        ends = c.end_offsets(tps)
        starts = c.beginning_offsets(tps)
        if stretch.start_ms is not None:
            found = c.offsets_for_times({tp: stretch.start_ms for tp in tps})
            for tp in tps:
                got = found.get(tp)
                if got is None:
                    starts[tp] = None  # nothing at or after the start time
                else:
                    starts[tp] = got.offset
        active: dict[TopicPartition, int | None] = {}
        for tp in tps:
            start = starts[tp]
            if start is None:
                continue
            wanted = stretch.start_for(tp.partition)
            start = max(start, wanted) if wanted is not None else start
            end = stretch.end_for(tp.partition)
            if end is not None and start >= end:
                continue
            c.seek(tp, start)
            active[tp] = end
        c.pause(*[tp for tp in tps if tp not in active])
        last_rec = dict.fromkeys(active, time.monotonic())
        n = 0
        while active:
            batch = c.poll(timeout_ms=200)
            now = time.monotonic()
            for tp, recs in batch.items():
                if tp not in active:
                    continue
                last_rec[tp] = now
                end = active[tp]
                for r in recs:
                    past_end = end is not None and r.offset >= end
                    newer = r.timestamp > snapshot_ms and end is None and stretch.end_ms is None
                    past_window = stretch.end_ms is not None and r.timestamp >= stretch.end_ms and end is None
                    if past_end or newer or past_window:
                        active.pop(tp, None)
                        c.pause(tp)
                        break
                    if stretch.accepts(r.timestamp):
                        yield r
                        n += 1
                        if max_records is not None and n >= max_records:
                            return
            for tp in list(active):
                if active[tp] is None and c.position(tp) >= ends[tp] and now - last_rec[tp] > idle_ms / 1000:
                    active.pop(tp)
                elif now - last_rec[tp] > max(idle_ms / 1000, 10.0):
                    active.pop(tp)  # explicit end never reached: the topic holds less than asked
    finally:
        c.close()
