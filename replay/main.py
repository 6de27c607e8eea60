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
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from ganomaly.connections.compose import ConnectedSettings, shared_env
from ganomaly.connections.kafka import KafkaSettings
from ganomaly.errors import UserError
from ganomaly.settings import Amp, LogLevel, OutputFile


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


class ReplaySettings(ConnectedSettings):
    """Env prefix ``GANOMALY_REPLAY_``; the broker and the production topics are read from the names every process shares."""

    model_config = SettingsConfigDict(env_prefix="GANOMALY_REPLAY_", frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topic: str = Field("images", description="the input topic to replay", **shared_env("GANOMALY_INPUT_TOPIC"))
    mode: Literal["rescore", "audit"] = "rescore"
    model: Path | None = Field(None, description="artifact to rescore with (rescore mode)")
    challenger: Path | None = Field(None, description="a second artifact scored side by side (rescore mode)")
    results_topic: str = Field("image-results", description="the production results topic (audit mode; never written)",
                               **shared_env("GANOMALY_RESULTS_TOPIC"))
    alerts_topic: str = Field("image-alerts", description="the production alerts topic (never written)", **shared_env("GANOMALY_ALERTS_TOPIC"))
    dlq_topic: str = Field("image-dlq", description="dead letters, to account for inputs without results (audit mode)",
                           **shared_env("GANOMALY_DLQ_TOPIC"))
    partitions: str | None = Field(None, pattern=r"^\d+(,\d+)*$", description="comma-separated partitions (default: all)")
    start_offsets: str | None = Field(None, description="N or P:N,P:N (default: the beginning)")
    end_offsets: str | None = Field(None, description="exclusive; N or P:N,... (default: the current end)")
    start_time: str | None = Field(None, description="epoch ms or ISO-8601, inclusive")
    end_time: str | None = Field(None, description="epoch ms or ISO-8601, exclusive")
    max_records: int | None = Field(None, ge=1)
    idle_ms: int = Field(30_000, ge=100, description="give up on a partition that returns no records for this long of polling while records "
                         "remain before its end (time spent scoring does not count); the replay is then reported incomplete")
    eval_topic: str | None = Field(None, description="also write the rescored results here (never a production topic)")
    report: OutputFile | None = Field(None, description="JSON report path (plots are written next to it)")
    scores: OutputFile | None = Field(None, description="per-record CSV (id,label,score per model)")
    contact_sheet: OutputFile | None = Field(None, description="rescore mode: a PNG of the --sheet-top records the model scored highest, each "
                                                         "beside its anomaly map")
    sheet_top: int = Field(24, ge=1, le=200, description="how many records the contact sheet shows")
    batch_size: int = Field(256, ge=1)
    device: str = "auto"
    amp: Amp | None = None
    channel_policy: Literal["convert", "strict"] = Field("convert", description="convert: images are brought to the model's channel count, as the worker does by default; strict: a mismatch is counted as unreadable with reason channels")
    connect_timeout_s: float = Field(30.0, ge=0, description="how long start-up waits for the broker and Redis before exiting with an error")
    log_level: LogLevel = "warning"

    @model_validator(mode="after")
    def _model_for_rescore(self) -> ReplaySettings:
        # said before anything is imported or connected: a forgotten --model is a typo, not a run
        if self.mode == "rescore" and self.model is None:
            msg = "--model is required in rescore mode (--mode audit reads what the workers decided)"
            raise ValueError(msg)
        if self.mode != "rescore" and self.contact_sheet is not None:
            msg = "--contact-sheet goes with --mode rescore (it draws the model's anomaly maps)"
            raise ValueError(msg)
        return self

    @field_validator("start_time", "end_time")
    @classmethod
    def _time_ok(cls, v: str | None) -> str | None:
        _parse_time(v)
        return v


def run(s: ReplaySettings) -> dict[str, Any]:
    """Replay the stretch; returns the report. ``report["complete"]`` is False when the stretch could not be read to its end,
    or when an audit found no worker's outcome (result or dead letter) for any of its records."""
    from ganomaly.artifact import load_artifact
    from ganomaly.connections.startup import StartupWait, wait_for_kafka
    from ganomaly.data.images import DecodeLimits
    from ganomaly.device import resolve_device
    from replay import report as rep
    from replay.reader import Stretch, StretchAccount, parse_offsets, read_stretch
    from replay.rescore import audit, rescore

    common = s.kafka.config()
    parts = [int(p) for p in s.partitions.split(",")] if s.partitions else None
    stretch = Stretch(start_offsets=parse_offsets(s.start_offsets), end_offsets=parse_offsets(s.end_offsets),
                      start_ms=_parse_time(s.start_time), end_ms=_parse_time(s.end_time))
    if s.eval_topic and s.eval_topic in {s.results_topic, s.alerts_topic, s.topic}:
        msg = f"--eval-topic {s.eval_topic} is a production topic; replays never write there"
        raise UserError(msg)
    wait_for_kafka(StartupWait(s.connect_timeout_s), s.kafka)  # the readers below then connect at once
    topics = _check_selection(s, parts, stretch)
    t0 = time.perf_counter()
    account = StretchAccount(s.topic)
    records = read_stretch(common, s.topic, stretch, partitions=parts, idle_ms=s.idle_ms, max_records=s.max_records, account=account)
    reads = [account]
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
        if s.contact_sheet is not None:
            from replay.sheet import write_top_sheet

            art0, _, thr0 = models[0]
            shown = write_top_sheet(s.contact_sheet, rows, art0, thr0, s.kafka, s.topic, n=s.sheet_top, device=device)
            out["contact_sheet"] = {"path": str(s.contact_sheet) if shown else None, "shown": shown}
    else:
        inputs = list(records)
        whole = Stretch()  # the whole results / DLQ topics: results can lag their inputs arbitrarily
        results_read, dead_read = StretchAccount(s.results_topic), StretchAccount(s.dlq_topic)
        results = read_stretch(common, s.results_topic, whole, idle_ms=s.idle_ms, account=results_read)
        # No dead-letter topic: nothing was dead-lettered (and it is not read: a broker that auto-creates topics would create it).
        try:
            dead = list(read_stretch(common, s.dlq_topic, whole, idle_ms=s.idle_ms, account=dead_read)) if s.dlq_topic in topics else []
        except UserError:
            dead = []
        rows, missing, dead_counts, dups = audit(inputs, results, dead)
        reads += [results_read, dead_read]
        seen = sorted({v for r in rows for v in r.scores})
        versions = [(v, None) for v in seen]
        secs = time.perf_counter() - t0
        out |= {"inputs": len(inputs), "with_result": len(rows), "missing_results": missing, "dead_lettered": dead_counts,
                "duplicate_results": dups, "latency": rep.latency(rows),
                "timing": {"total_s": round(secs, 3), "records_per_s": round(len(inputs) / max(secs, 1e-9), 1)},
                "joined_reads": {"results": results_read.summary(), "dead_letters": dead_read.summary()}}
    out["stretch"] = account.summary()
    shortfalls = [line for r in reads for line in r.shortfalls()]
    unread = bool(shortfalls)
    if s.mode == "audit" and out["inputs"] and not out["with_result"] and not sum(out["dead_lettered"].values()):
        shortfalls.append(f"none of the {out['inputs']} records has a result on {s.results_topic} or a dead letter on {s.dlq_topic}: "
                          "are workers consuming this topic and writing there (--results-topic, --dlq-topic)?")
    out["complete"] = not shortfalls
    if shortfalls:
        out["incomplete"] = shortfalls
    out["models"] = {v: rep.decision_metrics(rows, v, thr) | rep.model_summary(rows, v) for v, thr in versions}
    if len(versions) == 2 and s.mode == "rescore":
        out["agreement"] = rep.agreement(rows, versions[0][0], versions[1][0])
    out["per_source"] = {v: rep.breakdown(rows, v, thr, "source") for v, thr in versions}
    out["counts"] = {"records": len(rows), "labelled": sum(1 for r in rows if r.label is not None)}
    if s.scores:
        _write_csv(s.scores, rows, [v for v, _ in versions])
    if s.report:
        s.report.parent.mkdir(parents=True, exist_ok=True)
        out["plots"] = _plots(s, rows, out, [v for v, _ in versions])
        s.report.write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps(_brief(out), default=str))
    _warn_incomplete(out, account, unread)
    return out


def _check_selection(s: ReplaySettings, parts: list[int] | None, stretch: Any) -> set[str]:
    """Refuse, before anything is read, a topic the broker lacks and a partition the topic lacks; returns the broker's topics.

    Asked of the topic list, which creates nothing: a consumer's metadata request for a missing topic
    makes a broker with auto-creation on (Apache Kafka's default) create it empty, and the replay then
    reported a complete stretch of 0 records. A partition named in --partitions or the offsets that the
    topic lacks was silently skipped, and the whole topic replayed.
    """
    from ganomaly.connections.kafka import make_admin

    admin = make_admin(s.kafka.config())
    try:
        topics = set(admin.list_topics())
        named = [(s.topic, "--topic")] + ([(s.results_topic, "--results-topic, read in audit mode")] if s.mode == "audit" else [])
        for name, flag in named:
            if name not in topics:
                raise UserError(_no_topic(name, flag, s.kafka.bootstrap_servers, topics))
        (described,) = admin.describe_topics([s.topic])
        have = sorted(p["partition_index"] for p in described["partitions"])
    finally:
        admin.close()
    span = f"0-{have[-1]}" if have == list(range(len(have))) and len(have) > 1 else ",".join(map(str, have))
    offsets = [(flag, sorted(o)) for flag, o in (("--start-offsets", stretch.start_offsets), ("--end-offsets", stretch.end_offsets))
               if isinstance(o, dict)]
    for flag, asked in [("--partitions", parts or []), *offsets]:
        if missing := [p for p in asked if p not in have]:
            msg = (f"{flag} names partition{'s' if len(missing) > 1 else ''} {','.join(map(str, missing))}, but topic {s.topic!r} "
                   f"has partition{'s' if len(have) > 1 else ''} {span}")
            raise UserError(msg)
    for flag, asked in offsets if parts else []:
        if left_out := [p for p in asked if p not in parts]:
            msg = f"{flag} names partition{'s' if len(left_out) > 1 else ''} {','.join(map(str, left_out))}, which --partitions {s.partitions} leaves out"
            raise UserError(msg)
    return topics


def _no_topic(name: str, flag: str, bootstrap: str, topics: set[str], shown: int = 5) -> str:
    """One line: the missing topic, and a few of those the broker has, the names closest to the typo first (internal ones left out)."""
    from difflib import get_close_matches

    have = sorted(t for t in topics if not t.startswith("__"))
    if not have:
        return f"topic {name!r} ({flag}) does not exist on {bootstrap}, which has no topics"
    close = get_close_matches(name, have, n=shown, cutoff=0.6)
    have = close + [t for t in have if t not in close]
    more = f" and {len(have) - shown} more" if len(have) > shown else ""
    return f"topic {name!r} ({flag}) does not exist on {bootstrap}; it has {', '.join(have[:shown])}{more}"


def _plots(s: ReplaySettings, rows: list[Any], out: dict[str, Any], versions: list[str]) -> list[str]:
    """ROC and PR curves when both classes are labelled; a score histogram per model version with its thresholds, labels or not."""
    from ganomaly.evaluation.plots import plot_histogram, plot_pr, plot_roc
    from replay import report as rep

    assert s.report is not None
    stem = s.report.with_suffix("")
    paths: list[str] = []
    roc: dict[str, np.ndarray] = {}
    pr: dict[str, np.ndarray] = {}
    for v in versions:
        # Per version: in an audit each input has one version's result, so versions cover different records.
        lab = [r for r in rows if r.label is not None and v in r.scores]
        if 0 < sum(r.label for r in lab) < len(lab):
            m = out["models"][v]
            y = np.array([r.label for r in lab])
            s_v = np.array([r.scores[v] for r in lab])
            roc[f"{v} AUROC {m['auroc']:.3f}"], pr[f"{v} AUPRC {m['auprc']:.3f}"] = (y, s_v), (y, s_v)
    if roc:
        plot_roc(None, roc, Path(f"{stem}-roc.png"), f"replay {s.topic}")
        plot_pr(None, pr, Path(f"{stem}-pr.png"), f"replay {s.topic}")
        paths += [f"{stem}-roc.png", f"{stem}-pr.png"]
    for v in versions:
        vrows = [r for r in rows if v in r.scores]
        if not vrows:
            continue
        labels = np.array([r.label for r in vrows]) if all(r.label is not None for r in vrows) else None
        path = Path(f"{stem}-hist-{v}.png")
        plot_histogram(labels, np.array([r.scores[v] for r in vrows]), rep.thresholds_used(vrows, v), path, f"{v} on {s.topic}")
        paths.append(str(path))
    return paths


def _brief(out: dict[str, Any]) -> dict[str, Any]:
    """The printed one-line summary: what the stretch held and read, then per model what needs no labels, then labelled metrics if any."""
    from replay.report import LABELLED_KEYS

    st = out["stretch"]
    brief: dict[str, Any] = {"mode": out["mode"], "records": out["counts"]["records"], "complete": out["complete"],
                             "stretch": {"expected": st["expected"], "read": st["read"], "selected": st["selected"]}}
    models = {}
    for v, m in out["models"].items():
        q = m.get("score") or {}
        one = {"scored": m["scored"], "flagged": m["flagged"], "flagged_share": m["flagged_share"], "threshold": m["threshold"],
               **{f"score_{k}": q.get(k) for k in ("p50", "p90", "p99", "max")}}
        if m.get("n_labelled"):
            one |= {"labelled": m["n_labelled"], **{k: m.get(k) for k in LABELLED_KEYS}}
        models[v] = one
    brief["models"] = models
    if "agreement" in out:
        brief["agreement"] = {k: v for k, v in out["agreement"].items() if k not in ("champion", "challenger")}
    if out["mode"] == "rescore":
        brief["unreadable"] = out["unreadable"]
    else:
        brief |= {"missing_results": out["missing_results"], "dead_lettered": out["dead_lettered"], "latency": out["latency"]}
    brief["records_per_s"] = out["timing"]["records_per_s"]
    return brief


def _warn_incomplete(out: dict[str, Any], account: Any, unread: bool) -> None:
    """Loud lines on stderr: a stretch not read to its end (the CLI then exits 1), and explicit ends past a partition's end."""
    for n, p in sorted(account.partitions.items()):
        if p.requested_end is not None:
            print(f"note: {out['topic']} partition {n} ended at offset {p.end} when the replay began, before the asked end {p.requested_end}",
                  file=sys.stderr)
    for line in out.get("incomplete", []):
        print(f"incomplete: {line}", file=sys.stderr)
    if unread:
        st = out["stretch"]
        print(f"incomplete: the report covers {st['read']} of the stretch's {st['expected']} records; its numbers are not the stretch's. "
              "Rerun when the broker serves every partition (or raise --idle-ms).", file=sys.stderr)


def cli_run(s: ReplaySettings) -> int:
    """The command line: exit 1 when the report is incomplete (the stretch not read to its end, or an audit that found no
    worker's outcome for any record), so scripts cannot take a partial report for a whole one."""
    return 0 if run(s)["complete"] else 1


def _write_csv(path: Path, rows: list[Any], versions: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "key", "source", "label", *versions])
        for r in rows:
            w.writerow([r.id, r.key, r.source, "" if r.label is None else r.label, *[repr(r.scores.get(v, "")) for v in versions]])


def _write_eval(s: ReplaySettings, rows: list[Any], models: list[Any]) -> None:
    from ganomaly.connections.kafka import make_producer
    from replay.rescore import eval_result

    art, _, thr = models[0]
    prod = make_producer(s.kafka.config())
    now = int(time.time() * 1000)
    for r in rows:
        prod.send(s.eval_topic, key=(r.key or r.id).encode(), value=eval_result(r, art, thr, now).to_json())
    prod.flush()
    prod.close()
