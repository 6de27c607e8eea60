"""Micro-batching: up to ``max_size`` items, waiting at most ``max_wait_s`` after the first.

The timer starts when the first item of a batch arrives (as in Triton, Ray Serve and
TorchServe), so an idle stream adds no latency beyond ``max_wait_s`` and a busy one
fills batches without waiting.
"""

from __future__ import annotations

import queue
import time
from typing import TypeVar

T = TypeVar("T")


class ChunkBatcher:
    """Batches from a queue of item lists (the decode stage hands on a chunk at a time).

    A chunk is one queue operation for many items; a chunk that overfills a batch leaves its rest
    for the next one, which then starts at once.
    """

    def __init__(self, q: queue.Queue[list[T]], max_size: int, max_wait_s: float) -> None:
        self.q = q
        self.max_size, self.max_wait_s = max_size, max_wait_s
        self._left: list[T] = []

    def next(self, idle_timeout_s: float = 0.1) -> list[T]:
        """Returns [] if nothing arrived within ``idle_timeout_s`` (so callers can check for shutdown)."""
        batch, self._left = self._left, []
        if not batch:
            try:
                batch = list(self.q.get(timeout=idle_timeout_s))
            except queue.Empty:
                return []
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_size:
            try:
                batch += self.q.get_nowait()
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch += self.q.get(timeout=remaining)
            except queue.Empty:
                break
        if len(batch) > self.max_size:
            batch, self._left = batch[: self.max_size], batch[self.max_size :]
        return batch
