"""The sink stage: outputs from the out queue -> Kafka, then Redis; only then are their records done.

Whatever is queued is written together (up to 17 items: fewer round trips under load). The
sinks retry through outages (worker/sinks/); a record is marked done in the offset tracker only
once every output of it is acknowledged, so the poll stage never commits past unwritten work.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from kafka import TopicPartition

from ganomaly.contracts import messages as m
from worker.metrics import Health, WorkerMetrics
from worker.model_holder import ModelHolder, ServingModel
from worker.retry import Aborted
from worker.sinks.kafka_sink import KafkaSink
from worker.sinks.outputs import Acked, DeadLetter, OutputBatch
from worker.sinks.redis_sink import RedisSink, now_ms
from worker.stages.flow import Lifecycle, drain_nowait

log = structlog.get_logger("worker")


def retry_noter(metrics: WorkerMetrics, health: Health, sink: str) -> Callable[[BaseException], None]:
    """A sink's ``on_retry``: an outage being waited out is counted, and alive (a restart would not end
    the outage, only add rebalances; the GanomalyOutputsWaiting alert tells the operator)."""

    def noted(_error: BaseException) -> None:
        metrics.retries.labels(sink).inc()
        health.beat("sink")

    return noted


class SinkStage:
    def __init__(self, out_q: queue.Queue[OutputBatch | DeadLetter], *, kafka_sink: KafkaSink, redis_sink: RedisSink, models: ModelHolder,
                 assignment: Callable[[], Iterable[TopicPartition]], worker_id: str, metrics: WorkerMetrics, health: Health, life: Lifecycle,
                 on_acked: Callable[[Acked], None] | None = None) -> None:
        self.out_q = out_q
        self.kafka_sink, self.redis_sink = kafka_sink, redis_sink
        self.models = models
        self.assignment = assignment  # the poll stage's partitions, for the status hash
        self.worker_id = worker_id
        self.metrics = metrics
        self.health = health
        self.life = life
        self.on_acked = on_acked  # optional: each written batch's latencies (benchmarks)
        self.scored_total = 0
        self._status_at = 0.0  # monotonic time of the last status write
        self.dead_total = 0

    def run(self) -> None:
        while True:
            try:
                first = self.out_q.get(timeout=0.2)
            except queue.Empty:
                self.health.beat("sink")
                if self.life.finished():
                    return
                self._idle_status()
                continue
            if not self.write(_merged([first, *drain_nowait(self.out_q, 16)])):
                return

    def write(self, batch: OutputBatch) -> bool:
        """Write one batch to Kafka then Redis and mark its records done; False when shutdown gave up on it."""
        model = self.models.current()
        t0 = time.monotonic()
        try:
            self.kafka_sink.write(batch)
            self.redis_sink.write(batch, self._status(model))
        except Aborted:
            log.warning("outputs_abandoned", results=len(batch.results), dead=len(batch.dead), note="offsets stay uncommitted")
            return False
        self.metrics.sink.observe(time.monotonic() - t0)
        done_ms = now_ms()
        e2e = [max(0.0, (done_ms - r.record_timestamp_ms) / 1000) for r in batch.results]
        if self.on_acked is not None:
            self.on_acked(Acked([(done_ms - r.record_timestamp_ms) / 1000 for r in batch.results], batch.stages, time.monotonic()))
        self.life.tracker.done_many([(TopicPartition(r.input.topic, r.input.partition), r.input.offset) for r in batch.results] +
                                    [(TopicPartition(d.topic, d.partition), d.offset) for d in batch.dead])
        self._observe(batch, e2e)
        for d in batch.dead:
            self.metrics.dead_letters.labels(d.reason).inc()
            log.warning("dead_letter", topic=d.topic, partition=d.partition, offset=d.offset, reason=d.reason, error=d.message[:200])
        self.scored_total += len(batch.results)
        self.dead_total += len(batch.dead)
        self.health.beat("sink")
        return True

    def _observe(self, batch: OutputBatch, e2e: list[float]) -> None:
        """The per-result metrics, with each labelled series looked up once per batch, not per result."""
        observe_e2e = self.metrics.e2e.observe
        for seconds in e2e:
            observe_e2e(seconds)
        by_version: dict[str, list[Any]] = {}
        for r in batch.results:
            by_version.setdefault(r.model_version, []).append(r)
        for version, results in by_version.items():
            self.metrics.scored.labels(version).inc(len(results))
            observe_score = self.metrics.score.labels(version).observe
            for r in results:
                observe_score(r.score_normalised)
            if anomalies := sum(r.is_anomaly for r in results):
                self.metrics.anomalies.labels(version).inc(anomalies)

    def _idle_status(self) -> None:
        # An idle worker is alive too: refresh its status hash (which expires after status_ttl_s) so the
        # fleet keeps showing it. One attempt, no retry: an unanswered refresh must not hold up the stage.
        if time.monotonic() - self._status_at < max(1.0, self.redis_sink.status_ttl_s / 3):
            return
        self._status_at = time.monotonic()
        self.redis_sink.write_status(self._status(self.models.current()))

    def _status(self, model: ServingModel) -> m.WorkerStatus:
        self._status_at = time.monotonic()
        return m.WorkerStatus(worker=self.worker_id, model_version=model.version, threshold=model.threshold,
                              assigned=",".join(sorted(f"{tp.topic}-{tp.partition}" for tp in self.assignment())),
                              in_flight=self.life.tracker.in_flight(), scored_total=self.scored_total, dead_letters_total=self.dead_total,
                              updated_ms=now_ms())


def _merged(items: list[Any]) -> OutputBatch:
    """One output batch of the queued items (score batches and the decoders' dead letters)."""
    batch = OutputBatch()
    for item in items:
        if isinstance(item, DeadLetter):
            batch.dead.append(item)
        else:
            batch.results += item.results
            batch.dead += item.dead  # images the model could not score
            batch.keys += item.keys
            batch.shadow += item.shadow
            batch.stages += item.stages
    return batch
