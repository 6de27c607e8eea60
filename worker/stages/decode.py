"""The decode stage: raw records -> uint8 pixels on the ready queue, bad ones -> dead letters.

Each decode thread takes what is queued, up to a chunk (never waiting for one to fill), decodes it
for the model in service (in the thread, or in a decode process) and hands the chunk on as one
item: per-record queue operations and locks were a measurable share of the worker's Python time.
The score stage converts pixels to the model's value range a batch at a time, on its device.
A record of a partition revoked meanwhile is skipped: its new owner has it.
"""

from __future__ import annotations

import queue
import time
from typing import Any

import numpy as np
from kafka import TopicPartition
from structlog.contextvars import bound_contextvars

from ganomaly.connections.kafka import headers_dict
from ganomaly.contracts import messages as m
from ganomaly.data.images import Converted, DecodeLimits, DecodeOutcome, InputSpec, decode_many_pixels
from worker.conversions import ChannelConversions
from worker.decode_pool import DecodePool
from worker.isolation import Failure
from worker.metrics import Health
from worker.model_holder import ModelHolder
from worker.sinks.outputs import DeadLetter, OutputBatch
from worker.stages.flow import Decoded, Lifecycle, dead_letter, drain_nowait, put_until_aborted


class Decoder:
    """Decoding of records for an input spec under the worker's limits, with channel conversions noted.

    Shared by the decode stage and the score stage (which decodes again the rare record decoded
    for a model that was swapped out before its batch)."""

    def __init__(self, limits: DecodeLimits, conversions: ChannelConversions) -> None:
        self.limits = limits
        self.conversions = conversions

    def decode(self, rec: Any, spec: InputSpec) -> np.ndarray | Failure:
        """One record, in this thread; anything logged while decoding it carries its coordinates."""
        with bound_contextvars(topic=rec.topic, partition=rec.partition, offset=rec.offset):
            [outcome] = decode_many_pixels([rec.value or b""], spec, self.limits)
        return self.noted(rec, outcome)

    def noted(self, rec: Any, outcome: DecodeOutcome) -> np.ndarray | Failure:
        """The model input of a decoded record, its conversion (if any) counted and logged; a failure as one."""
        if isinstance(outcome, Converted):
            source = headers_dict(rec.headers).get(m.H_SOURCE) or rec.topic
            self.conversions.note(source, outcome.from_channels, outcome.to_channels, topic=rec.topic, partition=rec.partition,
                                  offset=rec.offset)
            return outcome.x
        if isinstance(outcome, np.ndarray):
            return outcome
        return Failure(*outcome)


class DecodeStage:
    """One decode thread (the pipeline runs several on the same queues)."""

    def __init__(self, raw_q: queue.Queue[Any], ready_q: queue.Queue[list[Decoded]], out_q: queue.Queue[OutputBatch | DeadLetter], *,
                 models: ModelHolder, decoder: Decoder, pool: DecodePool | None, chunk: int, health: Health, life: Lifecycle) -> None:
        self.raw_q, self.ready_q, self.out_q = raw_q, ready_q, out_q
        self.models = models
        self.decoder = decoder
        self.pool = pool
        self.chunk = chunk
        self.health = health
        self.life = life

    def run(self) -> None:
        tracker = self.life.tracker
        while True:
            try:
                first = self.raw_q.get(timeout=0.2)
            except queue.Empty:
                if self.life.finished():
                    return
                continue
            finally:
                # every turn, not only when idle: a worker whose decoders never catch up is busy, not hung
                self.health.beat("decode")
            # what is queued now, up to a chunk: no waiting for a chunk to fill, so no added latency;
            # records of a partition revoked meanwhile are left to its new owner
            recs = tracker.still_tracked([first, *drain_nowait(self.raw_q, self.chunk - 1)], _partition)
            if recs:
                self.decode_chunk(recs)

    def decode_chunk(self, recs: list[Any]) -> None:
        """Decode ``recs`` for the model in service: inputs to the ready queue, failures to the sink as dead letters."""
        # The model is read per chunk: a hot swap may bring one with another input spec, and
        # a dead letter names the model whose spec refused the image.
        model = self.models.current()
        spec = model.artifact.input_spec
        taken = time.monotonic()  # before decoding: the queue-wait metric is decoding plus batching (the dashboard says so)
        payloads = [r.value or b"" for r in recs]
        decoded = self.pool.decode(payloads, spec, self.decoder.limits) if self.pool is not None else \
            decode_many_pixels(payloads, spec, self.decoder.limits)
        ready = []
        for rec, outcome in zip(recs, decoded, strict=True):
            x = outcome if isinstance(outcome, np.ndarray) else self.decoder.noted(rec, outcome)
            if isinstance(x, np.ndarray):
                ready.append(Decoded(rec, x, taken))
            else:
                put_until_aborted(self.out_q, dead_letter(rec, x, model.version), self.life.abort, lambda: self.health.beat("decode"))
        if ready:
            self.ready_q.put(ready)


def _partition(rec: Any) -> TopicPartition:
    return TopicPartition(rec.topic, rec.partition)
