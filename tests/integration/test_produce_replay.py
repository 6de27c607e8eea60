"""`ganomaly produce` -> worker -> `ganomaly replay` (rescore and audit) against the real broker and Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from ganomaly.cli.commands.evaluate import EvaluateSettings
from ganomaly.cli.commands.evaluate import run as evaluate
from ganomaly.data.idx import load_split
from producers import ImagePublisher, encode_png
from producers.cli import ProduceSettings
from producers.cli import run as produce
from replay.main import ReplaySettings
from replay.main import run as replay
from tests.conftest import FMNIST
from tests.integration.helpers import Topics, WorkerProc, read_topic

pytestmark = pytest.mark.integration


def test_produce_worker_replay_rescore_and_audit(broker: str, redis_url: str, prefix: str, tiny_model: Path, trouser_model: Path,
                                                 tmp_path: Path) -> None:
    topics = Topics(broker, partitions=3)
    n = 600
    rc = produce(ProduceSettings(bootstrap_servers=broker, topic=topics.input, source_kind="fashion-mnist", data_dir=FMNIST, split="t10k",
                                 protocol="leave-one-out", klass=0, count=n, source="test-cam", progress=False))
    assert rc == 0
    with WorkerProc(bootstrap=broker, topics=topics, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "w.log") as w:
        read_topic(broker, topics.results, want=n, timeout_s=90)
        assert w.terminate() == 0

    ev = evaluate(EvaluateSettings(model=tiny_model, data_dir=FMNIST, protocol="leave-one-out", klass=0, max_images=n, device="cpu"))
    common = {"bootstrap_servers": broker, "topic": topics.input, "results_topic": topics.results, "alerts_topic": topics.alerts,
                  "dlq_topic": topics.dlq, "device": "cpu", "idle_ms": 1000}
    eval_topic = f"eval-{topics.group}"
    rescored = replay(ReplaySettings(**common, mode="rescore", model=tiny_model, challenger=trouser_model, report=tmp_path / "rescore.json",
                                     scores=tmp_path / "rescore.csv", eval_topic=eval_topic))
    version = ev["model_version"]
    assert rescored["counts"] == {"records": n, "labelled": n}
    assert rescored["models"][version]["auroc"] == pytest.approx(ev["metrics"]["auroc"], abs=1e-6)
    assert rescored["models"][version]["confusion"] == ev["metrics"]["confusion"]
    assert rescored["per_source"][version].keys() == {"test-cam"}
    challenger = next(v for v in rescored["models"] if v != version)  # champion vs. challenger, side by side
    assert rescored["models"][challenger]["n"] == n and rescored["models"][challenger]["auroc"] is not None
    assert Path(tmp_path / "rescore-roc.png").stat().st_size > 1000
    assert len(read_topic(broker, eval_topic, want=n, timeout_s=30)) == n

    audited = replay(ReplaySettings(**common, mode="audit", report=tmp_path / "audit.json"))
    assert audited["inputs"] == n and audited["with_result"] == n and audited["missing_results"] == 0
    assert list(audited["models"]) == [version]
    # The workers scored the same images with the same model: the same AUROC.
    assert audited["models"][version]["auroc"] == pytest.approx(ev["metrics"]["auroc"], abs=1e-6)
    assert audited["latency"]["n"] == n and audited["latency"]["p50_ms"] > 0


def test_replay_refuses_to_write_production_topics(tiny_model: Path, broker: str) -> None:
    from ganomaly.errors import UserError

    with pytest.raises(UserError, match="production topic"):
        replay(ReplaySettings(bootstrap_servers=broker, topic="images-x", model=tiny_model, eval_topic="image-results"))


def test_time_window_returns_exactly_the_records_in_it(broker: str, tiny_model: Path) -> None:
    topics = Topics(broker, partitions=2)
    images, _ = load_split(FMNIST, "t10k")
    base = int(time.time() * 1000) - 3_600_000  # an hour ago, one record a second
    with ImagePublisher(broker, topics.input) as pub:
        for i in range(60):
            pub.publish(encode_png(images[i]), key=f"k{i}", label="normal", timestamp_ms=base + i * 1000)
    start, end = base + 20_000, base + 45_000
    out = replay(ReplaySettings(bootstrap_servers=broker, topic=topics.input, model=tiny_model, start_time=str(start), end_time=str(end),
                                scores=Path("/dev/null"), device="cpu", idle_ms=800))
    assert out["counts"]["records"] == 25

    from replay.reader import Stretch, read_stretch

    keys = sorted(int(r.key.decode()[1:]) for r in read_stretch({"bootstrap_servers": [broker]}, topics.input, Stretch(start_ms=start, end_ms=end),
                                                                idle_ms=800))
    assert keys == list(range(20, 45))
    first_p0 = sorted(r.offset for r in read_stretch({"bootstrap_servers": [broker]}, topics.input, Stretch(start_offsets=5, end_offsets={0: 9}),
                                                     partitions=[0], idle_ms=800))
    assert first_p0 == [5, 6, 7, 8]


def test_produce_folder_reports_and_skips_unreadable(broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topics = Topics(broker, partitions=1)
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    images, _ = load_split(FMNIST, "t10k")
    for i in range(5):
        (root / "sub" / f"{i}.png").write_bytes(encode_png(images[i]))
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "notes.txt").write_text("ignored: not an image suffix")
    rc = produce(ProduceSettings(bootstrap_servers=broker, topic=topics.input, source_kind="folder", path=root, progress=False))
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and summary["sent"] == 5 and summary["skipped_unreadable"] == 1 and "broken.png" in summary["unreadable"][0]
    recs = read_topic(broker, topics.input, want=5, timeout_s=20)
    assert sorted(r.key.decode() for r in recs) == [f"sub/{i}.png" for i in range(5)]
    assert all(dict(r.headers)["content-type"] == b"image/png" for r in recs)
    assert {r.value for r in recs} == {encode_png(images[i]) for i in range(5)}  # original bytes
    assert np.all([dict(r.headers)["filename"].endswith(b".png") for r in recs])
