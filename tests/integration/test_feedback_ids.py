"""Verdicts on inputs that are not there: ``ganomaly feedback`` refuses them (all or nothing), and the trainer,
given them anyway (through the library), counts them as unavailable with their reason instead of crashing.

Against the real broker and Redis. The input topic's records are produced in one batch, so Tansu's
ListOffsets answers an end that is too early: an offset it leaves out must still count as present.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from ganomaly.connections.kafka import ensure_topics, make_producer
from ganomaly.contracts.messages import Feedback, InputRef
from producers.feedback import post_verdicts
from tests.integration.helpers import read_topic
from tests.integration.test_cli_errors import ganomaly
from trainer.job import run_once
from trainer.settings import TrainerSettings

pytestmark = pytest.mark.integration
PARTITIONS, PER_PARTITION = 4, 5


@pytest.fixture
def inputs_topic(broker: str) -> str:
    """An input topic of 4 partitions with offsets 0-4 in each, written in one batch per partition."""
    topic = f"images-fb-{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap_servers": [broker]}, [topic], PARTITIONS)
    prod = make_producer({"bootstrap_servers": [broker]}, linger_ms=200)
    for p in range(PARTITIONS):
        for i in range(PER_PARTITION):
            prod.send(topic, key=f"f{p}{i}.jpg".encode(), value=f"image {p}:{i}".encode(), partition=p)
    prod.flush()
    prod.close()
    return topic


def test_feedback_refuses_a_missing_input_in_one_line_and_sends_nothing(broker: str, inputs_topic: str) -> None:
    feedback = f"feedback-{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap_servers": [broker]}, [feedback], 1)
    good = f"{inputs_topic}:0:4"  # past the end Tansu lists for partition 0, which was written in one batch
    bad = {
        f"{inputs_topic}:9:99999": "no such partition",
        f"nosuchtopic-{uuid.uuid4().hex[:6]}:0:0": "no such topic",
        f"{inputs_topic}:0:99999": "past the partition's end (5)",
        f"{inputs_topic}:2:5": "past the partition's end (5)",
        f"{inputs_topic}:0:-5": "bad result id",  # a syntax error, found before any connection
        f"{inputs_topic}:-1:0": "bad result id",
    }
    for rid, why in bad.items():
        started = time.monotonic()
        done = ganomaly("feedback", "--bootstrap-servers", broker, "--topic", feedback, "--verdict", "normal",
                        "--result-id", f"{good},{rid}", timeout=120)
        assert done.returncode == 2, (rid, done.stderr)
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and rid in lines[0] and why in lines[0], (rid, done.stderr)
        assert done.stdout == ""
        assert time.monotonic() - started < 25, rid  # no 30 s request timeout on a missing partition
    # Every id good: sent, including the offset Tansu's ListOffsets leaves out. Only these are on the topic:
    # none of the refused runs sent its good id.
    done = ganomaly("feedback", "--bootstrap-servers", broker, "--topic", feedback, "--verdict", "anomaly",
                    "--result-id", f"{good},{inputs_topic}:3:0", "--image-id", "f04.jpg", timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sent"] == 2
    got = [json.loads(r.value) for r in read_topic(broker, feedback, want=2)]
    assert [(g["result_id"], g["verdict"], g["input"]["offset"]) for g in got] == [(good, "anomaly", 4), (f"{inputs_topic}:3:0", "anomaly", 0)]


def test_trainer_counts_missing_inputs_as_unavailable_with_their_reasons(broker: str, redis_url: str, prefix: str, inputs_topic: str,
                                                                         tmp_path: Path) -> None:
    """Verdicts that bypass the CLI's checks (library, older clients): one on a missing partition made every
    trainer run fail with KafkaTimeoutError after 30 s or more; an image id alone was stored and never used."""
    feedback = f"feedback-{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap_servers": [broker]}, [feedback], 1)
    now = int(time.time() * 1000)
    good = [InputRef(topic=inputs_topic, partition=p, offset=o) for p in range(PARTITIONS) for o in range(PER_PARTITION)]
    bad = {InputRef(topic=inputs_topic, partition=9, offset=99999): "no such partition",
           InputRef(topic="nosuchtopic", partition=0, offset=0): "no such topic",
           InputRef(topic=inputs_topic, partition=0, offset=-5): "negative offset",
           InputRef(topic=inputs_topic, partition=1, offset=99999): "past the partition's end (5)"}
    verdicts = [Feedback(verdict="normal", input=ref, result_id=ref.id, by="op", at_ms=now) for ref in [*bad, *good]]
    verdicts.append(Feedback(verdict="anomaly", image_id="f003.jpg", by="op", at_ms=now))
    post_verdicts(broker, feedback, verdicts)
    settings = TrainerSettings(bootstrap_servers=broker, feedback_topic=feedback, group_id=f"trainer-{prefix}", data_dir=tmp_path / "confirmed",
                               model_store=tmp_path / "store", redis_url=redis_url, redis_prefix=prefix, min_new_normals=1000,
                               device="cpu", idle_ms=1000, connect_timeout_s=10)
    started = time.monotonic()
    record = run_once(settings)
    took = time.monotonic() - started
    ingested = record["ingested"]
    assert ingested["new"] == len(bad) + len(good) and ingested["fetched"] == len(good), ingested
    assert ingested["unavailable"] == len(bad) + 1, ingested
    assert ingested["unavailable_reasons"] == {"no such partition": 1, "no such topic": 1, "negative offset": 1,
                                               "past the partition's end (5)": 1, "no input coordinates": 1}, ingested
    assert took < 25, took  # the group join and idle wait, not 30 s per bad verdict
    index = json.loads((tmp_path / "confirmed" / "index.json").read_text())
    assert {index[ref.id]["unavailable"] for ref in bad} == set(bad.values())
    assert all(index[ref.id]["file"] and index[ref.id]["unavailable"] is None for ref in good)
    assert "image:f003.jpg" not in index  # nothing stored that could never be used
    stored = (tmp_path / "confirmed" / index[f"{inputs_topic}:0:4"]["file"]).read_bytes()
    assert stored == b"image 0:4"  # the record Tansu's ListOffsets leaves out was fetched
    # The next run (nothing new) retries the unavailable ones: the same reasons, still no crash.
    again = run_once(settings)["ingested"]
    assert again["fetched"] == 0 and again["unavailable"] == len(bad), again
