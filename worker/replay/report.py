"""Metrics for replayed rows: overall, per source, per model version; champion vs. challenger."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from worker.evaluation.metrics import detection_metrics
from worker.replay.rescore import Row


def decision_metrics(rows: list[Row], version: str, threshold: float | None) -> dict[str, Any]:
    lab = [r for r in rows if r.label is not None and version in r.scores]
    out: dict[str, Any] = {"n": sum(1 for r in rows if version in r.scores), "n_labelled": len(lab)}
    if not lab:
        return out
    y = np.array([r.label for r in lab])
    s = np.array([r.scores[version] for r in lab])
    if threshold is not None:
        out |= detection_metrics(y, s, threshold)
    else:  # audit across thresholds: judge the recorded decisions
        pred = np.array([r.decisions[version] for r in lab]).astype(float)
        out |= detection_metrics(y, s, 0.5) | {"threshold": None}
        dm = detection_metrics(y, pred, 0.5)
        out |= {k: dm[k] for k in ("precision", "recall", "f1", "fpr", "confusion")}
    out["n"] = sum(1 for r in rows if version in r.scores)
    return out


def breakdown(rows: list[Row], version: str, threshold: float | None, key: str) -> dict[str, Any]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if version in r.scores:
            groups[str(getattr(r, key))].append(r)
    return {g: decision_metrics(rs, version, threshold) for g, rs in sorted(groups.items())}


def latency(rows: list[Row]) -> dict[str, float] | None:
    xs = [r.latency_ms for r in rows if r.latency_ms is not None]
    if not xs:
        return None
    a = np.array(xs)
    return {"n": len(xs), "p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max())}
