"""``bench stream``'s rows, from the command line against the real broker and Redis: the drain, what the worker
sustains live with a producer process beside it, and the latency at half of that, every live record answered."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FMNIST
from tests.integration.helpers import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _bench(*args: str, broker: str, redis_url: str, prefix: str) -> list[dict]:
    p = subprocess.run([sys.executable, "-m", "ganomaly", "bench", "stream", "--width", "4", "--device", "cpu", "--data-dir", str(FMNIST),
                        "--bootstrap-servers", broker, "--redis-url", redis_url, "--redis-prefix", prefix, *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def _live_checked(row: dict) -> None:
    assert row["end_to_end_images_per_s"] > 0 and row["ratio_to_raw"] > 0
    assert "steady_images_per_s" in row  # None here: too few batches between 10 % and 90 % to say
    # offered the drain rate, it cannot answer faster than it was offered (a little slack: the producer runs ahead
    # of schedule by up to one send), and half of what it answered is the latency phase's rate
    assert 0 < row["live_max_images_per_s"] <= 1.1 * row["end_to_end_images_per_s"], row
    assert row["live_rate_images_per_s"] == pytest.approx(max(10.0, 0.5 * row["live_max_images_per_s"]), abs=0.1)
    assert row["live_sent"] > 0 and row["live_answered"] == row["live_sent"], row  # every live record answered
    assert 0 < row["latency_p50_ms"] <= row["latency_p99_ms"]
    parts = row["latency_parts_ms"]["median"]
    assert set(parts) == {"arrival", "wait", "compute", "output"} and all(v >= 0 for v in parts.values())
    assert row["latency_p99_within_target"] == (row["latency_p99_ms"] <= row["latency_target_ms"])


def test_png_stream_rows_with_two_score_streams(broker: str, redis_url: str, prefix: str) -> None:
    rows = _bench("--images", "300", "--pairs", "64:5", "--live-seconds", "2", "--score-streams", "2", broker=broker, redis_url=redis_url,
                  prefix=prefix)
    assert len(rows) == 1 and rows[0]["shape"] == "32x32x1" and rows[0]["max_batch_size"] == 64
    row = rows[0]
    _live_checked(row)
    # the worker ran two streams, and the baseline is the faster of one stream on every thread and that layout
    assert row["score_streams"] == 2 and len(row["raw_by_layout_images_per_s"]) == 2, row
    assert row["raw_model_images_per_s"] == max(row["raw_by_layout_images_per_s"].values()), row


def test_camera_frames_stream_rows_with_and_without_draft(broker: str, redis_url: str, prefix: str) -> None:
    rows = _bench("--frames", "camera", "--shape", "32x3", "--images", "100", "--pairs", "16:10", "--live-seconds", "1",
                  broker=broker, redis_url=redis_url, prefix=prefix)
    assert [r["jpeg_draft"] for r in rows] == [True, False] and all(r["shape"] == "32x32x3" for r in rows)
    for r in rows:
        _live_checked(r)
        assert r["score_streams"] == 1 and len(r["raw_by_layout_images_per_s"]) == 1  # the default: one stream
