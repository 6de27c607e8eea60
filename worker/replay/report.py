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
        return out | detection_metrics(y, s, threshold) | {"n": out["n"]}
    # Audit: the workers' recorded decisions are the prediction (thresholds may have been
    # overridden per worker); scores still give the threshold-free AUROC/AUPRC.
    ranked = detection_metrics(y, s, float("inf"))
    decided = detection_metrics(y, np.array([r.decisions[version] for r in lab], dtype=float), 0.5)
    return out | decided | {"auroc": ranked["auroc"], "auprc": ranked["auprc"], "threshold": None, "n": out["n"]}


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
