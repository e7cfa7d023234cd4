"""A face's confidence: the estimated probability that its landmarks are right.

"Right" means an inter-ocular NME of at most 8 %. The probability comes from the
network's own per-landmark scores (PIP-Net's heatmap values, roughly in [0, 1]):
:func:`score_features` summarises them, and a logistic calibration fitted on
annotated faces with realistic mistakes (shifted, too small or too large boxes,
rolled faces, boxes on pictures without faces, detector false positives) maps the
summary to a probability. The calibration is stored in the model's metadata
(``"confidence"``), written by ``training/calibrate.py``; docs/angles.md shows its
reliability diagram.

A model without a calibration (the converted official checkpoints, models of your
own) gets the mean landmark score clipped to [0, 1]: a ranking, not a probability,
and no face is dropped by default (:attr:`Calibration.threshold` 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ModelFormatError

__all__ = ["FEATURES", "Calibration", "score_features"]

FEATURES = ("logit_mean", "logit_low_quartile")
"""The summary of the per-landmark scores, in order: logit of the mean score and logit of
the 25th percentile of the scores (each score clipped to [0.001, 0.999] first)."""

_EPS = 1e-3


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    return np.asarray(np.log(q / (1.0 - q)))


def score_features(scores: np.ndarray) -> np.ndarray:
    """(n, len(FEATURES)) float64 features of per-landmark scores (n, L)."""
    sc = np.asarray(scores, dtype=np.float64)
    sc = sc.reshape(len(sc), -1) if len(sc) else np.zeros((0, 1))
    if sc.shape[1] == 0:
        return np.zeros((len(sc), len(FEATURES)))
    # the 25th percentile by linear interpolation, as np.quantile's default (faster here)
    ordered = np.sort(sc, axis=1)
    pos = 0.25 * (sc.shape[1] - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, sc.shape[1] - 1)
    q25 = ordered[:, lo] + (pos - lo) * (ordered[:, hi] - ordered[:, lo])
    return np.stack([_logit(sc.mean(axis=1)), _logit(q25)], axis=1)


@dataclass(frozen=True)
class Calibration:
    """Per-landmark scores -> probability that the face's landmarks are right.

    ``coef``: intercept then one weight per :data:`FEATURES` entry of the logistic model
    ``p = 1 / (1 + exp(-(coef[0] + coef[1:] @ features)))``; ``None`` for an uncalibrated
    model (the mean score, clipped to [0, 1]). ``threshold``: the recommended smallest
    confidence of a detected face (``LandmarkDetector(min_confidence=None)`` uses it).
    """

    coef: tuple[float, ...] | None = None
    threshold: float = 0.0
    fitted_on: str = ""

    @property
    def calibrated(self) -> bool:
        return self.coef is not None

    @classmethod
    def from_dict(cls, data: Any) -> Calibration:
        """Read the ``"confidence"`` metadata object (``None``: uncalibrated)."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ModelFormatError("metadata field 'confidence' must be a JSON object or null")
        if data.get("type") != "logistic" or list(data.get("features", [])) != list(FEATURES):
            raise ModelFormatError(
                "metadata field 'confidence' must be {\"type\": \"logistic\", \"features\": "
                f"{list(FEATURES)}, ...}}; this pipdetect cannot read the model's calibration"
            )
        coef: Any = data.get("coef")
        threshold: Any = data.get("threshold")
        if (not isinstance(coef, list) or len(coef) != len(FEATURES) + 1
                or not all(_finite_number(v) and abs(v) < 1e6 for v in coef)):
            raise ModelFormatError(
                f"metadata field 'confidence.coef' must be {len(FEATURES) + 1} finite numbers"
            )
        if not _finite_number(threshold) or not 0.0 <= float(threshold) <= 1.0:
            raise ModelFormatError(
                "metadata field 'confidence.threshold' must be a number in [0, 1]"
            )
        return cls(tuple(float(v) for v in coef), float(threshold),
                   str(data.get("fitted_on", "")))

    def to_dict(self) -> dict[str, Any] | None:
        if self.coef is None:
            return None
        return {"type": "logistic", "features": list(FEATURES), "coef": list(self.coef),
                "threshold": self.threshold, "fitted_on": self.fitted_on}

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Confidence (n,) float64 in [0, 1] of faces with per-landmark scores (n, L); each
        face's value does not depend on the others in the batch."""
        sc = np.asarray(scores, dtype=np.float64)
        if len(sc) == 0:
            return np.zeros(0)
        sc = sc.reshape(len(sc), -1)
        if self.coef is None:
            mean = sc.mean(axis=1) if sc.shape[1] else np.zeros(len(sc))
            return np.asarray(np.clip(mean, 0.0, 1.0))
        # term by term, not a matrix product (whose BLAS kernel may round differently
        # for different batch sizes): a face's confidence is the same bit for bit
        # whatever other faces are scored with it, so callers may score once and reuse
        features = score_features(sc)
        z = np.full(len(sc), self.coef[0])
        for j, weight in enumerate(self.coef[1:]):
            z = z + weight * features[:, j]
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0))))


def _finite_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(float(value)))
