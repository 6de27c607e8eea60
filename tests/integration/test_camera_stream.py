"""Camera frames through a real worker, broker and Redis: 640x480 colour JPEGs, not only 28x28 grayscale."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from ganomaly.artifact import load_artifact
from ganomaly.data.images import decode_image
from ganomaly.devstack import free_port
from ganomaly.evaluation.metrics import detection_metrics
from producers import ImagePublisher
from tests.camera_frames import camera_frame
from tests.integration.helpers import ROOT, Topics, WorkerProc, read_topic, results_by_id

pytestmark = pytest.mark.integration


def _publish_frames(broker: str, topic: str, seeds: list[int], *, anomalous: set[int] = frozenset(), sources: int = 3) -> dict[str, bytes]:
    """Publish camera frames (key frame:SEED, source cam-N, label header); returns key -> bytes."""
    sent = {}
    with ImagePublisher(broker, topic) as pub:
        for n, seed in enumerate(seeds):
            data = camera_frame(seed, anomaly=seed in anomalous)
            key = f"frame:{seed}"
            pub.publish(data, key=key, source=f"cam-{n % sources}", label="anomaly" if seed in anomalous else "normal",
                        content_type="image/jpeg")
            sent[key] = data
    assert pub.stats.failed == 0, pub.stats.errors
    return sent


def _metric(port: int, sample: str) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else None


def test_colour_frames_on_a_grayscale_model_are_scored_by_default_and_dead_lettered_when_strict(
    broker: str, redis_url: str, prefix: str, tiny_model: Path, tmp_path: Path
) -> None:
    """Issue 19, defect 6: a colour camera on a grayscale model was 100 % dead letters by default."""
    n = 60
    topics = Topics(broker)
    sent = _publish_frames(broker, topics.input, list(range(n)))
    port = free_port()
    with WorkerProc(bootstrap=broker, topics=topics, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "convert.log",
                    GANOMALY_METRICS_PORT=port, GANOMALY_METRICS_HOST="127.0.0.1") as w:  # default settings
        w.wait_for('"partitions_assigned"')
        results = read_topic(broker, topics.results, want=n, timeout_s=120)
        converted = _metric(port, 'ganomaly_images_converted_total{from_channels="3",to_channels="1"}')
        assert w.terminate() == 0
        logs = [json.loads(line) for line in w.logs().splitlines() if line.startswith("{")]
    by_id = results_by_id(results)
    assert {v[0]["image_id"] for v in by_id.values()} == set(sent) and len(by_id) == n
    assert read_topic(broker, topics.dlq, settle_s=1.0) == []
    assert converted == n
    notes = [d for d in logs if d.get("event") == "channels_converted"]
    assert sorted(d["source"] for d in notes) == ["cam-0", "cam-1", "cam-2"]  # once per source, not once per image
    assert {(d["from_channels"], d["to_channels"]) for d in notes} == {(3, 1)}

    strict = Topics(broker)
    _publish_frames(broker, strict.input, list(range(n)))
    with WorkerProc(bootstrap=broker, topics=strict, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "strict.log",
                    GANOMALY_CHANNEL_POLICY="strict") as w:
        w.wait_for('"partitions_assigned"')
        letters = read_topic(broker, strict.dlq, want=n, timeout_s=120)
        assert w.terminate() == 0
    assert len({(r.partition, r.offset) for r in letters}) == n
    assert {dict(r.headers)["dlq-reason"] for r in letters} == {b"channels"}
    assert read_topic(broker, strict.results, settle_s=1.0) == []


@pytest.mark.slow
def test_a_colour_letterbox_model_trained_on_a_folder_of_frames_scores_a_frame_stream(
    broker: str, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """Train (ganomaly train --dataset folder) a 3-channel 64x64 letterbox model on 640x480 JPEG frames,
    serve it with a real worker on four partitions, and get the scores training-side decoding gives."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for seed in range(10_000, 10_240):
        (folder / f"{seed}.jpg").write_bytes(camera_frame(seed))
    out = tmp_path / "camera-model"
    train = subprocess.run(
        [sys.executable, "-m", "ganomaly", "train", "--dataset", "folder", "--folder", str(folder), "--out", str(out),
         "--isize", "64", "--channels", "3", "--resize", "letterbox", "--epochs", "2", "--ngf", "16", "--nz", "32",
         "--batch-size", "32", "--device", "cpu", "--score", "recon"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert train.returncode == 0, train.stderr[-3000:]
    art = load_artifact(out)
    spec = art.input_spec
    assert (spec.isize, spec.channels, spec.resize, spec.jpeg_draft) == (64, 3, "letterbox", True)

    topics = Topics(broker, partitions=4)
    seeds = list(range(200))
    anomalous = set(seeds[::5])
    sent = _publish_frames(broker, topics.input, seeds, anomalous=anomalous, sources=4)
    with WorkerProc(bootstrap=broker, topics=topics, model=out, redis_url=redis_url, prefix=prefix, log=tmp_path / "w.log",
                    GANOMALY_DECODE_THREADS=2) as w:
        w.wait_for('"partitions_assigned"')
        results = read_topic(broker, topics.results, want=len(seeds), timeout_s=180)
        assert w.terminate() == 0
    by_id = results_by_id(results)
    flat = [v[0] for v in by_id.values()]
    assert sorted(r["image_id"] for r in flat) == sorted(sent)
    assert {r["input"]["partition"] for r in flat} == {0, 1, 2, 3}
    assert '"channels_converted"' not in w.logs()  # colour frames on a colour model: nothing to convert
    # the worker's scores are the ones the training side's decoding gives (same decode, draft and letterbox included)
    keys = sorted(sent)
    offline = art.scorer().score(torch.from_numpy(np.stack([decode_image(sent[k], spec) for k in keys]))).score.numpy()
    served = np.array([next(r["score"] for r in flat if r["image_id"] == k) for k in keys])
    np.testing.assert_allclose(served, offline, rtol=1e-4, atol=1e-6)
    # and the red blobs stand out from the parts the model was trained on
    labels = np.array([int(r["label"] == "anomaly") for r in flat])
    assert detection_metrics(labels, np.array([r["score"] for r in flat]), art.threshold)["auroc"] > 0.7  # 0.81 when written; chance is 0.5
