"""``ganomaly replay`` reads every record of its stretch at volume, however slowly it scores (issue 19, defect 1).

One topic of the 10,000 Fashion-MNIST test images on three partitions is published once for the
module. The truth per partition comes from an independent read of the topic, not from the reader
under test.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ganomaly.connections.kafka import ensure_topics
from replay.reader import Stretch, StretchAccount, read_stretch
from tests.conftest import FMNIST
from tests.integration.helpers import ROOT, produce_fmnist, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 10_000


@pytest.fixture(scope="module")
def fmnist_topic(broker: str) -> tuple[str, dict[int, int]]:
    """The 10,000 test images on a 3-partition topic; returns the topic and its records per partition."""
    topic = f"replay-volume-{os.getpid()}-{time.monotonic_ns()}"
    ensure_topics({"bootstrap_servers": [broker]}, [topic], 3)
    produce_fmnist(broker, topic, N, data_dir=FMNIST)
    per_partition = Counter(r.partition for r in read_topic(broker, topic, want=N, timeout_s=120))
    assert sum(per_partition.values()) == N and len(per_partition) == 3, per_partition
    return topic, dict(per_partition)


def _csv_partitions(path: Path) -> Counter[int]:
    with path.open() as f:
        return Counter(int(row["id"].rsplit(":", 2)[1]) for row in csv.DictReader(f))


def test_a_slow_caller_reads_every_record_of_every_partition(broker: str, fmnist_topic: tuple[str, dict[int, int]]) -> None:
    """The caller spends 0.65 s per 256 records, as a large model scores on a small CPU: about 8 s per partition.

    The old reader ended a partition that had no fresh records for 10 s, so the partitions read last
    were cut short. Only polling that brings nothing may count as idle; here idle_ms is far below
    the caller's time per partition, and every record of every partition must still come.
    """
    topic, truth = fmnist_topic
    account = StretchAccount()
    got: Counter[int] = Counter()
    for n, r in enumerate(read_stretch({"bootstrap_servers": [broker]}, topic, Stretch(), idle_ms=5_000, account=account), 1):
        got[r.partition] += 1
        if n % 256 == 0:
            time.sleep(0.65)
    # Every record, per partition, as the independent read counted them (the old reader starved partition 2).
    assert dict(got) == truth
    stretch = account.summary()
    assert stretch["complete"] is True and stretch["expected"] == N and stretch["read"] == N
    assert {int(p): (v["expected"], v["read"], v["status"]) for p, v in stretch["partitions"].items()} == {
        p: (n, n, "complete") for p, n in truth.items()}
    # The ends were fixed from the topic's real end (Tansu's ListOffsets answer is early when producers batch).
    assert {int(p): v["end"] - v["start"] for p, v in stretch["partitions"].items()} == truth


def test_command_line_rescore_of_10000_records_on_three_partitions(broker: str, tiny_model: Path, fmnist_topic: tuple[str, dict[int, int]],
                                                                  tmp_path: Path) -> None:
    topic, truth = fmnist_topic
    report = tmp_path / "cli.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["ganomaly", "replay", "--mode", "rescore", "--topic", topic, "--model", str(tiny_model), "--bootstrap-servers", broker,
                           "--device", "cpu", "--report", str(report), "--scores", str(tmp_path / "scores.csv")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "incomplete" not in proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["records"] == N
    rep = json.loads(report.read_text())
    assert rep["counts"]["records"] == N
    assert {int(p): (v["expected"], v["read"]) for p, v in rep["stretch"]["partitions"].items()} == {p: (n, n) for p, n in truth.items()}
    assert dict(_csv_partitions(tmp_path / "scores.csv")) == truth  # every record scored, by the real model, per partition
