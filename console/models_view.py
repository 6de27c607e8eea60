"""The registry as operators see it: versions, the current one, its history, the trainer's gate decisions,
operator thresholds with their audit, the threshold what-if, and a shadow model's results beside the champion's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ganomaly.artifact import read_manifest
from ganomaly.connections.kafka import KafkaSettings
from ganomaly.connections.tail import read_tail
from ganomaly.errors import ArtifactError, UserError
from ganomaly.model.calibration import Calibration, expected_flag_rate
from ganomaly.registry import Pointer, Registry
from ganomaly.retrain import TrainerSignals
from ganomaly.thresholds import OperatorThresholds, ThresholdChange

RECENT_PER_PARTITION = 2_000  # recent results read per partition for the histogram and the shadow comparison
HISTOGRAM_BINS = 40


@dataclass
class WhatIf:
    version: str
    calibrated: float
    current: float  # what the workers use now (operator's if set)
    candidate: float
    expected_normal_rate: float  # share of held-out normals above the candidate, from the calibration
    recent_n: int
    recent_rate: float | None  # share of recent scores (of this version) above the candidate
    recent_rate_now: float | None  # ... above the current threshold
    histogram: list[tuple[float, float, int]]  # (low, high, count) of recent scores


class ModelsView:
    def __init__(self, registry: Registry, thresholds: OperatorThresholds, trainer: TrainerSignals, kafka: KafkaSettings, *,
                 results_topic: str, shadow_topic: str) -> None:
        self.registry = registry
        self.thresholds = thresholds
        self.trainer = trainer
        self.kafka = kafka
        self.results_topic, self.shadow_topic = results_topic, shadow_topic
        self._recent: dict[str, tuple[float, list[dict[str, Any]]]] = {}  # topic -> (when read, results)

    def overview(self) -> dict[str, Any]:
        listing = self.registry.list()
        ops = self.thresholds.get_many([row["version"] for row in listing["versions"] if "error" not in row])  # one round trip
        for row in listing["versions"]:
            op = ops.get(row["version"])
            row["operator_threshold"] = op.threshold if op else None
        history = [Pointer.from_json(raw) for raw in self.registry.pointer.r.lrange(self.registry.pointer.history, 0, 19)]
        return {**listing, "history": history, "decisions": self.decisions(), "audit": self.thresholds.audit(20),
                "trainer": self.trainer.status(), "retrain_pending": self.trainer.pending()}

    def decisions(self, limit: int = 20) -> list[dict[str, Any]]:
        folder = self.registry.store.decisions
        out = []
        for p in sorted(folder.glob("*.json"), reverse=True)[:limit] if folder.is_dir() else []:
            try:
                d = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            dec = d.get("decision") or {}
            out.append({"at": d.get("at", p.stem), "champion": d.get("champion"), "challenger": d.get("challenger"),
                        "action": d.get("action", "promoted" if dec.get("promote") else "rejected"),
                        "reasons": dec.get("reasons") or ([d["reason"]] if d.get("reason") else []),
                        "champion_metrics": dec.get("champion", {}), "challenger_metrics": dec.get("challenger", {})})
        return out

    def calibration(self, version: str) -> Calibration:
        try:
            mf = read_manifest(self.registry.store.path_of(version))
        except ArtifactError as e:
            raise UserError(str(e)) from None
        return Calibration.from_dict(mf["calibration"])

    def effective(self, version: str) -> tuple[float, ThresholdChange | None]:
        cal = self.calibration(version)
        op = self.thresholds.get(version)
        return (op.threshold if op and op.threshold is not None else cal.threshold), op

    def recent_results(self, topic: str) -> list[dict[str, Any]]:
        """The newest results of ``topic`` (cached for 10 s: a page refresh does not re-read the topic)."""
        cached = self._recent.get(topic)
        if cached and time.monotonic() - cached[0] < 10:
            return cached[1]
        out = []
        try:
            records = read_tail(self.kafka, topic, RECENT_PER_PARTITION, timeout_s=10.0)
        except UserError:
            records = []
        for rec in records:
            try:
                out.append(json.loads(rec.value))
            except ValueError:
                continue
        self._recent[topic] = (time.monotonic(), out)
        return out

    def what_if(self, version: str, candidate: float) -> WhatIf:
        cal = self.calibration(version)
        current, _ = self.effective(version)
        scores = np.array([r["score"] for r in self.recent_results(self.results_topic) if r.get("model_version") == version], dtype=float)
        hist: list[tuple[float, float, int]] = []
        if len(scores):
            hi = max(float(np.quantile(scores, 0.995)), candidate, current) * 1.05
            counts, edges = np.histogram(np.clip(scores, 0, hi), bins=HISTOGRAM_BINS, range=(0.0, hi))
            hist = [(float(edges[i]), float(edges[i + 1]), int(c)) for i, c in enumerate(counts)]
        return WhatIf(version=version, calibrated=cal.threshold, current=current, candidate=candidate,
                      expected_normal_rate=expected_flag_rate(cal, candidate), recent_n=len(scores),
                      recent_rate=float(np.mean(scores > candidate)) if len(scores) else None,
                      recent_rate_now=float(np.mean(scores > current)) if len(scores) else None, histogram=hist)

    def shadow(self) -> dict[str, Any] | None:
        """The shadow model's recent results beside the champion's for the same inputs, when a shadow runs."""
        shadow = self.recent_results(self.shadow_topic)
        if not shadow:
            return None
        champ = {r["id"]: r for r in self.recent_results(self.results_topic)}
        pairs = [(champ[s["id"]], s) for s in shadow if s.get("id") in champ]
        if not pairs:
            return {"version": shadow[-1].get("model_version"), "n": 0}
        agree = sum(c["is_anomaly"] == s["is_anomaly"] for c, s in pairs)
        return {"version": pairs[-1][1].get("model_version"), "champion": pairs[-1][0].get("model_version"), "n": len(pairs),
                "agreement": agree / len(pairs), "champion_flagged": sum(c["is_anomaly"] for c, _ in pairs) / len(pairs),
                "shadow_flagged": sum(s["is_anomaly"] for _, s in pairs) / len(pairs)}
