"""The sink stage on its own: real queues, a real offset tracker and a real Redis; the Kafka producer is
a stand-in at the client boundary (tests/integration/test_worker_faults.py writes to a real broker)."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import TopicPartition
from kafka.errors import KafkaError

from ganomaly.contracts import messages as m
from ganomaly.contracts.results import build_result
from tests.unit.stage_kit import in_thread, model, record, wait_until
from worker.isolation import Failure
from worker.metrics import Health, WorkerMetrics
from worker.model_holder import ModelHolder, ServingModel
from worker.offsets import OffsetTracker
from worker.sinks.kafka_sink import KafkaSink
from worker.sinks.outputs import Acked, DeadLetter, OutputBatch
from worker.sinks.redis_sink import RedisSink
from worker.stages.flow import Lifecycle, dead_letter
from worker.stages.sink import SinkStage, retry_noter

TP0 = TopicPartition("in", 0)


class _Future:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    def get(self, timeout: float) -> None:
        if self.error is not None:
            raise self.error


class Producer:
    """Stands in for KafkaProducer: acknowledges every send, after failing the first ``failures`` of them."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, topic: str, **kw: Any) -> _Future:
        if self.failures:
            self.failures -= 1
            return _Future(KafkaError("broker away"))
        self.sent.append((topic, kw))
        return _Future(None)

    def flush(self, timeout: float) -> None:
        return None


class Rig:
    def __init__(self, serving: ServingModel, redis_url: str, prefix: str, producer: Producer) -> None:
        self.producer = producer
        self.out_q: queue.Queue[Any] = queue.Queue(maxsize=8)
        self.tracker = OffsetTracker()
        self.metrics, self.health = WorkerMetrics(), Health()
        self.life = Lifecycle(threading.Event(), self.tracker)
        self.redis = redis.Redis.from_url(redis_url)
        self.prefix = prefix
        self.acked: list[Acked] = []
        kafka = KafkaSink(producer, results_topic="res", alerts_topic="alr", dlq_topic="dlq", shadow_topic="shadow",  # type: ignore[arg-type]
                          worker_id="w-1", abort=self.life.abort, backoff_max_s=0.05, timeout_s=1.0,
                          on_retry=retry_noter(self.metrics, self.health, "kafka"))
        rsink = RedisSink(self.redis, prefix=prefix, ttl_s=60, maxlen=100, status_ttl_s=60, abort=self.life.abort, backoff_max_s=0.05,
                          on_retry=retry_noter(self.metrics, self.health, "redis"))
        self.stage = SinkStage(self.out_q, kafka_sink=kafka, redis_sink=rsink, models=ModelHolder(serving), assignment=lambda: {TP0},
                               worker_id="w-1", metrics=self.metrics, health=self.health, life=self.life, on_acked=self.acked.append)

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


def _result(serving: ServingModel, offset: int, score: float) -> m.Result:
    ref = m.InputRef(topic="in", partition=0, offset=offset, key=f"img-{offset}")
    return build_result(ref, score=score, threshold=serving.threshold, calibration=serving.artifact.calibration, model_version=serving.version,
                        record_timestamp_ms=1_700_000_000_000, scored_at_ms=1_700_000_000_010, worker="w-1", source="cam-1")


def _dead(offset: int) -> DeadLetter:
    return dead_letter(record(offset, b"junk"), Failure("undecodable", "UnidentifiedImageError", "cannot identify image"), "m-x")


@pytest.fixture
def serving(tmp_path: Path) -> ServingModel:
    return model(tmp_path / "m")


def test_records_are_done_only_once_kafka_and_redis_have_their_outputs(serving: ServingModel, redis_url: str, prefix: str) -> None:
    rig = Rig(serving, redis_url, prefix, Producer())
    for o in range(3):
        rig.tracker.add(TP0, o)
    results = [_result(serving, 0, serving.threshold + 1.0), _result(serving, 1, serving.threshold / 2)]
    scored = time.monotonic()
    rig.out_q.put(OutputBatch(results=results, keys=[b"img-0", b"img-1"], stages=[(scored - 0.2, scored - 0.1, scored)] * 2))
    rig.out_q.put(_dead(2))
    t = in_thread(rig.stage.run)
    wait_until(lambda: rig.tracker.in_flight() == 0)
    rig.life.stop.set()  # polling stopped, nothing in flight: the stage ends
    t.join(timeout=5)
    assert not t.is_alive()

    assert rig.tracker.committable() == {TP0: 3}
    assert [t for t, _ in rig.producer.sent] == ["res", "alr", "res", "dlq"]
    assert json.loads(rig.redis.get(f"{prefix}:result:in:0:0"))["is_anomaly"] is True
    assert rig.redis.xlen(f"{prefix}:alerts") == 1
    status = rig.redis.hgetall(f"{prefix}:worker:w-1")
    assert status[b"assigned"] == b"in-0" and status[b"model_version"] == serving.version.encode()
    assert (rig.stage.scored_total, rig.stage.dead_total) == (2, 1)
    assert rig.sample("ganomaly_images_scored_total", model_version=serving.version) == 2
    assert rig.sample("ganomaly_anomalies_total", model_version=serving.version) == 1
    assert rig.sample("ganomaly_dead_letters_total", reason="undecodable") == 1
    (acked,) = rig.acked  # one write: the results and the dead letter queued together
    assert len(acked.e2e_s) == 2 and acked.stages == [(scored - 0.2, scored - 0.1, scored)] * 2 and acked.done >= scored


def test_an_outage_is_waited_out_and_counted_and_nothing_is_done_meanwhile(serving: ServingModel, redis_url: str, prefix: str) -> None:
    rig = Rig(serving, redis_url, prefix, Producer(failures=3))
    rig.tracker.add(TP0, 0)
    rig.out_q.put(OutputBatch(results=[_result(serving, 0, 0.0)], keys=[b"img-0"]))
    t = in_thread(rig.stage.run)
    wait_until(lambda: rig.tracker.in_flight() == 0)
    assert rig.sample("ganomaly_output_retries_total", sink="kafka") == 3
    assert [t for t, _ in rig.producer.sent] == ["res"]  # one acknowledged send, however many tries
    rig.life.abort.set()
    t.join(timeout=5)


def test_abort_abandons_the_batch_and_its_records_stay_uncommitted(serving: ServingModel, redis_url: str, prefix: str) -> None:
    rig = Rig(serving, redis_url, prefix, Producer(failures=10**9))  # the broker never comes back
    rig.tracker.add(TP0, 0)
    rig.out_q.put(OutputBatch(results=[_result(serving, 0, 0.0)], keys=[b"img-0"]))
    t = in_thread(rig.stage.run)
    wait_until(lambda: (rig.sample("ganomaly_output_retries_total", sink="kafka") or 0) >= 2)
    rig.life.abort.set()
    t.join(timeout=5)
    assert not t.is_alive()
    assert rig.tracker.in_flight() == 1 and rig.tracker.committable() == {TP0: 0}
    assert rig.redis.get(f"{prefix}:result:in:0:0") is None


def test_an_idle_worker_keeps_its_status_fresh_so_the_fleet_still_shows_it(serving: ServingModel, redis_url: str, prefix: str) -> None:
    rig = Rig(serving, redis_url, prefix, Producer())
    rig.stage.redis_sink.status_ttl_s = 2  # refreshed at least every second
    t = in_thread(rig.stage.run)
    key = f"{prefix}:worker:w-1"
    wait_until(lambda: rig.redis.exists(key))  # nothing was ever scored: the idle refresh alone wrote it
    first = int(rig.redis.hget(key, "updated_ms"))
    wait_until(lambda: int(rig.redis.hget(key, "updated_ms") or 0) > first, timeout_s=5)
    assert 0 < rig.redis.ttl(key) <= 2
    assert rig.redis.hget(key, "scored_total") == b"0" and rig.redis.hget(key, "model_version") == serving.version.encode()
    rig.life.stop.set()
    t.join(timeout=5)
    assert not t.is_alive()
