"""Score streams on the CPU: one batch on all intra-op threads, or one batch per thread in parallel.

For each layout, the per-image compute of the untrained 32x32 GANomaly (the worker's traced
scorer) on batches of ``--batch``, alone and beside a Python thread busy ``--duty`` of the time
(as the worker's decode, poll and sink threads are). Prints one JSON row per layout:

    python benchmarks/score_streams.py [--batch 70] [--duty 0.5] [--rounds 3]

Why it matters: an op's parallel region ends when its slowest thread does, so a batch spread
over both cores waits, op after op, for whichever thread a busy neighbour held back; a thread of
its own per batch just runs slower for a while. worker/stages/score.py chooses its default from
this; the end-to-end effect is `ganomaly bench stream --score-streams 2` against the default 1.

Measured 2026-12-02 with this script (2 cores, quiet, two runs): one stream on 2 threads 0.45-0.46
ms per image alone, 0.74-0.80 beside the busy thread; two one-thread streams 0.41 alone, 0.53-0.54
beside it.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import torch

from ganomaly.model import GanomalyConfig, Generator
from ganomaly.model.scoring import Scorer


def _busy(stop: threading.Event, duty: float, period_s: float = 0.002) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        while time.perf_counter() - t < period_s * duty:
            sum(range(200))
        time.sleep(period_s * (1 - duty))


def _ms_per_image(scorer: Scorer, x: torch.Tensor, streams: int, batches: int, rounds: int) -> float:
    """The best of ``rounds``: each stream scores ``batches`` batches on its own thread."""
    def work() -> None:
        for _ in range(batches):
            scorer.score(x)

    best = float("inf")
    for _ in range(rounds):
        threads = [threading.Thread(target=work) for _ in range(streams)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        best = min(best, (time.perf_counter() - t0) / (batches * streams * len(x)) * 1000)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=70, help="images per batch (70: a 256:20 worker's batches at half load)")
    ap.add_argument("--duty", type=float, default=0.5, help="share of the time the neighbouring Python thread is busy")
    ap.add_argument("--batches", type=int, default=40, help="batches per stream per round")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    cores = torch.get_num_threads()
    torch.manual_seed(0)
    scorer = Scorer(Generator(GanomalyConfig(isize=32, nc=1, ngf=64)), traced=True)
    x = torch.rand(a.batch, 1, 32, 32)
    for streams, threads in ((1, cores), (cores, 1)):
        torch.set_num_threads(threads)
        _ms_per_image(scorer, x, streams, 3, 1)  # warm: the trace's first calls, on every thread
        alone = _ms_per_image(scorer, x, streams, a.batches, a.rounds)
        stop = threading.Event()
        busy = threading.Thread(target=_busy, args=(stop, a.duty), daemon=True)
        busy.start()
        beside = _ms_per_image(scorer, x, streams, a.batches, a.rounds)
        stop.set()
        busy.join()
        print(json.dumps({"bench": "score_streams", "streams": streams, "threads_per_stream": threads, "batch": a.batch, "duty": a.duty,
                          "alone_ms_per_image": round(alone, 3), "beside_busy_thread_ms_per_image": round(beside, 3)}), flush=True)
    torch.set_num_threads(cores)


if __name__ == "__main__":
    main()
