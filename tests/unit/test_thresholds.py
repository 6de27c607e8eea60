"""Operator thresholds in a real Redis, which threshold a worker serves, and the what-if share flagged at a candidate."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import redis

from ganomaly.errors import UserError
from ganomaly.model.calibration import calibrate, expected_flag_rate
from ganomaly.thresholds import OperatorThresholds, ThresholdChange, effective_threshold


def test_set_clear_and_the_audit_newest_first(redis_url: str, prefix: str) -> None:
    r = redis.Redis.from_url(redis_url)
    ops = OperatorThresholds(r, prefix)
    sub = r.pubsub()
    sub.subscribe(f"{prefix}:model:events")
    sub.get_message(timeout=1)  # the subscription's confirmation
    assert ops.get("m-a") is None
    assert ops.clear("m-a", by="ann", calibrated=0.5) is None  # nothing to clear: nothing audited
    first = ops.set("m-a", 0.3, by="ann", calibrated=0.5, note="too many alerts on cam-2")
    assert (first.version, first.threshold, first.previous, first.by, first.note) == ("m-a", 0.3, 0.5, "ann", "too many alerts on cam-2")
    second = ops.set("m-a", 0.25, by="bob", calibrated=0.5)
    assert second.previous == 0.3 and second.note is None  # previous: the operator's threshold then in effect
    assert ops.get("m-a") == second and ops.get("m-b") is None  # per version
    cleared = ops.clear("m-a", by="ann", calibrated=0.5, note="back to calibrated")
    assert cleared is not None and cleared.threshold is None and cleared.previous == 0.25
    assert ops.get("m-a") is None and ops.latest("m-a") == cleared  # a worker can say who cleared it
    assert ops.clear("m-a", by="ann", calibrated=0.5) is None  # cleared already
    assert ops.audit() == [cleared, second, first]
    assert ops.audit(count=1) == [cleared]
    published = [ThresholdChange.from_json(m["data"]) for m in iter(lambda: sub.get_message(timeout=1), None)]
    assert published == [first, second, cleared]
    events = r.xrange(f"{prefix}:model:events")
    assert [e[b"event"] for _, e in events] == [b"threshold_set", b"threshold_set", b"threshold_cleared"]
    assert ThresholdChange.from_json(json.loads(json.dumps(first.to_json()))) == first


def test_get_many_reads_the_versions_that_have_one(redis_url: str, prefix: str) -> None:
    ops = OperatorThresholds(redis.Redis.from_url(redis_url), prefix)
    ops.set("m-b", 0.0, by="ann", calibrated=1.0)  # zero is a threshold (flags every positive score)
    assert {v: c.threshold for v, c in ops.get_many(["m-a", "m-b"]).items()} == {"m-b": 0.0}
    assert ops.get_many([]) == {}


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_negative_and_non_finite_thresholds_are_refused(redis_url: str, prefix: str, bad: float) -> None:
    ops = OperatorThresholds(redis.Redis.from_url(redis_url), prefix)
    with pytest.raises(UserError, match="finite number >= 0"):
        ops.set("m-a", bad, by="ann", calibrated=0.5)
    assert ops.get("m-a") is None and ops.audit() == []


def test_with_the_median_a_threshold_at_or_below_it_is_refused(redis_url: str, prefix: str) -> None:
    ops = OperatorThresholds(redis.Redis.from_url(redis_url), prefix)
    with pytest.raises(UserError, match="at least half of normal images"):
        ops.set("m-a", 0.2, by="ann", calibrated=0.5, median=0.2)
    assert ops.set("m-a", 0.21, by="ann", calibrated=0.5, median=0.2).threshold == 0.21


def test_the_flag_wins_over_the_operator_who_wins_over_the_artifact() -> None:
    op = ThresholdChange(version="m-a", threshold=0.3, previous=0.5, by="ann", at_ms=1, note=None)
    cleared = ThresholdChange(version="m-a", threshold=None, previous=0.3, by="ann", at_ms=2, note=None)
    assert effective_threshold(0.5, op, 0.9) == (0.9, "cli")
    assert effective_threshold(0.5, op, None) == (0.3, "operator")
    assert effective_threshold(0.5, cleared, None) == (0.5, "calibrated")
    assert effective_threshold(0.5, None, None) == (0.5, "calibrated")


def _empirical(scores: np.ndarray, t: float) -> float:
    return float((scores > t).mean())


@pytest.mark.parametrize(("name", "draw", "tol"), [
    ("gamma", lambda rng, n: rng.gamma(3.0, 1.0, n), 0.15),  # skewed, like anomaly scores
    ("log-normal", lambda rng, n: rng.lognormal(0.0, 0.5, n), 0.15),
    ("gaussian", lambda rng, n: rng.normal(10.0, 1.0, n), 0.30),
])
def test_the_what_if_matches_the_share_of_new_normals_flagged(name: str, draw: object, tol: float) -> None:
    rng = np.random.default_rng(7)
    cal = calibrate(draw(rng, 20_000), target_fpr=0.02)  # type: ignore[operator]
    fresh = draw(rng, 400_000)  # type: ignore[operator]
    for share in (0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01):
        t = float(np.quantile(fresh, 1 - share))
        assert expected_flag_rate(cal, t) == pytest.approx(_empirical(fresh, t), rel=tol), (name, share)
    for share in (0.005, 0.001):  # beyond p99 only the maximum is known: the right order of magnitude
        t = float(np.quantile(fresh, 1 - share))
        assert _empirical(fresh, t) / 2 < expected_flag_rate(cal, t) < _empirical(fresh, t) * 3, (name, share)


def test_the_what_if_is_monotone_and_exact_at_its_known_points() -> None:
    cal = calibrate(np.random.default_rng(1).gamma(2.0, 1.0, 5_000), target_fpr=0.03)
    assert expected_flag_rate(cal, cal.median) == pytest.approx(0.5)
    assert expected_flag_rate(cal, cal.p95) == pytest.approx(0.05)
    assert expected_flag_rate(cal, cal.threshold) == pytest.approx(0.03)
    assert expected_flag_rate(cal, cal.max) == 0.0 and expected_flag_rate(cal, cal.max * 2) == 0.0
    assert expected_flag_rate(cal, 0.0) == 1.0 and expected_flag_rate(cal, -1.0) == 1.0
    grid = np.linspace(-1, cal.max * 1.1, 2_000)
    rates = [expected_flag_rate(cal, float(t)) for t in grid]
    assert all(0.0 <= r <= 1.0 for r in rates)
    assert all(a >= b for a, b in itertools.pairwise(rates))
    below = expected_flag_rate(cal, cal.median / 2)  # below the median: only "at least half" is known
    assert 0.5 < below < 1.0
    with pytest.raises(ValueError, match="finite"):
        expected_flag_rate(cal, math.nan)


def test_the_what_if_with_ties_and_a_tiny_calibration() -> None:
    cal = calibrate(np.array([1.0] * 150 + [2.0] * 50), target_fpr=0.05)  # discrete scores: points coincide
    assert expected_flag_rate(cal, 1.5) <= 0.5 and expected_flag_rate(cal, 2.0) == 0.0
    with pytest.warns(UserWarning):
        small = calibrate(np.linspace(0, 1, 20), target_fpr=0.05)
    assert 0.0 < expected_flag_rate(small, 0.9) < 0.5
