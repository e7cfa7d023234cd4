"""Head pose (roll, yaw, pitch) from 68 facial landmarks, with no camera model.

A rigid 3D reference head (:data:`REFERENCE_HEAD`, six points) is fitted to the
landmarks under scaled orthographic projection (least squares, then the nearest
rotation), which needs no focal length or image size and is exact enough at face
distances. Angles are in degrees, in OpenCV's camera axes: x to the image's right,
y down, z away from the camera.

* ``roll``: rotation in the image plane, positive clockwise on screen (y points
  down). It is the same convention as the angle of oriented crops
  (:mod:`pipdetect.crop`): a face turned 30 degrees clockwise has roll +30.
* ``yaw``: turning the head left or right, positive when the face turns towards
  the image's left (the subject's right); the mirror image has the opposite yaw.
* ``pitch``: nodding, positive when the face tilts down (chin towards the chest).

Validated on the LFPW test photos turned by known angles (roll) and mirrored (yaw
changes sign); yaw and pitch magnitudes were not checked against a ground truth
(``benchmarks/rotation_bench.py``, docs/angles.md).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["REFERENCE_HEAD", "Pose", "head_pose"]

REFERENCE_HEAD: dict[int, tuple[float, float, float]] = {
    30: (0.0, 0.0, 0.0),        # nose tip
    8: (0.0, 68.0, 28.0),       # chin
    36: (-44.0, -36.0, 32.0),   # right eye, outer corner (the subject's right)
    45: (44.0, -36.0, 32.0),    # left eye, outer corner
    48: (-26.0, 30.0, 24.0),    # right mouth corner
    54: (26.0, 30.0, 24.0),     # left mouth corner
}
"""A rough average head in millimetres, nose tip at the origin, x to the subject's left
(the image's right in a frontal photo), y down, z away from the camera; keys are
68-point (300-W / Multi-PIE) landmark indices."""

_INDICES = list(REFERENCE_HEAD)
_MODEL = np.array([REFERENCE_HEAD[i] for i in _INDICES], dtype=np.float64)
_MODEL_CENTRED = _MODEL - _MODEL.mean(axis=0)
_SOLVE = np.linalg.pinv(_MODEL_CENTRED)  # (3, 6): least squares for the 2x3 projection


class Pose(NamedTuple):
    """Head pose in degrees (see :mod:`pipdetect.pose` for the axes and signs)."""

    roll: float
    yaw: float
    pitch: float


def head_pose(points68: np.ndarray) -> np.ndarray:
    """Roll, yaw, pitch (N, 3) in degrees for 68-point landmarks (N, 68, 2) in pixels.

    Faces whose fit degenerates (all points on a line) get NaN.
    """
    pts = np.asarray(points68, dtype=np.float64).reshape(-1, 68, 2)[:, _INDICES]
    centred = pts - pts.mean(axis=1, keepdims=True)
    proj = np.einsum("kl,nlc->nck", _SOLVE, centred)  # (N, 2, 3): rows ~ scale * R[0:2]
    u, s, vt = np.linalg.svd(proj)
    ok = s[:, 1] > 1e-9 * np.maximum(s[:, 0], 1e-300)
    r12 = u @ vt[:, :2, :]  # nearest matrix with orthonormal rows
    r3 = np.cross(r12[:, 0], r12[:, 1])
    r = np.concatenate([r12, r3[:, None]], axis=1)
    roll = np.degrees(np.arctan2(r[:, 1, 0], r[:, 0, 0]))
    yaw = np.degrees(np.arcsin(np.clip(-r[:, 2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(r[:, 2, 1], r[:, 2, 2]))
    out = np.stack([roll, yaw, pitch], axis=1)
    out[~ok] = np.nan
    return out
