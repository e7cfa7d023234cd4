"""models/fit_crop_policy.py and the crop policies it ships in crop_policies.json.

The data-free tests check the script's building blocks against pipdetect.crop; the
LFPW tests (skipped when ../shared/data/lfpw_test is absent) check on held-out faces
that the shipped numbers really are fitted and good.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import LFPW, load_script
from pipdetect.crop import CropPolicy, preset_crop_policy
from pipdetect.presets import PRESETS, load_meanface

REPO = Path(__file__).resolve().parents[1]
DATA = LFPW
SUBSET = 40


fit = load_script(REPO / "models" / "fit_crop_policy.py")


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU, written independently of the script's."""
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 2], b[:, 2])
    y2 = np.minimum(a[:, 3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(-50, 500, (n, 2))
    wh = rng.uniform(5, 300, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


# ----------------------------------------------------------------- without data


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1),
       params=st.tuples(*[st.floats(-0.5, 0.5)] * 4))
def test_crop_params_invert_crop_policy(seed: int, params: tuple) -> None:
    boxes = _boxes(np.random.default_rng(seed), 7)
    crops = CropPolicy(box=params).crops(boxes)
    np.testing.assert_allclose(fit.crop_params(boxes, crops),
                               np.broadcast_to(params, (7, 4)), atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_features_match_crop_policy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    boxes = _boxes(rng, 9)
    size = boxes[:, None, 2:] - boxes[:, None, :2]
    kps = boxes[:, None, :2] + rng.uniform(0, 1, (9, 5, 2)) * size
    matrix = rng.normal(0, 0.2, (11, 4))
    crops = CropPolicy(keypoints=matrix).crops(boxes, kps)
    from pipdetect.crop import _PARAM_LIMITS  # the policy keeps far-off keypoints finite

    want = np.clip(fit.keypoint_features(boxes, kps) @ matrix, -_PARAM_LIMITS, _PARAM_LIMITS)
    np.testing.assert_allclose(fit.crop_params(boxes, crops, kps), want, atol=1e-9)


def test_least_squares_recovers_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    feats = np.concatenate([np.ones((200, 1)), rng.normal(0, 0.3, (200, 10))], axis=1)
    truth = rng.normal(0, 0.3, (11, 4))
    np.testing.assert_allclose(fit.fit_keypoint_matrix(feats, feats @ truth, 0.0), truth,
                               atol=1e-9)
    # Ridge shrinks the slopes, never the intercept's job of matching the mean.
    shrunk = fit.fit_keypoint_matrix(feats, feats @ truth, 1.0)
    np.testing.assert_allclose((feats @ shrunk).mean(axis=0), (feats @ truth).mean(axis=0),
                               atol=1e-9)
    assert np.abs(shrunk[1:]).sum() < np.abs(truth[1:]).sum()


def test_demo_rule_and_enlarge() -> None:
    box = np.array([[100.0, 200.0, 200.0, 300.0]])
    np.testing.assert_allclose(fit.demo_rule_crops(box), [[90, 210, 210, 310]])
    np.testing.assert_allclose(fit.enlarge(box, 1.1), [[95, 195, 205, 305]])


@pytest.mark.parametrize("preset", list(PRESETS))
def test_correspondences_are_well_formed(preset: str) -> None:
    meanface = load_meanface(preset)
    corr = fit.correspondence(preset, len(meanface))
    assert corr.weights.shape == (len(corr.groups68), len(meanface))
    np.testing.assert_allclose(corr.weights.sum(axis=1), 1.0, atol=0.002)
    assert all(0 <= i < 68 for g in corr.groups68 for i in g)
    assert len(corr.groups68) >= 19
    # Through the correspondence, the preset's mean face lands on the 300W mean face
    # (up to a per-axis scale and shift) within a few percent of the face size.
    mean68 = load_meanface("300W")
    a = corr.points68(mean68[None])
    b = corr.preset_points(meanface)
    crop = fit.meanface_crops(a, b)[0]
    placed = crop[:2] + b * (crop[2:] - crop[:2])
    iod = np.linalg.norm(mean68[36] - mean68[45])
    assert np.sqrt(np.mean(np.sum((placed - a[0]) ** 2, axis=1))) < 0.06 * iod


def test_read_pts(tmp_path: Path) -> None:
    pts = np.arange(136, dtype=float).reshape(68, 2) / 3
    body = "\n".join(f"{x:.6f} {y:.6f}" for x, y in pts)
    (tmp_path / "a.pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")
    np.testing.assert_allclose(fit.read_pts(tmp_path / "a.pts"), pts, atol=1e-6)


def test_split_is_deterministic_and_seventy_percent() -> None:
    names = [f"image_{i:04d}" for i in range(224)]
    mask = fit.fit_split(names)
    assert mask.sum() == round(0.7 * 224)
    # Depends on the names only, not on their order.
    np.testing.assert_array_equal(fit.fit_split(names[::-1])[::-1], mask)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_ships_a_fitted_policy(preset: str) -> None:
    policy = preset_crop_policy(preset)
    assert policy.keypoints is not None and policy.keypoints.shape == (11, 4)
    assert np.any(np.asarray(policy.box) != 0)
    assert "LFPW" in policy.fitted_on and "held-out" in policy.fitted_on


# ----------------------------------------------------------------- with LFPW


needs_lfpw = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"LFPW test data not found at {DATA} (shared data folder absent)"
)


@pytest.fixture(scope="module")
def held_out() -> object:
    names = sorted(p.stem for p in DATA.glob("*.pts"))
    mask = fit.fit_split(names)
    subset = [names[i] for i in np.flatnonzero(~mask)][:SUBSET]
    faces = fit.load_faces(DATA, names=subset)
    return faces


@needs_lfpw
def test_yunet_finds_the_held_out_faces(held_out: object) -> None:
    assert len(held_out.names) >= 0.95 * SUBSET  # type: ignore[attr-defined]


@needs_lfpw
def test_shipped_300w_policy_matches_training_crops(held_out: object) -> None:
    faces = held_out
    pts = faces.landmarks  # type: ignore[attr-defined]
    lo, hi = pts.min(axis=1), pts.max(axis=1)
    centre, half = (lo + hi) / 2, (hi - lo) * 1.1 / 2
    target = np.concatenate([centre - half, centre + half], axis=1)  # bbox x 1.1

    policy = preset_crop_policy("300W")
    boxes, kps = faces.boxes, faces.keypoints  # type: ignore[attr-defined]
    fitted = _iou(policy.crops(boxes, kps), target).mean()
    box_only = _iou(policy.crops(boxes), target).mean()
    naive = _iou(boxes, target).mean()
    assert fitted >= 0.85, f"keypoint policy mean IoU {fitted:.3f}"
    assert box_only >= 0.85, f"box-only policy mean IoU {box_only:.3f}"
    assert fitted > naive + 0.1, f"fitted {fitted:.3f} vs naive {naive:.3f}"
    # No preset means the 300W convention.
    assert preset_crop_policy(None).to_dict() == policy.to_dict()


@needs_lfpw
@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "300W"])
def test_shipped_policies_match_their_targets(held_out: object, preset: str) -> None:
    faces = held_out
    target = fit.target_crops(preset, faces.landmarks)  # type: ignore[attr-defined]
    policy = preset_crop_policy(preset)
    boxes, kps = faces.boxes, faces.keypoints  # type: ignore[attr-defined]
    fitted = _iou(policy.crops(boxes, kps), target).mean()
    assert fitted >= 0.85, f"{preset}: mean IoU {fitted:.3f}"
    assert fitted > _iou(boxes, target).mean() + 0.1
