"""End to end: image -> faces -> crops -> model -> landmarks -> image pixels."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfactory import known_answer_model, make_spec, random_model, reference_neighbours
from pipdetect import Face, LandmarkDetector, NoFaceError
from pipdetect.crop import CropPolicy, preset_crop_policy
from pipdetect.errors import (
    InvalidArgumentError,
    InvalidBoxError,
    InvalidImageError,
    ModelFormatError,
    PipdetectError,
    UnknownNameError,
)

BOX = (180.0, 70.0, 300.0, 240.0)  # roughly the astronaut's face
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def det(known_model: Path) -> LandmarkDetector:
    return LandmarkDetector(known_model)


def started(box) -> tuple[float, float, float, float]:
    """The first crop of a box passed to the known-answer models (identity crop policy):
    the box enlarged by GIVEN_START about its centre. Their landmarks are the mean face in
    whatever crop they see, so the crops built from them settle on this one."""
    from pipdetect.detector import GIVEN_START

    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * GIVEN_START / 2, (
        y2 - y1) * GIVEN_START / 2
    return cx - hw, cy - hh, cx + hw, cy + hh


def analytic(shape: np.ndarray, crop) -> np.ndarray:
    """The known-answer model's landmarks: the mean face stretched over the (turned) crop."""
    from pipdetect.crop import crops_to_image

    return crops_to_image(shape[None], np.asarray(crop, dtype=np.float64)[None])[0]


# ------------------------------------------------------------------ known answer
def test_known_answer_with_explicit_box(det, astronaut, wflw_meanface):
    points = det(astronaut, box=BOX)
    assert points.dtype == np.float32 and points.shape == (98, 2)
    np.testing.assert_allclose(points, analytic(wflw_meanface, started(BOX)), atol=0.01)


def test_known_answer_with_a_fitted_policy(tmp_path, astronaut, wflw_meanface):
    policy = CropPolicy(box=(0.05, -0.1, np.log(1.2), np.log(1.3)))
    spec = make_spec(wflw_meanface, crop_policy=policy.to_dict())
    det = LandmarkDetector(known_answer_model(tmp_path / "k.onnx", wflw_meanface, spec))
    face = det.detect(astronaut, boxes=[BOX])[0]
    w, h = BOX[2] - BOX[0], BOX[3] - BOX[1]
    cx, cy = (BOX[0] + BOX[2]) / 2 + 0.05 * w, (BOX[1] + BOX[3]) / 2 - 0.1 * h
    crop = started((cx - 0.6 * w, cy - 0.65 * h, cx + 0.6 * w, cy + 0.65 * h))
    # A box passed is re-cropped from the landmarks (the known-answer model's landmarks
    # are the mean face in its crop, so the crop they give is the same crop).
    np.testing.assert_allclose(face.crop, (*crop, 0.0), atol=1e-5)
    np.testing.assert_allclose(face.landmarks, analytic(wflw_meanface, crop), atol=0.01)
    assert face.box == BOX and face.score == 1.0


@settings(max_examples=15, deadline=None)
@given(dx=st.integers(0, 300), dy=st.integers(0, 300), scale=st.floats(0.3, 3.0))
def test_known_answer_follows_translation_scaling_and_padding(
    det, astronaut, wflw_meanface, dx, dy, scale
):
    image = cv2.resize(astronaut, None, fx=scale, fy=scale)
    image = cv2.copyMakeBorder(image, dy, 0, dx, 0, cv2.BORDER_CONSTANT)
    box = tuple(np.array(BOX) * scale + [dx, dy, dx, dy])
    points = det(image, box=box)
    np.testing.assert_allclose(points, analytic(wflw_meanface, started(box)), atol=0.01)


def test_face_cut_by_the_border_is_padded_not_squeezed(det, astronaut, wflw_meanface):
    box = (-60.0, -40.0, 90.0, 150.0)  # hangs off the top-left corner
    face = det.detect(astronaut, boxes=[box])[0]
    np.testing.assert_allclose(face.crop, (*started(box), 0.0), atol=1e-5)
    np.testing.assert_allclose(face.landmarks, analytic(wflw_meanface, started(box)), atol=0.01)


def test_several_boxes_keep_their_order(det, astronaut, wflw_meanface):
    boxes = [(0.0, 0.0, 50.0, 60.0), BOX, (300.0, 300.0, 400.0, 420.0)]
    faces = det.detect(astronaut, boxes=boxes)
    assert [f.box for f in faces] == boxes
    for f, b in zip(faces, boxes, strict=True):
        np.testing.assert_allclose(f.landmarks, analytic(wflw_meanface, started(b)), atol=0.01)


def test_predict_crops_reference_frame(det, astronaut, wflw_meanface):
    crops = [astronaut[50:250, 170:310], astronaut[:100, :300], astronaut]
    out = det.predict_crops(crops)
    assert out.shape == (3, 98, 2) and out.dtype == np.float32
    for o, c in zip(out, crops, strict=True):
        np.testing.assert_allclose(o, wflw_meanface * [c.shape[1], c.shape[0]], atol=1e-3)
    one = det.predict_crops(crops[0])
    np.testing.assert_allclose(one[0], out[0])
    assert det.predict_crops([]).shape == (0, 98, 2)


# ------------------------------------------------------------- YuNet + model
def test_astronaut_one_face_landmarks_inside_the_face_box(tmp_path, astronaut, wflw_meanface):
    spec = make_spec(wflw_meanface, crop_policy=preset_crop_policy("WFLW").to_dict())
    det = LandmarkDetector(known_answer_model(tmp_path / "k.onnx", wflw_meanface, spec))
    faces = det.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    x1, y1, x2, y2 = face.box
    w, h = x2 - x1, y2 - y1
    assert 0.5 < face.score <= 1.0 and 80 < w < 250 and 80 < h < 300
    lm = face.landmarks
    # Inside the face box, up to a tenth of its size (the jaw may touch its edge).
    assert np.all(lm[:, 0] > x1 - 0.1 * w) and np.all(lm[:, 0] < x2 + 0.1 * w)
    assert np.all(lm[:, 1] > y1 - 0.1 * h) and np.all(lm[:, 1] < y2 + 0.1 * h)
    np.testing.assert_allclose(lm, analytic(wflw_meanface, face.crop), atol=0.01)
    np.testing.assert_array_equal(det(astronaut), lm)


def test_detection_follows_translation_and_scale(det, astronaut):
    base = det.detect(astronaut)[0]
    shifted = det.detect(cv2.copyMakeBorder(astronaut, 64, 0, 96, 0, cv2.BORDER_CONSTANT))[0]
    np.testing.assert_allclose(shifted.landmarks, base.landmarks + [96, 64], atol=2.0)
    big = det.detect(cv2.resize(astronaut, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))[0]
    np.testing.assert_allclose(big.landmarks, base.landmarks * 2, atol=5.0)


def test_multi_face_sorted_largest_first(det, known_model, astronaut):
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((512, 512 + 256 + 256, 3), np.uint8)
    canvas[:256, :256] = small
    canvas[:, 256:768] = astronaut
    canvas[256:, 768:] = small
    faces = det.detect(canvas)
    assert len(faces) == 3
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert areas == sorted(areas, reverse=True)
    assert 256 < faces[0].box[0] < 768  # the big face comes first
    capped = LandmarkDetector(known_model, max_faces=2).detect(canvas)
    assert [f.box for f in capped] == [f.box for f in faces[:2]]


def test_no_face_raises_in_call_and_returns_empty_in_detect(det):
    blank = np.full((200, 300, 3), 127, np.uint8)
    assert det.detect(blank) == []
    with pytest.raises(NoFaceError, match="no face") as info:
        det(blank)
    assert isinstance(info.value, LookupError)
    tiny = np.zeros((1, 1, 3), np.uint8)
    assert det.detect(tiny) == []


# ----------------------------------------------------- parity with the reference
def reference_pipeline(model_path: Path, crop: np.ndarray, meanface, num_nb: int) -> np.ndarray:
    """The reference demo's steps, written plainly: resize, RGB, normalise, run, decode."""
    import onnxruntime as ort

    img = cv2.resize(crop, (256, 256), interpolation=cv2.INTER_LINEAR)[:, :, ::-1] / 255.0
    x = ((img - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)[None]
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    cls, ox, oy, nbx, nby = (m[0] for m in sess.run(None, {"image": x.astype(np.float32)}))
    L, H, W = cls.shape
    nb = reference_neighbours(meanface, num_nb)
    own, votes = [], [[] for _ in range(L)]
    for i in range(L):
        c = int(np.argmax(cls[i].reshape(-1)))
        r, col = divmod(c, W)
        own.append(((col + ox[i].reshape(-1)[c]) / W, (r + oy[i].reshape(-1)[c]) / H))
        for k in range(num_nb):
            j = nb[i, k]
            votes[j].append(
                (
                    (col + nbx[i * num_nb + k].reshape(-1)[c]) / W,
                    (r + nby[i * num_nb + k].reshape(-1)[c]) / H,
                )
            )
    max_len = max(len(v) for v in votes)
    out = []
    for j in range(L):
        v = votes[j]
        padded = [v[t % len(v)] for t in range(max_len)] if v else []
        out.append(np.mean([own[j], *padded], axis=0))
    return np.array(out) * [crop.shape[1], crop.shape[0]]


def test_predict_crops_matches_the_reference_pipeline(tmp_path, astronaut, wflw_meanface):
    mf = wflw_meanface[::5]  # 20 landmarks
    path = random_model(tmp_path / "r.onnx", make_spec(mf, num_nb=6), seed=3, scale=3.0)
    det = LandmarkDetector(path)
    crops = [astronaut[40:260, 150:330], astronaut[200:512, 0:300]]
    got = det.predict_crops(crops)
    for g, c in zip(got, crops, strict=True):
        np.testing.assert_allclose(g, reference_pipeline(path, c, mf, 6), atol=1e-3)
    # RGB input gives the same answer as BGR input of the same pixels.
    rgb = det.predict_crops([c[:, :, ::-1] for c in crops], color="rgb")
    np.testing.assert_array_equal(rgb, got)


def test_batching_does_not_change_results(tmp_path, astronaut, wflw_meanface):
    path = random_model(tmp_path / "r.onnx", make_spec(wflw_meanface[::4], num_nb=5), seed=1)
    boxes = [(x, y, x + 120.0, y + 150.0) for x in (0, 100, 200, 300) for y in (0, 150, 300)]
    one_by_one = [LandmarkDetector(path).detect(astronaut, boxes=[b])[0] for b in boxes]
    batched = LandmarkDetector(path, batch_size=4).detect(astronaut, boxes=boxes)
    for a, b in zip(one_by_one, batched, strict=True):
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-4)


# --------------------------------------------------------------- odd and bad input
@pytest.mark.parametrize(
    "image, error",
    [
        (None, InvalidImageError),
        (np.zeros((0, 0, 3), np.uint8), InvalidImageError),
        (np.zeros((10, 10, 2), np.uint8), InvalidImageError),
        (np.zeros((2, 10, 10, 3), np.uint8), InvalidImageError),
        (np.zeros((10, 10, 3), bool), InvalidImageError),
        ("does/not/exist.jpg", FileNotFoundError),
    ],
)
def test_bad_images(det, image, error):
    with pytest.raises(error):
        det.detect(image)
    with pytest.raises(error):
        det(image, box=BOX)


def test_views_and_negative_strides_simply_work(det, astronaut, wflw_meanface):
    flipped = astronaut[:, ::-1]
    w = astronaut.shape[1]
    box = (w - BOX[2], BOX[1], w - BOX[0], BOX[3])
    np.testing.assert_allclose(det(flipped, box=box), analytic(wflw_meanface, started(box)),
                               atol=0.01)
    view = np.asfortranarray(astronaut)[::2, ::2]
    assert det(view, box=(10, 10, 100, 100)).shape == (98, 2)


def test_other_dtypes_are_converted_as_documented(det, astronaut):
    u16 = astronaut.astype(np.uint16) * 257
    f32 = astronaut.astype(np.float32) / 255
    base = det.detect(astronaut)[0].landmarks
    np.testing.assert_allclose(det(u16), base, atol=1e-3)
    np.testing.assert_allclose(det(f32), base, atol=1e-3)


@pytest.mark.parametrize(
    "box",
    [
        (0, 0, 0, 10),
        (50, 50, 10, 10),
        (1, 2, 3),
        (0, 0, float("nan"), 10),
        (1000, 1000, 1100, 1100),
        (-300, -300, -200, -200),
    ],
)
def test_bad_boxes(det, astronaut, box):
    with pytest.raises(InvalidBoxError):
        det(astronaut, box=box)


def test_missing_and_invalid_model_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        LandmarkDetector(tmp_path / "missing.onnx")
    txt = tmp_path / "model.onnx"
    txt.write_text("hello")
    with pytest.raises(ModelFormatError):
        LandmarkDetector(txt)


def test_face_is_frozen_and_serialisable(det, astronaut):
    face = det.detect(astronaut, boxes=[BOX])[0]
    assert isinstance(face, Face)
    with pytest.raises(dataclasses.FrozenInstanceError):
        face.score = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        face.landmarks[0, 0] = 1.0
    d = face.to_dict()
    assert set(d) == {"box", "crop", "score", "confidence", "pose", "landmarks", "scores"}
    assert len(d["crop"]) == 5 and 0.0 <= d["confidence"] <= 1.0
    assert len(d["landmarks"]) == 98 and len(d["scores"]) == 98


def test_constructor_arguments(known_model):
    with pytest.raises(ValueError, match="max_faces"):
        LandmarkDetector(known_model, max_faces=0)
    with pytest.raises(ValueError, match="batch_size"):
        LandmarkDetector(known_model, batch_size=0)
    det = LandmarkDetector(known_model, threads=1, detection_size=np.int64(320), max_faces=2)
    assert det.num_landmarks == 98 and "known" in repr(det)
    assert LandmarkDetector(known_model, detection_size=None, score_threshold=1).max_faces is None


@pytest.mark.parametrize("option, value", [
    ("detection_size", 10), ("detection_size", 640.0), ("detection_size", True),
    ("score_threshold", 2), ("score_threshold", -0.1), ("score_threshold", "0.5"),
    ("nms_threshold", 1.5), ("max_faces", 0), ("max_faces", 1.5), ("batch_size", 0),
    ("batch_size", None), ("threads", 0), ("threads", 2.0), ("providers", "CPUExecutionProvider"),
    ("model", 3),
])
def test_every_constructor_argument_is_checked_when_the_detector_is_built(
    tmp_path, option, value
):
    """Refused at construction, before the model is even looked for (the path does not
    exist), under the argument's public name, as a PipdetectError and a ValueError."""
    kwargs = {"model": tmp_path / "missing.onnx", option: value}
    with pytest.raises(InvalidArgumentError, match=rf"LandmarkDetector\({option}=") as info:
        LandmarkDetector(**kwargs)
    assert isinstance(info.value, PipdetectError) and isinstance(info.value, ValueError)
    assert "max_side" not in str(info.value)


def test_call_arguments_raise_pipdetect_errors_that_say_what_to_do(det, astronaut):
    with pytest.raises(InvalidArgumentError, match=r"'bgr' .* or 'rgb'"):
        det(astronaut, box=BOX, color="bgra")
    with pytest.raises(InvalidArgumentError, match=r"one entry \(boxes or None\)") as info:
        det.detect_batch([astronaut], boxes=[None, None])
    assert isinstance(info.value, ValueError)


def test_face_repr_is_one_short_line(det, astronaut):
    face = det.detect(astronaut, boxes=[BOX])[0]
    text = repr(face)
    assert text == str(face) and "\n" not in text and len(text) < 120, text
    assert f"confidence={face.confidence:.2f}" in text
    assert text.startswith("Face(98 points custom, box=(180.0, 70.0, 300.0, 240.0), score=1.00")
    assert "array" not in text


# ------------------------------------------------------------------ batches
def _counting(run, calls: list[int]):
    def counted(batch):
        calls.append(len(batch))
        return run(batch)

    return counted


def test_detect_batch_equals_one_by_one(tmp_path, astronaut, wflw_meanface):
    """Faces of several images through one network call give the results of detect()."""
    spec = make_spec(wflw_meanface[::4], num_nb=5, crop_policy=preset_crop_policy("WFLW").to_dict())
    path = random_model(tmp_path / "r.onnx", spec, seed=2, scale=2.0)
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    two = np.zeros((512, 1024, 3), np.uint8)
    two[:, :512] = astronaut
    two[100:356, 600:856] = small
    blank = np.full((100, 120, 3), 90, np.uint8)
    images = [astronaut, two, blank, small[:, ::-1], str(EXAMPLE)]
    single = LandmarkDetector(path)
    expected = [single.detect(img) for img in images]
    assert [len(e) for e in expected] == [1, 2, 0, 1, 1]
    for batch_size in (1, 2, 16):
        det = LandmarkDetector(path, batch_size=batch_size)
        calls: list[int] = []
        det._model = dataclasses.replace(det._model)
        object.__setattr__(det._model, "run", _counting(det._model.run, calls))
        got = det.detect_batch(images)
        assert calls == [min(batch_size, 5 - i) for i in range(0, 5, batch_size)]
        for g, e in zip(got, expected, strict=True):
            assert len(g) == len(e)
            for a, b in zip(g, e, strict=True):
                np.testing.assert_array_equal(a.landmarks, b.landmarks)
                np.testing.assert_array_equal(a.scores, b.scores)
                assert a.box == b.box and a.crop == b.crop and a.score == b.score


def test_detect_batch_with_boxes_and_errors(det, astronaut, wflw_meanface):
    got = det.detect_batch([astronaut, astronaut], boxes=[[BOX], None])
    np.testing.assert_allclose(got[0][0].landmarks, analytic(wflw_meanface, started(BOX)),
                               atol=0.01)
    assert got[0][0].score == 1.0 and len(got[1]) == 1 and got[1][0].score < 1.0
    assert det.detect_batch([]) == []
    with pytest.raises(ValueError, match="one entry"):
        det.detect_batch([astronaut], boxes=[None, None])
    with pytest.raises(InvalidImageError):
        det.detect_batch([astronaut, np.zeros((3, 3, 2), np.uint8)])


# ------------------------------------------------------------------ schemes
@pytest.fixture(scope="module")
def wflw_det(tmp_path_factory, wflw_meanface) -> LandmarkDetector:
    spec = make_spec(wflw_meanface, scheme="wflw98")
    path = known_answer_model(tmp_path_factory.mktemp("w") / "k.onnx", wflw_meanface, spec)
    return LandmarkDetector(path)


def test_points_68_from_a_98_point_model(wflw_det, astronaut, wflw_meanface):
    from pipdetect.schemes import WFLW98_TO_300W68

    full = wflw_det.detect(astronaut, boxes=[BOX])[0]
    sub = wflw_det.detect(astronaut, boxes=[BOX], points=68)[0]
    assert full.scheme == "wflw98" and sub.scheme == "300w68" and wflw_det.scheme == "wflw98"
    assert sub.landmarks.shape == (68, 2) and sub.scores.shape == (68,)
    np.testing.assert_array_equal(sub.landmarks, full.landmarks[list(WFLW98_TO_300W68)])
    np.testing.assert_array_equal(wflw_det(astronaut, box=BOX, points="300w68"), sub.landmarks)
    assert wflw_det.detect(astronaut, boxes=[BOX], points=98)[0].scheme == "wflw98"
    assert not sub.landmarks.flags.writeable
    with pytest.raises(InvalidArgumentError, match="own 98 wflw98 points or a subset"):
        wflw_det.detect(astronaut, points=29)


def test_points_the_model_cannot_give_says_what_to_do(astronaut, tmp_path, wflw_meanface):
    """points=98 from a 68-point model: no circular message, and a way out."""
    from pipdetect.presets import load_meanface

    meanface = load_meanface("300W")
    spec = make_spec(meanface, scheme="300w68")
    det68 = LandmarkDetector(known_answer_model(tmp_path / "k68.onnx", meanface, spec))
    with pytest.raises(InvalidArgumentError) as info:
        det68(astronaut, box=BOX, points=98)
    message = str(info.value)
    assert "cannot return wflw98 points (98) from this model: it gives its own 68 300w68" in message
    assert "Leave points unset" in message and "cannot be converted" not in message
    with pytest.raises(UnknownNameError, match="known schemes"):
        det68(astronaut, box=BOX, points="dlib")


def test_face_parts(wflw_det, det, astronaut):
    face = wflw_det.detect(astronaut, boxes=[BOX])[0]
    np.testing.assert_array_equal(face.part("left_eye"), face.landmarks[68:76])
    np.testing.assert_array_equal(face.part("mouth"), face.landmarks[76:96])
    sub = wflw_det.detect(astronaut, boxes=[BOX], points=68)[0]
    np.testing.assert_array_equal(sub.part("jaw"), face.landmarks[0:33:2])
    with pytest.raises(UnknownNameError, match="no part 'ear'") as info:
        face.part("ear")
    assert isinstance(info.value, KeyError) and str(info.value).startswith("scheme")
    custom = det.detect(astronaut, boxes=[BOX])[0]  # a model that names no scheme
    assert custom.scheme == "custom"
    with pytest.raises(ValueError, match="no named parts"):
        custom.part("left_eye")
    with pytest.raises(ValueError, match="custom"):
        det.detect(astronaut, points=68)
    assert face.confidence == pytest.approx(0.75)
    assert "track_id" not in face.to_dict()
    tracked = dataclasses.replace(face, track_id=3)
    assert tracked.to_dict()["track_id"] == 3


# ------------------------------------------------------------------ stage API
def test_the_stages_by_hand_give_what_detect_gives(wflw_det, astronaut, wflw_meanface):
    """find_faces -> make_crops -> run_network -> build_faces, and find_faces -> locate
    -> build_faces is detect, step by step, and every stage keeps the documented shapes
    and conventions."""
    from pipdetect.crop import crops_to_image
    from pipdetect.stages import CropLandmarks, FaceBoxes, OutputScheme

    det = wflw_det
    two = np.hstack([astronaut, astronaut[:, ::-1]])
    output = det.output_scheme(68)
    assert isinstance(output, OutputScheme) and output.name == "300w68"
    assert len(output.indices) == 68
    assert det.output_scheme(None) == ("wflw98", None) == det.output_scheme(98)
    found = det.find_faces(two)
    assert isinstance(found, FaceBoxes) and found.boxes.shape == (2, 4)
    assert found.scores.shape == (2,) and found.keypoints.shape == (2, 5, 2)
    area = (found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])
    assert area[0] >= area[1]  # largest first
    crops = det.make_crops(found)
    assert crops.shape == (2, 5) and crops.dtype == np.float64
    (result,) = det.run_network([(two, crops)])
    assert isinstance(result, CropLandmarks)
    assert result.points.shape == (2, 98, 2) and result.scores.shape == (2, 98)
    for i in range(2):  # known answer: the mean face, stretched over each (turned) crop
        np.testing.assert_allclose(result.points[i],
                                   crops_to_image(wflw_meanface[None], crops[i][None])[0],
                                   atol=1e-3)
    ((crops, result),) = det.locate([(two, found)])
    faces = det.build_faces(result, found.boxes, found.scores, crops, output, [7, 8])
    assert [f.track_id for f in faces] == [7, 8]
    want = det.detect(two, points=68)
    for got, ref in zip(faces, want, strict=True):
        np.testing.assert_array_equal(got.landmarks, ref.landmarks)
        assert (got.box, got.crop, got.score, got.scheme) == (ref.box, ref.crop, ref.score,
                                                              ref.scheme)
    assert [f.confidence for f in faces] == det.confidence(result.scores).tolist()
    known = det.build_faces(result, found.boxes, found.scores, crops, output,
                            confidence=np.array([0.25, 0.5]))  # a caller that has them
    assert [f.confidence for f in known] == [0.25, 0.5]


@pytest.mark.parametrize("roll", [0.0, 25.0])
def test_crops_from_landmarks_use_the_training_rule_and_ignore_unsure_points(roll):
    """The default model was trained on the 68-point landmark box x 1.1: sure landmarks
    give exactly that box, levelled by the eyes. Landmarks scored below SURE_SCORE, or
    outside the image, are replaced by the mean face fitted to the others: where they lie
    does not move the crop."""
    from pipdetect.crop import crop_from_landmark_box
    from pipdetect.detector import SURE_SCORE
    from pipdetect.stages import CropLandmarks

    det = LandmarkDetector()
    a = np.radians(roll)
    turn = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = (np.asarray(det.spec.meanface) - 0.5) * 180 @ turn.T + [320, 240]
    rng = np.random.default_rng(int(roll))
    pts += rng.normal(0, 2, pts.shape)  # not exactly the mean face
    sure = np.full(68, 0.9)
    size = (480, 640)

    def crop(points, scores):
        return det.crops_from_landmarks(CropLandmarks(points[None], scores[None]), size)[0]

    box = crop(pts, sure)
    np.testing.assert_array_equal(box, crop_from_landmark_box(pts[None], 1.1)[0])
    assert abs(box[4] - roll) < 5
    unsure = sure.copy()
    unsure[:8] = SURE_SCORE / 2  # half of the jaw line
    moved = pts.copy()
    moved[:8] += rng.normal(0, 40, (8, 2))
    refit = crop(pts, unsure)
    np.testing.assert_array_equal(crop(moved, unsure), refit)
    assert not np.array_equal(crop(moved, sure), refit)
    np.testing.assert_allclose(refit[:4], box[:4], atol=6)  # the mean face's jaw is near
    outside = pts.copy()
    outside[:8, 0] = -50.0 - np.arange(8)  # off the picture's left edge: unsure as well
    np.testing.assert_array_equal(crop(outside, sure), refit)


def test_given_faces_and_empty_stages(det, astronaut):
    given = det.given_faces([BOX], astronaut)
    assert given.boxes.tolist() == [list(BOX)] and given.scores.tolist() == [1.0]
    assert given.keypoints is None
    with pytest.raises(InvalidBoxError):
        det.given_faces([[1e5, 1e5, 1e5 + 10, 1e5 + 10]], astronaut)
    none = det.find_faces(np.zeros((64, 64, 3), np.uint8))
    assert none.boxes.shape == (0, 4) and det.make_crops(none).shape == (0, 5)
    (empty,) = det.run_network([(astronaut, np.zeros((0, 4)))])
    assert empty.points.shape == (0, det.num_landmarks, 2)
    assert det.max_faces is None


# ------------------------------------------------------------------ any angle
def _unturn_points(points: np.ndarray, k: int, shape: tuple[int, int]) -> np.ndarray:
    """Points of an image turned k quarter turns clockwise, back in the upright image."""
    h, w = shape
    pts = points.astype(np.float64)
    for step in range(k):  # undo the last turn first: (x', y') -> (y', hh - 1 - x')
        hh = h if (k - 1 - step) % 2 == 0 else w
        pts = np.stack([pts[:, 1], hh - 1 - pts[:, 0]], axis=1)
    return pts


def test_the_default_model_finds_the_face_at_every_quarter_turn(astronaut):
    """The bundled model on the photo turned 90, 180 and 270 degrees: one face, its crop
    turned with it, the same landmarks once mapped back (within 3 % of the eye distance),
    and the head pose's roll turned by the same angle. With the search off, the turned
    photo gives no confident face."""
    det = LandmarkDetector()
    (up,) = det.detect(astronaut)
    iod = float(np.linalg.norm(up.landmarks[36] - up.landmarks[45]))
    for k in (1, 2, 3):
        turned = np.ascontiguousarray(np.rot90(astronaut, -k))
        (face,) = det.detect(turned)
        back = _unturn_points(face.landmarks, k, astronaut.shape[:2])
        err = np.linalg.norm(back - up.landmarks, axis=1).mean() / iod
        assert err < 0.03, (k, err)
        turn = (face.crop.angle - up.crop.angle - 90 * k + 180) % 360 - 180
        assert abs(turn) < 5, (k, face.crop.angle)
        assert abs((face.pose.roll - up.pose.roll - 90 * k + 180) % 360 - 180) < 3
        assert face.confidence >= det.min_confidence
    off = LandmarkDetector(orientation_search="off")
    upside_down = np.ascontiguousarray(astronaut[::-1, ::-1])
    assert all(f.confidence < off.min_confidence for f in
               LandmarkDetector(orientation_search="off", min_confidence=0).detect(upside_down))
    assert off.detect(upside_down) == []


def _count_turns(det: LandmarkDetector) -> list[int]:
    """Make ``det`` record the quarter turn of every face-detector run in the list returned."""
    turns: list[int] = []
    find = det.find_faces

    def counting(image: np.ndarray, *, turn: int = 0) -> Any:
        turns.append(turn)
        return find(image, turn=turn)

    det.find_faces = counting  # type: ignore[method-assign]
    return turns


def test_turned_picture_is_searched_only_without_a_confident_upright_face(astronaut):
    """"auto" searches the picture turned 90/180/270 degrees when no confident face lies
    near upright; a confident upright face says the picture is upright, and a face rolled
    55 degrees beside it (found already) does not make it search."""
    det = LandmarkDetector()
    (up,) = det.detect(astronaut)
    centre = tuple(float(v) for v in up.landmarks.mean(axis=0))
    m = cv2.getRotationMatrix2D(centre, 55, 1.0)
    rolled = cv2.warpAffine(astronaut, m, astronaut.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    both = cv2.resize(np.concatenate([astronaut, rolled], axis=1), (640, 320),
                      interpolation=cv2.INTER_AREA)
    turns = _count_turns(det)
    faces = det.detect(rolled)
    assert turns == [0, 1, 2, 3] and len(faces) == 1 and abs(faces[0].crop.angle + 55) < 10
    turns.clear()
    faces = sorted(det.detect(both), key=lambda f: f.box[0])
    assert turns == [0]
    assert [round(f.crop.angle / 10) for f in faces] == [0, -5]
    assert min(f.confidence for f in faces) >= det.min_confidence


def test_a_picture_whose_confident_faces_are_all_rolled_past_25_degrees_is_searched_turned(
        astronaut):
    """A confident face rolled 35 degrees does not say the picture is upright (a turned
    photo's faces are rolled alike, and the detector misses some of them): the picture is
    searched turned too; a face rolled 0 degrees does say so. (The astronaut's own head
    is rolled about 9 degrees: the picture is turned so that the face lies at those rolls.)"""
    det = LandmarkDetector()
    (up,) = det.detect(astronaut)
    centre = tuple(float(v) for v in up.landmarks.mean(axis=0))
    turns = _count_turns(det)
    for roll, searched in ((0, [0]), (35, [0, 1, 2, 3])):
        m = cv2.getRotationMatrix2D(centre, roll + up.crop.angle, 1.0)
        rolled = cv2.warpAffine(astronaut, m, astronaut.shape[1::-1],
                                borderMode=cv2.BORDER_REPLICATE)
        turns.clear()
        (face,) = det.detect(rolled)
        assert turns == searched and abs(face.crop.angle + roll) < 8, (roll, turns)


@pytest.mark.parametrize("score", [0.65, 0.9])
def test_an_unsure_face_the_detector_is_sure_of_is_tried_turned_beside_an_upright_one(
        astronaut, score):
    """Beside a confident upright face, a detection the network is unsure of gets turned
    crops only if the face detector scored it at least SURE_DETECTION (a face rolled far,
    whose keypoints misled its crop); lower-scored ones (small, blurred, not faces) get
    none. Here the second 'face' is grey: the network stays unsure of it either way."""
    from pipdetect.detector import SURE_DETECTION
    from pipdetect.stages import FaceBoxes

    det = LandmarkDetector()
    real = det.find_faces(astronaut)
    w = astronaut.shape[1]
    picture = np.concatenate([astronaut, np.full_like(astronaut, 127)], axis=1)
    grey = np.array([[w + 150.0, 150.0, w + 350.0, 350.0]])
    eyes_nose_mouth = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])
    keypoints = grey[:, None, :2] + eyes_nose_mouth[None] * 200.0

    def two_faces(image: np.ndarray, *, turn: int = 0) -> FaceBoxes:
        if turn:
            return FaceBoxes(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        return FaceBoxes(np.concatenate([real.boxes, grey]), np.append(real.scores, score),
                         np.concatenate([real.keypoints, keypoints]))

    crops: list[int] = []
    run = det.run_network

    def counting(items: Any) -> Any:
        crops.append(sum(len(c) for _, c in items))
        return run(items)

    det.find_faces = two_faces  # type: ignore[method-assign]
    det.run_network = counting  # type: ignore[method-assign]
    faces = det.detect(picture)
    assert len(faces) == 1 and faces[0].box[0] < w  # the grey one is left out, unsure
    turned = sum(crops) - 2  # beyond one pass for each of the two
    assert turned >= 3 if score >= SURE_DETECTION else turned == 0, (score, crops)


@pytest.fixture(scope="module")
def default_det() -> LandmarkDetector:
    return LandmarkDetector()


@pytest.fixture(scope="module")
def small_astronaut(astronaut) -> np.ndarray:
    """The astronaut at 128 x 128 pixels (eyes 15 px apart): the face detector finds it
    upright, and misses it rolled 45 degrees off every quarter turn."""
    return cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("angle", [45, 135, 225, 315])
def test_a_face_rolled_45_degrees_off_every_quarter_turn_is_found(
        default_det, small_astronaut, angle):
    """A face the face detector misses upright and in all three quarter turns (rolled 45
    degrees off each) is found by the diagonal search: one face, its landmarks those of the
    upright photo turned with it, its crop and roll turned by the angle."""
    from pipdetect.crop import turned_image

    det = default_det
    (up,) = det.detect(small_astronaut)
    rolled, m = turned_image(small_astronaut, angle)
    assert all(len(det.find_faces(rolled, turn=k).boxes) == 0 for k in range(4))
    (face,) = det.detect(rolled)
    iod = float(np.linalg.norm(up.landmarks[36] - up.landmarks[45]))
    expected = up.landmarks @ m[:, :2].T + m[:, 2]
    err = np.linalg.norm(face.landmarks - expected, axis=1).mean() / iod
    assert err < 0.08, err
    assert abs((face.crop.angle - up.crop.angle - angle + 180) % 360 - 180) < 3
    assert abs((face.pose.roll - up.pose.roll - angle + 180) % 360 - 180) < 3
    assert face.confidence >= det.min_confidence


def _yunet_like(centre: np.ndarray, size: np.ndarray, roll: float) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """A face-detector box (4,) and five keypoints (5, 2) of a face rolled ``roll`` degrees
    clockwise: the keypoints of an upright face (eyes, nose, mouth corners), turned."""
    upright = np.array([[-0.2, -0.1], [0.2, -0.1], [0.0, 0.05], [-0.15, 0.25], [0.15, 0.25]])
    a = np.radians(roll)
    turn = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    keypoints = centre + (upright * size) @ turn.T
    return np.concatenate([centre - size / 2, centre + size / 2]), keypoints


@settings(max_examples=25, deadline=None)
@given(h=st.integers(20, 90), w=st.integers(20, 90), roll=st.floats(-179, 179),
       dx=st.floats(-15, 15), dy=st.floats(-15, 15), bw=st.floats(20, 60),
       bh=st.floats(20, 60))
def test_a_face_found_in_the_diagonal_turns_gets_the_upright_crop_turned(
        default_det, h, w, roll, dx, dy, bw, bh):
    """A detection in the picture turned 45, 135, 225 or 315 degrees, mapped back into the
    image, gets from the crop policy (the default model's, keypoints and all) the crop the
    same detection gets in the turned picture, turned back: centre mapped, same size,
    angle less the turn. Keypoints map back exactly."""
    from pipdetect.crop import turned_image
    from pipdetect.faces import Detections, FaceFinder
    from pipdetect.stages import FaceBoxes

    if abs((roll % 90) - 45) < 0.5:
        return  # exactly between two quarter turns a box's frame is a coin toss
    det = default_det
    seen: list[tuple[int, ...]] = []

    def fake(self: Any, picture: np.ndarray) -> Detections:
        """The same face in every picture, placed about the picture's centre."""
        seen.append(picture.shape)
        centre = (np.array(picture.shape[1::-1], dtype=np.float64) - 1) / 2 + [dx, dy]
        box, kps = _yunet_like(centre, np.array([bw, bh]), roll)
        return Detections(box[None], np.array([0.9]), kps[None])

    image = np.zeros((h, w, 3), dtype=np.uint8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FaceFinder, "find", fake)
        det.find_faces(image)  # the face finder exists
        seen.clear()
        found = det._find_diagonal(image)
    shapes = list(seen)
    assert len(found.boxes) == 4 and len(shapes) == 4
    crops = det.make_crops(found)
    for k, turn in enumerate((45.0, 135.0, 225.0, 315.0)):
        canvas, m = turned_image(image, turn)
        assert shapes[k] == canvas.shape
        same = fake(None, canvas)
        box, kps = same.boxes[0], same.keypoints[0]
        up = det.make_crops(FaceBoxes(box[None], np.array([0.9]), kps[None]))[0]
        np.testing.assert_allclose(found.keypoints[k] @ m[:, :2].T + m[:, 2], kps, atol=1e-6)
        centre = np.linalg.solve(m[:, :2], (up[:2] + up[2:4]) / 2 - m[:, 2])
        np.testing.assert_allclose((crops[k, :2] + crops[k, 2:4]) / 2, centre, atol=1e-6)
        np.testing.assert_allclose(crops[k, 2:4] - crops[k, :2], up[2:4] - up[:2], rtol=1e-9)
        assert abs((crops[k, 4] - (up[4] - turn) + 180) % 360 - 180) < 1e-6


def test_the_diagonal_search_runs_only_without_a_confident_face(
        default_det, small_astronaut, monkeypatch):
    """Face-detector runs per image: an upright photo with a confident face, 1 ("auto") or
    4 ("always": the quarter turns); a face rolled 45 degrees, 1 + 3 quarter turns + 4
    diagonal turns, where "off" runs 1 and finds nothing; a picture without a face, 8
    with "auto" and 1 with "off"."""
    from pipdetect.crop import turned_image
    from pipdetect.faces import FaceFinder

    calls: list[tuple[int, ...]] = []
    find = FaceFinder.find

    def counting(self: Any, picture: np.ndarray) -> Any:
        calls.append(picture.shape)
        return find(self, picture)

    monkeypatch.setattr(FaceFinder, "find", counting)
    rolled, _ = turned_image(small_astronaut, 45)
    blank = np.full((120, 160, 3), 90, dtype=np.uint8)
    always = LandmarkDetector(orientation_search="always")
    off = LandmarkDetector(orientation_search="off")
    for det, image, runs, faces in [
        (default_det, small_astronaut, 1, 1), (always, small_astronaut, 4, 1),
        (default_det, rolled, 8, 1), (always, rolled, 8, 1), (off, rolled, 1, 0),
        (default_det, blank, 8, 0), (off, blank, 1, 0),
    ]:
        calls.clear()
        assert len(det.detect(image)) == faces
        assert len(calls) == runs, (det, image.shape, calls)


def test_unsure_faces_are_left_out_and_the_error_says_why():
    """min_confidence drops detected faces below it (and only those), det(image) says why
    when all were dropped, and boxes the caller passes are always returned."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    options = {"score_threshold": 0.05, "orientation_search": "off", "max_faces": 6}
    found = LandmarkDetector(min_confidence=0, **options).detect(noise)
    assert len(found) >= 3, "the low face-detector threshold finds boxes on noise"
    conf = sorted(f.confidence for f in found)
    middle = (conf[len(conf) // 2 - 1] + conf[len(conf) // 2]) / 2
    kept = LandmarkDetector(min_confidence=middle, **options).detect(noise)
    assert sorted(f.confidence for f in kept) == [c for c in conf if c >= middle]
    strict = LandmarkDetector(min_confidence=min(1.0, conf[-1] + 1e-6), **options)
    assert strict.detect(noise) == []
    with pytest.raises(NoFaceError, match="min_confidence"):
        strict(noise)
    boxes = [(10, 10, 110, 110), (200, 100, 300, 200)]
    given = strict.detect(noise, boxes=boxes)
    assert [f.box for f in given] == [tuple(map(float, b)) for b in boxes]
    assert all(0.0 <= f.confidence <= 1.0 for f in given)


@pytest.mark.parametrize("options", [{"min_confidence": 1.5}, {"min_confidence": "high"},
                                     {"orientation_search": "sometimes"}])
def test_any_angle_options_are_checked_when_the_detector_is_built(options):
    from pipdetect.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match=next(iter(options))):
        LandmarkDetector(**options)


@settings(max_examples=15, deadline=None)
@given(du=st.floats(-0.05, 0.05), dv=st.floats(-0.05, 0.05), angle=st.floats(-180, 180))
def test_the_output_offset_moves_landmarks_in_the_crops_frame(
        tmp_path_factory, wflw_meanface, astronaut, du, dv, angle):
    """A model's ``output_offset`` (du, dv) moves every landmark by du crop widths along the
    crop's x axis and dv crop heights along its y axis, whichever way the crop is turned;
    predict_crops gets it too (du, dv times the crop's size)."""
    folder = tmp_path_factory.mktemp("offset")
    plain = LandmarkDetector(known_answer_model(folder / "a.onnx", wflw_meanface))
    spec = make_spec(wflw_meanface, output_offset=(du, dv))
    moved = LandmarkDetector(known_answer_model(folder / "b.onnx", wflw_meanface, spec))
    assert moved.spec.output_offset == (du, dv)
    crop = np.array([[150.0, 120.0, 350.0, 380.0, angle]])
    (a,), (b,) = (d.run_network([(astronaut, crop)])[0].points for d in (plain, moved))
    a_rad = np.radians(angle)
    ex, ey = np.array([np.cos(a_rad), np.sin(a_rad)]), np.array([-np.sin(a_rad), np.cos(a_rad)])
    np.testing.assert_allclose(b - a, np.broadcast_to(du * 200 * ex + dv * 260 * ey, a.shape),
                               atol=1e-6)
    patch = astronaut[100:300, 150:310]
    np.testing.assert_allclose(moved.predict_crops(patch) - plain.predict_crops(patch),
                               np.broadcast_to([du * 160, dv * 200], (1, 98, 2)), atol=1e-3)


@pytest.mark.parametrize("value, ok", [([0.01, -0.002], True), ([0, 0], True),
                                       ([0.3, 0], False), ([0.01], False), ("0.01", False),
                                       ([float("nan"), 0], False)])
def test_the_output_offset_field_is_checked(wflw_meanface, value, ok):
    from pipdetect.errors import ModelFormatError
    from pipdetect.model import ModelSpec

    data = make_spec(wflw_meanface).to_dict()
    assert data["output_offset"] == [0.0, 0.0]
    data["output_offset"] = value
    if ok:
        assert ModelSpec.from_dict(data).output_offset == tuple(value)
    else:
        with pytest.raises(ModelFormatError, match="output_offset"):
            ModelSpec.from_dict(data)
    del data["output_offset"]  # older files: no offset
    assert ModelSpec.from_dict(data).output_offset == (0.0, 0.0)


# ------------------------------------------------------------------ flip_test
def _w300_meanface() -> np.ndarray:
    from pipdetect.presets import load_meanface

    return load_meanface("300W")


def _mirrored(shape: np.ndarray) -> np.ndarray:
    """Landmarks (68, 2) normalised of a crop, as its mirror image's landmarks mapped back."""
    from pipdetect.schemes import get_scheme

    out = shape[list(get_scheme("300w68").mirror or ())].copy()
    out[:, 0] = 1.0 - out[:, 0]
    return out


def _flip_model(folder: Path, shape: np.ndarray, offset=(0.0, 0.0)) -> Path:
    spec = make_spec(_w300_meanface(), scheme="300w68", output_offset=tuple(offset))
    return known_answer_model(folder / "flip.onnx", shape, spec)


def test_the_300w_mirror_pairs_match_the_mean_face():
    """The 68-point mirror table swaps each point with its partner: the 300W mean face,
    nearly symmetric, mirrored about its own centre line lands on itself (within 2.5 % of
    the crop), while unpaired the points would land far off."""
    mf = _w300_meanface()
    back = _mirrored(mf)
    back[:, 0] += (mf[:, 0] - back[:, 0]).mean()
    np.testing.assert_allclose(back, mf, atol=0.025)
    unpaired = mf.copy()
    unpaired[:, 0] = 2 * mf[:, 0].mean() - mf[:, 0]
    assert np.abs(unpaired - mf).max() > 0.3


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), du=st.floats(-0.02, 0.02), dv=st.floats(-0.02, 0.02),
       wobble=st.floats(0.0, 0.03))
def test_flip_test_averages_a_crop_with_its_mirror(tmp_path_factory, astronaut, seed, du, dv,
                                                   wobble):
    """A stand-in model answers ``shape`` for any picture, so its mirrored pass mapped back is
    ``_mirrored(shape)``. A mirror-consistent shape comes back unchanged; an asymmetric one
    as the average of the two, moved in x so that its mean x is the unmirrored pass's. The
    output offset applies in each pass's own frame (it is the model's convention, kept)."""
    rng = np.random.default_rng(seed)
    symmetric = (_w300_meanface() + _mirrored(_w300_meanface())) / 2
    shape = symmetric + rng.uniform(-wobble, wobble, symmetric.shape)
    folder = tmp_path_factory.mktemp("flip")
    path = _flip_model(folder, shape, (du, dv))
    plain, flipped = LandmarkDetector(path), LandmarkDetector(path, flip_test=True)
    assert flipped.flip_test and not plain.flip_test
    normal = shape + [du, dv]
    back = _mirrored(shape + [du, dv])
    expected = (normal + back) / 2
    expected[:, 0] += normal[:, 0].mean() - expected[:, 0].mean()
    patch = astronaut[100:300, 150:310]
    np.testing.assert_allclose(flipped.predict_crops(patch)[0] / [160, 200], expected,
                               atol=1e-5)
    np.testing.assert_allclose(plain.predict_crops(patch)[0] / [160, 200], normal, atol=1e-5)
    crop = np.array([[150.0, 120.0, 350.0, 380.0, 20.0]])
    (got,) = flipped.run_network([(astronaut, crop)])[0].points
    np.testing.assert_allclose(got, analytic(expected, crop[0]), atol=1e-3)
    if wobble == 0.0:  # mirror-consistent: flip averaging changes nothing
        np.testing.assert_allclose(expected, normal, atol=1e-9)


@pytest.fixture
def network_calls(monkeypatch) -> list[np.ndarray]:
    """Every batch any model runs in this test (``LoadedModel.run``), copied."""
    from pipdetect.model import LoadedModel

    calls: list[np.ndarray] = []
    real = LoadedModel.run

    def counting(self, batch):
        calls.append(batch.copy())
        return real(self, batch)

    monkeypatch.setattr(LoadedModel, "run", counting)
    return calls


def test_flip_test_runs_the_mirrors_in_the_same_batch(tmp_path, astronaut, network_calls):
    """B crops -> one network call holding 2B (the mirrored half left-right mirrors of the
    first), in chunks of batch_size faces; detect, boxes given and predict_crops alike."""
    shape = _w300_meanface()
    calls = network_calls
    det = LandmarkDetector(_flip_model(tmp_path, shape), flip_test=True, batch_size=3)
    det.predict_crops([astronaut[100:300, 150:310]] * 5)
    assert [len(c) for c in calls] == [6, 4]
    np.testing.assert_array_equal(calls[0][3:], calls[0][:3, :, :, ::-1])
    calls.clear()
    faces = det.detect(astronaut, boxes=[BOX, (100, 50, 250, 230)])
    assert len(faces) == 2 and calls and all(len(c) % 2 == 0 for c in calls)
    assert len(calls[0]) == 4
    np.testing.assert_array_equal(calls[0][2:], calls[0][:2, :, :, ::-1])


@pytest.mark.parametrize("options", [{"flip_test": "yes"}, {"flip_test": 1}])
def test_flip_test_must_be_a_bool(options):
    with pytest.raises(InvalidArgumentError, match="flip_test"):
        LandmarkDetector(**options)


def test_flip_test_needs_known_mirror_pairs(det, known_model):
    """The 98-point stand-in (scheme wflw98, whose pairs pipdetect does not list) and a
    custom-scheme model refuse flip_test when built, saying why."""
    with pytest.raises(InvalidArgumentError, match="mirror pairs"):
        LandmarkDetector(known_model, flip_test=True)


def test_flip_test_survives_pickling(tmp_path):
    import pickle

    det = LandmarkDetector(_flip_model(tmp_path, _w300_meanface()), flip_test=True)
    assert pickle.loads(pickle.dumps(det)).flip_test


def test_tracking_runs_the_mirrors_too(tmp_path, astronaut, network_calls):
    """track() goes through the same network stage: every call holds crops and mirrors."""
    calls = network_calls
    det = LandmarkDetector(_flip_model(tmp_path, _w300_meanface()), flip_test=True)
    frames = list(det.track([astronaut, astronaut], boxes=[BOX], smoothing=False))
    assert len(frames) == 2 and all(len(f) == 1 for f in frames)
    assert calls and all(len(c) % 2 == 0 for c in calls)
    for c in calls:
        np.testing.assert_array_equal(c[len(c) // 2:], c[: len(c) // 2, :, :, ::-1])


def _centred_face_finder(seen: list[tuple[int, ...]]) -> Any:
    """A stand-in for ``FaceFinder.find``: one upright 40 x 48 face at the centre of every
    picture it gets, whose shapes it appends to ``seen``."""
    from pipdetect.faces import Detections

    def fake(self: Any, picture: np.ndarray) -> Detections:
        seen.append(picture.shape)
        centre = (np.array(picture.shape[1::-1], dtype=np.float64) - 1) / 2
        box, kps = _yunet_like(centre, np.array([40.0, 48.0]), 0.0)
        return Detections(box[None], np.array([0.9]), kps[None])

    return fake


def test_the_diagonal_search_turns_a_large_photo_only_once_shrunk(default_det):
    """A 3000 x 2000 photo is scaled down before it is turned 45 degrees: every picture
    the face detector gets is within detection_size (640), not the 3,536-pixel canvas of
    the full photo (37 MB), and what it finds maps back into the photo's own pixels
    (the canvas's centre to the photo's, sizes scaled up)."""
    from pipdetect.faces import FaceFinder

    det = default_det
    seen: list[tuple[int, ...]] = []
    fake = _centred_face_finder(seen)

    image = np.zeros((2000, 3000, 3), dtype=np.uint8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FaceFinder, "find", fake)
        det.find_faces(image[:100, :100])  # the face finder exists
        seen.clear()
        found = det._find_diagonal(image)
    assert len(seen) == 4 and all(max(s[:2]) <= 640 for s in seen), seen
    scale = 640 / (5000 * np.sqrt(0.5))
    centres = (found.boxes[:, :2] + found.boxes[:, 2:]) / 2
    np.testing.assert_allclose(centres, [[1499.5, 999.5]] * 4, atol=2.0)
    sizes = np.sort(found.boxes[:, 2:] - found.boxes[:, :2], axis=1)
    np.testing.assert_allclose(sizes, [[40 / scale, 48 / scale]] * 4, rtol=0.01)


@pytest.mark.parametrize("turn", [1, 2, 3])
def test_a_large_photo_is_shrunk_before_a_quarter_turn(default_det, turn):
    """A 3000 x 2000 photo searched turned a quarter is scaled down first: the face
    detector gets a picture within detection_size (no full-size turned copy), and what it
    finds maps back into the photo's own pixels (centre to centre, sizes scaled up)."""
    from pipdetect.faces import FaceFinder

    seen: list[tuple[int, ...]] = []
    fake = _centred_face_finder(seen)

    image = np.zeros((2000, 3000, 3), dtype=np.uint8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FaceFinder, "find", fake)
        found = default_det.find_faces(image, turn=turn)
    assert len(seen) == 1 and max(seen[0][:2]) <= 640, seen
    np.testing.assert_allclose((found.boxes[0, :2] + found.boxes[0, 2:]) / 2, [1499.5, 999.5],
                               atol=1.0)
    size = found.boxes[0, 2:] - found.boxes[0, :2]
    want = np.array([40.0, 48.0]) * 3000 / 640
    np.testing.assert_allclose(size, want if turn == 2 else want[::-1], rtol=0.01)
