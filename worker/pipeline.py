"""The worker's pipeline: its queues, its stages (worker/stages/), their threads, and the drain on stop.

    poll --raw_q--> decode (N threads) --ready_q--> score (N streams) --out_q (bounded)--> sink
      ^                  | bad input: dead letters ----------------------->|
      +--------------- OffsetTracker.done() once Kafka and Redis acknowledged

Built before start-up waits (its metrics and health are served meanwhile); started once the
broker and Redis answer; ``run`` polls on the calling thread until stopped, then drains.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import structlog
import torch

from ganomaly.data.images import DecodeLimits
from ganomaly.registry import ModelStore, RedisPointer
from ganomaly.thresholds import OperatorThresholds
from worker.clients import Clients
from worker.conversions import ChannelConversions
from worker.decode_pool import DecodePool
from worker.heap import HeapTrimmer
from worker.metrics import Health, WorkerMetrics
from worker.model_holder import ModelHolder, ServingModel
from worker.offsets import OffsetTracker
from worker.settings import WorkerSettings
from worker.sinks.kafka_sink import KafkaSink
from worker.sinks.outputs import Acked, DeadLetter, OutputBatch
from worker.sinks.redis_sink import RedisSink
from worker.stages.decode import Decoder, DecodeStage
from worker.stages.flow import Decoded, Lifecycle
from worker.stages.model_watch import ModelWatch
from worker.stages.poll import PollStage
from worker.stages.score import ScoreStage
from worker.stages.sink import SinkStage, retry_noter

log = structlog.get_logger("worker")


class Pipeline:
    def __init__(self, s: WorkerSettings, *, models: ModelHolder, shadow: ServingModel | None, device: torch.device,
                 decode_pool: DecodePool | None, pointer: RedisPointer | None, stop: threading.Event) -> None:
        self.s = s
        self.models = models
        self.decode_pool = decode_pool
        self.tracker = OffsetTracker()
        self.metrics = WorkerMetrics()
        self.health = Health(stale_s=max(s.liveness_stale_s, s.drain_timeout_s + 10))
        self.health.model_loaded = True
        self.life = Lifecycle(stop, self.tracker)
        self.raw_q: queue.Queue[Any] = queue.Queue()  # bounded by max_in_flight through pause/resume
        self.ready_q: queue.Queue[list[Decoded]] = queue.Queue()  # chunks of decoded records
        self.out_q: queue.Queue[OutputBatch | DeadLetter] = queue.Queue(maxsize=8)
        limits = DecodeLimits(max_bytes=s.max_image_bytes, max_pixels=s.max_pixels, min_side=s.min_side, max_aspect=s.max_aspect,
                              channel_policy=s.channel_policy)
        decoder = Decoder(limits, ChannelConversions(self.metrics.converted))
        # with processes, each decode thread keeps one chunk in flight: at least one per process, or processes idle
        self.decoders = [DecodeStage(self.raw_q, self.ready_q, self.out_q, models=models, decoder=decoder, pool=decode_pool,
                                     chunk=s.decode_chunk, health=self.health, life=self.life)
                         for _ in range(max(s.decode_threads, s.decode_processes))]
        heap = HeapTrimmer(s.heap_trim_interval_s)  # one for the process: malloc_trim frees every thread's arenas
        self.scorers = [ScoreStage(self.ready_q, self.out_q, models=models, shadow=shadow, decoder=decoder, device=device,
                                   max_batch_size=s.max_batch_size, max_wait_s=s.max_wait_ms / 1000.0, worker_id=s.worker_id,
                                   metrics=self.metrics, health=self.health, life=self.life, heap=heap, name=f"score-{i}")
                        for i in range(s.score_streams)]
        self.model_watch = ModelWatch(pointer, ModelStore(s.model_store) if s.model_store is not None else None, models=models,
                                      device=device, amp=s.amp, threshold_override=s.threshold_override, poll_s=s.model_poll_s,
                                      metrics=self.metrics, health=self.health, stop=stop,
                                      thresholds=OperatorThresholds(pointer.r, s.redis.redis_prefix) if pointer is not None else None)
        self.poll: PollStage | None = None  # the connected stages, made by start()
        self.sink: SinkStage | None = None
        self.crashed: str | None = None  # the stage whose unexpected error stopped the worker
        self.drained = False  # whether the drain on stop finished everything in flight
        self._clients: Clients | None = None
        self._threads: list[threading.Thread] = []

    def partitions(self) -> int:
        return len(self.poll.assignment) if self.poll is not None else 0

    def start(self, clients: Clients, on_acked: Callable[[Acked], None] | None = None) -> None:
        """Make the stages that need the clients, subscribe, and start every stage but polling."""
        s = self.s
        self._clients = clients
        poll = self.poll = PollStage(
            clients.consumer, self.raw_q, tracker=self.tracker, depths={"raw": self.raw_q, "ready": self.ready_q, "out": self.out_q},
            metrics=self.metrics, health=self.health, stop=self.life.stop, max_poll_records=s.max_poll_records,
            commit_interval_s=s.commit_interval_ms / 1000, max_in_flight=s.max_in_flight, resume_in_flight=s.resume_in_flight,
            revoke_wait_s=min(s.drain_timeout_s, s.session_timeout_ms / 2000), stall_timeout_s=s.stall_timeout_s)
        abort = self.life.abort
        kafka_sink = KafkaSink(clients.producer, results_topic=s.results_topic, alerts_topic=s.alerts_topic, dlq_topic=s.dlq_topic,
                               shadow_topic=s.shadow_topic, worker_id=s.worker_id, abort=abort, backoff_max_s=s.retry_backoff_max_s,
                               timeout_s=s.delivery_timeout_ms / 1000, on_retry=retry_noter(self.metrics, self.health, "kafka"),
                               on_value_omitted=self.metrics.values_omitted.inc)
        redis_sink = RedisSink(clients.redis, prefix=s.redis.redis_prefix, ttl_s=s.result_ttl_s, maxlen=s.alerts_stream_maxlen,
                               status_ttl_s=s.status_ttl_s, abort=abort, backoff_max_s=s.retry_backoff_max_s,
                               on_retry=retry_noter(self.metrics, self.health, "redis"))
        self.sink = SinkStage(self.out_q, kafka_sink=kafka_sink, redis_sink=redis_sink, models=self.models, assignment=lambda: poll.assignment,
                              worker_id=s.worker_id, metrics=self.metrics, health=self.health, life=self.life, on_acked=on_acked)
        self.model_watch.follow_threshold()  # the operator's threshold for the start-up version, before the first record is polled
        poll.subscribe(s.input_topic)
        self._threads = [self._thread(f"decode-{i}", d.run) for i, d in enumerate(self.decoders)]
        self._threads += [self._thread(sc.name, sc.run) for sc in self.scorers]
        self._threads += [self._thread("models", self.model_watch.run), self._thread("sink", self.sink.run)]
        for t in self._threads:
            t.start()

    def _thread(self, name: str, loop: Callable[[], None]) -> threading.Thread:
        """A stage's thread, whose unexpected error stops the whole worker at once.

        Outages are retried inside the stages and bad records are dead-lettered, so what reaches
        here is a bug or a permanent fault (a Redis key of the wrong type, say). A dead stage
        would otherwise leave a live process that polls, pauses and never finishes anything
        until a liveness probe notices; exiting non-zero lets the orchestrator restart it (and
        show the crash loop) now. In-flight records stay uncommitted, so the restart redoes them.
        """
        def run() -> None:
            try:
                loop()
            except Exception:  # any error: logged with its traceback, then everything stops
                log.exception("stage_crashed", stage=name)
                self.crashed = self.crashed or name
                self.life.abort.set()
                self.life.stop.set()

        return threading.Thread(target=run, name=name, daemon=True)

    def run(self) -> None:
        """Poll on this thread until stopped, then drain, make the last commit and close the clients."""
        assert self.poll is not None
        try:
            self.poll.run()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        assert self.poll is not None and self._clients is not None
        log.info("draining", in_flight=self.tracker.in_flight(), budget_s=self.s.drain_timeout_s)
        # after a crash nothing in flight can finish: waiting out the budget would only delay the restart
        drained = self.drained = self.tracker.wait_drained(None, 0 if self.crashed else self.s.drain_timeout_s)
        if not drained:
            log.warning("drain_budget_exceeded", in_flight=self.tracker.in_flight())
        self.life.abort.set()
        for t in self._threads:
            t.join(timeout=5)
        if self.decode_pool is not None:
            self.decode_pool.close()
        self.poll.commit()
        self._clients.close()
