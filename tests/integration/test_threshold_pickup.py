"""An operator lowers a version's threshold with the real CLI; a running worker serves it without a reload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from ganomaly.artifact import read_manifest
from ganomaly.registry import ModelStore, Pointer, RedisPointer
from ganomaly.thresholds import OperatorThresholds
from tests.conftest import FMNIST
from tests.integration.helpers import ROOT, Topics, WorkerProc, produce_fmnist, read_topic

pytestmark = pytest.mark.integration
N = 120


def _results(broker: str, topic: str, want: int) -> list[dict]:
    return [json.loads(r.value) for r in read_topic(broker, topic, want=want, timeout_s=60)]


def test_a_lowered_threshold_is_served_and_audited(broker: str, redis_url: str, prefix: str, tiny_model: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    version = store.add(tiny_model)
    r = redis.Redis.from_url(redis_url)
    assert RedisPointer(r, prefix).set(Pointer(version, str(store.path_of(version)), "test", int(time.time() * 1000)), expect=None)
    calibrated = read_manifest(store.path_of(version))["calibration"]
    topics = Topics(broker)
    with WorkerProc(bootstrap=broker, topics=topics, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "w.log",
                    GANOMALY_MODEL_STORE=store.root, GANOMALY_MODEL_POLL_S=0.5) as w:
        produce_fmnist(broker, topics.input, N, data_dir=FMNIST)
        before = _results(broker, topics.results, N)
        assert len(before) == N and {x["threshold"] for x in before} == {calibrated["threshold"]}
        lowered = (calibrated["median"] + calibrated["threshold"]) / 2  # flags the images that score between the two too
        assert any(lowered < x["score"] <= calibrated["threshold"] for x in before)

        done = subprocess.run([sys.executable, "-m", "ganomaly", "models", "threshold", version, "--value", str(lowered),
                               "--note", "catch more near-misses", "--by", "ann", "--model-store", str(store.root), "--redis-url", redis_url,
                               "--redis-prefix", prefix], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              cwd=ROOT, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["threshold"] == lowered
        w.wait_for('"threshold_changed"', timeout_s=15)

        produce_fmnist(broker, topics.input, N, data_dir=FMNIST)  # the same images again
        everything = _results(broker, topics.results, 2 * N)
        assert w.terminate() == 0
    later = [x for x in everything if x["threshold"] != calibrated["threshold"]]
    assert len(later) == N and {x["threshold"] for x in later} == {lowered}
    assert all(x["is_anomaly"] == (x["score"] > lowered) for x in later)
    span = lowered - calibrated["median"]
    assert [x["score_normalised"] for x in later] == pytest.approx([(x["score"] - calibrated["median"]) / span for x in later])  # 1 at the new one
    assert sum(x["is_anomaly"] for x in later) > sum(x["is_anomaly"] for x in before)
    assert '"model_swapped"' not in w.logs()  # the same model served throughout: no reload

    (change,) = OperatorThresholds(r, prefix).audit()
    assert (change.version, change.threshold, change.previous, change.by, change.note) == (
        version, lowered, calibrated["threshold"], "ann", "catch more near-misses")
