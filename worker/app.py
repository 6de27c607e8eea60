"""The worker process: wiring of the poll loop, decoders, scorer and sink thread."""

from __future__ import annotations

import gc
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
import structlog
import torch
from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from structlog.contextvars import bound_contextvars

from ganomaly.artifact import load_artifact
from ganomaly.connections.kafka import ensure_topics, headers_dict, make_consumer, make_producer
from ganomaly.connections.redis import make_redis
from ganomaly.connections.startup import ConnectError, StartupStopped, StartupWait, connect_kafka, wait_for_redis
from ganomaly.contracts import messages as m
from ganomaly.contracts.headers import continue_trace
from ganomaly.data.images import Converted, DecodeLimits, DecodeOutcome, decode_many_noting_conversion
from ganomaly.device import resolve_device
from ganomaly.errors import ArtifactError, UserError
from worker.batcher import next_batch
from worker.conversions import ChannelConversions
from worker.decode_pool import DecodePool
from worker.isolation import Failure, score_isolating_failures
from worker.metrics import Health, WorkerMetrics, serve_http
from worker.model_holder import ModelHolder, ServingModel, serving_model, warm_up
from worker.offsets import OffsetTracker
from worker.retry import Aborted
from worker.settings import WorkerSettings
from worker.sinks.kafka_sink import KafkaSink
from worker.sinks.outputs import DeadLetter, OutputBatch
from worker.sinks.redis_sink import RedisSink, now_ms

log = structlog.get_logger("worker")


def _score_fn(model: ServingModel) -> Callable[[torch.Tensor], np.ndarray]:
    return lambda x: model.scorer.score(x).score.numpy()


@dataclass
class Decoded:
    rec: Any  # kafka ConsumerRecord
    x: np.ndarray
    polled_at: float


class Worker:
    def __init__(self, settings: WorkerSettings, startup: StartupWait | None = None) -> None:
        self.s = settings
        # one bound for everything start-up waits for (Redis for the registry, the broker); its stop
        # event is the worker's, so a SIGTERM while waiting ends the wait at once
        self.startup = startup or StartupWait(settings.connect_timeout_s, backoff_max_s=settings.retry_backoff_max_s,
                                              attempt_level=logging.WARNING)
        self.device = resolve_device(settings.device)
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        model = self._initial_model()  # fails fast on a bad artifact
        self.models = ModelHolder(model)
        self.shadow: ServingModel | None = None
        if settings.shadow_model is not None:
            self.shadow = serving_model(load_artifact(settings.shadow_model, self.device), self.device, settings.amp, None)
            warm_up(self.shadow)
        self.refused_version: str | None = None
        self.limits = DecodeLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_pixels, min_side=settings.min_side,
                                   max_aspect=settings.max_aspect, channel_policy=settings.channel_policy)
        # spawned processes start clean whatever this one has begun (threads, CUDA); checked here, before polling
        try:
            self.decode_pool = DecodePool(settings.decode_processes, fn=decode_many_noting_conversion) if settings.decode_processes else None
        except RuntimeError as e:
            msg = f"--decode-processes {settings.decode_processes}: {e}"
            raise UserError(msg) from e
        self.tracker = OffsetTracker()
        self.metrics = WorkerMetrics()
        self.conversions = ChannelConversions(self.metrics.converted)
        self.metrics.set_model(model.version, model.threshold, model.expected_anomaly_rate)
        self.health = Health(stale_s=max(settings.liveness_stale_s, settings.drain_timeout_s + 10))
        self.health.model_loaded = True
        self.raw_q: queue.Queue[Any] = queue.Queue()  # bounded by max_in_flight through pause/resume
        self.ready_q: queue.Queue[Decoded] = queue.Queue()
        self.out_q: queue.Queue[OutputBatch | DeadLetter] = queue.Queue(maxsize=8)
        self.stop = self.startup.stop  # stop polling, drain
        self.abort = threading.Event()  # give up on in-flight work (past the drain budget)
        self.scored_total = 0
        self.dead_total = 0
        self.assignment: set[TopicPartition] = set()
        self.paused = False
        self._threads: list[threading.Thread] = []
        self.crashed: str | None = None  # the stage whose unexpected error stopped the worker
        self.consumer: KafkaConsumer | None = None
        self._producer: Any = None
        self._http = None
        self.on_acked: Any = None  # optional callback(list of end-to-end seconds) per output batch (benchmarks)

    # ---- models: initial load and hot switches ----

    def _registry_pointer(self) -> Any:
        if self.s.model_store is None:
            return None
        from ganomaly.registry import RedisPointer

        client = make_redis(self.s.redis, socket_timeout=3, socket_connect_timeout=3)
        return RedisPointer(client, self.s.redis.redis_prefix)

    def _initial_model(self) -> ServingModel:
        s = self.s
        path = s.model
        pointer = self._registry_pointer()
        if pointer is not None:
            wait_for_redis(self.startup, s.redis)
            try:
                ptr = pointer.get()
            except redis.RedisError as e:
                if s.model is None:
                    raise UserError(f"the registry pointer is unreadable ({e}) and no --model was given") from e
                ptr = None
            if ptr is not None:
                path = s.model_store / "versions" / ptr.version  # type: ignore[operator]
        if path is None:
            msg = "the registry has no current model and no --model was given"
            raise UserError(msg)
        model = serving_model(load_artifact(path, self.device), self.device, s.amp, s.threshold_override)
        warm_up(model)
        return model

    def _watch_models(self) -> None:
        """Poll the registry pointer; load, validate and warm up a new version off the hot path, then swap."""
        pointer = self._registry_pointer()
        if pointer is None:
            return
        while not self.stop.wait(self.s.model_poll_s):
            self.health.beat("models")
            try:
                ptr = pointer.get()
            except redis.RedisError as e:
                log.warning("registry_unreachable", error=str(e))
                continue
            current = self.models.current().version
            if ptr is None or ptr.version in (current, self.refused_version):
                continue
            try:
                art = load_artifact(self.s.model_store / "versions" / ptr.version, self.device)  # type: ignore[operator]
                model = serving_model(art, self.device, self.s.amp, self.s.threshold_override)
                warm_up(model)
            except (ArtifactError, ValueError, RuntimeError, OSError) as e:
                self.refused_version = ptr.version
                self.metrics.model_refused.inc()
                log.error("model_refused", version=ptr.version, error=str(e), serving=current)
                continue
            old = self.models.swap(model)
            self.metrics.set_model(model.version, model.threshold, model.expected_anomaly_rate)
            self.metrics.model_swaps.inc()
            log.info("model_swapped", old=old.version, new=model.version, threshold=model.threshold)

    # ---- pipeline stages (each its own thread) ----

    def _finished(self) -> bool:
        """A stage may exit: shutdown gave up, or polling stopped and nothing is in flight."""
        return self.abort.is_set() or (self.stop.is_set() and self.tracker.in_flight() == 0)

    def _decode_loop(self, pool: DecodePool | None) -> None:
        """A decode thread: one record at a time here, or chunks handed to the decode processes."""
        chunk = self.s.decode_chunk if pool is not None else 1
        while True:
            try:
                first = self.raw_q.get(timeout=0.2)
            except queue.Empty:
                if self._finished():
                    return
                continue
            finally:
                # every turn, not only when idle: a worker whose decoders never catch up is busy, not hung
                self.health.beat("decode")
            # what is queued now, up to a chunk: no waiting for a chunk to fill, so no added latency;
            # records of a partition revoked meanwhile are left to its new owner
            recs = [r for r in [first, *self._drain_nowait(self.raw_q, chunk - 1)]
                    if self.tracker.is_tracked(TopicPartition(r.topic, r.partition), r.offset)]
            if not recs:
                continue
            # The model is read per chunk: a hot swap may bring one with another input spec, and
            # a dead letter names the model whose spec refused the image.
            model = self.models.current()
            spec = model.artifact.input_spec
            if pool is not None:
                outcomes = pool.decode([r.value or b"" for r in recs], spec, self.limits)
            else:
                # Anything logged while decoding a record carries its coordinates.
                rec = recs[0]
                with bound_contextvars(topic=rec.topic, partition=rec.partition, offset=rec.offset):
                    outcomes = decode_many_noting_conversion([rec.value or b""], spec, self.limits)
            now = time.monotonic()
            for rec, outcome in zip(recs, outcomes, strict=True):
                x = self._converted_noted(rec, outcome)
                if isinstance(x, np.ndarray):
                    self.ready_q.put(Decoded(rec, x, now))
                else:
                    self._put_out(self._dead_letter(rec, Failure(*x), model.version), "decode")

    def _converted_noted(self, rec: Any, outcome: DecodeOutcome) -> np.ndarray | tuple[str, str, str]:
        """The model input of a decoded record, its conversion (if any) counted and logged; failures pass through."""
        if not isinstance(outcome, Converted):
            return outcome
        source = headers_dict(rec.headers).get(m.H_SOURCE) or rec.topic
        self.conversions.note(source, outcome.from_channels, outcome.to_channels, topic=rec.topic, partition=rec.partition, offset=rec.offset)
        return outcome.x

    @staticmethod
    def _dead_letter(rec: Any, failure: Failure, model_version: str) -> DeadLetter:
        return DeadLetter(rec.topic, rec.partition, rec.offset, rec.key, rec.value or b"",
                          [(k, v) for k, v in rec.headers or [] if v is not None], failure.reason, failure.error_class, failure.message,
                          model_version)

    def _put_out(self, item: OutputBatch | DeadLetter, stage: str) -> None:
        while not self.abort.is_set():
            try:
                self.out_q.put(item, timeout=0.2)
                return
            except queue.Full:
                # waiting on the sink is alive: a sink that is stuck goes stale on its own beat
                self.health.beat(stage)

    def _score_loop(self) -> None:
        s = self.s
        staging: torch.Tensor | None = None  # reusable pinned host buffer (CUDA): no per-batch pinning
        while True:
            items = next_batch(self.ready_q, s.max_batch_size, s.max_wait_ms / 1000.0)
            self.health.beat("score")
            if not items:
                if self._finished():
                    return
                continue
            model = self.models.current()  # once per batch: a swap never splits a batch
            items = self._fit_to(model, items)
            if not items:
                continue
            t0 = time.monotonic()
            x = torch.from_numpy(np.stack([d.x for d in items]))
            if self.device.type == "cuda":
                if staging is None or staging.shape[1:] != x.shape[1:] or staging.shape[0] < len(items):
                    staging = torch.empty((max(s.max_batch_size, len(items)), *x.shape[1:]), dtype=x.dtype).pin_memory()
                staging[: len(items)].copy_(x)
                x = staging[: len(items)]  # safe to reuse next batch: score() returns only after the copy is consumed
            scores, failures = score_isolating_failures(_score_fn(model), x)
            compute_s = time.monotonic() - t0
            dead = []
            for i, f in sorted(failures.items()):
                rec = items[i].rec
                log.error("scoring_failed", topic=rec.topic, partition=rec.partition, offset=rec.offset, reason=f.reason, error=f.message[:200])
                dead.append(self._dead_letter(rec, f, model.version))
            if failures:  # the usual batch has none: no copy of the batch on the hot path
                keep = [i for i in range(len(items)) if i not in failures]
                x, items, scores = x[keep], [items[i] for i in keep], scores[keep]
            out = self._results(items, scores, model)
            out.dead = dead
            if self.shadow is not None and items:
                # the challenger must never cost production anything: its failures only skip its outputs
                shadow_scores, shadow_failures = score_isolating_failures(_score_fn(self.shadow), x)
                shadow_items = items
                if shadow_failures:
                    log.warning("shadow_scoring_failed", images=len(shadow_failures), model_version=self.shadow.version)
                    ok = [i for i in range(len(items)) if i not in shadow_failures]
                    shadow_items, shadow_scores = [items[i] for i in ok], shadow_scores[ok]
                out.shadow = self._results(shadow_items, shadow_scores, self.shadow).results
            if not items:
                self._put_out(out, "score")
                continue
            self.metrics.batch_size.observe(len(items))
            self.metrics.compute.observe(compute_s)
            for d in items:
                self.metrics.queue_wait.observe(t0 - d.polled_at)
            offsets = sorted((d.rec.partition, d.rec.offset) for d in items)
            log.info("batch", size=len(items), compute_ms=round(compute_s * 1000, 2),
                     queue_wait_ms=round((t0 - min(d.polled_at for d in items)) * 1000, 2),
                     partitions=sorted({p for p, _ in offsets}), first=offsets[0], last=offsets[-1],
                     anomalies=sum(r.is_anomaly for r in out.results), model_version=model.version)
            self._put_out(out, "score")

    def _fit_to(self, model: ServingModel, items: list[Decoded]) -> list[Decoded]:
        """Re-decode items decoded just before a swap to a model with another input shape (rare)."""
        spec = model.artifact.input_spec
        want = (spec.channels, spec.isize, spec.isize)
        kept = []
        for d in items:
            if d.x.shape != want:
                # the decode loop's own call, so any decoder error is this record's, as it is there
                [outcome] = decode_many_noting_conversion([d.rec.value or b""], spec, self.limits)
                outcome = self._converted_noted(d.rec, outcome)
                if not isinstance(outcome, np.ndarray):
                    self._put_out(self._dead_letter(d.rec, Failure(*outcome), model.version), "score")
                    continue
                d = Decoded(d.rec, outcome, d.polled_at)
            kept.append(d)
        return kept

    def _results(self, items: list[Decoded], scores: np.ndarray, model: ServingModel) -> OutputBatch:
        out = OutputBatch()
        cal = model.artifact.calibration
        scored_at = now_ms()
        for d, sc in zip(items, scores.tolist(), strict=True):
            rec = d.rec
            h = headers_dict(rec.headers)
            key = rec.key.decode("utf-8", "replace") if rec.key else None
            ref = m.InputRef(topic=rec.topic, partition=rec.partition, offset=rec.offset, key=key)
            res = m.Result(
                id=ref.id, input=ref, image_id=key, source=h.get(m.H_SOURCE), trace_id=h.get(m.H_TRACE), label=h.get(m.H_LABEL),
                traceparent=str(continue_trace(h.get(m.H_TRACEPARENT), h.get(m.H_TRACE))),
                score=sc, score_normalised=float(cal.normalise(sc, model.threshold)), threshold=model.threshold, is_anomaly=sc > model.threshold,
                model_version=model.version, record_timestamp_ms=rec.timestamp, scored_at_ms=scored_at,
                latency_ms=float(scored_at - rec.timestamp), worker=self.s.worker_id,
            )
            out.results.append(res)
            out.keys.append((key or res.source or ref.id).encode())
        return out

    def _sink_loop(self, kafka_sink: KafkaSink, redis_sink: RedisSink) -> None:
        while True:
            try:
                first = self.out_q.get(timeout=0.2)
            except queue.Empty:
                self.health.beat("sink")
                if self._finished():
                    return
                continue
            batch = OutputBatch()
            for item in [first, *self._drain_nowait(self.out_q, 16)]:
                if isinstance(item, DeadLetter):
                    batch.dead.append(item)
                else:
                    batch.results += item.results
                    batch.dead += item.dead  # images the model could not score
                    batch.keys += item.keys
                    batch.shadow += item.shadow
            model = self.models.current()
            t0 = time.monotonic()
            try:
                kafka_sink.write(batch)
                status = self._status(model)
                redis_sink.write(batch, status)
            except Aborted:
                log.warning("outputs_abandoned", results=len(batch.results), dead=len(batch.dead), note="offsets stay uncommitted")
                return
            self.metrics.sink.observe(time.monotonic() - t0)
            done_ms = now_ms()
            if self.on_acked is not None:
                self.on_acked([(done_ms - r.record_timestamp_ms) / 1000 for r in batch.results])
            for r in batch.results:
                self.tracker.done(TopicPartition(r.input.topic, r.input.partition), r.input.offset)
                self.metrics.e2e.observe(max(0.0, (done_ms - r.record_timestamp_ms) / 1000))
                self.metrics.scored.labels(r.model_version).inc()
                self.metrics.score.labels(r.model_version).observe(r.score_normalised)
                if r.is_anomaly:
                    self.metrics.anomalies.labels(r.model_version).inc()
            for d in batch.dead:
                self.tracker.done(TopicPartition(d.topic, d.partition), d.offset)
                self.metrics.dead_letters.labels(d.reason).inc()
                log.warning("dead_letter", topic=d.topic, partition=d.partition, offset=d.offset, reason=d.reason, error=d.message[:200])
            self.scored_total += len(batch.results)
            self.dead_total += len(batch.dead)
            self.health.beat("sink")

    def _sink_retrying(self, sink: str) -> None:
        """An outage being waited out: counted, and alive (a restart would not end the outage, only
        add rebalances; the GanomalyOutputsWaiting alert tells the operator)."""
        self.metrics.retries.labels(sink).inc()
        self.health.beat("sink")

    @staticmethod
    def _drain_nowait(q: queue.Queue, n: int) -> list[Any]:
        out = []
        for _ in range(n):
            try:
                out.append(q.get_nowait())
            except queue.Empty:
                break
        return out

    def _status(self, model: ServingModel) -> m.WorkerStatus:
        return m.WorkerStatus(worker=self.s.worker_id, model_version=model.version, threshold=model.threshold,
                              assigned=",".join(sorted(f"{tp.topic}-{tp.partition}" for tp in self.assignment)),
                              in_flight=self.tracker.in_flight(), scored_total=self.scored_total, dead_letters_total=self.dead_total,
                              updated_ms=now_ms())

    # ---- the poll thread ----

    def _commit(self, tps: set[TopicPartition] | None = None) -> None:
        assert self.consumer is not None
        offsets = self.tracker.committable(tps if tps is not None else self.assignment)
        new = {tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items() if self._committed.get(tp) != off}
        if not new:
            return
        try:
            self.consumer.commit(new)
            self._committed.update({tp: o.offset for tp, o in new.items()})
            self.metrics.commits.labels("ok").inc()
        except KafkaError as e:  # rebalance in progress or broker away: the next commit catches up
            self.metrics.commits.labels("failed").inc()
            log.warning("commit_failed", error=f"{type(e).__name__}: {e}")

    def _backpressure(self) -> None:
        assert self.consumer is not None
        n = self.tracker.in_flight()
        self.metrics.in_flight.set(n)
        if not self.paused and n >= self.s.max_in_flight and self.assignment:
            self.consumer.pause(*self.assignment)
            self.paused = True
            log.info("paused", in_flight=n, partitions=len(self.assignment))
        elif self.paused and n <= self.s.resume_in_flight:
            self.consumer.resume(*self.consumer.paused())
            self.paused = False
            log.info("resumed", in_flight=n)
        self.metrics.paused.set(len(self.consumer.paused()))

    def _observe(self) -> None:
        assert self.consumer is not None
        self.metrics.queue_depth.labels("raw").set(self.raw_q.qsize())
        self.metrics.queue_depth.labels("ready").set(self.ready_q.qsize())
        self.metrics.queue_depth.labels("out").set(self.out_q.qsize())
        for tp in self.assignment:
            hw = self.consumer.highwater(tp)
            if hw is not None:
                try:
                    self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, hw - self.consumer.position(tp, timeout_ms=0)))
                except (KafkaError, TypeError, AssertionError):
                    pass

    def _readiness(self) -> dict[str, Any]:
        return {"model_version": self.models.current().version, "partitions": len(self.assignment), "waiting_for": self.startup.waiting_for}

    def _connect(self) -> tuple[Any, redis.Redis, KafkaSink, RedisSink]:
        """The broker, then Redis, each waited for within the start-up bound (``connect_timeout_s``)."""
        s = self.s
        wait = self.startup
        common = s.kafka_common()
        if s.create_topics:
            topics = [s.input_topic, s.results_topic, s.alerts_topic, s.dlq_topic] + ([s.shadow_topic] if s.shadow_model else [])
            connect_kafka(wait, common, lambda cfg: ensure_topics(cfg, topics, s.topic_partitions))
        producer = connect_kafka(wait, common, lambda cfg: make_producer(
            cfg, linger_ms=s.producer_linger_ms, compression_type=None if s.producer_compression == "none" else s.producer_compression,
            delivery_timeout_ms=s.delivery_timeout_ms, request_timeout_ms=max(1000, s.delivery_timeout_ms // 2),
            max_request_size=s.producer_max_request_bytes))
        self._producer = producer
        wait_for_redis(wait, s.redis)
        rclient = make_redis(s.redis, health_check_interval=10)
        kafka_sink = KafkaSink(producer, results_topic=s.results_topic, alerts_topic=s.alerts_topic, dlq_topic=s.dlq_topic, shadow_topic=s.shadow_topic,
                               worker_id=s.worker_id, abort=self.abort, backoff_max_s=s.retry_backoff_max_s, timeout_s=s.delivery_timeout_ms / 1000,
                               on_retry=lambda _e: self._sink_retrying("kafka"), on_value_omitted=self.metrics.values_omitted.inc)
        redis_sink = RedisSink(rclient, prefix=s.redis.redis_prefix, ttl_s=s.result_ttl_s, maxlen=s.alerts_stream_maxlen,
                               status_ttl_s=s.status_ttl_s, abort=self.abort, backoff_max_s=s.retry_backoff_max_s,
                               on_retry=lambda _e: self._sink_retrying("redis"))
        self.consumer = connect_kafka(wait, common, lambda cfg: make_consumer(
            cfg, group_id=s.group_id, auto_offset_reset=s.auto_offset_reset, session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms, max_poll_interval_ms=s.max_poll_interval_ms,
            max_poll_records=s.max_poll_records, fetch_max_bytes=s.fetch_max_bytes, fetch_max_wait_ms=s.fetch_max_wait_ms))
        return producer, rclient, kafka_sink, redis_sink

    def _abandon_startup(self) -> None:
        """Start-up gave up or was stopped: release what it had made, nothing was polled."""
        if self._producer is not None:
            self._producer.close(timeout=1)
        if self.decode_pool is not None:
            self.decode_pool.close()
        if self._http is not None:
            self._http.shutdown()

    def run(self) -> int:
        s = self.s
        try:
            if s.metrics_port:
                # up while start-up waits: /healthz live (a restart would not bring the broker sooner; the
                # start-up bound ends a wait that lasts too long), /readyz false and saying what is awaited
                self._http = serve_http(s.metrics_host, s.metrics_port, self.metrics, self.health, self._readiness)
            producer, rclient, kafka_sink, redis_sink = self._connect()
        except BaseException:
            self._abandon_startup()
            raise
        self._committed: dict[TopicPartition, int] = {}
        assert self.consumer is not None
        self.consumer.subscribe([s.input_topic], listener=_Rebalance(self))
        # with processes, each decode thread keeps one chunk in flight: at least one per process, or processes idle
        self._threads = [self._stage(f"decode-{i}", lambda: self._decode_loop(self.decode_pool))
                         for i in range(max(s.decode_threads, s.decode_processes))]
        self._threads += [self._stage("score", self._score_loop), self._stage("models", self._watch_models),
                          self._stage("sink", lambda: self._sink_loop(kafka_sink, redis_sink))]
        for t in self._threads:
            t.start()
        log.info("started", worker=s.worker_id, model_version=self.models.current().version, threshold=self.models.current().threshold,
                 device=str(self.device), input_topic=s.input_topic, group_id=s.group_id, decode_processes=s.decode_processes)
        last_commit = last_observe = time.monotonic()
        try:
            while not self.stop.is_set():
                records = self.consumer.poll(timeout_ms=100, max_records=s.max_poll_records)
                self.health.beat("poll")
                for tp, recs in records.items():
                    for rec in recs:
                        self.tracker.add(tp, rec.offset)
                        self.raw_q.put(rec)
                self._backpressure()
                now = time.monotonic()
                if now - last_commit >= s.commit_interval_ms / 1000:
                    self._commit()
                    last_commit = now
                if now - last_observe >= 1.0:
                    self._observe()
                    last_observe = now
        finally:
            self._shutdown(producer, rclient)
        return 0 if self.crashed is None else 1

    def _stage(self, name: str, loop: Callable[[], None]) -> threading.Thread:
        """A pipeline thread whose unexpected error stops the whole worker at once.

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
                self.abort.set()
                self.stop.set()

        return threading.Thread(target=run, name=name, daemon=True)

    def _shutdown(self, producer: Any, rclient: redis.Redis) -> None:
        log.info("draining", in_flight=self.tracker.in_flight(), budget_s=self.s.drain_timeout_s)
        # after a crash nothing in flight can finish: waiting out the budget would only delay the restart
        drained = self.tracker.wait_drained(None, 0 if self.crashed else self.s.drain_timeout_s)
        if not drained:
            log.warning("drain_budget_exceeded", in_flight=self.tracker.in_flight())
        self.abort.set()
        for t in self._threads:
            t.join(timeout=5)
        if self.decode_pool is not None:
            self.decode_pool.close()
        assert self.consumer is not None
        self._commit()
        # close() runs the revoke listener (nothing left in flight) and leaves the group.
        self.consumer.close(autocommit=False, timeout_ms=5000)
        producer.close(timeout=5)
        rclient.close()
        if self._http is not None:
            self._http.shutdown()
        log.info("stopped", scored=self.scored_total, dead_letters=self.dead_total, drained=drained, crashed=self.crashed)

    def request_stop(self, *_: object) -> None:
        self.stop.set()


class _Rebalance(AsyncConsumerRebalanceListener):
    """Runs on the consumer's IO loop: awaits (never blocks) so heartbeats continue.

    On revoke, gives in-flight records of the revoked partitions a bounded time to
    finish, commits what is finished, and forgets them; whatever is unfinished is
    redelivered to the new owner (outputs are idempotent, so that is harmless).
    kafka-python has no public awaitable commit, so the coordinator's coroutine is
    used; if it is missing, the periodic commits are all that happened.
    """

    def __init__(self, w: Worker) -> None:
        self.w = w

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        w = self.w
        coord = getattr(w.consumer, "_coordinator", None)
        net = getattr(coord, "_net", None)
        deadline = time.monotonic() + min(w.s.drain_timeout_s, w.s.session_timeout_ms / 2000)
        while net is not None and w.tracker.in_flight(revoked) and time.monotonic() < deadline:
            await net.sleep(0.05)
        offsets = {tp: OffsetAndMetadata(o, "", -1) for tp, o in w.tracker.committable(revoked).items() if w._committed.get(tp) != o}
        commit = getattr(coord, "_commit_offsets_sync_async", None)
        if offsets and commit is not None:
            try:
                await commit(offsets)
                w._committed.update({tp: o.offset for tp, o in offsets.items()})
            except Exception as e:  # noqa: BLE001 - never let a failed commit break the rebalance
                log.warning("revoke_commit_failed", error=f"{type(e).__name__}: {e}")
        w.tracker.forget(revoked)
        for tp in revoked:
            w._committed.pop(tp, None)
        w.assignment -= set(revoked)
        w.health.assigned = bool(w.assignment)
        w.metrics.assigned.set(len(w.assignment))
        log.info("partitions_revoked", partitions=sorted(f"{t.topic}-{t.partition}" for t in revoked), committed=len(offsets))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        w = self.w
        w.assignment |= set(assigned)
        w.health.assigned = bool(w.assignment)
        w.metrics.assigned.set(len(w.assignment))
        if w.paused and assigned:  # new partitions start paused too while we are over the limit
            w.consumer.pause(*assigned)  # type: ignore[union-attr]
        log.info("partitions_assigned", partitions=sorted(f"{t.topic}-{t.partition}" for t in assigned))

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        w = self.w
        w.tracker.forget(lost)
        w.assignment -= set(lost)
        w.health.assigned = bool(w.assignment)
        log.warning("partitions_lost", partitions=sorted(f"{t.topic}-{t.partition}" for t in lost))


def run_worker(settings: WorkerSettings) -> int:
    """The worker's exit status: 0 after a stop (SIGTERM or SIGINT, during start-up too), 1 when a
    stage crashed, 2 when the broker or Redis did not answer within ``connect_timeout_s`` (or refused us)."""
    startup = StartupWait(settings.connect_timeout_s, backoff_max_s=settings.retry_backoff_max_s, attempt_level=logging.WARNING)
    # before the model loads and the first wait: a stop during start-up must end it, not kill it mid-way
    signal.signal(signal.SIGTERM, lambda *_: startup.stop.set())
    signal.signal(signal.SIGINT, lambda *_: startup.stop.set())
    try:
        return Worker(settings, startup).run()
    except StartupStopped as e:
        log.info("stopped", during="start-up", waiting_for=str(e), elapsed_s=round(startup.elapsed(), 1))
        return 0
    except ConnectError as e:
        # the worker writes JSON lines only (cli.py's plain `error:` line is for the one-shot commands)
        log.error("startup_failed", error=str(e), connect_timeout_s=settings.connect_timeout_s)
        return 2
    finally:
        # the process ends next, everything is closed: spare its exit the final collection over
        # torch's objects (a second and more on a busy CPU), so that a stop is prompt
        gc.freeze()
