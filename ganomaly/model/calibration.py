"""Threshold calibration from held-out *normal* scores only.

The threshold is the (1 - target_fpr) quantile of validation scores, so on data like
the validation set about target_fpr of normal images are flagged. Score statistics
travel with it so the worker can report a normalised score without ever looking at
test data (the original code min-max normalised over the test set).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# Below this many held-out normals a quantile threshold is mostly noise: its false-positive
# rate on new normals can be several times the target. (A warning, not a log line: this
# package does no logging; the CLI's logging renders warnings like its own events.)
FEW_CALIBRATION_SCORES = 100


class FewCalibrationScores(UserWarning):
    """The threshold was calibrated on fewer than FEW_CALIBRATION_SCORES held-out normals."""


@dataclass(frozen=True)
class Calibration:
    threshold: float
    target_fpr: float
    n: int
    mean: float
    std: float
    median: float
    p95: float
    p99: float
    max: float

    def normalise(self, score: np.ndarray | float, threshold: float | None = None) -> np.ndarray | float:
        """0 at the normal median, 1 at the threshold (``threshold`` overrides the calibrated one)."""
        span = max((self.threshold if threshold is None else threshold) - self.median, 1e-12)
        return (np.asarray(score, dtype=np.float64) - self.median) / span

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def calibrate(normal_scores: np.ndarray, target_fpr: float = 0.01) -> Calibration:
    s = np.asarray(normal_scores, dtype=np.float64)
    if s.size == 0 or not np.all(np.isfinite(s)):
        msg = "calibration needs a non-empty set of finite validation scores"
        raise ValueError(msg)
    if not 0.0 < target_fpr < 1.0:
        msg = f"target_fpr must be in (0, 1), got {target_fpr}"
        raise ValueError(msg)
    # method="higher": the threshold is an observed score, so at most target_fpr of
    # the validation scores lie strictly above it.
    thr = float(np.quantile(s, 1.0 - target_fpr, method="higher"))
    if s.size < FEW_CALIBRATION_SCORES:
        at_max = f"; with target FPR {target_fpr} it is simply their highest score" if s.size * target_fpr < 1 else ""
        warnings.warn(f"the threshold rests on only {s.size} held-out normal images{at_max}: its false-positive rate on new images is "
                      f"uncertain; hold out at least {FEW_CALIBRATION_SCORES} (more images, or a larger --val-fraction)",
                      FewCalibrationScores, stacklevel=2)
    return Calibration(
        threshold=thr,
        target_fpr=target_fpr,
        n=int(s.size),
        mean=float(s.mean()),
        std=float(s.std()),
        median=float(np.median(s)),
        p95=float(np.quantile(s, 0.95)),
        p99=float(np.quantile(s, 0.99)),
        max=float(s.max()),
    )


def expected_flag_rate(cal: Calibration, threshold: float) -> float:
    """The expected share of normal images (like the held-out ones) scoring above ``threshold``: a what-if for a candidate.

    The calibration keeps a few points of the held-out scores, not the scores, so this interpolates
    between them: (median, 0.5), (p95, 0.05), (p99, 0.01), (threshold, target_fpr) and (max, 1/(n+1)),
    the share of new normals expected above the highest of n held-out ones. Between them it is linear
    in the score for the *log* of the share: anomaly scores have roughly exponential upper tails, for
    which this is exact (within about 10% on gamma- and log-normal-like scores, about 25% just above
    the median on Gaussian ones). Above the maximum the held-out data show nothing: 0.
    Below the median the calibration says only that the share lies between 0.5 and 1: this draws a
    straight line from 0.5 at the median to 1.0 at score 0 (scores are never negative), a guess that
    a caller should present as "at least half".
    """
    t = float(threshold)
    if not math.isfinite(t):
        msg = f"threshold must be finite, got {threshold}"
        raise ValueError(msg)
    if t >= cal.max:
        return 0.0
    if t < cal.median:
        floor = 0.0 if cal.median > 0 else cal.median - max(cal.max - cal.median, 1e-12)
        return 1.0 if t <= floor else 0.5 + 0.5 * (cal.median - t) / (cal.median - floor)
    # share strictly above each known score; at equal scores the smallest share holds (a step's right side)
    known: dict[float, float] = {cal.max: 1.0 / (cal.n + 1)}
    for score, share in ((cal.median, 0.5), (cal.p95, 0.05), (cal.p99, 0.01), (cal.threshold, cal.target_fpr)):
        known[score] = min(share, known.get(score, 1.0))
    xs = sorted(known)
    ys = np.minimum.accumulate([known[x] for x in xs])  # a share never grows with the score
    i = int(np.searchsorted(xs, t, side="right")) - 1  # xs[i] <= t < xs[i + 1]: the median is in, the maximum above t
    x0, x1, y0, y1 = xs[i], xs[i + 1], float(ys[i]), float(ys[i + 1])
    return math.exp(math.log(y0) + (t - x0) / (x1 - x0) * (math.log(y1) - math.log(y0)))
