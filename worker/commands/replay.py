"""``ganomaly replay``: evaluate a model (or the production workers) on a stretch of a topic.

Modes: ``rescore`` decodes and batch-scores the input records with one or two
artifacts (champion vs. challenger, side by side); ``audit`` joins the input records
with the results (and dead-letter) topics on input coordinates and evaluates what the
workers actually decided, per model version. Labels come from the ``label`` header.
Reads with manual assignment: no consumer group, no commits.
"""

from __future__ import annotations

import csv
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.commands.common import Amp
from worker.errors import UserError
from worker.settings_cli import LogLevel


def _parse_time(v: Any) -> int | None:
    """Epoch milliseconds, or an ISO-8601 timestamp (UTC if no zone)."""
    if v is None or v == "":
        return None
    if isinstance(v, int | float) or (isinstance(v, str) and v.lstrip("-").isdigit()):
        return int(v)
    try:
        dt = datetime.fromisoformat(str(v))
    except ValueError as e:
        msg = f"bad time {v!r}: use epoch milliseconds or ISO-8601"
        raise ValueError(msg) from e
    if dt.tzinfo is None:
        from datetime import UTC

        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


class ReplaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_REPLAY_", frozen=True)

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = Field("images", description="the input topic to replay")
    mode: Literal["rescore", "audit"] = "rescore"
    model: Path | None = Field(None, description="artifact to rescore with (rescore mode)")
    challenger: Path | None = Field(None, description="a second artifact scored side by side (rescore mode)")
    results_topic: str = Field("image-results", description="the production results topic (audit mode; never written)")
    alerts_topic: str = Field("image-alerts", description="the production alerts topic (never written)")
    dlq_topic: str = Field("image-dlq", description="dead letters, to account for inputs without results (audit mode)")
    partitions: str | None = Field(None, pattern=r"^\d+(,\d+)*$", description="comma-separated partitions (default: all)")
    start_offsets: str | None = Field(None, description="N or P:N,P:N (default: the beginning)")
    end_offsets: str | None = Field(None, description="exclusive; N or P:N,... (default: the current end)")
    start_time: str | None = Field(None, description="epoch ms or ISO-8601, inclusive")
    end_time: str | None = Field(None, description="epoch ms or ISO-8601, exclusive")
    max_records: int | None = Field(None, ge=1)
    idle_ms: int = Field(2000, ge=100, description="a partition ends after this long without records past its end offset")
    eval_topic: str | None = Field(None, description="also write the rescored results here (never a production topic)")
    report: Path | None = Field(None, description="JSON report path (plots are written next to it)")
    scores: Path | None = Field(None, description="per-record CSV (id,label,score per model)")
    batch_size: int = Field(256, ge=1)
    device: str = "auto"
    amp: Amp | None = None
    channel_policy: Literal["convert", "strict"] = Field("convert", description="convert: images are brought to the model's channel count, as the worker does by default; strict: a mismatch is counted as unreadable with reason channels")
    connect_timeout_s: float = Field(30.0, ge=0, description="how long start-up waits for the broker and Redis before exiting with an error")
    log_level: LogLevel = "warning"

    @field_validator("start_time", "end_time")
    @classmethod
    def _time_ok(cls, v: str | None) -> str | None:
        _parse_time(v)
        return v


def run(s: ReplaySettings) -> dict[str, Any]:
    from worker.artifact import load_artifact
    from worker.commands.common import resolve_device
    from worker.connect import StartupWait, wait_for_kafka
    from worker.data.images import DecodeLimits
    from worker.evaluation.plots import plot_histogram, plot_pr, plot_roc
    from worker.replay import report as rep
    from worker.replay.reader import Stretch, parse_offsets, read_stretch
    from worker.replay.rescore import audit, rescore

    common = {"bootstrap_servers": s.bootstrap_servers.split(",")}
    parts = [int(p) for p in s.partitions.split(",")] if s.partitions else None
    stretch = Stretch(start_offsets=parse_offsets(s.start_offsets), end_offsets=parse_offsets(s.end_offsets),
                      start_ms=_parse_time(s.start_time), end_ms=_parse_time(s.end_time))
    if s.eval_topic and s.eval_topic in {s.results_topic, s.alerts_topic, s.topic}:
        msg = f"--eval-topic {s.eval_topic} is a production topic; replays never write there"
        raise UserError(msg)
    wait_for_kafka(StartupWait(s.connect_timeout_s), common)  # the readers below then connect at once
    t0 = time.perf_counter()
    records = read_stretch(common, s.topic, stretch, partitions=parts, idle_ms=s.idle_ms, max_records=s.max_records)
    out: dict[str, Any] = {"topic": s.topic, "mode": s.mode, "selection": {k: getattr(s, k) for k in (
        "partitions", "start_offsets", "end_offsets", "start_time", "end_time", "max_records")}}
    versions: list[tuple[str, float | None]] = []
    if s.mode == "rescore":
        if s.model is None:
            msg = "--model is required in rescore mode"
            raise UserError(msg)
        device = resolve_device(s.device)
        models = []
        for p in [s.model, *([s.challenger] if s.challenger else [])]:
            art = load_artifact(p, device)
            models.append((art, art.scorer(device, s.amp), art.threshold))
        limits = DecodeLimits(channel_policy=s.channel_policy)
        rows, unreadable, timing = rescore(records, models, batch_size=s.batch_size, limits=limits)
        versions = [(a.version, thr) for a, _, thr in models]
        secs = time.perf_counter() - t0
        out |= {"unreadable": unreadable, "timing": {**{k: round(v, 3) for k, v in timing.items()}, "total_s": round(secs, 3),
                "records_per_s": round((len(rows) + sum(unreadable.values())) / max(secs, 1e-9), 1),
                "decode_plus_score_records_per_s": round(len(rows) / max(timing["decode_s"] + timing["score_s"], 1e-9), 1)}}
        if s.eval_topic:
            _write_eval(s, rows, models)
    else:
        inputs = list(records)
        end = Stretch()  # the whole results / DLQ topics: results can lag their inputs arbitrarily
        results = read_stretch(common, s.results_topic, end, idle_ms=s.idle_ms)
        try:
            dead = list(read_stretch(common, s.dlq_topic, end, idle_ms=s.idle_ms))
        except UserError:
            dead = []
        rows, missing, dead_counts, dups = audit(inputs, results, dead)
        seen = sorted({v for r in rows for v in r.scores})
        versions = [(v, None) for v in seen]
        out |= {"inputs": len(inputs), "with_result": len(rows), "missing_results": missing, "dead_lettered": dead_counts,
                "duplicate_results": dups, "latency": rep.latency(rows), "timing": {"total_s": round(time.perf_counter() - t0, 3)}}
    out["models"] = {v: rep.decision_metrics(rows, v, thr) for v, thr in versions}
    out["per_source"] = {v: rep.breakdown(rows, v, thr, "source") for v, thr in versions}
    out["counts"] = {"records": len(rows), "labelled": sum(1 for r in rows if r.label is not None)}
    if s.scores:
        _write_csv(s.scores, rows, [v for v, _ in versions])
    if s.report:
        s.report.parent.mkdir(parents=True, exist_ok=True)
        lab = [r for r in rows if r.label is not None and all(v in r.scores for v, _ in versions)]
        if lab and 0 < sum(r.label for r in lab) < len(lab):
            y = np.array([r.label for r in lab])
            curves = {f"{v} AUROC {out['models'][v].get('auroc', 0):.3f}": np.array([r.scores[v] for r in lab]) for v, _ in versions}
            stem = s.report.with_suffix("")
            plot_roc(y, curves, Path(f"{stem}-roc.png"), f"replay {s.topic}")
            plot_pr(y, curves, Path(f"{stem}-pr.png"), f"replay {s.topic}")
            v0, thr0 = versions[0]
            plot_histogram(y, np.array([r.scores[v0] for r in lab]), thr0 if thr0 is not None else float("nan"), Path(f"{stem}-hist.png"), v0)
            out["plots"] = [f"{stem}-{n}.png" for n in ("roc", "pr", "hist")]
        s.report.write_text(json.dumps(out, indent=2, default=str))
    brief = {"mode": s.mode, "records": len(rows), **{v: {k: out["models"][v].get(k) for k in ("auroc", "auprc", "precision", "recall", "f1", "fpr")}
                                                      for v, _ in versions}}
    if "timing" in out:
        brief["records_per_s"] = out["timing"].get("records_per_s")
    if s.mode == "audit":
        brief |= {"missing_results": out["missing_results"], "latency": out["latency"]}
    print(json.dumps(brief, default=str))
    return out


def _write_csv(path: Path, rows: list[Any], versions: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "key", "source", "label", *versions])
        for r in rows:
            w.writerow([r.id, r.key, r.source, "" if r.label is None else r.label, *[repr(r.scores.get(v, "")) for v in versions]])


def _write_eval(s: ReplaySettings, rows: list[Any], models: list[Any]) -> None:
    from worker.stream.kafka_io import make_producer
    from worker.stream.messages import InputRef, Result

    art, _, thr = models[0]
    cal = art.calibration
    prod = make_producer({"bootstrap_servers": s.bootstrap_servers.split(",")})
    now = int(time.time() * 1000)
    for r in rows:
        topic, part, off = r.id.rsplit(":", 2)
        ref = InputRef(topic=topic, partition=int(part), offset=int(off), key=r.key)
        sc = r.scores[art.version]
        res = Result(id=r.id, input=ref, image_id=r.key, source=r.source, score=sc, score_normalised=float(cal.normalise(sc, thr)), threshold=thr,
                     is_anomaly=sc > thr, model_version=art.version, record_timestamp_ms=r.timestamp_ms, scored_at_ms=now,
                     latency_ms=float(now - r.timestamp_ms), worker="replay",
                     label=None if r.label is None else ("anomaly" if r.label else "normal"))
        prod.send(s.eval_topic, key=(r.key or r.id).encode(), value=res.to_json())
    prod.flush()
    prod.close()

