"""Where bench stream's latency went: the four parts of each acknowledged result add up to its end-to-end time."""

from __future__ import annotations

import pytest

from ganomaly.cli.commands.bench_latency import LatencyLog
from worker.sinks.outputs import Acked


def test_parts_add_up_and_the_tail_is_the_slowest_results() -> None:
    log = LatencyLog()
    # 99 fast results: 10 ms arrival, 20 wait, 30 compute, 40 output; then one slow one whose arrival took 1 s.
    done = 1000.0
    fast = [(done - 0.09, done - 0.07, done - 0.04)] * 99
    log(Acked([0.1] * 99, fast, done))
    log(Acked([1.09], [(done - 0.09, done - 0.07, done - 0.04)], done))
    log(Acked([0.5], [], done))  # stages unknown (not from the score stage): counted end to end only
    assert log.first_at is not None and len(log.e2e) == 101 and len(log.parts) == 100
    for part, e2e in zip(log.parts, log.e2e, strict=False):
        assert sum(part) == pytest.approx(e2e)
    out = log.summary_ms()
    assert out is not None
    assert out["median"] == pytest.approx({"arrival": 10, "wait": 20, "compute": 30, "output": 40})
    assert out["slowest_1pct_mean"] == pytest.approx({"arrival": 1000, "wait": 20, "compute": 30, "output": 40})
    assert log.batch_sizes == [99, 1] and out["batch_size_median"] == 50
    log.clear()
    assert log.summary_ms() is None and log.e2e == []
