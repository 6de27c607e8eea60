"""The poll stage: the only user of the consumer. Polls, commits, applies backpressure, follows rebalances.

Commits are at-least-once: per partition, only offsets below the lowest record whose outputs are
not yet acknowledged (worker/offsets.py). Above ``max_in_flight`` unacknowledged records every
assigned partition is paused, and resumed at or below ``resume_in_flight``: nothing is dropped,
the broker keeps what the worker cannot take yet.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import structlog
from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from worker.metrics import Health, WorkerMetrics
from worker.offsets import OffsetTracker
from worker.stages.stall import Offsets, StallWatch

log = structlog.get_logger("worker")


class PollStage:
    def __init__(self, consumer: KafkaConsumer, raw_q: queue.Queue[Any], *, tracker: OffsetTracker, depths: dict[str, queue.Queue[Any]],
                 metrics: WorkerMetrics, health: Health, stop: threading.Event, max_poll_records: int, commit_interval_s: float,
                 max_in_flight: int, resume_in_flight: int, revoke_wait_s: float, stall_timeout_s: float = 0.0) -> None:
        self.consumer = consumer
        self.raw_q = raw_q  # unbounded: bounded by max_in_flight through pause/resume
        self.tracker = tracker
        self.depths = depths  # the pipeline's queues by name, for the queue-depth gauge
        self.metrics = metrics
        self.health = health
        self.stop = stop
        self.max_poll_records = max_poll_records
        self.commit_interval_s = commit_interval_s
        self.max_in_flight, self.resume_in_flight = max_in_flight, resume_in_flight
        self.revoke_wait_s = revoke_wait_s  # how long a revoke waits for the revoked partitions' in-flight records
        # Replaced, never mutated: the rebalance listener (the consumer's IO thread) writes it, the
        # poll loop and the sink's status hash read it.
        self.assignment: frozenset[TopicPartition] = frozenset()
        self.paused = False
        self.committed: dict[TopicPartition, int] = {}  # last commit per partition: a commit sends only what moved
        self.stall_watch = StallWatch(stall_timeout_s)
        self.stalled: list[TopicPartition] = []  # set when the consumer stopped receiving: the worker exits to be restarted

    def subscribe(self, topic: str) -> None:
        self.consumer.subscribe([topic], listener=Rebalance(self))

    def run(self) -> None:
        """Poll until stopped; the caller drains and makes the last commit."""
        last_commit = last_observe = time.monotonic()
        while not self.stop.is_set():
            self.poll_once()
            now = time.monotonic()
            if now - last_commit >= self.commit_interval_s:
                self.commit()
                last_commit = now
            if now - last_observe >= 1.0:
                self.observe()
                last_observe = now

    def poll_once(self) -> None:
        records = self.consumer.poll(timeout_ms=100, max_records=self.max_poll_records)
        self.health.beat("poll")
        for tp, recs in records.items():
            self.tracker.add_many(tp, [rec.offset for rec in recs])
            for rec in recs:
                self.raw_q.put(rec)
        self.backpressure()

    def commit(self) -> None:
        """Commit, per assigned partition, the lowest offset not yet acknowledged, where it moved."""
        offsets = self.tracker.committable(self.assignment)
        new = {tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items() if self.committed.get(tp) != off}
        if not new:
            return
        try:
            self.consumer.commit(new)
            self.committed.update({tp: o.offset for tp, o in new.items()})
            self.metrics.commits.labels("ok").inc()
        except KafkaError as e:  # rebalance in progress or broker away: the next commit catches up
            self.metrics.commits.labels("failed").inc()
            log.warning("commit_failed", error=f"{type(e).__name__}: {e}")

    def backpressure(self) -> None:
        n = self.tracker.in_flight()
        self.metrics.in_flight.set(n)
        if not self.paused and n >= self.max_in_flight and self.assignment:
            self.consumer.pause(*self.assignment)
            self.paused = True
            log.info("paused", in_flight=n, partitions=len(self.assignment))
        elif self.paused and n <= self.resume_in_flight:
            self.consumer.resume(*self.consumer.paused())
            self.paused = False
            log.info("resumed", in_flight=n)
        self.metrics.paused.set(len(self.consumer.paused()))

    def observe(self) -> None:
        for name, q in self.depths.items():
            self.metrics.queue_depth.labels(name).set(q.qsize())
        offsets = {tp: self._offsets(tp) for tp in self.assignment}
        for tp, o in offsets.items():
            if o.position is not None and o.highwater is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, o.highwater - o.position))
        stalled = self.stall_watch.observe(time.monotonic(), offsets, self.paused)
        if stalled and not self.stalled:
            # A restart rejoins the group and resumes from the committed offsets: nothing is lost,
            # and what was in flight drains first as on SIGTERM.
            self.stalled = stalled
            log.error("consumer_stalled", partitions=[f"{tp.topic}-{tp.partition}" for tp in stalled],
                      waited_s=self.stall_watch.after_s, lag={f"{tp.topic}-{tp.partition}": offsets[tp].highwater - offsets[tp].position  # type: ignore[operator]
                                                              for tp in stalled})
            self.stop.set()

    def _offsets(self, tp: TopicPartition) -> Offsets:
        try:
            position = self.consumer.position(tp, timeout_ms=0)
        except (KafkaError, TypeError, AssertionError, KeyError):  # no position yet (just assigned, being reset or revoked)
            position = None
        return Offsets(position=position, highwater=self.consumer.highwater(tp))

    def set_assignment(self, assignment: frozenset[TopicPartition]) -> None:
        self.assignment = assignment
        self.health.assigned = bool(assignment)


class Rebalance(AsyncConsumerRebalanceListener):
    """Runs on the consumer's IO loop: awaits (never blocks) so heartbeats continue.

    On revoke, gives in-flight records of the revoked partitions a bounded time to
    finish, commits what is finished, and forgets them; whatever is unfinished is
    redelivered to the new owner (outputs are idempotent, so that is harmless).
    kafka-python has no public awaitable commit, so the coordinator's coroutine is
    used; if it is missing, the periodic commits are all that happened.
    """

    def __init__(self, poll: PollStage) -> None:
        self.poll = poll

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        p = self.poll
        coord = getattr(p.consumer, "_coordinator", None)
        net = getattr(coord, "_net", None)
        deadline = time.monotonic() + p.revoke_wait_s
        while net is not None and p.tracker.in_flight(revoked) and time.monotonic() < deadline:
            await net.sleep(0.05)
        offsets = {tp: OffsetAndMetadata(o, "", -1) for tp, o in p.tracker.committable(revoked).items() if p.committed.get(tp) != o}
        commit = getattr(coord, "_commit_offsets_sync_async", None)
        if offsets and commit is not None:
            try:
                await commit(offsets)
                p.committed.update({tp: o.offset for tp, o in offsets.items()})
            except Exception as e:  # noqa: BLE001 - never let a failed commit break the rebalance
                log.warning("revoke_commit_failed", error=f"{type(e).__name__}: {e}")
        p.tracker.forget(revoked)
        for tp in revoked:
            p.committed.pop(tp, None)
        p.set_assignment(p.assignment - revoked)
        p.metrics.assigned.set(len(p.assignment))
        log.info("partitions_revoked", partitions=sorted(f"{t.topic}-{t.partition}" for t in revoked), committed=len(offsets))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        p = self.poll
        p.set_assignment(p.assignment | assigned)
        p.metrics.assigned.set(len(p.assignment))
        if p.paused and assigned:  # new partitions start paused too while we are over the limit
            p.consumer.pause(*assigned)
        log.info("partitions_assigned", partitions=sorted(f"{t.topic}-{t.partition}" for t in assigned))

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        p = self.poll
        p.tracker.forget(lost)
        p.set_assignment(p.assignment - lost)
        log.warning("partitions_lost", partitions=sorted(f"{t.topic}-{t.partition}" for t in lost))
