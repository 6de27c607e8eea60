"""A real worker: trace context and CloudEvents headers on its results and alerts, and the demo summary of those results."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event

from ganomaly.cli.commands.demo_summary import read_results, render, summarise
from ganomaly.contracts import messages as m
from ganomaly.data.idx import load_split
from producers import ImagePublisher, encode_png
from tests.conftest import FMNIST
from tests.integration.helpers import ROOT, Topics, WorkerProc, read_topic, results_by_id

pytestmark = pytest.mark.integration

TP = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _incoming(i: int) -> str | None:
    """Every third input continues a trace, every third has a broken traceparent, the rest none."""
    if i % 3 == 0:
        return f"00-{i + 1:032x}-{i + 7:016x}-01"
    if i % 3 == 1:
        return "00-not-a-trace-context"
    return None


def test_results_and_alerts_carry_trace_context_and_cloudevents_and_the_summary_counts_them(
        broker: str, redis_url: str, prefix: str, tiny_model: Path, tmp_path: Path) -> None:
    topics = Topics(broker)
    images, labels = load_split(FMNIST, "t10k")
    n = 150
    sent: dict[str, dict[str, str | None]] = {}
    with ImagePublisher(broker, topics.input) as pub:
        for i in range(n):
            key, trace_id = f"t10k:{i}", f"{i + 1000:032x}"
            tp = _incoming(i)
            label = "anomaly" if labels[i] == 0 else "normal"  # the tiny model's leave-one-out class 0
            pub.publish(encode_png(images[i]), key=key, source="line-1", label=label, content_type="image/png", trace_id=trace_id,
                        extra_headers={"traceparent": tp} if tp else None)
            sent[key] = {"traceparent": tp, "trace_id": trace_id, "label": label}
    assert pub.stats.failed == 0

    with WorkerProc(bootstrap=broker, topics=topics, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "w.log") as w:
        w.wait_for('"partitions_assigned"')
        results = read_topic(broker, topics.results, want=n, timeout_s=90)
        assert w.terminate() == 0
    by_id = results_by_id(results)
    assert len(by_id) == n
    anomalous = sum(v[-1]["is_anomaly"] for v in by_id.values())
    assert anomalous, "the model flagged nothing: the alert headers went untested"
    alerts = read_topic(broker, topics.alerts, want=anomalous, timeout_s=30)

    parent_ids: set[str] = set()
    for rec in [*results, *alerts]:
        hdrs = {k: v for k, v in rec.headers}
        event = from_binary_event(KafkaMessage(headers=hdrs, key=rec.key, value=rec.value))
        body = json.loads(rec.value)
        res = body["result"] if rec.topic == topics.alerts else body
        want = sent[res["image_id"]]
        # CloudEvents: required attributes, parsed by the SDK's Kafka binding
        assert event.get_specversion() == "1.0" and event.get_source() == f"/ganomaly/{topics.input}"
        assert RFC3339.match(hdrs["ce_time"].decode()) and event.get_time() is not None
        assert event.get_datacontenttype() == "application/json" and event.get_subject() == res["image_id"]
        if rec.topic == topics.alerts:
            assert event.get_type() == "io.ganomaly.alert.v1" and event.get_id() == body["fingerprint"] == hdrs["fingerprint"].decode()
            m.AlertEventHeaders.model_validate({k: v.decode() for k, v in hdrs.items()})
        else:
            assert event.get_type() == "io.ganomaly.result.v1" and event.get_id() == res["id"]
            m.ResultEventHeaders.model_validate({k: v.decode() for k, v in hdrs.items()})
        # W3C trace context: the input's trace continued with a new parent id, else a new trace on the trace-id header
        out = TP.match(hdrs["traceparent"].decode())
        assert out is not None and hdrs["traceparent"].decode() == res["traceparent"]
        trace, parent, flags = out.groups()
        assert hdrs["trace-id"].decode() == want["trace_id"]
        if want["traceparent"] and TP.match(want["traceparent"]):
            _, in_trace, in_parent, _ = want["traceparent"].split("-")
            assert trace == in_trace and parent != in_parent and flags == "01"
        else:
            assert trace == want["trace_id"] and flags == "01"
        parent_ids.add(parent)
    assert len(parent_ids) == n, "results and alerts of one input share the worker's span; inputs do not"

    # The demo summary of the same results, checked against the alerts topic (an independent path) and what was sent.
    summary = summarise(read_results(broker, topics.results, source="line-1", expect=n, wait_s=10))
    alerted = [json.loads(a.value)["result"] for a in alerts]
    assert summary.results == n
    assert summary.anomalies_sent == sum(v["label"] == "anomaly" for v in sent.values())
    assert summary.normals_sent == n - summary.anomalies_sent and summary.unlabelled == 0
    assert summary.anomalies_caught == sum(r["label"] == "anomaly" for r in alerted)
    assert summary.false_alarms == sum(r["label"] == "normal" for r in alerted)
    assert summary.false_alarms_per_1000 == pytest.approx(1000 * summary.false_alarms / summary.normals_sent)
    assert 0 < summary.latency_p50_ms <= summary.latency_p99_ms  # type: ignore[operator]
    assert summarise(read_results(broker, topics.results, source="another-line", expect=None, wait_s=1)).results == 0

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "replay-audit.json").write_text("{}")
    (tmp_path / "run" / "replay-audit-roc.png").write_bytes(b"")
    text = render(summary, tmp_path / "run")
    assert f"Anomalies caught: {summary.anomalies_caught} of {summary.anomalies_sent} sent" in text
    assert f"{summary.false_alarms_per_1000:.1f} per 1,000 normal images" in text
    assert "replay-audit.json" in text and "replay-audit-roc.png" in text

    cli = subprocess.run([sys.executable, "-m", "ganomaly", "demo-summary", "--bootstrap-servers", broker, "--results-topic", topics.results,
                          "--expect", str(n), "--wait-s", "10", "--out", str(tmp_path / "summary.json")],
                         check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert f"Anomalies caught: {summary.anomalies_caught} of {summary.anomalies_sent} sent" in cli.stdout
    assert json.loads((tmp_path / "summary.json").read_text())["false_alarms"] == summary.false_alarms


def test_demo_summary_of_a_missing_topic_is_one_error_line(broker: str) -> None:
    cli = subprocess.run([sys.executable, "-m", "ganomaly", "demo-summary", "--bootstrap-servers", broker, "--results-topic", "no-such-topic-x1"],
                         check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and cli.stderr.startswith("error: ") and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
