"""Rescore and audit: turn a stretch of records into per-record rows for evaluation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ganomaly.artifact import Artifact
from ganomaly.connections.kafka import headers_dict
from ganomaly.contracts import messages as m
from ganomaly.contracts.results import build_result
from ganomaly.data.images import BadImage, DecodeLimits, decode_image
from ganomaly.model import Scorer


@dataclass
class Row:
    id: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    source: str | None
    label: int | None  # 1 anomaly, 0 normal, None unlabelled
    scores: dict[str, float] = field(default_factory=dict)  # model version -> score
    decisions: dict[str, bool] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)  # model version -> the threshold its decision used
    latency_ms: float | None = None


def label_of(h: dict[str, str]) -> int | None:
    v = h.get(m.H_LABEL, "").lower()
    return 1 if v in ("anomaly", "abnormal", "1") else 0 if v in ("normal", "0") else None


def _row(rec: Any) -> Row:
    h = headers_dict(rec.headers)
    return Row(id=f"{rec.topic}:{rec.partition}:{rec.offset}", partition=rec.partition, offset=rec.offset, timestamp_ms=rec.timestamp,
               key=rec.key.decode("utf-8", "replace") if rec.key else None, source=h.get(m.H_SOURCE), label=label_of(h))


def eval_result(row: Row, art: Artifact, threshold: float, scored_at_ms: int) -> m.Result:
    """The result record of ``art``'s score of ``row``, as replay writes it to an evaluation topic."""
    topic, part, off = row.id.rsplit(":", 2)
    ref = m.InputRef(topic=topic, partition=int(part), offset=int(off), key=row.key)
    return build_result(ref, score=row.scores[art.version], threshold=threshold, calibration=art.calibration, model_version=art.version,
                        record_timestamp_ms=row.timestamp_ms, scored_at_ms=scored_at_ms, worker="replay", source=row.source,
                        label=None if row.label is None else ("anomaly" if row.label else "normal"))


def rescore(records: Iterable[Any], models: list[tuple[Artifact, Scorer, float]], *, batch_size: int, limits: DecodeLimits
            ) -> tuple[list[Row], dict[str, int], dict[str, float]]:
    """Decode and batch-score with every model; returns rows, unreadable counts by reason, and timings."""
    rows: list[Row] = []
    unreadable: dict[str, int] = {}
    # Models may expect different inputs (size, channels, value range: a latent-score champion and a
    # recon-score challenger train on different ranges by default), so each record is decoded once
    # per distinct input spec; a record counts as unreadable when any compared model cannot take it.
    specs = list(dict.fromkeys(art.input_spec for art, _, _ in models))
    spec_of = [specs.index(art.input_spec) for art, _, _ in models]
    pending: list[tuple[Row, list[np.ndarray]]] = []
    t = {"decode_s": 0.0, "score_s": 0.0}

    def flush() -> None:
        if not pending:
            return
        xs = [torch.from_numpy(np.stack([p[1][i] for p in pending])) for i in range(len(specs))]
        for (art, scorer, thr), si in zip(models, spec_of, strict=True):
            t0 = time.perf_counter()
            s = scorer.score(xs[si]).score.numpy()
            t["score_s"] += time.perf_counter() - t0
            for (row, _), sc in zip(pending, s.tolist(), strict=True):
                row.scores[art.version] = sc
                row.decisions[art.version] = sc > thr
                row.thresholds[art.version] = thr
        rows.extend(p[0] for p in pending)
        pending.clear()

    for rec in records:
        t0 = time.perf_counter()
        try:
            decoded = [decode_image(rec.value or b"", spec, limits) for spec in specs]
        except BadImage as e:
            unreadable[e.reason] = unreadable.get(e.reason, 0) + 1
            continue
        finally:
            t["decode_s"] += time.perf_counter() - t0
        pending.append((_row(rec), decoded))
        if len(pending) >= batch_size:
            flush()
    flush()
    return rows, unreadable, t


def audit(inputs: Iterable[Any], results: Iterable[Any], dead: Iterable[Any]) -> tuple[list[Row], int, dict[str, int], int]:
    """Join input records with the workers' results on input coordinates.

    Returns rows (one per input that has a result; duplicates keep the first), the number
    of inputs without any result, dead-letter counts by reason, and duplicate results seen.
    """
    by_id: dict[str, dict] = {}
    dups = 0
    for r in results:
        d = json.loads(r.value)
        if d["id"] in by_id:
            dups += 1
            continue
        by_id[d["id"]] = d
    dead_ids: dict[str, str] = {}
    for r in dead:
        h = headers_dict(r.headers)
        dead_ids[f"{h.get(m.H_DLQ_TOPIC)}:{h.get(m.H_DLQ_PARTITION)}:{h.get(m.H_DLQ_OFFSET)}"] = h.get(m.H_DLQ_REASON, "unknown")
    rows, missing, dead_counts = [], 0, {}
    for rec in inputs:
        row = _row(rec)
        res = by_id.get(row.id)
        if res is None:
            if row.id in dead_ids:
                reason = dead_ids[row.id]
                dead_counts[reason] = dead_counts.get(reason, 0) + 1
            else:
                missing += 1
            continue
        row.scores[res["model_version"]] = res["score"]
        row.decisions[res["model_version"]] = res["is_anomaly"]
        if res.get("threshold") is not None:
            row.thresholds[res["model_version"]] = res["threshold"]
        row.latency_ms = res.get("latency_ms")
        rows.append(row)
    return rows, missing, dead_counts, dups
