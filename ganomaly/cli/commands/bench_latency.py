"""Where a benchmark's latency went: the in-process worker's acknowledged batches, split by stage.

Each result's end-to-end time (record timestamp to outputs acknowledged) splits into four parts:
arrival (record timestamp to taken by a decoder: the producer's send, the broker, the fetch, the
poll stage and its queue), wait (decoding and waiting for the batch and the scorer), compute (its
batch's scoring) and output (scored to acknowledged: the out queue, the Kafka and Redis writes).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from worker.sinks.outputs import Acked

PARTS = ("arrival", "wait", "compute", "output")


class LatencyLog:
    """A worker's ``on_acked`` hook: collects each result's end-to-end seconds and, where the score stage
    recorded its stages, its four parts (called from the sink thread, read from the benchmark's)."""

    def __init__(self) -> None:
        self.e2e: list[float] = []
        self.parts: list[tuple[float, float, float, float]] = []
        self.batch_sizes: list[int] = []  # results per scored batch (a batch's results share its scoring times)
        self.first_at: float | None = None  # time.perf_counter() of the first acknowledged batch
        self.last_at: float | None = None  # ... and of the latest
        self.first_polled: float | None = None  # time.monotonic() the earliest recorded result was polled
        self.last_done: float | None = None  # ... and the latest batch was acknowledged

    def __call__(self, a: Acked) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.last_at = time.perf_counter()
        self.e2e.extend(a.e2e_s)
        self.last_done = a.done
        if a.stages:
            polled = min(p for p, _, _ in a.stages)
            self.first_polled = polled if self.first_polled is None else min(self.first_polled, polled)
        if len(a.stages) == len(a.e2e_s):
            self.parts.extend((e - (a.done - polled), start - polled, end - start, a.done - end)
                              for e, (polled, start, end) in zip(a.e2e_s, a.stages, strict=True))
            self.batch_sizes.extend(Counter((start, end) for _, start, end in a.stages).values())

    def clear(self) -> None:
        self.e2e, self.parts, self.batch_sizes = [], [], []
        self.first_polled = self.last_done = None

    def summary_ms(self, tail_pct: float = 1.0) -> dict[str, Any] | None:
        """Each part's median over all results, its mean over the slowest ``tail_pct`` % of them (by
        end-to-end time: which part the p99 is made of), and the median batch size."""
        if not self.parts:
            return None
        x = np.array(self.parts) * 1000
        total = x.sum(axis=1)
        slow = x[total >= np.percentile(total, 100 - tail_pct)]
        return {"median": {k: round(float(v), 1) for k, v in zip(PARTS, np.median(x, axis=0), strict=True)},
                f"slowest_{tail_pct:g}pct_mean": {k: round(float(v), 1) for k, v in zip(PARTS, slow.mean(axis=0), strict=True)},
                "batch_size_median": float(np.median(self.batch_sizes))}
