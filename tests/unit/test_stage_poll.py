"""The poll stage on its own: a real offset tracker and queues; the consumer is a stand-in at the client
boundary (the integration tests run the stage against a real broker, rebalances and SIGKILL included)."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from tests.unit.stage_kit import grey_png, in_thread, record, wait_until
from worker.metrics import Health, WorkerMetrics
from worker.offsets import OffsetTracker
from worker.stages.poll import PollStage, Rebalance

TP0, TP1 = TopicPartition("in", 0), TopicPartition("in", 1)


class _Net:
    async def sleep(self, s: float) -> None:
        await asyncio.sleep(s)


class _Coordinator:
    def __init__(self) -> None:
        self._net = _Net()
        self.commits: list[dict[TopicPartition, OffsetAndMetadata]] = []

    async def _commit_offsets_sync_async(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.commits.append(offsets)


class Consumer:
    """Stands in for KafkaConsumer: hands out the given polls, records commits, pauses and resumes."""

    def __init__(self, polls: list[dict[TopicPartition, list[Any]]] | None = None) -> None:
        self.polls = list(polls or [])
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail_commits = False
        self._paused: set[TopicPartition] = set()
        self._coordinator = _Coordinator()
        self.listener: Any = None

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        if self.polls:
            return self.polls.pop(0)
        threading.Event().wait(timeout_ms / 1000)
        return {}

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if self.fail_commits:
            raise KafkaError("rebalance in progress")
        self.commits.append({tp: o.offset for tp, o in offsets.items()})

    def pause(self, *tps: TopicPartition) -> None:
        self._paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused -= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def highwater(self, tp: TopicPartition) -> int:
        return 10

    def position(self, tp: TopicPartition, timeout_ms: int) -> int:
        return 4


def _polled(tp: TopicPartition, offsets: range) -> dict[TopicPartition, list[Any]]:
    return {tp: [record(o, grey_png(o), partition=tp.partition) for o in offsets]}


class Rig:
    def __init__(self, consumer: Consumer, *, max_in_flight: int = 100, resume_in_flight: int = 10) -> None:
        self.consumer = consumer
        self.raw_q: queue.Queue[Any] = queue.Queue()
        self.tracker = OffsetTracker()
        self.metrics, self.health = WorkerMetrics(), Health()
        self.stop = threading.Event()
        self.stage = PollStage(consumer, self.raw_q, tracker=self.tracker, depths={"raw": self.raw_q}, metrics=self.metrics,  # type: ignore[arg-type]
                               health=self.health, stop=self.stop, max_poll_records=500, commit_interval_s=0.05,
                               max_in_flight=max_in_flight, resume_in_flight=resume_in_flight, revoke_wait_s=2.0)
        self.stage.subscribe("in")
        self.listener: Rebalance = consumer.listener

    def assign(self, *tps: TopicPartition) -> None:
        asyncio.run(self.listener.on_partitions_assigned(set(tps)))

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


def test_polled_records_are_queued_and_tracked_and_commits_stay_below_the_lowest_unfinished() -> None:
    rig = Rig(Consumer([_polled(TP0, range(5))]))
    rig.assign(TP0)
    assert rig.health.assigned
    rig.stage.poll_once()
    assert [r.offset for r in rig.raw_q.queue] == [0, 1, 2, 3, 4] and rig.tracker.in_flight() == 5
    for o in (0, 1, 3):
        rig.tracker.done(TP0, o)
    rig.stage.commit()
    rig.stage.commit()  # nothing moved: nothing sent
    assert rig.consumer.commits == [{TP0: 2}]
    rig.tracker.done(TP0, 2)
    rig.stage.commit()
    assert rig.consumer.commits[-1] == {TP0: 4}
    assert rig.sample("ganomaly_commits_total", outcome="ok") == 2


def test_a_failed_commit_is_counted_and_the_next_one_catches_up() -> None:
    rig = Rig(Consumer([_polled(TP0, range(2))]))
    rig.assign(TP0)
    rig.stage.poll_once()
    rig.tracker.done(TP0, 0)
    rig.consumer.fail_commits = True
    rig.stage.commit()
    assert rig.sample("ganomaly_commits_total", outcome="failed") == 1 and rig.consumer.commits == []
    rig.consumer.fail_commits = False
    rig.stage.commit()
    assert rig.consumer.commits == [{TP0: 1}]


def test_too_much_in_flight_pauses_every_partition_until_it_falls_to_the_resume_mark() -> None:
    rig = Rig(Consumer([_polled(TP0, range(4)), {}, {}]), max_in_flight=4, resume_in_flight=1)
    rig.assign(TP0)
    rig.stage.poll_once()
    assert rig.consumer.paused() == {TP0} and rig.sample("ganomaly_paused_partitions") == 1
    rig.assign(TP1)  # a partition assigned while paused starts paused
    assert rig.consumer.paused() == {TP0, TP1}
    for o in (0, 1):
        rig.tracker.done(TP0, o)
    rig.stage.poll_once()
    assert rig.consumer.paused() == {TP0, TP1}  # 2 in flight: above the resume mark
    rig.tracker.done(TP0, 2)
    rig.stage.poll_once()
    assert rig.consumer.paused() == set() and rig.sample("ganomaly_paused_partitions") == 0
    assert rig.sample("ganomaly_in_flight") == 1


def test_a_revoke_waits_for_the_partitions_records_commits_them_and_forgets_them() -> None:
    rig = Rig(Consumer([{**_polled(TP0, range(3)), **_polled(TP1, range(2))}]))
    rig.assign(TP0, TP1)
    rig.stage.poll_once()
    rig.tracker.done(TP0, 0)
    threading.Timer(0.2, lambda: [rig.tracker.done(TP0, o) for o in (1, 2)]).start()  # the sink finishes them during the revoke
    asyncio.run(rig.listener.on_partitions_revoked({TP0}))
    assert rig.consumer._coordinator.commits == [{TP0: OffsetAndMetadata(3, "", -1)}]
    assert rig.stage.assignment == {TP1} and rig.tracker.committable() == {TP1: 0} and rig.tracker.in_flight() == 2
    assert rig.sample("ganomaly_assigned_partitions") == 1
    asyncio.run(rig.listener.on_partitions_lost({TP1}))
    assert rig.stage.assignment == set() and not rig.health.assigned and rig.tracker.in_flight() == 0


def test_run_polls_commits_and_observes_until_stopped() -> None:
    rig = Rig(Consumer([_polled(TP0, range(3))]))
    rig.assign(TP0)
    t = in_thread(rig.stage.run)
    wait_until(lambda: rig.tracker.in_flight() == 3)
    for o in range(3):
        rig.tracker.done(TP0, o)
    wait_until(lambda: rig.consumer.commits == [{TP0: 3}])
    wait_until(lambda: rig.sample("ganomaly_consumer_lag", topic="in", partition="0") == 6)
    assert rig.sample("ganomaly_queue_depth", queue="raw") == 3  # nobody decodes here
    rig.stop.set()
    t.join(timeout=5)
    assert not t.is_alive() and "poll" in rig.health.live()[1]


class _StuckConsumer(Consumer):
    """Fetch responses keep reporting new records (the high watermark climbs) but none is handed out."""

    def __init__(self) -> None:
        super().__init__()
        self.hw = 10

    def highwater(self, tp: TopicPartition) -> int:
        self.hw += 5
        return self.hw


def test_a_consumer_that_stops_receiving_while_records_wait_stops_the_worker_to_be_restarted() -> None:
    consumer = _StuckConsumer()
    rig = Rig(consumer)
    rig.stage.stall_watch.after_s = 0.3
    rig.assign(TP0)
    for _ in range(20):
        rig.stage.observe()
        if rig.stop.is_set():
            break
        threading.Event().wait(0.05)
    assert rig.stage.stalled == [TP0] and rig.stop.is_set()
    assert rig.sample("ganomaly_consumer_lag", topic="in", partition="0") is not None


def test_a_consumer_with_nothing_new_from_the_broker_is_waiting_out_an_outage_not_stalled() -> None:
    rig = Rig(Consumer())  # position 4, high watermark 10, forever: nothing heard
    rig.stage.stall_watch.after_s = 0.1
    rig.assign(TP0)
    for _ in range(6):
        rig.stage.observe()
        threading.Event().wait(0.05)
    assert rig.stage.stalled == [] and not rig.stop.is_set()
