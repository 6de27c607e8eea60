"""Read a stretch of a topic with manual assignment: no group, no commits, production untouched.

A stretch is, per partition, [start, end) in offsets, or a time window
[start_ms, end_ms) on record timestamps, or "everything until the current end".
``offsets_for_times`` only positions the read; every record is still filtered by its
own timestamp (brokers differ: Tansu searches by append time).

Each partition's end is fixed when the read begins and the read goes on until the
partition's position reaches it, however long the caller spends between records:
idleness never ends a partition. The end is the high watermark that a fetch reports,
not only the ListOffsets answer, because Tansu answers ListOffsets with the base offset
of the last record batch when a producer packed several records into one (too early by
up to a batch); its fetch responses carry the true high watermark, and Apache Kafka's
two answers agree. A partition that returns nothing for ``idle_ms`` of polling while
records remain before its end is given up as "stalled": the read is then incomplete,
and ``StretchAccount`` says so for the report.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from kafka import KafkaConsumer, TopicPartition

from ganomaly.connections.kafka import make_consumer
from ganomaly.connections.offsets import fixed_ends
from ganomaly.errors import UserError

log = structlog.get_logger(__name__)

# How a partition's read ended: every offset up to the fixed end read; the first record at or
# after the window's end_ms seen; --max-records reached; or nothing came for idle_ms of polling.
Status = Literal["reading", "complete", "window_end", "max_records", "stalled"]


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


@dataclass
class PartitionRead:
    """One partition's part of a stretch: offsets [start, end) fixed when the read began, and what was read of them."""

    start: int
    end: int
    requested_end: int | None = None  # an explicit end past the partition's end when the read began
    read: int = 0  # records received from [start, end)
    selected: int = 0  # of those, inside the time window: the records handed to the caller
    position: int = 0  # the next offset to read
    status: Status = "reading"

    @property
    def expected(self) -> int:
        """Offsets in the stretch: its records, unless compaction or transaction markers left gaps."""
        return self.end - self.start

    @property
    def complete(self) -> bool:
        return self.status in ("complete", "window_end")


@dataclass
class StretchAccount:
    """What a read covered, per partition; filled in while the records are read."""

    topic: str = ""
    partitions: dict[int, PartitionRead] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every partition read to its end (a --max-records cut is asked for, and so not incomplete)."""
        return all(p.complete or p.status == "max_records" for p in self.partitions.values())

    def shortfalls(self) -> list[str]:
        """One line per partition that could not be read to its end."""
        return [f"{self.topic} partition {n}: read {p.read} of {p.expected} records (offsets {p.start}-{p.end}, stopped at {p.position}): "
                "no records came while polling" for n, p in sorted(self.partitions.items()) if p.status == "stalled"]

    def summary(self) -> dict[str, Any]:
        parts = {str(n): {"start": p.start, "end": p.end, "expected": p.expected, "read": p.read, "selected": p.selected, "status": p.status,
                          **({"requested_end": p.requested_end} if p.requested_end is not None else {})}
                 for n, p in sorted(self.partitions.items())}
        return {"topic": self.topic, "complete": self.complete, "expected": sum(p.expected for p in self.partitions.values()),
                "read": sum(p.read for p in self.partitions.values()), "selected": sum(p.selected for p in self.partitions.values()),
                "truncated_by_max_records": any(p.status == "max_records" for p in self.partitions.values()), "partitions": parts}


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
                 idle_ms: int = 30_000, max_records: int | None = None, account: StretchAccount | None = None) -> Iterator[Any]:
    """Yield ConsumerRecords of the stretch, partition-interleaved, in offset order per partition."""
    c = make_consumer(common, group_id=None, fetch_max_bytes=64 * 1024 * 1024)
    try:
        parts = c.partitions_for_topic(topic)
        if not parts:
            msg = f"topic {topic!r} does not exist or has no partitions"
            raise UserError(msg)
        tps = [TopicPartition(topic, p) for p in sorted(parts) if partitions is None or p in partitions]
        c.assign(tps)
        acct = account if account is not None else StretchAccount(topic)
        acct.topic = topic
        ends = fixed_ends(c, tps, timeout_s=max(idle_ms / 1000, 10.0))
        starts: dict[TopicPartition, int | None] = dict(c.beginning_offsets(tps))
        if stretch.start_ms is not None:
            found = c.offsets_for_times({tp: stretch.start_ms for tp in tps})
            for tp in tps:
                got = found.get(tp)
                starts[tp] = None if got is None else got.offset  # None: nothing at or after the start time
        active: dict[TopicPartition, PartitionRead] = {}
        for tp in tps:
            start = starts[tp]
            if start is None:
                continue
            wanted = stretch.start_for(tp.partition)
            start = max(start, wanted) if wanted is not None else start
            asked = stretch.end_for(tp.partition)
            end = ends[tp] if asked is None else min(asked, ends[tp])
            if start >= end:
                continue
            acct.partitions[tp.partition] = active[tp] = PartitionRead(start=start, end=end, position=start,
                                                                      requested_end=asked if asked is not None and asked > ends[tp] else None)
            c.seek(tp, start)
        c.pause(*[tp for tp in tps if tp not in active])
        yield from _read(c, active, stretch, idle_ms, max_records)
    finally:
        c.close()


def _read(c: KafkaConsumer, active: dict[TopicPartition, PartitionRead], stretch: Stretch, idle_ms: int,
          max_records: int | None) -> Iterator[Any]:
    def finish(tp: TopicPartition, status: Status) -> None:
        active.pop(tp).status = status
        c.pause(tp)

    n = 0
    polled_idle_s = 0.0  # time spent inside poll() with no progress; time the caller spends between records never counts
    while active:
        t0 = time.monotonic()
        batch = c.poll(timeout_ms=200)
        poll_s = time.monotonic() - t0
        progressed = False
        for tp, recs in batch.items():
            part = active.get(tp)
            for r in recs if part is not None else ():
                if r.offset >= part.end:
                    finish(tp, "complete")
                    break
                part.read += 1
                part.position = r.offset + 1
                progressed = True
                # A window's end stops a partition whose end was not given in offsets (timestamps rise within a partition).
                if stretch.end_ms is not None and r.timestamp >= stretch.end_ms and stretch.end_for(tp.partition) is None:
                    finish(tp, "window_end")
                    break
                if stretch.accepts(r.timestamp):
                    part.selected += 1
                    yield r
                    n += 1
                    if max_records is not None and n >= max_records:
                        for rest in list(active):
                            finish(rest, "max_records")
                        return
        for tp in list(active):
            part = active[tp]
            # The position also moves past offsets that hold no record (compaction, transaction markers).
            part.position = max(part.position, c.position(tp))
            if part.position >= part.end:
                finish(tp, "complete")
        polled_idle_s = 0.0 if progressed else polled_idle_s + poll_s
        if active and polled_idle_s > idle_ms / 1000:
            for tp in list(active):
                log.warning("replay_partition_stalled", topic=tp.topic, partition=tp.partition, position=active[tp].position,
                            end=active[tp].end, idle_s=round(polled_idle_s, 1))
                finish(tp, "stalled")
