"""Metrics for replayed rows: overall, per source, per model version; champion vs. challenger.

Labels are optional: ``model_summary`` and ``agreement`` need none, so an unlabelled
stretch still says how many records each model flagged, how its scores are spread and
how often two models agree.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from ganomaly.evaluation.metrics import detection_metrics
from replay.rescore import Row

# Labelled metrics that the printed summary repeats from the report.
LABELLED_KEYS = ("auroc", "auprc", "precision", "recall", "f1", "fpr")


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


def thresholds_used(rows: list[Row], version: str) -> dict[float, int]:
    """Each threshold a model version decided with, and on how many records (workers may override it)."""
    return dict(Counter(r.thresholds[version] for r in rows if version in r.thresholds).most_common())


def model_summary(rows: list[Row], version: str) -> dict[str, Any]:
    """What needs no labels: records scored, flagged (count and share), score quantiles, thresholds used."""
    scored = [r for r in rows if version in r.scores]
    flagged = sum(bool(r.decisions[version]) for r in scored)
    used = thresholds_used(rows, version)
    out: dict[str, Any] = {"scored": len(scored), "flagged": flagged, "flagged_share": round(flagged / len(scored), 6) if scored else None,
                           "threshold": next(iter(used)) if len(used) == 1 else None,
                           "thresholds": [{"threshold": t, "records": n} for t, n in used.items()], "score": None}
    if scored:
        s = np.array([r.scores[version] for r in scored])
        out["score"] = {"min": float(s.min()), "p50": float(np.percentile(s, 50)), "p90": float(np.percentile(s, 90)),
                        "p99": float(np.percentile(s, 99)), "max": float(s.max()), "mean": float(s.mean())}
    return out


def agreement(rows: list[Row], champion: str, challenger: str) -> dict[str, Any]:
    """How often two models decide alike on the records both scored, each direction of disagreement, and score rank correlation."""
    both = [r for r in rows if champion in r.decisions and challenger in r.decisions]
    a = np.array([bool(r.decisions[champion]) for r in both], dtype=bool)
    b = np.array([bool(r.decisions[challenger]) for r in both], dtype=bool)
    n = len(both)
    out: dict[str, Any] = {"champion": champion, "challenger": challenger, "both_scored": n, "agree": int((a == b).sum()),
                           "agreement_rate": round(float((a == b).mean()), 6) if n else None, "both_flagged": int((a & b).sum()),
                           "neither_flagged": int((~a & ~b).sum()), "only_champion_flagged": int((a & ~b).sum()),
                           "only_challenger_flagged": int((~a & b).sum()), "score_rank_correlation": None}
    if n > 1:
        rho = spearmanr([r.scores[champion] for r in both], [r.scores[challenger] for r in both]).statistic
        out["score_rank_correlation"] = None if np.isnan(rho) else round(float(rho), 6)
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
