"""``bench stream --soak-minutes``: a short soak against the real broker and Redis, and Ctrl-C ending it cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import FMNIST
from tests.integration.helpers import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = ["--width", "4", "--images", "200", "--pairs", "64:5", "--device", "cpu", "--data-dir", str(FMNIST)]


def _soak(*args: str, redis_url: str, prefix: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ganomaly", "bench", "stream", *TINY, "--redis-url", redis_url, "--redis-prefix", prefix, *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _alive(pid: int) -> bool:
    try:
        return not open(f"/proc/{pid}/status").read().count("State:\tZ")  # a zombie has ended
    except OSError:
        return False


def test_short_soak_answers_every_input_and_commits_to_the_end(broker: str, redis_url: str, prefix: str) -> None:
    p = _soak("--soak-minutes", "0.25", "--soak-window-s", "5", "--bootstrap-servers", broker, redis_url=redis_url, prefix=prefix)
    out, err = p.communicate(timeout=180)
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert rows and p.returncode == (0 if rows[-1].get("passed") else 1), err[-3000:]  # the verdict is the exit code
    start, windows, summary = rows[0], [r for r in rows if r["bench"] == "soak"], rows[-1]
    assert start["bench"] == "soak-start" and start["rate_images_per_s"] > 0 and start["broker_pid"] is None
    assert start["records_per_partition_est"] > 0 and "warning" not in start  # a broker named by the user is not judged
    assert [w["window"] for w in windows] == [0, 1, 2]
    for w in windows:
        assert w["results"] > 0 and w["latency_p99_ms"] >= w["latency_p50_ms"] > 0 and w["worker_rss_mb"] > 50
        assert {"raw", "ready", "out"} <= set(w["queue_depth_max"]) and w["in_flight_max"] is not None
    assert summary["bench"] == "soak-summary"
    assert summary["lost"] == 0 and summary["committed_to_end"] is True and summary["worker_exit_code"] == 0
    assert summary["inputs"] == 200 + summary["producer_sent"] == summary["answered"]
    for key in ("rss_mb_after_warmup", "rss_mb_end", "rss_growth_pct", "queue_depth_total_max_per_window", "latency_p99_ms_first",
                "latency_p99_ms_last", "drain_images_per_s"):
        assert summary[key] is not None, key
    assert set(summary["pass"]) == {"rss_growth_under_5pct", "queue_depths_flat", "p99_steady", "none_lost", "committed_to_end", "worker_exit_0"}
    assert summary["passed"] == all(summary["pass"].values())


def test_ctrl_c_ends_the_worker_producer_and_broker(redis_url: str, prefix: str) -> None:
    p = _soak("--soak-minutes", "5", "--soak-window-s", "5", "--partitions", "1", redis_url=redis_url, prefix=prefix)
    assert p.stdout is not None
    start = json.loads(p.stdout.readline())  # the soak is running: worker, producer and its own broker started
    assert start["bench"] == "soak-start", start
    # five minutes into one partition of its own Tansu broker: more batches than Tansu answers fetches for
    assert start["records_per_partition_est"] > 20_000 and "--partitions" in start["warning"], start
    pids = [start["worker_pid"], start["producer_pid"], start["broker_pid"]]
    assert all(_alive(pid) for pid in pids)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=60)
    assert p.returncode == 130
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)]
