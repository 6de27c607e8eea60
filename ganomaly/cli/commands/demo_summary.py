"""``ganomaly demo-summary``: what a stream of labelled images came to, in plain language.

Reads the results topic from the start (no consumer group, so it commits nothing and disturbs
no worker), keeps one result per input (the latest, as Redis does after a redelivery), and
compares the worker's decisions with the producer's ``label`` header.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ganomaly.connections.compose import ConnectedSettings, shared_env
from ganomaly.connections.kafka import KafkaSettings
from ganomaly.settings import LogLevel, OutputFile

# What the demo leaves in its run directory, and what each is, for the closing lines.
_ARTIFACT_SUFFIXES = (".json", ".csv", ".png", ".log")


class DemoSummarySettings(ConnectedSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_SUMMARY_", frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    results_topic: str = Field("image-results", **shared_env("GANOMALY_RESULTS_TOPIC"))
    source: str | None = Field(None, description="only results of inputs with this source header (camera/line id)")
    expect: int | None = Field(None, ge=1, description="wait until this many inputs have a result (at most --wait-s)")
    wait_s: float = Field(60.0, gt=0, description="how long to wait for --expect results")
    run_dir: Path | None = Field(None, description="list the reports and plots in this directory")
    out: OutputFile | None = Field(None, description="also write the summary as JSON here")
    log_level: LogLevel = "warning"


@dataclass(frozen=True)
class Summary:
    results: int
    anomalies_sent: int
    anomalies_caught: int
    normals_sent: int
    false_alarms: int
    unlabelled: int
    flagged: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    model_versions: list[str]

    @property
    def false_alarms_per_1000(self) -> float | None:
        return 1000 * self.false_alarms / self.normals_sent if self.normals_sent else None

    @property
    def catch_rate(self) -> float | None:
        return self.anomalies_caught / self.anomalies_sent if self.anomalies_sent else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "false_alarms_per_1000": self.false_alarms_per_1000, "catch_rate": self.catch_rate}


def summarise(results: list[dict[str, Any]]) -> Summary:
    """Results as on the results topic (``Result`` JSON); one per input id, the last one wins."""
    latest: dict[str, dict[str, Any]] = {}
    for r in results:
        latest[r["id"]] = r
    rs = list(latest.values())
    anomalies = [r for r in rs if r.get("label") == "anomaly"]
    normals = [r for r in rs if r.get("label") == "normal"]
    lat = np.array([r["latency_ms"] for r in rs], dtype=float)
    return Summary(
        results=len(rs),
        anomalies_sent=len(anomalies),
        anomalies_caught=sum(r["is_anomaly"] for r in anomalies),
        normals_sent=len(normals),
        false_alarms=sum(r["is_anomaly"] for r in normals),
        unlabelled=len(rs) - len(anomalies) - len(normals),
        flagged=sum(r["is_anomaly"] for r in rs),
        latency_p50_ms=float(np.percentile(lat, 50)) if len(lat) else None,
        latency_p99_ms=float(np.percentile(lat, 99)) if len(lat) else None,
        model_versions=sorted({r["model_version"] for r in rs}),
    )


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def render(s: Summary, run_dir: Path | None = None) -> str:
    lines = ["", "== Summary", f"Images scored: {s.results} (model {', '.join(s.model_versions) or '-'})."]
    if s.anomalies_sent:
        lines.append(f"Anomalies caught: {s.anomalies_caught} of {s.anomalies_sent} sent ({_pct(s.catch_rate)}).")
    else:
        lines.append("Anomalies caught: none were sent (no input was labelled anomaly).")
    if s.normals_sent:
        lines.append(f"False alarms: {s.false_alarms} of {s.normals_sent} normal images, "
                     f"{s.false_alarms_per_1000:.1f} per 1,000 normal images.")
    if s.unlabelled:
        lines.append(f"Unlabelled images: {s.unlabelled} (not counted above); flagged in all: {s.flagged}.")
    if s.latency_p50_ms is not None and s.latency_p99_ms is not None:
        lines.append(f"Latency from the image's record timestamp to its score: p50 {s.latency_p50_ms:.0f} ms, p99 {s.latency_p99_ms:.0f} ms.")
    if run_dir is not None and run_dir.is_dir():
        files = sorted(p for p in run_dir.iterdir() if p.is_file() and p.suffix in _ARTIFACT_SUFFIXES)
        reports = [p for p in files if p.suffix in (".json", ".csv") and p.name != "summary.json"]
        plots = [p for p in files if p.suffix == ".png"]
        logs = [p for p in files if p.suffix == ".log"]
        lines.append(f"Reports: {', '.join(str(p) for p in reports) or 'none'}")
        lines.append(f"Plots:   {', '.join(str(p) for p in plots) or 'none'}")
        if logs:
            lines.append(f"Logs:    {', '.join(str(p) for p in logs)}")
    return "\n".join(lines)


def read_results(kafka: KafkaSettings | str, topic: str, *, source: str | None, expect: int | None, wait_s: float) -> list[dict[str, Any]]:
    """Every result on ``topic`` up to its end; with ``expect``, keep reading until that many distinct inputs or ``wait_s``.
    ``kafka``: the broker settings, or a bare ``host:port`` list for a PLAINTEXT broker."""
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    from ganomaly.connections.kafka import as_kafka, make_consumer
    from ganomaly.errors import UserError

    kafka = as_kafka(kafka)
    bootstrap = kafka.bootstrap_servers
    try:
        c = make_consumer(kafka.config(), group_id=None, request_timeout_ms=10000)
    except KafkaError as e:
        msg = f"cannot reach the broker at {bootstrap}: {e}"
        raise UserError(msg) from e
    try:
        parts = c.partitions_for_topic(topic)
        if not parts:
            msg = f"topic {topic} does not exist on {bootstrap}"
            raise UserError(msg)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + wait_s
        while True:
            end = c.end_offsets(tps)
            while any(c.position(tp) < end[tp] for tp in tps):
                for recs in c.poll(timeout_ms=500).values():
                    for rec in recs:
                        r = json.loads(rec.value)
                        if source is None or r.get("source") == source:
                            out[r["id"]] = r
            if expect is None or len(out) >= expect or time.monotonic() > deadline:
                return list(out.values())
            time.sleep(0.5)
    finally:
        c.close()


def run(s: DemoSummarySettings) -> int:
    results = read_results(s.kafka, s.results_topic, source=s.source, expect=s.expect, wait_s=s.wait_s)
    summary = summarise(results)
    print(render(summary, s.run_dir))
    if s.out is not None:
        s.out.parent.mkdir(parents=True, exist_ok=True)
        s.out.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    if s.expect is not None and summary.results < s.expect:
        print(f"note: {summary.results} of the {s.expect} expected inputs had a result after {s.wait_s:.0f} s")
        return 1
    return 0
