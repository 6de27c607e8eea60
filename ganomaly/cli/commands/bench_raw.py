"""The raw model's throughput for ``bench stream``: the baseline its end-to-end ratio divides by.

Measured in the bench's own process on the images already decoded, with every batch shape the
timed loop sees run twice first: the first calls of a shape pay one-off allocation, kernel
selection and the trace's profiling (warming only the full shape left the shorter last batch's
first call in the timing, and a 128x128x3 baseline read 59 images/s where a warm one read 83).
Each layout runs two passes and keeps the faster, so a hiccup does not flatter the ratio; the
baseline is the faster layout, so a worker scoring in several streams is held to what the model
reaches that way too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import torch

    from ganomaly.model.scoring import Scorer


class RawBaseline(NamedTuple):
    images_per_s: float  # the faster layout's
    cpu_ms_per_image: float
    by_layout: dict[str, float]  # "STREAMSxTHREADS" -> images/s


def raw_baseline(scorer: Scorer, decoded: torch.Tensor, batch: int, device: torch.device, streams: int, threads: int | None) -> RawBaseline:
    """One stream on all intra-op threads and, for a worker of several streams, its own layout."""
    import torch

    default_threads = torch.get_num_threads()
    batches = [decoded[i : i + batch] for i in range(0, len(decoded), batch)]
    if device.type == "cuda":
        batches = [b.pin_memory() for b in batches]
    layouts = [(1, default_threads)] + ([(streams, threads or default_threads)] if streams > 1 else [])
    results: dict[str, tuple[float, float]] = {}
    try:
        for n, t in layouts:
            torch.set_num_threads(t)
            results[f"{n}x{t}"] = _best_of_two(scorer, batches, n)
    finally:
        torch.set_num_threads(default_threads)
    best = max(results.values())
    return RawBaseline(best[0], best[1], {k: round(v[0], 1) for k, v in results.items()})


def _best_of_two(scorer: Scorer, batches: list[torch.Tensor], streams: int) -> tuple[float, float]:
    """(images/s, CPU ms per image) of the faster of two passes, batches dealt round-robin to ``streams`` threads."""
    images = sum(len(b) for b in batches)
    shapes = {len(b): b for b in batches}  # the full batch and the shorter last one
    # every shape twice on every thread of this layout first (the first calls are per thread too)
    _in_threads(streams, lambda _k: [scorer.score(b) for b in shapes.values() for _ in range(2)])
    passes = []
    for _ in range(2):
        t0, c0 = time.perf_counter(), time.process_time()
        _in_threads(streams, lambda k: [scorer.score(b) for b in batches[k::streams]])
        passes.append((images / (time.perf_counter() - t0), 1000 * (time.process_time() - c0) / images))
    return max(passes)


def _in_threads(n: int, work: Callable[[int], object]) -> None:
    if n == 1:
        work(0)
        return
    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
