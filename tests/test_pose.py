"""Head pose from landmarks (pipdetect.pose): known rotations of the reference head."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipdetect.pose import REFERENCE_HEAD, head_pose
from pipdetect.schemes import SCHEMES
from pipdetect.stages import Face


def _rotation(roll: float, yaw: float, pitch: float) -> np.ndarray:
    """R = Rz(roll) @ Ry(yaw) @ Rx(pitch), degrees (the decomposition pipdetect.pose reads)."""
    r, y, p = np.radians([roll, yaw, pitch])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return rz @ ry @ rx


def _points(roll: float, yaw: float, pitch: float, scale: float = 2.0) -> np.ndarray:
    """68 landmarks whose pose points are the reference head turned and projected
    orthographically (the other points are where the head's centre falls)."""
    model = np.array(list(REFERENCE_HEAD.values()))
    proj = (model @ _rotation(roll, yaw, pitch).T)[:, :2] * scale + [320.0, 240.0]
    pts = np.tile(proj.mean(axis=0), (68, 1))
    pts[list(REFERENCE_HEAD)] = proj
    return pts


@settings(max_examples=60, deadline=None)
@given(roll=st.floats(-179, 179), yaw=st.floats(-60, 60), pitch=st.floats(-45, 45))
def test_known_rotations_are_recovered(roll, yaw, pitch):
    got = head_pose(_points(roll, yaw, pitch)[None])[0]
    np.testing.assert_allclose(got, [roll, yaw, pitch], atol=1e-6)


def test_signs_are_as_documented():
    # roll: clockwise on screen (y down) is positive, like an oriented crop's angle
    pts = _points(0, 0, 0)
    a = np.radians(30)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    turned = (pts - pts.mean(axis=0)) @ rot.T + pts.mean(axis=0)
    assert head_pose(turned[None])[0, 0] == pytest.approx(30.0)
    # yaw: a face turned towards the image's left has its nose left of the eyes' middle
    turned_left = _points(0, 20, 0)
    eyes_mid = (turned_left[36, 0] + turned_left[45, 0]) / 2
    assert turned_left[30, 0] < eyes_mid and head_pose(turned_left[None])[0, 1] > 0
    # pitch: a face tilted down brings the chin up towards the nose in the picture
    down, level = _points(0, 0, 20), _points(0, 0, 0)
    assert down[8, 1] - down[30, 1] < level[8, 1] - level[30, 1]
    assert head_pose(down[None])[0, 2] > 0


@settings(max_examples=30, deadline=None)
@given(yaw=st.floats(-50, 50), roll=st.floats(-40, 40))
def test_the_mirror_image_has_the_opposite_yaw_and_roll(yaw, roll):
    pts = _points(roll, yaw, 5.0)
    mirror_index = np.arange(68)
    mirror_index[[36, 45, 48, 54]] = [45, 36, 54, 48]  # the subject's sides swap
    mirrored = pts[mirror_index] * [-1, 1]
    a, b = head_pose(np.stack([pts, mirrored]))
    assert b[1] == pytest.approx(-a[1], abs=1e-6) and b[0] == pytest.approx(-a[0], abs=1e-6)


def test_degenerate_points_give_nan_and_faces_without_68_points_give_none():
    assert np.isnan(head_pose(np.zeros((1, 68, 2)))).all()
    lm = np.zeros((5, 2), np.float32)
    face = Face(lm, np.ones(5, np.float32), (0, 0, 1, 1), (0, 0, 1, 1), 1.0, "custom")
    assert face.pose is None
    face68 = Face(_points(10, 0, 0).astype(np.float32), np.ones(68, np.float32),
                  (0, 0, 1, 1), (0, 0, 1, 1), 1.0, "300w68")
    assert face68.pose.roll == pytest.approx(10.0, abs=1e-3)
    assert "wflw98" in SCHEMES  # 98-point faces give their pose through the 68-point subset
