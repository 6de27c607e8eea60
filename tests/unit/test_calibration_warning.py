"""A threshold resting on few held-out normals says how few."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ganomaly.model.calibration import FEW_CALIBRATION_SCORES, FewCalibrationScores, calibrate


def test_few_held_out_scores_warn_with_their_count() -> None:
    with pytest.warns(FewCalibrationScores, match="rests on only 36 held-out normal images; with target FPR 0.01 it is simply their highest"):
        cal = calibrate(np.arange(36.0), 0.01)
    assert cal.threshold == 35.0 and cal.n == 36


def test_enough_held_out_scores_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calibrate(np.arange(float(FEW_CALIBRATION_SCORES)), 0.01)
