import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganomaly.model import calibrate


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=500), st.floats(0.001, 0.5))
def test_at_most_target_fpr_of_validation_scores_exceed_the_threshold(scores: list[float], fpr: float) -> None:
    cal = calibrate(np.array(scores), fpr)
    above = np.mean(np.array(scores) > cal.threshold)
    assert above <= fpr + 1e-12
    assert cal.threshold in scores  # an observed score, not an interpolation


def test_statistics_and_normalisation() -> None:
    s = np.arange(1, 1001, dtype=float)
    cal = calibrate(s, 0.01)
    assert cal.threshold == 991.0 and cal.n == 1000 and cal.median == 500.5
    assert cal.normalise(cal.median) == pytest.approx(0.0)
    assert cal.normalise(cal.threshold) == pytest.approx(1.0)
    assert cal.normalise(750.75, threshold=1001.0) == pytest.approx(0.5)  # an overridden threshold is 1 too
    assert type(cal).from_dict(cal.to_dict()) == cal


@pytest.mark.parametrize(("scores", "fpr"), [([], 0.01), ([1.0, float("nan")], 0.01), ([1.0], 0.0), ([1.0], 1.0)])
def test_bad_inputs_refused(scores: list[float], fpr: float) -> None:
    with pytest.raises(ValueError):
        calibrate(np.array(scores), fpr)
