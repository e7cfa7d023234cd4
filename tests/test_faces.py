"""YuNet face finding: faces, keypoints, downscaling, tiny images, threads, bad input."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipdetect.errors import InvalidImageError, PipdetectError
from pipdetect.faces import _MODEL_FILE, KEYPOINT_NAMES, Detections, FaceFinder

ASTRONAUT = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    image = cv2.imread(str(ASTRONAUT), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {ASTRONAUT}"
    return image


@pytest.fixture(scope="module")
def finder() -> FaceFinder:
    return FaceFinder()


@pytest.fixture(scope="module")
def one_face(astronaut: np.ndarray, finder: FaceFinder) -> Detections:
    return finder.find(astronaut)


def _assert_empty(det: Detections) -> None:
    assert len(det) == 0
    assert det.boxes.shape == (0, 4)
    assert det.scores.shape == (0,)
    assert det.keypoints.shape == (0, 5, 2)


def test_astronaut_has_exactly_one_face(one_face: Detections, astronaut: np.ndarray) -> None:
    assert len(one_face) == 1
    assert one_face.boxes.shape == (1, 4) and one_face.boxes.dtype == np.float64
    assert one_face.keypoints.shape == (1, 5, 2) and one_face.keypoints.dtype == np.float64
    assert one_face.scores.shape == (1,)
    assert 0.6 <= one_face.scores[0] <= 1.0
    x1, y1, x2, y2 = one_face.boxes[0]
    h, w = astronaut.shape[:2]
    # The face is in the upper middle of the 512 x 512 photo, roughly 90 x 110 px.
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h / 2
    assert 0.1 * w < x2 - x1 < 0.35 * w
    assert 0.1 * h < y2 - y1 < 0.35 * h


def test_keypoints_are_plausible(one_face: Detections) -> None:
    assert KEYPOINT_NAMES == (
        "right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")
    kp = one_face.keypoints[0]
    x1, y1, x2, y2 = one_face.boxes[0]
    assert np.all((kp[:, 0] > x1) & (kp[:, 0] < x2) & (kp[:, 1] > y1) & (kp[:, 1] < y2))
    r_eye, l_eye, nose, r_mouth, l_mouth = kp
    # Subject's right = image left in a frontal photo.
    assert r_eye[0] < l_eye[0] and r_mouth[0] < l_mouth[0]
    assert max(r_eye[1], l_eye[1]) < nose[1] < min(r_mouth[1], l_mouth[1])
    assert r_eye[0] < nose[0] < l_eye[0]


def test_tiled_image_gives_four_faces(astronaut: np.ndarray, one_face: Detections) -> None:
    h, w = astronaut.shape[:2]
    tiled = np.concatenate([np.concatenate([astronaut] * 2, axis=1)] * 2, axis=0)
    for finder in (FaceFinder(), FaceFinder(max_side=None)):
        det = finder.find(tiled)
        assert len(det) == 4
        offsets = np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=np.float64)
        expected = one_face.boxes[0] + np.tile(offsets, 2)
        # Each tile's face at the single image's box, shifted by the tile offset.
        dist = np.abs(det.boxes[:, None, :] - expected[None, :, :]).max(axis=2)
        assert sorted(np.argmin(dist, axis=1).tolist()) == [0, 1, 2, 3]
        assert dist.min(axis=1).max() < 5.0


@pytest.mark.parametrize("size", [(1280, 1280), (1920, 960), (960, 1920), (1283, 641)])
def test_downscaling_maps_back_exactly(astronaut: np.ndarray, size: tuple[int, int]) -> None:
    """Detection on a large image = detection on its INTER_AREA downscale, mapped back."""
    width, height = size
    big = cv2.resize(astronaut, (width, height), interpolation=cv2.INTER_LINEAR)
    det = FaceFinder(max_side=640).find(big)
    s = 640 / max(width, height)
    small_w, small_h = round(width * s), round(height * s)
    small = cv2.resize(big, (small_w, small_h), interpolation=cv2.INTER_AREA)
    ref = FaceFinder(max_side=None).find(small)
    assert len(det) == len(ref) == 1
    scale = np.array([small_w / width, small_h / height])
    # Pixel-centre convention: x_big = (x_small + 0.5) / scale - 0.5, per axis.
    np.testing.assert_allclose(
        det.boxes.reshape(-1, 2), (ref.boxes.reshape(-1, 2) + 0.5) / scale - 0.5, atol=1e-6)
    np.testing.assert_allclose(
        det.keypoints, (ref.keypoints + 0.5) / scale - 0.5, atol=1e-6)
    np.testing.assert_allclose(det.scores, ref.scores)


def test_large_image_gives_scaled_boxes(astronaut: np.ndarray, one_face: Detections) -> None:
    big = cv2.resize(astronaut, (3000, 3000), interpolation=cv2.INTER_CUBIC)
    det = FaceFinder().find(big)
    assert len(det) == 1
    s = 3000 / 512
    box_small = (det.boxes[0] + 0.5) / s - 0.5
    # Same face within a few pixels of the 512 px photo: detection runs at 640 px here,
    # at 512 px there, and YuNet's output moves a little with resolution (~5 % of the face).
    tol = 0.06 * (one_face.boxes[0, 2] - one_face.boxes[0, 0])
    np.testing.assert_allclose(box_small, one_face.boxes[0], atol=tol)
    np.testing.assert_allclose((det.keypoints[0] + 0.5) / s - 0.5, one_face.keypoints[0],
                               atol=tol)


@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 5, 3), (9, 9, 3), (5, 1000, 3),
                                   (1000, 3, 3), (0, 0, 3), (0, 10, 3)])
def test_tiny_images_have_no_faces(finder: FaceFinder, shape: tuple[int, int, int]) -> None:
    _assert_empty(finder.find(np.full(shape, 128, dtype=np.uint8)))


def test_very_elongated_large_image(finder: FaceFinder) -> None:
    # 20000 x 12: downscaling makes the short side vanish; no crash, no faces.
    _assert_empty(finder.find(np.zeros((12, 20000, 3), dtype=np.uint8)))


def test_blank_image_has_no_faces(finder: FaceFinder) -> None:
    _assert_empty(finder.find(np.zeros((200, 300, 3), dtype=np.uint8)))


def test_views_and_negative_strides(astronaut: np.ndarray, one_face: Detections,
                                    finder: FaceFinder) -> None:
    w = astronaut.shape[1]
    mirrored = finder.find(astronaut[:, ::-1])
    assert len(mirrored) == 1
    x1, y1, x2, y2 = one_face.boxes[0]
    # Pixel-centre mirror: x -> (w - 1) - x. YuNet is not exactly mirror-symmetric.
    np.testing.assert_allclose(mirrored.boxes[0], [w - 1 - x2, y1, w - 1 - x1, y2], atol=4.0)
    # Mirroring swaps the subject's sides: right eye is still the image-left one.
    kp = mirrored.keypoints[0]
    assert kp[0, 0] < kp[1, 0] and kp[3, 0] < kp[4, 0]

    padded = np.zeros((600, 700, 4), dtype=np.uint8)
    padded[30:542, 50:562, :3] = astronaut
    view = padded[:, :, :3]  # not contiguous
    det = finder.find(view)
    assert len(det) == 1
    np.testing.assert_allclose(det.boxes[0], one_face.boxes[0] + [50, 30, 50, 30], atol=2.0)


def test_score_threshold_is_applied(astronaut: np.ndarray, one_face: Detections) -> None:
    score = float(one_face.scores[0])
    assert len(FaceFinder(score_threshold=min(1.0, score + 0.03)).find(astronaut)) == 0
    low = FaceFinder(score_threshold=0.05).find(astronaut)
    assert len(low) >= 1
    assert np.all(low.scores >= 0.05)


def test_threads_share_one_finder(astronaut: np.ndarray) -> None:
    finder = FaceFinder()
    h, w = astronaut.shape[:2]
    tiled = np.concatenate([astronaut, astronaut], axis=1)
    images = [astronaut, tiled, cv2.resize(astronaut, (w * 2, h * 2)),
              np.ascontiguousarray(astronaut[40:, 30:]), astronaut[::-1].copy()]
    serial = [finder.find(img) for img in images]
    jobs = images * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(finder.find, jobs))
    for img_index, det in enumerate(results):
        ref = serial[img_index % len(images)]
        assert len(det) == len(ref)
        np.testing.assert_array_equal(det.boxes, ref.boxes)
        np.testing.assert_array_equal(det.keypoints, ref.keypoints)
        np.testing.assert_array_equal(det.scores, ref.scores)


def test_face_detector_workers_never_spin(finder: FaceFinder) -> None:
    """The face detector runs right before the landmark network, whose workers spin within
    its runs: the detector's own workers never spin, so the two pools never hold more
    busy threads than there are cores (benchmarks/threads_bench.py)."""
    options = finder._session().get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize("kwargs", [
    {"score_threshold": -0.1}, {"score_threshold": 1.5}, {"score_threshold": "high"},
    {"score_threshold": float("nan")}, {"nms_threshold": 2.0}, {"nms_threshold": None},
    {"top_k": 0}, {"top_k": 2.5}, {"top_k": True}, {"max_side": 10}, {"max_side": 640.0},
])
def test_invalid_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FaceFinder(**kwargs)


@pytest.mark.parametrize("image", [
    np.zeros((64, 64, 3), dtype=np.float32),
    np.zeros((64, 64), dtype=np.uint8),
    np.zeros((64, 64, 4), dtype=np.uint8),
    np.zeros((2, 64, 64, 3), dtype=np.uint8),
    [[0, 0, 0]],
    None,
])
def test_invalid_images_are_refused(finder: FaceFinder, image: object) -> None:
    with pytest.raises(InvalidImageError) as info:
        finder.find(image)  # type: ignore[arg-type]
    assert isinstance(info.value, PipdetectError)
    assert "(H, W, 3)" in str(info.value)


# --- Equivalence with cv2.FaceDetectorYN -------------------------------------------
# FaceFinder runs YuNet through onnxruntime and decodes it in numpy; the crop policies
# were fitted on OpenCV's FaceDetectorYN, so both must give the same faces.

MODEL = Path(__file__).resolve().parents[1] / "src" / "pipdetect" / "assets" / _MODEL_FILE


def _opencv_faces(image: np.ndarray, score_threshold: float = 0.6,
                  nms_threshold: float = 0.3, top_k: int = 5000) -> np.ndarray:
    """OpenCV's FaceDetectorYN on ``image`` at full resolution: (N, 15) rows."""
    h, w = image.shape[:2]
    det = cv2.FaceDetectorYN.create(str(MODEL), "", (w, h), score_threshold,
                                    nms_threshold, top_k)
    _, raw = det.detect(np.ascontiguousarray(image))
    return np.zeros((0, 15)) if raw is None else np.asarray(raw, np.float64).reshape(-1, 15)


def _assert_same_as_opencv(image: np.ndarray, **kwargs: float) -> int:
    raw = _opencv_faces(image, **kwargs)
    det = FaceFinder(max_side=None, **kwargs).find(image)
    assert len(det) == len(raw)
    if len(raw):
        # FaceFinder's pixel-centre convention: OpenCV's edge coordinates minus 0.5.
        boxes = np.concatenate([raw[:, 0:2], raw[:, 0:2] + raw[:, 2:4]], axis=1) - 0.5
        np.testing.assert_allclose(det.boxes, boxes, atol=0.01)
        np.testing.assert_allclose(det.keypoints, raw[:, 4:14].reshape(-1, 5, 2) - 0.5,
                                   atol=0.01)
        np.testing.assert_allclose(det.scores, raw[:, 14], atol=1e-4)
    return len(raw)


@pytest.mark.parametrize("variant", ["plain", "hflip", "vflip", "tiled", "odd_size",
                                     "crop", "upscaled"])
def test_same_faces_as_opencv(astronaut: np.ndarray, variant: str) -> None:
    image = {
        "plain": astronaut,
        "hflip": astronaut[:, ::-1],
        "vflip": astronaut[::-1],
        "tiled": np.concatenate([np.concatenate([astronaut] * 2, axis=1)] * 2, axis=0),
        "odd_size": cv2.resize(astronaut, (333, 517)),  # not multiples of 32: padding
        "crop": astronaut[37:, 11:],
        "upscaled": cv2.resize(astronaut, (1100, 1100), interpolation=cv2.INTER_CUBIC),
    }[variant]
    n = _assert_same_as_opencv(image)
    assert n >= (0 if variant == "vflip" else 1)


def test_same_faces_as_opencv_with_many_candidates(astronaut: np.ndarray) -> None:
    # A low threshold and a loose NMS leave several overlapping candidates: exercises
    # NMS order and top_k.
    tiled = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
    assert _assert_same_as_opencv(tiled, score_threshold=0.05, nms_threshold=0.6) >= 2
    assert _assert_same_as_opencv(tiled, score_threshold=0.05, nms_threshold=0.6,
                                  top_k=1) == 1


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(40, 700), height=st.integers(40, 700), seed=st.integers(0, 2**31))
def test_same_faces_as_opencv_on_random_scenes(astronaut: np.ndarray, width: int, height: int,
                                               seed: int) -> None:
    rng = np.random.default_rng(seed)
    scene = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    side = int(rng.integers(30, 1 + max(30, min(width, height))))
    face = cv2.resize(astronaut, (side, side), interpolation=cv2.INTER_AREA)
    y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    if side <= min(width, height):
        scene[y:y + side, x:x + side] = face
    _assert_same_as_opencv(scene, score_threshold=0.3)
