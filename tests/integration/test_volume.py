"""The long-running commands at the volumes people use: 10,000 records over several partitions.

The images go in through ``ganomaly produce`` as a user publishes them; the worker runs as a real
process; the trainer's ingest reads 10,000 verdicts and fetches every image back by coordinates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from ganomaly.connections.kafka import as_kafka, ensure_topics
from ganomaly.contracts.messages import Feedback, InputRef
from producers.feedback import post_verdicts
from tests.conftest import FMNIST
from tests.integration.helpers import ROOT, Topics, WorkerProc, read_topic, results_by_id
from trainer.ingest import ingest_feedback
from trainer.normal_set import NormalSet

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N = 10_000
PARTITIONS = 4


@pytest.fixture(scope="module")
def published(broker: str) -> Topics:
    """The whole Fashion-MNIST test split, published with the documented command."""
    topics = Topics(broker, partitions=PARTITIONS)
    out = subprocess.run([sys.executable, "-m", "ganomaly", "produce", "--bootstrap-servers", broker, "--topic", topics.input,
                          "--from", "fashion-mnist", "--data-dir", str(FMNIST), "--split", "t10k", "--protocol", "one-class",
                          "--class", "7", "--count", str(N), "--no-progress"],
                         check=False, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert sum(_ends(broker, topics.input).values()) == N
    return topics


def _ends(bootstrap: str, topic: str) -> dict[int, int]:
    """Per partition, one past the last record, from the records themselves: Tansu's end offsets
    (high watermarks) can point too early after batched produces (shared/reference/infra.md)."""
    ends: dict[int, int] = {}
    for r in read_topic(bootstrap, topic, timeout_s=120):
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    return ends


def _committed_when_caught_up(topics: Topics, ends: dict[int, int], timeout_s: float = 30) -> dict[int, int | None]:
    """The group's committed offsets once they reach every partition's end (or when ``timeout_s`` runs out):
    the commit follows the acknowledged outputs, a little after the last result is readable."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(topics.committed(p) != ends[p] for p in ends):
        time.sleep(0.5)
    return {p: topics.committed(p) for p in ends}


def test_worker_scores_10000_records_over_four_partitions(broker: str, redis_url: str, prefix: str, tiny_model: Path, published: Topics,
                                                          tmp_path: Path) -> None:
    ends = _ends(broker, published.input)
    assert len(ends) == PARTITIONS and all(n > N // (2 * PARTITIONS) for n in ends.values()), ends  # keys spread the load
    with WorkerProc(bootstrap=broker, topics=published, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "w.log",
                    GANOMALY_MAX_BATCH_SIZE=256, GANOMALY_SCORE_STREAMS=2) as w:
        results = read_topic(broker, published.results, want=N, timeout_s=300)
        committed = _committed_when_caught_up(published, ends)
        assert w.terminate() == 0
        started = w.logs()
    assert '"score_streams": 2' in started  # two batches scored at once: results finish out of order, commits must not

    by_id = results_by_id(results)
    assert len(by_id) == N, f"{len(by_id)} distinct results for {N} records"
    per_partition = Counter(v[0]["input"]["partition"] for v in by_id.values())
    assert dict(per_partition) == ends
    assert committed == ends
    labels = Counter(v[0]["label"] for v in by_id.values())
    assert labels == {"normal": 1000, "anomaly": 9000}
    rc = redis.Redis.from_url(redis_url)
    stored = sum(1 for _ in rc.scan_iter(f"{prefix}:result:{published.input}:*", count=5000))
    assert stored == N
    flagged = {rid for rid, v in by_id.items() if v[0]["is_anomaly"]}
    assert flagged, "the model flagged nothing: the alert path went untested"
    alerts = read_topic(broker, published.alerts, want=len(flagged), timeout_s=60)
    assert Counter(json.loads(a.value)["result"]["id"] for a in alerts) == Counter(flagged)  # one alert per flagged result


def test_trainer_ingest_takes_10000_verdicts_and_fetches_every_image(broker: str, published: Topics, tmp_path: Path, prefix: str) -> None:
    feedback = f"feedback-{prefix}"
    ensure_topics({"bootstrap_servers": [broker]}, [feedback], 3)
    inputs = read_topic(broker, published.input, want=N, timeout_s=120)
    assert len(inputs) == N
    now = int(time.time() * 1000)
    verdicts = [Feedback(verdict="normal" if i % 10 else "anomaly", input=InputRef(topic=r.topic, partition=r.partition, offset=r.offset),
                         result_id=f"{r.topic}:{r.partition}:{r.offset}", by="operator", at_ms=now)
                for i, r in enumerate(inputs)]
    assert post_verdicts(broker, feedback, verdicts) == N
    assert sum(_ends(broker, feedback).values()) == N

    ns = NormalSet(tmp_path / "confirmed")
    counts = ingest_feedback(as_kafka(broker), feedback, f"trainer-{prefix}", ns, idle_ms=1500)
    assert counts.get("new") == N and counts.get("fetched") == N and counts.get("unavailable") == 0, counts

    again = NormalSet(tmp_path / "confirmed")  # what the next run sees: the saved index
    assert len(again.entries) == N
    by_ref = {(r.partition, r.offset): r.value for r in inputs}
    for e in again.entries.values():
        assert again.read(e) == by_ref[(e.ref["partition"], e.ref["offset"])]
    assert len(again.with_verdict("normal")) == N - N // 10
    # committed only after the index was saved: a second ingest finds nothing new
    assert ingest_feedback(as_kafka(broker), feedback, f"trainer-{prefix}", NormalSet(tmp_path / "confirmed"), idle_ms=1500) \
        .get("new", 0) == 0


def test_a_worker_that_pauses_and_resumes_all_the_time_still_answers_every_record(broker: str, redis_url: str, prefix: str,
                                                                                 tiny_model: Path, published: Topics,
                                                                                 tmp_path: Path) -> None:
    """Backpressure at 10,000 records through the real consumer: a small in-flight limit makes the
    worker pause and resume all its partitions again and again, and nothing is lost or left uncommitted.
    One score stream, the default (the test above runs two)."""
    ends = _ends(broker, published.input)
    mine = Topics(broker, partitions=PARTITIONS)  # own outputs and group, same input
    mine.input = published.input
    with WorkerProc(bootstrap=broker, topics=mine, model=tiny_model, redis_url=redis_url, prefix=f"{prefix}-bp", log=tmp_path / "w.log",
                    GANOMALY_MAX_BATCH_SIZE=64, GANOMALY_MAX_IN_FLIGHT=200, GANOMALY_RESUME_IN_FLIGHT=50) as w:
        results = read_topic(broker, mine.results, want=N, timeout_s=300)
        committed = _committed_when_caught_up(mine, ends)
        assert w.terminate() == 0
        logs = w.logs()
        pauses = logs.count('"event": "paused"')
    assert '"score_streams": 1' in logs
    assert pauses >= 10, f"the worker paused {pauses} times: backpressure went untested"
    by_id = results_by_id(results)
    assert len(by_id) == N, f"{len(by_id)} distinct results for {N} records"
    assert committed == ends
