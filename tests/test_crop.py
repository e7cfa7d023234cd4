from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipdetect.crop import (
    CropPolicy,
    as_boxes,
    crop_from_landmarks,
    crops_to_image,
    preset_crop_policy,
    warp_crops,
)
from pipdetect.errors import InvalidBoxError, ModelFormatError
from pipdetect.presets import PRESETS


def test_identity_policy_returns_the_box():
    boxes = np.array([[10.0, 20.0, 110.0, 170.0]])
    crops = CropPolicy().crops(boxes)
    np.testing.assert_allclose(crops[:, :4], boxes)
    assert crops[0, 4] == 0.0  # no keypoints: axis-aligned


def test_box_policy_shifts_and_scales():
    policy = CropPolicy(box=(0.1, -0.2, np.log(1.5), np.log(2.0)))
    crop = policy.crops(np.array([[0.0, 0.0, 100.0, 50.0]]))[0]
    cx, cy, w, h = (
        (crop[0] + crop[2]) / 2,
        (crop[1] + crop[3]) / 2,
        crop[2] - crop[0],
        crop[3] - crop[1],
    )
    np.testing.assert_allclose([cx, cy, w, h], [60.0, 15.0, 150.0, 100.0])


def test_keypoint_policy_uses_normalised_keypoints():
    coef = np.zeros((11, 4))
    coef[1, 0] = 1.0  # crop centre x moves with the first keypoint's normalised x
    policy = CropPolicy(keypoints=coef)
    box = np.array([[0.0, 0.0, 100.0, 100.0]])
    kps = np.zeros((1, 5, 2))
    kps[0, 0] = [80.0, 50.0]  # (80 - 50) / 100 = 0.3 box widths right of centre
    kps[0, 1] = [90.0, 50.0]  # the eye line (keypoint 0 -> 1) is level: angle 0
    crop = policy.crops(box, kps)[0]
    np.testing.assert_allclose(crop, [30.0, 0.0, 130.0, 100.0, 0.0], atol=1e-12)
    # Without keypoints the box-only parameters apply.
    np.testing.assert_allclose(policy.crops(box)[0], [*box[0], 0.0])


def test_policy_round_trip_and_validation():
    policy = CropPolicy(box=(0.0, 0.1, 0.2, 0.3), keypoints=np.ones((11, 4)), fitted_on="x")
    again = CropPolicy.from_dict(policy.to_dict())
    assert again == policy and again != CropPolicy() and len({again, policy}) == 1
    assert again.box == policy.box and again.fitted_on == "x"
    np.testing.assert_array_equal(again.keypoints, policy.keypoints)
    for bad in [
        None,
        {"type": "other"},
        {"type": "box-linear"},
        {"type": "box-linear", "box": [0, 0, 0]},
        {"type": "box-linear", "box": [0, 0, 0, float("nan")]},
        {"type": "box-linear", "box": [0, 0, 0, 0], "keypoints": [[1, 2]]},
    ]:
        with pytest.raises(ModelFormatError):
            CropPolicy.from_dict(bad)


def test_every_preset_has_a_policy():
    for name in PRESETS:
        assert isinstance(preset_crop_policy(name), CropPolicy)
    assert isinstance(preset_crop_policy(None), CropPolicy)


@pytest.mark.parametrize(
    "box, match",
    [
        ((1, 2, 3), "shape"),
        ("abcd", "numbers"),
        ((0, 0, 0, 10), r"^the box \[0\.0, 0\.0, 0\.0, 10\.0\] is empty or inside out: "
                        r"a box is \(x1, y1, x2, y2\) in pixels with x2 > x1 and y2 > y1$"),
        ((10, 0, 5, 10), "the box .* is empty or inside out"),
        ((0, 0, float("inf"), 10), r"^the box \[0\.0, 0\.0, inf, 10\.0\] holds NaN or infinity"),
        ([[0, 0, 1, 1], [0, 0]], "numbers"),
    ],
)
def test_bad_boxes(box, match):
    with pytest.raises(InvalidBoxError, match=match):
        as_boxes(box)


def test_as_boxes_shapes():
    assert as_boxes((0, 0, 1, 1)).shape == (1, 4)
    assert as_boxes(np.ones((3, 4)) * [0, 0, 2, 2]).shape == (3, 4)


def test_warp_matches_cv2_resize_of_an_integer_crop(astronaut):
    x1, y1, x2, y2 = 100, 60, 340, 380
    expected = cv2.resize(astronaut[y1:y2, x1:x2], (256, 256), interpolation=cv2.INTER_LINEAR)
    got = warp_crops(astronaut, np.array([[x1, y1, x2, y2]]), (256, 256))[0]
    # warpAffine quantises sub-pixel positions to 1/32 px: allow a small difference.
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 6


def test_warp_pads_outside_with_black(astronaut):
    # Crop hanging off the top-left: its left/top half must be black, the rest the image.
    crop = np.array([[-256.0, -256.0, 256.0, 256.0]])
    out = warp_crops(astronaut, crop, (64, 64))[0]
    assert out[:31, :31].max() == 0
    assert out[34:, 34:].mean() > 20


@settings(max_examples=50, deadline=None)
@given(
    x1=st.floats(-100, 400),
    y1=st.floats(-100, 400),
    w=st.floats(1, 500),
    h=st.floats(1, 500),
    u=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=5),
)
def test_crops_to_image_is_affine(x1, y1, w, h, u):
    pts = np.array(u)[None]
    out = crops_to_image(pts, np.array([[x1, y1, x1 + w, y1 + h]]))[0]
    np.testing.assert_allclose(out[:, 0], x1 + pts[0, :, 0] * w, atol=1e-9)
    np.testing.assert_allclose(out[:, 1], y1 + pts[0, :, 1] * h, atol=1e-9)


def test_warp_and_inverse_agree_on_a_drawn_dot():
    # A dot at a known image position shows up where crops_to_image says it should.
    img = np.zeros((300, 400, 3), np.uint8)
    cv2.circle(img, (250, 120), 3, (255, 255, 255), -1)
    crop = np.array([[180.0, 60.0, 330.0, 260.0]])
    out = warp_crops(img, crop, (256, 256))[0, :, :, 0].astype(float)
    ys, xs = np.nonzero(out > 128)
    # The centre of output pixel d is crop pixel (d + 0.5) * s - 0.5, i.e. normalised
    # coordinate u = ((d + 0.5) * s - 0.5) / crop_width; crops_to_image maps u back.
    s = np.array([150 / 256, 200 / 256])
    u = ((np.array([xs.mean(), ys.mean()]) + 0.5) * s - 0.5) / np.array([150.0, 200.0])
    back = crops_to_image(u[None, None], crop)[0, 0]
    np.testing.assert_allclose(back, [250, 120], atol=0.6)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    sx=st.floats(20, 400),
    sy=st.floats(20, 400),
    tx=st.floats(-200, 600),
    ty=st.floats(-200, 600),
)
def test_crop_from_landmarks_inverts_the_mapping(wflw_meanface, seed, sx, sy, tx, ty):
    crop = np.array([[tx, ty, tx + sx, ty + sy]])
    points = crops_to_image(wflw_meanface[None], crop)
    np.testing.assert_allclose(
        crop_from_landmarks(points, wflw_meanface), crop, rtol=1e-9, atol=1e-6
    )


def test_crop_from_landmarks_survives_collapsed_points(wflw_meanface):
    points = np.full((1, len(wflw_meanface), 2), 50.0)
    crop = crop_from_landmarks(points, wflw_meanface)
    assert np.all(np.isfinite(crop)) and crop[0, 2] > crop[0, 0] and crop[0, 3] > crop[0, 1]


# ------------------------------------------------------------------ oriented crops
@settings(max_examples=40, deadline=None)
@given(angle=st.floats(-180, 180), u=st.floats(0.2, 0.8), v=st.floats(0.2, 0.8))
def test_a_dot_shows_up_where_crops_to_image_says_at_any_angle(angle, u, v):
    """The warp and the way back agree for turned crops: a dot drawn at the image position
    of crop coordinate (u, v) is seen at (u, v) of the warped crop."""
    import cv2

    crop = np.array([[100.0, 80.0, 260.0, 280.0, angle]])
    x, y = crops_to_image(np.array([[[u, v]]]), crop)[0, 0]
    img = np.zeros((400, 400, 3), np.uint8)
    cv2.circle(img, (round(x * 16), round(y * 16)), 5 * 16, (255, 255, 255), -1,
               cv2.LINE_AA, 4)
    out = warp_crops(img, crop, (256, 256))[0, :, :, 0].astype(float)
    yy, xx = np.mgrid[:256, :256]
    cu = ((xx * out).sum() / out.sum() + 0.5) / 256  # input pixel j is crop (j + 0.5) / w
    cv = ((yy * out).sum() / out.sum() + 0.5) / 256
    assert abs(cu - u) < 0.01 and abs(cv - v) < 0.01


def test_quarter_turned_image_and_crop_give_the_same_pixels(astronaut):
    from pipdetect.crop import as_crops

    crop = np.array([[150.0, 90.0, 300.0, 260.0, 0.0]])
    ref = warp_crops(astronaut, crop, (64, 64))[0].astype(int)
    h = astronaut.shape[0]
    for k in (1, 2, 3):
        turned = np.ascontiguousarray(np.rot90(astronaut, -k))  # k quarter turns clockwise
        c = as_crops(crop).copy()
        cx, cy = (c[0, 0] + c[0, 2]) / 2, (c[0, 1] + c[0, 3]) / 2
        for _ in range(k):  # (x, y) -> (h - 1 - y, x) per clockwise quarter turn
            cx, cy = h - 1 - cy, cx
        half = (c[0, 2:4] - c[0, :2]) / 2
        turned_crop = np.array([[cx - half[0], cy - half[1], cx + half[0], cy + half[1],
                                 90.0 * k]])
        got = warp_crops(turned, turned_crop, (64, 64))[0].astype(int)
        assert np.abs(got - ref).max() <= 1, k


def test_keypoint_policy_turns_with_the_face():
    """Box and keypoints turned a quarter about the box centre give the same crop, turned."""
    from pipdetect.crop import keypoint_roll, levelled_faces

    rng = np.random.default_rng(3)
    policy = CropPolicy(box=(0.0, 0.1, 0.2, 0.3), keypoints=rng.normal(0, 0.1, (11, 4)))
    box = np.array([[100.0, 50.0, 200.0, 180.0]])
    kps = np.array([[[130, 95], [170, 96], [150, 120], [135, 150], [166, 151]]], float)
    base = policy.crops(box, kps)[0]
    assert abs(base[4] - keypoint_roll(kps)[0]) < 1e-9 and abs(base[4]) < 2
    centre = np.array([150.0, 115.0])
    turned_kps = np.stack([centre[0] - (kps[..., 1] - centre[1]),
                           centre[1] + (kps[..., 0] - centre[0])], axis=-1)  # +90 degrees
    turned_box = np.array([[85.0, 65.0, 215.0, 165.0]])  # the same box, a quarter turned
    angle, lboxes, lkps = levelled_faces(turned_box, turned_kps)
    angle0, lboxes0, lkps0 = levelled_faces(box, kps)
    assert angle[0] == pytest.approx(angle0[0] + 90.0)
    np.testing.assert_allclose(lboxes, lboxes0, atol=1e-9)  # the box the detector saw
    np.testing.assert_allclose(lkps, lkps0, atol=1e-9)
    turned = policy.crops(turned_box, turned_kps)[0]
    np.testing.assert_allclose(turned[2:4] - turned[:2], base[2:4] - base[:2], atol=1e-9)
    assert turned[4] == pytest.approx(base[4] + 90.0)
    c0, c1 = (base[:2] + base[2:4]) / 2 - centre, (turned[:2] + turned[2:4]) / 2 - centre
    np.testing.assert_allclose(c1, [-c0[1], c0[0]], atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50), st.floats(0, 40),
                          st.floats(0, 40)), min_size=1, max_size=6))
def test_box_iou_is_a_symmetric_overlap(rows):
    """box_iou: symmetric, within [0, 1], 1 for a box of area with itself, 0 for boxes
    without area; a crop's angle column is ignored."""
    from pipdetect.crop import box_iou

    b = np.array([[x, y, x + w, y + h] for x, y, w, h in rows])
    iou = box_iou(b, b)
    assert iou.shape == (len(b), len(b))
    assert np.allclose(iou, iou.T) and np.all((iou >= 0) & (iou <= 1 + 1e-12))
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    assert np.allclose(np.diag(iou)[area > 0], 1.0)
    assert np.all(iou[area == 0] == 0)
    with_angle = np.concatenate([b, np.full((len(b), 1), 30.0)], axis=1)
    assert np.array_equal(box_iou(with_angle, b), iou)
    assert box_iou(np.array([[0.0, 0, 2, 2]]), np.array([[1.0, 0, 3, 2]]))[0, 0] == \
        pytest.approx(1 / 3)
