"""What the stages share: the item between decoding and scoring, when a stage may exit, queue helpers."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from worker.isolation import Failure
from worker.offsets import OffsetTracker
from worker.sinks.outputs import DeadLetter

T = TypeVar("T")


@dataclass(slots=True)
class Decoded:
    rec: Any  # kafka ConsumerRecord
    x: np.ndarray  # uint8 C×H×W pixels at the model's size (converted to its value range per batch)
    polled_at: float  # time.monotonic() when a decoder took it from the poll stage's queue: its decoding counts as waiting


class Lifecycle:
    """The worker's two stop signals, seen by every stage.

    ``stop``: stop polling and drain (SIGTERM, or a crashed stage); ``abort``: give up on in-flight
    work (past the drain budget, or after a crash). A stage other than polling runs until it may
    exit: abort, or polling stopped and nothing is in flight.
    """

    def __init__(self, stop: threading.Event, tracker: OffsetTracker) -> None:
        self.stop = stop
        self.abort = threading.Event()
        self.tracker = tracker

    def finished(self) -> bool:
        return self.abort.is_set() or (self.stop.is_set() and self.tracker.in_flight() == 0)


def put_until_aborted(q: queue.Queue[T], item: T, abort: threading.Event, waiting: Callable[[], None]) -> None:
    """Put ``item`` on a bounded queue, calling ``waiting`` while it is full (a stage waiting on the sink is alive)."""
    while not abort.is_set():
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            waiting()


def drain_nowait(q: queue.Queue[T], n: int) -> list[T]:
    """Up to ``n`` items already queued, without waiting."""
    out = []
    for _ in range(n):
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            break
    return out


def dead_letter(rec: Any, failure: Failure, model_version: str) -> DeadLetter:
    """The dead letter of a record: its bytes and headers, why, and the model that refused it."""
    return DeadLetter(rec.topic, rec.partition, rec.offset, rec.key, rec.value or b"",
                      [(k, v) for k, v in rec.headers or [] if v is not None], failure.reason, failure.error_class, failure.message,
                      model_version)
