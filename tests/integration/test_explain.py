"""ganomaly explain: a result read back by its coordinates, scored by the model that scored it, drawn as PNGs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import redis
import torch
from PIL import Image

from ganomaly.artifact import load_artifact
from ganomaly.contracts.messages import InputRef
from ganomaly.contracts.results import build_result
from ganomaly.data.idx import load_split
from ganomaly.data.images import decode_image
from ganomaly.data.synthetic import camera_frame
from ganomaly.registry import ModelStore
from producers import ImagePublisher, encode_png
from tests.integration.helpers import Topics

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _explain(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANOMALY_")}
    return subprocess.run([sys.executable, "-m", "ganomaly", "explain", *args, "--connect-timeout-s", "10"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def patched_trousers() -> list[bytes]:
    images, labels = load_split(FMNIST, "t10k")
    out = []
    for a in images[labels == 1][:2]:
        a = a.copy()
        a[2:9, 2:9] = 255  # a white patch where trouser pictures are background
        out.append(encode_png(a))
    return out


def test_a_result_is_explained_by_its_coordinates(broker: str, trouser_model: Path, patched_trousers: list[bytes], tmp_path: Path) -> None:
    topics = Topics(broker, partitions=1)
    frame = camera_frame(3, anomaly=True)
    with ImagePublisher(broker, topics.input) as pub:
        pub.publish(patched_trousers[0], key="t0")
        pub.publish(frame, key="cam")
    art = load_artifact(trouser_model)

    p = _explain("--result-id", f"{topics.input}:0:0", "--model", str(trouser_model), "--bootstrap-servers", broker, "--out", str(tmp_path / "a"))
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    want = float(art.scorer().score(torch.from_numpy(decode_image(patched_trousers[0], art.input_spec))[None]).score[0])
    assert got["score"] == pytest.approx(want, rel=1e-5) and got["threshold"] == art.threshold
    assert got["is_anomaly"] == (want > art.threshold) and got["model_version"] == art.version and got["model_from"] == "--model"
    heat = np.asarray(Image.open(tmp_path / "a" / "heatmap.png").convert("L"), dtype=np.float32)
    assert heat.shape == (28, 28)  # on the frame's own geometry
    assert heat[2:9, 2:9].mean() > 2 * heat[14:, 14:].mean()  # the patch is where the heat is

    # a 640x480 camera frame on a 32x32 grayscale model: the pictures keep the frame's size
    p = _explain("--result-id", f"{topics.input}:0:1", "--model", str(trouser_model), "--bootstrap-servers", broker, "--out", str(tmp_path / "b"))
    assert p.returncode == 0, p.stderr
    over = Image.open(tmp_path / "b" / "overlay.png")
    assert over.size == (640, 480) and over.mode == "RGB"
    frame_px = np.asarray(Image.open(io.BytesIO(frame)).convert("RGB"), dtype=np.int16)
    assert np.abs(np.asarray(over, dtype=np.int16) - frame_px).mean() > 1  # the map is laid over it
    assert json.loads(p.stdout)["seconds"] < 2.0


def test_the_model_that_scored_the_result_explains_it(broker: str, redis_url: str, prefix: str, trouser_model: Path, tiny_model: Path,
                                                      patched_trousers: list[bytes], tmp_path: Path) -> None:
    topics = Topics(broker, partitions=1)
    with ImagePublisher(broker, topics.input) as pub:
        pub.publish(patched_trousers[1], key="t1")
    store = ModelStore(tmp_path / "store")
    scored_by = store.add(trouser_model)
    current = store.add(tiny_model)
    rc = redis.Redis.from_url(redis_url)
    from ganomaly.registry import Pointer, RedisPointer

    RedisPointer(rc, prefix).set(Pointer(current, str(store.path_of(current)), "test", int(time.time() * 1000)), expect=None)
    common = ["--model-store", str(store.root), "--bootstrap-servers", broker, "--redis-url", redis_url, "--redis-prefix", prefix]
    rid = f"{topics.input}:0:0"
    # no stored result: the registry's current model
    p = _explain("--result-id", rid, *common, "--out", str(tmp_path / "cur"))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["model_version"] == current
    # the worker's result in Redis names the model that scored it
    art = load_artifact(trouser_model)
    res = build_result(InputRef(topic=topics.input, partition=0, offset=0, key="t1"), score=1.0, threshold=art.threshold,
                       calibration=art.calibration, model_version=scored_by, record_timestamp_ms=0, scored_at_ms=1, worker="w")
    rc.set(f"{prefix}:result:{rid}", res.to_json(), ex=60)
    p = _explain("--result-id", rid, *common, "--out", str(tmp_path / "res"))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["model_version"] == scored_by and out["model_from"] == "the result"


def test_what_cannot_be_explained_is_one_error_line(broker: str, tiny_model: Path, tmp_path: Path) -> None:
    topics = Topics(broker, partitions=1)
    with ImagePublisher(broker, topics.input) as pub:
        pub.publish(b"not an image", key="bad")
    bad_file = tmp_path / "x.png"
    bad_file.write_bytes(b"\x89PNG broken")
    m = ["--model", str(tiny_model), "--bootstrap-servers", broker, "--out", str(tmp_path / "o")]
    cases = {
        "no such partition": ["--result-id", f"{topics.input}:7:0", *m],
        "past the partition's end": ["--result-id", f"{topics.input}:0:5", *m],
        "cannot be scored (undecodable)": ["--result-id", f"{topics.input}:0:0", *m],
        "bad result id": ["--result-id", "nocolons", *m],
        "no such file": ["--image", str(tmp_path / "missing.png"), *m],
        "x.png cannot be scored": ["--image", str(bad_file), *m],
        "give one of --result-id": [*m],
    }
    for said, args in cases.items():
        p = _explain(*args)
        assert p.returncode == 2, (said, p.stderr)
        assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: ") and said in p.stderr, (said, p.stderr)
        assert p.stdout == ""
    assert not (tmp_path / "o").exists()


def test_replay_draws_the_top_scored_records_beside_their_maps(broker: str, trouser_model: Path, patched_trousers: list[bytes],
                                                                tmp_path: Path) -> None:
    topics = Topics(broker, partitions=2)
    images, labels = load_split(FMNIST, "t10k")
    with ImagePublisher(broker, topics.input) as pub:
        for i, data in enumerate([*patched_trousers, *(encode_png(a) for a in images[labels == 1][10:14])]):
            pub.publish(data, key=f"k{i}")
    sheet, report, csv = tmp_path / "top.png", tmp_path / "r.json", tmp_path / "s.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANOMALY_")}
    p = subprocess.run([sys.executable, "-m", "ganomaly", "replay", "--mode", "rescore", "--topic", topics.input, "--model", str(trouser_model),
                        "--bootstrap-servers", broker, "--report", str(report), "--scores", str(csv), "--contact-sheet", str(sheet),
                        "--sheet-top", "3", "--idle-ms", "5000"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    assert json.loads(report.read_text())["contact_sheet"] == {"path": str(sheet), "shown": 3}
    im = Image.open(sheet)
    assert im.size == (3 * 2 * 160, 160 + 16)
    # the first tile is the record scored highest in the CSV, read back from its partition
    rows = [line.split(",") for line in csv.read_text().splitlines()[1:]]
    best = max(rows, key=lambda r: float(r[-1]))
    topic, part, off = best[0].rsplit(":", 2)
    from ganomaly.connections.kafka import as_kafka
    from ganomaly.connections.records import fetch_record

    want = Image.open(io.BytesIO(fetch_record(as_kafka(broker), topic, int(part), int(off)))).convert("RGB").resize((160, 160), Image.Resampling.NEAREST)
    assert np.abs(np.asarray(im.crop((0, 0, 160, 160)), dtype=np.int16) - np.asarray(want, dtype=np.int16)).mean() < 3.0

    audit = subprocess.run([sys.executable, "-m", "ganomaly", "replay", "--mode", "audit", "--topic", topics.input, "--bootstrap-servers", broker,
                            "--contact-sheet", str(tmp_path / "no.png")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                           check=False)
    assert audit.returncode == 2 and audit.stderr.count("\n") == 1 and "--contact-sheet goes with --mode rescore" in audit.stderr, audit.stderr
