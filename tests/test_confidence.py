"""The confidence calibration (pipdetect.confidence) and how the detector uses it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipdetect.confidence import FEATURES, Calibration, score_features
from pipdetect.errors import ModelFormatError

CALIBRATED = {"type": "logistic", "features": list(FEATURES), "coef": [0.5, 3.0, 2.0],
              "threshold": 0.4, "fitted_on": "test"}


def test_uncalibrated_is_the_clipped_mean_score():
    c = Calibration.from_dict(None)
    assert not c.calibrated and c.threshold == 0.0 and c.to_dict() is None
    scores = np.array([[0.2, 0.4], [1.5, 2.0], [-1.0, 0.0]])
    np.testing.assert_allclose(c(scores), [0.3, 1.0, 0.0])
    assert c(np.zeros((0, 7))).shape == (0,)


def test_round_trip_and_the_logistic_formula():
    c = Calibration.from_dict(CALIBRATED)
    assert c.calibrated and Calibration.from_dict(c.to_dict()) == c
    scores = np.full((1, 10), 0.7)
    z = 0.5 + score_features(scores) @ np.array([3.0, 2.0])
    np.testing.assert_allclose(c(scores), 1 / (1 + np.exp(-z)))


@settings(max_examples=50, deadline=None)
@given(scores=st.lists(st.floats(-2, 3, allow_nan=False), min_size=4, max_size=30),
       bump=st.floats(0.01, 1.0))
def test_higher_scores_never_lower_the_confidence(scores, bump):
    c = Calibration.from_dict(CALIBRATED)
    sc = np.array([scores])
    a, b = c(sc)[0], c(sc + bump)[0]
    assert 0.0 <= a <= 1.0 and 0.0 <= b <= 1.0 and b >= a - 1e-12


@settings(max_examples=40, deadline=None)
@given(batch=st.lists(st.lists(st.floats(-2, 3, allow_nan=False), min_size=68, max_size=68),
                      min_size=1, max_size=40))
def test_a_face_confidence_does_not_depend_on_the_batch(batch):
    """Scored with any other faces, a face gets the very same confidence (the tracker and
    detect score once and reuse the values)."""
    c = Calibration.from_dict(CALIBRATED)
    sc = np.array(batch)
    together = c(sc)
    alone = np.array([c(sc[i : i + 1])[0] for i in range(len(sc))])
    assert np.array_equal(together, alone)


@pytest.mark.parametrize("broken", [
    [], {"type": "isotonic"}, {**CALIBRATED, "features": ["other"]},
    {**CALIBRATED, "coef": [1.0, 2.0]}, {**CALIBRATED, "coef": [1.0, float("nan"), 2.0]},
    {**CALIBRATED, "coef": [1.0, 1e9, 2.0]}, {**CALIBRATED, "threshold": 1.5},
    {**CALIBRATED, "threshold": True},
])
def test_malformed_calibrations_are_refused(broken):
    with pytest.raises(ModelFormatError):
        Calibration.from_dict(broken)


def test_the_bundled_model_is_calibrated():
    from pipdetect import LandmarkDetector

    det = LandmarkDetector()
    calib = Calibration.from_dict(det.spec.confidence)
    assert calib.calibrated and 0.0 < calib.threshold < 1.0
    assert det.min_confidence == calib.threshold
    assert LandmarkDetector(min_confidence=0).min_confidence == 0.0
