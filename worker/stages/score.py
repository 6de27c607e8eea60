"""The score stage: micro-batches from the ready queue -> results (and the shadow model's) on the out queue.

The model is read once per batch, so a hot swap never splits a batch. An image the model cannot
score costs only itself (worker/isolation.py): it becomes a dead letter and the rest of its batch
is scored. A shadow model scores the same batch for its own topic; its failures only skip its outputs.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

import numpy as np
import structlog
import torch

from ganomaly.connections.kafka import headers_dict
from ganomaly.contracts.results import Coordinates, ScoredInput, ScoredResult, build_results
from ganomaly.data.images import pixels_to_input
from worker.batcher import ChunkBatcher
from worker.heap import HeapTrimmer
from worker.isolation import score_isolating_failures
from worker.metrics import Health, WorkerMetrics
from worker.model_holder import ModelHolder, ServingModel
from worker.sinks.outputs import DeadLetter, OutputBatch
from worker.sinks.redis_sink import now_ms
from worker.stages.decode import Decoder
from worker.stages.flow import Decoded, Lifecycle, dead_letter, put_until_aborted

log = structlog.get_logger("worker")


def stream_threads(device: torch.device, streams: int, threads: int | None) -> int | None:
    """The intra-op threads a worker of ``streams`` score streams on ``device`` sets, or None to leave torch's.

    One stream is the default. With several on a CPU, each batch runs on its share of the cores:
    an op's parallel region ends when its slowest thread does, and the decode, poll and sink
    threads (and a broker, on a small machine) take turns on those cores, so a batch spread over
    all of them waits, op after op, for the thread they held back. At 32x32 two one-thread streams
    beat one two-thread batch (beside a Python thread busy half the time, 0.53-0.54 ms per image
    against 0.74-0.80: benchmarks/score_streams.py); at 128x128x3 the model alone is slower that
    way, and the worker gained nothing (docs/speed.md). On CUDA the streams share one device.
    """
    if device.type != "cpu" or streams == 1:
        return threads
    return threads or max(1, torch.get_num_threads() // streams)


def _score_fn(model: ServingModel) -> Callable[[torch.Tensor], np.ndarray]:
    return lambda x: model.scorer.score(x).score.numpy()


class ScoreStage:
    def __init__(self, ready_q: queue.Queue[list[Decoded]], out_q: queue.Queue[OutputBatch | DeadLetter], *, models: ModelHolder,
                 shadow: ServingModel | None, decoder: Decoder, device: torch.device, max_batch_size: int, max_wait_s: float,
                 worker_id: str, metrics: WorkerMetrics, health: Health, life: Lifecycle, heap: HeapTrimmer | None = None,
                 name: str = "score") -> None:
        self.ready_q, self.out_q = ready_q, out_q
        self.models = models
        self.shadow = shadow
        self.decoder = decoder
        self.device = device
        self.max_batch_size, self.max_wait_s = max_batch_size, max_wait_s
        self.worker_id = worker_id
        self.metrics = metrics
        self.health = health
        self.life = life
        self._staging: torch.Tensor | None = None  # reusable pinned host buffer (CUDA): no per-batch pinning
        self.heap = heap or HeapTrimmer(0)  # batch-sized buffers would otherwise stay resident (worker/heap.py)
        self.name = name  # the stream's thread and liveness name

    def run(self) -> None:
        batches = ChunkBatcher(self.ready_q, self.max_batch_size, self.max_wait_s)
        while True:
            items = batches.next()
            self.health.beat(self.name)
            if items:
                self.score_batch(items)
            elif self.life.finished():
                return
            self.heap.maybe_trim()

    def _put_out(self, item: OutputBatch | DeadLetter) -> None:
        put_until_aborted(self.out_q, item, self.life.abort, lambda: self.health.beat(self.name))

    def score_batch(self, items: list[Decoded]) -> None:
        """Score one batch with the model in service and hand its outputs to the sink."""
        model = self.models.current()  # once per batch: a swap never splits a batch
        items = self.fit_to(model, items)
        if not items:
            return
        t0 = time.monotonic()
        # uint8 pixels to the device (a quarter of the bytes of float32), converted there per batch
        pixels = self._to_device_ready(torch.from_numpy(np.stack([d.x for d in items]))).to(self.device, non_blocking=True)
        x = pixels_to_input(pixels, model.artifact.input_spec.value_range)
        scores, failures = score_isolating_failures(_score_fn(model), x)
        compute_s = time.monotonic() - t0
        dead = []
        for i, f in sorted(failures.items()):
            rec = items[i].rec
            log.error("scoring_failed", topic=rec.topic, partition=rec.partition, offset=rec.offset, reason=f.reason, error=f.message[:200])
            dead.append(dead_letter(rec, f, model.version))
        if failures:  # the usual batch has none: no copy of the batch on the hot path
            keep = [i for i in range(len(items)) if i not in failures]
            pixels, items, scores = pixels[keep], [items[i] for i in keep], scores[keep]
        out = self.results(items, scores, model)
        out.dead = dead
        out.stages = [(d.polled_at, t0, t0 + compute_s) for d in items]
        if self.shadow is not None and items:
            out.shadow = self._shadow_results(items, pixels)
        if not items:
            self._put_out(out)
            return
        self.metrics.batch_size.observe(len(items))
        self.metrics.compute.observe(compute_s)
        observe_wait = self.metrics.queue_wait.observe
        for d in items:
            observe_wait(t0 - d.polled_at)
        oldest = min(d.polled_at for d in items)
        offsets = sorted((d.rec.partition, d.rec.offset) for d in items)
        log.info("batch", stream=self.name, size=len(items), compute_ms=round(compute_s * 1000, 2), queue_wait_ms=round((t0 - oldest) * 1000, 2),
                 partitions=sorted({p for p, _ in offsets}), first=offsets[0], last=offsets[-1],
                 anomalies=sum(r.is_anomaly for r in out.results), model_version=model.version)
        self._put_out(out)

    def _to_device_ready(self, x: torch.Tensor) -> torch.Tensor:
        """On CUDA, the batch in a reused pinned buffer (safe to reuse next batch: score() returns only after the copy is consumed)."""
        if self.device.type != "cuda":
            return x
        n = len(x)
        if self._staging is None or self._staging.shape[1:] != x.shape[1:] or self._staging.shape[0] < n:
            self._staging = torch.empty((max(self.max_batch_size, n), *x.shape[1:]), dtype=x.dtype).pin_memory()
        self._staging[:n].copy_(x)
        return self._staging[:n]

    def _shadow_results(self, items: list[Decoded], pixels: torch.Tensor) -> list[ScoredResult]:
        """The challenger must never cost production anything: its failures only skip its outputs."""
        assert self.shadow is not None
        x = pixels_to_input(pixels, self.shadow.artifact.input_spec.value_range)  # its own value range
        shadow_scores, shadow_failures = score_isolating_failures(_score_fn(self.shadow), x)
        if shadow_failures:
            log.warning("shadow_scoring_failed", images=len(shadow_failures), model_version=self.shadow.version)
            ok = [i for i in range(len(items)) if i not in shadow_failures]
            items, shadow_scores = [items[i] for i in ok], shadow_scores[ok]
        return self.results(items, shadow_scores, self.shadow).results

    def fit_to(self, model: ServingModel, items: list[Decoded]) -> list[Decoded]:
        """Re-decode items decoded just before a swap to a model with another input shape (rare);
        those the new model's spec refuses go to the sink as dead letters naming that model."""
        spec = model.artifact.input_spec
        want = (spec.channels, spec.isize, spec.isize)
        kept = []
        for d in items:
            if d.x.shape != want:
                # the decode stage's own call, so any decoder error is this record's, as it is there
                x = self.decoder.decode(d.rec, spec)
                if not isinstance(x, np.ndarray):
                    self._put_out(dead_letter(d.rec, x, model.version))
                    continue
                d = Decoded(d.rec, x, d.polled_at)
            kept.append(d)
        return kept

    def results(self, items: list[Decoded], scores: np.ndarray, model: ServingModel) -> OutputBatch:
        """The result records of a scored batch, with their keys for the results topic."""
        inputs = []
        for d in items:
            rec = d.rec
            key = rec.key.decode("utf-8", "replace") if rec.key else None
            inputs.append(ScoredInput(Coordinates(rec.topic, rec.partition, rec.offset, key), headers_dict(rec.headers), rec.timestamp))
        results = build_results(inputs, scores, threshold=model.threshold, calibration=model.artifact.calibration,
                                model_version=model.version, scored_at_ms=now_ms(), worker=self.worker_id)
        return OutputBatch(results=results, keys=[(r.image_id or r.source or r.id).encode() for r in results])
