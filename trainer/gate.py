"""The promotion rule, as a pure function over scores on held-out confirmed data.

A challenger is promoted only if it is not worse than the champion:
1. false-positive rate at its own threshold on held-out confirmed normals
   <= champion's FPR (at the champion's threshold) + ``fpr_tolerance``; and
2. when at least ``min_anomalies`` confirmed anomalies are held out:
   AUROC >= champion's AUROC - ``auroc_tolerance`` and recall at threshold
   >= champion's recall - ``recall_tolerance``.
With no held-out normals nothing can be judged, and the challenger is rejected.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score


@dataclass(frozen=True)
class GateRule:
    fpr_tolerance: float = 0.01
    auroc_tolerance: float = 0.01
    recall_tolerance: float = 0.05
    min_anomalies: int = 5
    min_normals: int = 10


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    champion: dict[str, Any] = field(default_factory=dict)
    challenger: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def side_metrics(normal: np.ndarray, anomaly: np.ndarray, threshold: float) -> dict[str, Any]:
    out: dict[str, Any] = {"threshold": float(threshold), "n_normal": len(normal), "n_anomaly": len(anomaly),
                           "fpr": float(np.mean(normal > threshold)) if len(normal) else None}
    if len(anomaly):
        out["recall"] = float(np.mean(anomaly > threshold))
    if len(normal) and len(anomaly):
        y = np.r_[np.zeros(len(normal)), np.ones(len(anomaly))]
        out["auroc"] = float(roc_auc_score(y, np.r_[normal, anomaly]))
    return out


def decide(champ: dict[str, Any], chall: dict[str, Any], rule: GateRule) -> Decision:
    d = Decision(promote=True, champion=champ, challenger=chall)
    if champ["n_normal"] < rule.min_normals or champ["fpr"] is None:
        d.promote = False
        d.reasons.append(f"only {champ['n_normal']} held-out confirmed normals (< {rule.min_normals}): cannot judge")
        return d
    if chall["fpr"] > champ["fpr"] + rule.fpr_tolerance:
        d.promote = False
        d.reasons.append(f"FPR on confirmed normals {chall['fpr']:.4f} > champion {champ['fpr']:.4f} + {rule.fpr_tolerance}")
    else:
        d.reasons.append(f"FPR on confirmed normals {chall['fpr']:.4f} vs champion {champ['fpr']:.4f}: ok")
    if champ["n_anomaly"] >= rule.min_anomalies and "auroc" in champ:
        if chall["auroc"] < champ["auroc"] - rule.auroc_tolerance:
            d.promote = False
            d.reasons.append(f"AUROC {chall['auroc']:.4f} < champion {champ['auroc']:.4f} - {rule.auroc_tolerance}")
        else:
            d.reasons.append(f"AUROC {chall['auroc']:.4f} vs champion {champ['auroc']:.4f}: ok")
        if chall["recall"] < champ["recall"] - rule.recall_tolerance:
            d.promote = False
            d.reasons.append(f"recall {chall['recall']:.4f} < champion {champ['recall']:.4f} - {rule.recall_tolerance}")
    else:
        d.reasons.append(f"{champ['n_anomaly']} held-out confirmed anomalies (< {rule.min_anomalies}): AUROC not judged")
    return d
