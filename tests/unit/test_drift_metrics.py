"""Drift metrics: the score histogram resolves the alert rules' lines, and the expected rate is honest."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ganomaly.artifact import load_artifact
from ganomaly.model.calibration import calibrate
from worker.metrics import WorkerMetrics
from worker.model_holder import serving_model


def _buckets(m: WorkerMetrics, version: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) pairs, as Prometheus stores them."""
    out = []
    for fam in m.registry.collect():
        for s in fam.samples:
            if s.name == "ganomaly_score_normalised_bucket" and s.labels["model_version"] == version:
                out.append((float(s.labels["le"]), s.value))
    return sorted(out)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """PromQL's histogram_quantile: linear interpolation inside the bucket holding the rank."""
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_n = None, 0.0
    for le, n in buckets:
        if n >= rank:
            if math.isinf(le):
                return prev_le if prev_le is not None else math.nan
            lo = prev_le if prev_le is not None else min(0.0, le)
            return lo + (le - lo) * (rank - prev_n) / max(n - prev_n, 1e-12)
        prev_le, prev_n = le, n
    return math.nan


def _observe(m: WorkerMetrics, version: str, normalised: np.ndarray) -> None:
    for v in normalised:
        m.score.labels(version).observe(float(v))


def test_calibration_data_sit_at_zero_and_a_shift_crosses_the_drift_line() -> None:
    rng = np.random.default_rng(0)
    held_out = rng.gamma(2.0, 0.05, 5000)  # skewed and positive, as latent errors are
    cal = calibrate(held_out, target_fpr=0.01)
    fresh = rng.gamma(2.0, 0.05, 20000)  # more data like the held-out normals
    m = WorkerMetrics()
    _observe(m, "same", np.asarray(cal.normalise(fresh)))
    b = _buckets(m, "same")
    assert abs(histogram_quantile(0.5, b)) < 0.1  # the GanomalyScoreDrift line is 0.5
    above = 1 - dict(b)[1.0] / b[-1][1]
    assert 0.005 < above < 0.02  # the share over the threshold is the calibrated 1 %

    # inputs drift: every score moves 60 % of the way from the median to the threshold
    _observe(m, "drifted", np.asarray(cal.normalise(fresh + 0.6 * (cal.threshold - cal.median))))
    assert histogram_quantile(0.5, _buckets(m, "drifted")) > 0.5


def test_expected_rate_is_the_target_fpr_and_unknown_under_an_override(tiny_model: Path) -> None:
    art = load_artifact(tiny_model)
    cpu = torch.device("cpu")
    own = serving_model(art, cpu, None, None)
    assert own.expected_anomaly_rate == art.calibration.target_fpr == 0.05
    assert math.isnan(serving_model(art, cpu, None, art.threshold * 2).expected_anomaly_rate)
    m = WorkerMetrics()
    m.set_model(own.version, own.threshold, own.expected_anomaly_rate)
    assert m.registry.get_sample_value("ganomaly_expected_anomaly_rate", {"model_version": own.version}) == 0.05
    m.set_model("other", 1.0, 0.01)  # a hot swap replaces the series rather than adding one
    assert m.registry.get_sample_value("ganomaly_expected_anomaly_rate", {"model_version": own.version}) is None
