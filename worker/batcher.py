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


def next_batch(q: queue.Queue[T], max_size: int, max_wait_s: float, idle_timeout_s: float = 0.1) -> list[T]:
    """Returns [] if nothing arrived within ``idle_timeout_s`` (so callers can check for shutdown)."""
    try:
        first = q.get(timeout=idle_timeout_s)
    except queue.Empty:
        return []
    batch = [first]
    deadline = time.monotonic() + max_wait_s
    while len(batch) < max_size:
        # Take what is already queued without sleeping, then wait out the deadline.
        try:
            batch.append(q.get_nowait())
            continue
        except queue.Empty:
            pass
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            batch.append(q.get(timeout=remaining))
        except queue.Empty:
            break
    return batch
