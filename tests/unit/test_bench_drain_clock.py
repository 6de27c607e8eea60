"""``bench stream``'s drain clock: every image over first record polled to last outputs acknowledged.

Timed from the first acknowledgement, the work in flight then went uncharged: with two score streams
a 1,000-image drain read 1.17 of raw. Here a stand-in worker polls every record at once, fills its
pipeline for 300 ms, then answers batches in pairs (two streams side by side) every 50 ms.
"""

from __future__ import annotations

import time

import pytest

from ganomaly.cli.commands.bench_latency import LatencyLog
from ganomaly.cli.commands.bench_live import WorkerThread
from ganomaly.cli.commands.bench_stream import _time_drain
from worker.sinks.outputs import Acked

BATCH, PAIRS, FILL_S, GAP_S = 50, 10, 0.3, 0.05
IMAGES = 2 * BATCH * PAIRS


class _PairedStreams:
    def __init__(self, log: LatencyLog) -> None:
        self.log = log

    def run(self) -> None:
        polled = time.monotonic()
        time.sleep(FILL_S - GAP_S)
        for _ in range(PAIRS):
            time.sleep(GAP_S)
            for _ in range(2):
                self.log(Acked([0.1] * BATCH, [(polled, polled, polled)] * BATCH, time.monotonic()))
        time.sleep(1)  # the benchmark's wait ends with every image answered, not with the worker


def test_the_drain_is_charged_from_the_first_record_polled() -> None:
    log = LatencyLog()
    th = WorkerThread(_PairedStreams(log))
    th.start()
    while log.first_at is None:
        time.sleep(0.001)
    rate, steady, cpu_ms = _time_drain(log, IMAGES, BATCH, th, time.monotonic() + 30, cpu0=0.0)

    fill_and_drain = FILL_S + (PAIRS - 1) * GAP_S  # 0.75 s for all 1,000
    assert rate == pytest.approx(IMAGES / fill_and_drain, rel=0.1)  # about 1,330 images/s
    # the old clock: the 900 answered after the first pair over the 0.45 s after it, 2,000 images/s
    assert rate < 0.8 * (IMAGES - 2 * BATCH) / ((PAIRS - 1) * GAP_S)
    # with the pipeline full, 10 % to 90 % answered: 800 images in 0.4 s
    assert steady == pytest.approx(2 * BATCH * (PAIRS - 2) / ((PAIRS - 2) * GAP_S), rel=0.25)
    assert cpu_ms > 0
