"""Labelled Fashion-MNIST PNGs through a real worker, broker and Redis."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import redis

from ganomaly.artifact import read_manifest
from ganomaly.contracts.messages import InputRef, fingerprint
from ganomaly.devstack import free_port
from tests.conftest import FMNIST
from tests.integration.helpers import Topics, WorkerProc, produce_fmnist, read_topic, results_by_id

pytestmark = pytest.mark.integration


def test_end_to_end_results_alerts_and_redis(broker: str, redis_url: str, prefix: str, tiny_model: Path, tmp_path: Path) -> None:
    topics = Topics(broker)
    n = 240
    sent = produce_fmnist(broker, topics.input, n, data_dir=FMNIST)
    manifest = read_manifest(tiny_model)
    port = free_port()
    with WorkerProc(bootstrap=broker, topics=topics, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "w.log",
                    GANOMALY_METRICS_PORT=port, GANOMALY_METRICS_HOST="127.0.0.1") as w:
        w.wait_for('"partitions_assigned"')
        results = read_topic(broker, topics.results, want=n, timeout_s=90)
        ready = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).read())
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert w.terminate() == 0

    by_id = results_by_id(results)
    assert len(by_id) == n, f"{len(by_id)} distinct results for {n} inputs"
    flat = [v[0] for v in by_id.values()]
    assert {r["image_id"] for r in flat} == set(sent)
    for r in flat:
        assert r["model_version"] == manifest["version"]
        assert r["threshold"] == pytest.approx(manifest["calibration"]["threshold"])
        assert r["is_anomaly"] == (r["score"] > r["threshold"])
        assert r["label"] == sent[r["image_id"]]
        assert r["source"] in {"cam-0", "cam-1", "cam-2"}
    anomalous = {r["id"] for r in flat if r["is_anomaly"]}
    assert anomalous, "the model flagged nothing: the alert path went untested"

    alerts = read_topic(broker, topics.alerts, want=len(anomalous), timeout_s=30)
    alert_ids = [json.loads(a.value)["result"]["id"] for a in alerts]
    assert sorted(alert_ids) == sorted(anomalous)  # alerts only for anomalies, one each

    rc = redis.Redis.from_url(redis_url)
    stream = rc.xrange(f"{prefix}:alerts")
    assert sorted(e[1][b"fingerprint"].decode() for e in stream) == sorted(json.loads(a.value)["fingerprint"] for a in alerts)
    some = flat[0]
    stored = json.loads(rc.get(f"{prefix}:result:{some['id']}"))
    assert stored["score"] == some["score"] and rc.ttl(f"{prefix}:result:{some['id']}") > 0
    latest = rc.hgetall(f"{prefix}:latest:cam-0")
    assert latest and json.loads(latest[b"result"])["source"] == "cam-0"
    first_alert = json.loads(alerts[0].value)
    assert first_alert["fingerprint"] == fingerprint(InputRef(**first_alert["result"]["input"]))

    assert ready["ready"] is True and ready["model_version"] == manifest["version"]
    assert f"ganomaly_images_scored_total{{model_version=\"{manifest['version']}\"}} {float(n)}" in metrics
    assert "ganomaly_batch_size_bucket" in metrics and "ganomaly_consumer_lag" in metrics
    # drift metrics: every result on the calibrated scale, and the share the threshold was set for
    assert f"ganomaly_score_normalised_count{{model_version=\"{manifest['version']}\"}} {float(n)}" in metrics
    target = manifest["calibration"]["target_fpr"]
    assert f"ganomaly_expected_anomaly_rate{{model_version=\"{manifest['version']}\"}} {target}" in metrics
