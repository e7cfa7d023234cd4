"""Hostile and odd inputs (issue 7): a specific error or a documented result,
never a crash deep inside NumPy / OpenCV / onnxruntime, a hang, or wrong numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelfactory import known_answer_model, make_spec
from pipdetect import LandmarkDetector
from pipdetect.detector import MAX_BOX_FACTOR
from pipdetect.errors import (
    InvalidBoxError,
    InvalidImageError,
    ModelFormatError,
    ModelOutputError,
    PipdetectError,
)
from pipdetect.image import MAX_SIDE
from pipdetect.model import MAX_MODEL_BYTES, load_model

pytestmark = pytest.mark.timeout(120)

DOCUMENTED = (PipdetectError, FileNotFoundError)
BOX = (180.0, 70.0, 300.0, 240.0)


@pytest.fixture(scope="module")
def det(known_model: Path) -> LandmarkDetector:
    return LandmarkDetector(known_model)


def _check_faces(faces, image_shape) -> None:
    for face in faces:
        assert face.landmarks.shape == (98, 2)
        assert np.all(np.isfinite(face.landmarks)) and np.all(np.isfinite(face.scores))
        x1, y1, x2, y2, _ = face.crop
        assert x2 > x1 and y2 > y1


dtypes = st.sampled_from(
    [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32,
     np.float64, np.bool_, np.complex64]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    image=hnp.arrays(
        dtype=dtypes,
        shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=40),
        elements={"allow_nan": True, "allow_infinity": True},
    ),
    flip=st.booleans(),
)
def test_random_arrays_give_faces_or_a_documented_error(det, image, flip):
    if flip and image.ndim >= 2:
        image = image[::-1, ::-2]
    try:
        faces = det.detect(image)
    except DOCUMENTED:
        return
    _check_faces(faces, image.shape)
    ok_dtype = image.dtype in (np.uint8, np.uint16) or image.dtype.kind == "f"
    assert ok_dtype and image.ndim in (2, 3)


coords = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=150, deadline=None)
@given(box=st.tuples(coords, coords, coords, coords))
def test_random_boxes_give_the_analytic_answer_or_invalid_box(det, astronaut, wflw_meanface, box):
    try:
        face = det.detect(astronaut, boxes=[box])[0]
    except InvalidBoxError:
        x1, y1, x2, y2 = box
        refused_for_a_reason = (
            not all(np.isfinite(box))
            or x2 <= x1
            or y2 <= y1
            or x2 <= -0.5
            or y2 <= -0.5
            or x1 >= 511.5
            or y1 >= 511.5
            or x2 - x1 > MAX_BOX_FACTOR * 512
            or y2 - y1 > MAX_BOX_FACTOR * 512
        )
        assert refused_for_a_reason, box
        return
    from pipdetect.crop import crops_to_image

    expected = crops_to_image(wflw_meanface[None], np.asarray(face.crop)[None])[0]
    np.testing.assert_allclose(face.landmarks, expected, rtol=1e-5, atol=0.01)


@pytest.mark.parametrize(
    "box",
    [(0, 0, 0, 0), (10, 10, 10, 50), (50, 10, 10, 50), (-5, -5, -1, -1e-9),
     (1e300, 1e300, 1e301, 1e301), (float("nan"),) * 4, (1, 2, 3, 4, 5), ()],
)
def test_degenerate_boxes(det, astronaut, box):
    with pytest.raises(InvalidBoxError):
        det.detect(astronaut, boxes=[box])


def test_tiny_boxes_and_images_work(det, wflw_meanface):
    img = np.zeros((1, 1, 3), np.uint8)
    assert det.detect(img) == []
    face = det.detect(img, boxes=[(0.0, 0.0, 0.5, 0.5)])[0]
    from pipdetect.crop import crops_to_image

    # the known-answer landmarks: the mean face in the crop the box started from
    np.testing.assert_allclose(face.landmarks, crops_to_image(
        wflw_meanface[None], np.asarray(face.crop)[None])[0], atol=1e-4)
    assert face.crop[2] - face.crop[0] > 0.5  # started wider than the tiny box


def test_very_large_image_is_processed(det):
    big = np.zeros((10000, 10000, 3), np.uint8)
    big[4000:6000, 4000:6000] = 90
    assert det.detect(big) == []
    face = det.detect(big, boxes=[(4000.0, 4000.0, 6000.0, 6000.0)])[0]
    assert np.all(np.isfinite(face.landmarks))


def test_image_above_the_documented_limit_is_refused(det):
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (MAX_SIDE + 1, 8, 3))
    with pytest.raises(InvalidImageError, match="larger than pipdetect accepts"):
        det.detect(huge)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_model_outputs_raise(tmp_path, astronaut, wflw_meanface, bad):
    shape = wflw_meanface.copy()
    shape[7, 0] = bad
    spec = make_spec(wflw_meanface)
    det = LandmarkDetector(known_answer_model(tmp_path / "nan.onnx", shape, spec))
    with pytest.raises(ModelOutputError, match=r"NaN|infinit|non-finite"):
        det.detect(astronaut, boxes=[BOX])


def test_non_finite_scores_raise(tmp_path, astronaut, wflw_meanface):
    det = LandmarkDetector(known_answer_model(tmp_path / "nan.onnx", wflw_meanface,
                                              score=float("nan")))
    with pytest.raises(ModelOutputError):
        det(astronaut, box=BOX)


def test_random_bytes_model(tmp_path):
    path = tmp_path / "random.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFormatError):
        load_model(path)


def test_empty_model_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelFormatError):
        load_model(path)


def test_huge_model_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as f:  # sparse: takes no disk space
        f.truncate(MAX_MODEL_BYTES + 1)
    with pytest.raises(ModelFormatError, match="larger than"):
        load_model(path)


def test_directory_as_model(tmp_path):
    folder = tmp_path / "dir.onnx"
    folder.mkdir()
    with pytest.raises(FileNotFoundError):
        LandmarkDetector(folder)
