"""Sharing: one detector used by many threads gives exactly the serial results."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from modelfactory import make_spec, random_model
from pipdetect import LandmarkDetector
from pipdetect.crop import preset_crop_policy

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, wflw_meanface) -> LandmarkDetector:
    spec = make_spec(wflw_meanface, crop_policy=preset_crop_policy("WFLW").to_dict())
    path = random_model(tmp_path_factory.mktemp("m") / "r.onnx", spec, seed=5, scale=2.0)
    return LandmarkDetector(path)


def _images(astronaut: np.ndarray) -> list[np.ndarray]:
    out = []
    for i in range(12):
        scale = 0.6 + 0.1 * (i % 6)
        img = cv2.resize(astronaut, None, fx=scale, fy=scale)
        if i % 2:
            img = img[:, ::-1]
        out.append(np.ascontiguousarray(img))
    return out


def _run(det: LandmarkDetector, image: np.ndarray) -> list[tuple]:
    return [(f.box, f.crop, f.landmarks.tobytes(), f.scores.tobytes()) for f in det.detect(image)]


def test_eight_threads_share_one_detector(shared, astronaut):
    images = _images(astronaut)
    serial = [_run(shared, img) for img in images]
    assert all(len(r) == 1 for r in serial)  # the astronaut is found in every variant
    jobs = images * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda img: _run(shared, img), jobs))
    assert parallel == serial * 4  # bit-identical


def test_threads_with_explicit_boxes_and_predict_crops(shared, astronaut):
    boxes = [(x, y, x + 150.0, y + 180.0) for x in range(0, 300, 60) for y in range(0, 300, 90)]
    serial_faces = [shared.detect(astronaut, boxes=[b])[0].landmarks for b in boxes]
    crops = [astronaut[int(b[1]) : int(b[3]), int(b[0]) : int(b[2])] for b in boxes]
    serial_crops = [shared.predict_crops(c)[0] for c in crops]
    with ThreadPoolExecutor(max_workers=8) as pool:
        faces = list(pool.map(lambda b: shared.detect(astronaut, boxes=[b])[0].landmarks, boxes))
        one = list(pool.map(lambda c: shared.predict_crops(c)[0], crops))
    for a, b in zip(serial_faces, faces, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.stack(one), np.stack(serial_crops))


# ------------------------------------------------------------------ processes
def _landmarks_in_child(det: LandmarkDetector, image: np.ndarray) -> np.ndarray:
    return det.detect(image)[0].landmarks


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_detector_works_in_child_processes(shared, astronaut, method):
    import multiprocessing as mp

    expected = shared.detect(astronaut)[0].landmarks
    ctx = mp.get_context(method)
    with ctx.Pool(2) as pool:
        results = pool.starmap_async(
            _landmarks_in_child, [(shared, astronaut), (shared, astronaut[:, ::-1])]
        ).get(timeout=120)
    np.testing.assert_array_equal(results[0], expected)
    np.testing.assert_array_equal(results[1], shared.detect(astronaut[:, ::-1])[0].landmarks)


def test_pickle_round_trip_keeps_the_settings(shared, astronaut):
    import pickle

    tuned = LandmarkDetector(
        shared._model.path,
        threads=1,
        max_faces=1,
        batch_size=3,
        score_threshold=0.7,
        detection_size=320,
    )
    clone = pickle.loads(pickle.dumps(tuned))
    assert (
        clone is not tuned
        and clone.batch_size == 3
        and clone.spec.to_dict() == tuned.spec.to_dict()
    )
    assert clone._settings == tuned._settings
    assert len(pickle.dumps(tuned)) < 2000  # settings, not weights
    np.testing.assert_array_equal(clone(astronaut), tuned(astronaut))


# ------------------------------------------------------------ thread budgets
def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_detectors_of_one_model_share_one_session(shared, astronaut):
    path = shared._model.path
    first = LandmarkDetector(path, max_faces=1)
    first(astronaut, box=(180, 70, 300, 240))
    before = _os_threads()
    more = [LandmarkDetector(path, batch_size=b) for b in (1, 2, 4, 8)]
    for det in more:
        det(astronaut, box=(180, 70, 300, 240))
        assert det._model.session is first._model.session
    assert _os_threads() == before  # no new onnxruntime pool per detector
    other = LandmarkDetector(path, threads=1)  # other settings: a session of its own
    assert other._model.session is not first._model.session


def _python(code: str) -> str:
    """Run ``code`` in a fresh Python process (thread pools are per process); its stdout."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    return out.stdout


_BUDGET_SCRIPT = r"""
import os, sys
sys.path.insert(0, {tests!r})
import numpy as np
from modelfactory import make_spec, random_model
from pipdetect.presets import load_meanface
import pipdetect
if {use_global}:
    pipdetect.set_global_threads(2)
mf = load_meanface("WFLW")
paths = [random_model({tmp!r} + f"/m{{i}}.onnx", make_spec(mf[: 20 + i]), seed=i) for i in range(4)]
image = np.zeros((64, 64, 3), np.uint8)
before = len(os.listdir("/proc/self/task"))
dets = [pipdetect.LandmarkDetector(p) for p in paths]
for d in dets:
    d(image, box=(0, 0, 64, 64))
print(len(os.listdir("/proc/self/task")) - before)
if {use_global}:
    try:
        pipdetect.set_global_threads(3)
    except RuntimeError:
        print("late call refused")
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_global_thread_pool_bounds_threads_across_different_models(tmp_path):
    from conftest import TESTS

    def run(use_global: bool) -> list[str]:
        code = _BUDGET_SCRIPT.format(tests=str(TESTS), tmp=str(tmp_path), use_global=use_global)
        return _python(code).split("\n")

    per_session = int(run(False)[0])
    pooled = run(True)
    # Four different models: a pool each by default, one shared pool after set_global_threads.
    assert int(pooled[0]) < per_session
    assert int(pooled[0]) <= 2
    assert pooled[1] == "late call refused"


_FACES_SCRIPT = r"""
import sys
import numpy as np
import pipdetect
from pipdetect.faces import FaceFinder
photo = np.load({photo!r})
if {pool_first}:
    pipdetect.set_global_threads(2)
print(len(FaceFinder().find(photo)))
try:
    pipdetect.set_global_threads(1)
    print("accepted")
except RuntimeError:
    print("late call refused")
"""


def test_face_detector_session_counts_for_the_global_pool(tmp_path, astronaut):
    """The face detector's session runs on the global pool when it is on, and (like a
    landmark model) makes a later set_global_threads() call fail loudly instead of
    being ignored by onnxruntime."""
    photo = tmp_path / "photo.npy"
    np.save(photo, astronaut)
    for pool_first in (False, True):
        code = _FACES_SCRIPT.format(photo=str(photo), pool_first=pool_first)
        assert _python(code).split() == ["1", "late", "call", "refused"]
