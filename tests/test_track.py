"""Tracking and smoothing, proved with the dot-finding model on frames with known truth.

Frames are the astronaut photo (so the real face detector, YuNet, finds a face)
moved and scaled on a canvas, with coloured dots drawn where the dot model's mean
face says the landmarks of the detected face are: every frame's true landmarks
are known exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfactory import known_answer_model
from modelfactory_dots import CANVAS, DOT_MEANFACE, dots_face, dots_model, render
from pipdetect import LandmarkDetector
from pipdetect.faces import FaceFinder
from pipdetect.track import FrameFaces, OneEuroFilter, Tracker


@pytest.fixture(scope="module")
def dots_det(tmp_path_factory: pytest.TempPathFactory) -> LandmarkDetector:
    return LandmarkDetector(dots_model(tmp_path_factory.mktemp("dots") / "dots.onnx"))


@pytest.fixture(scope="module")
def base(dots_det, astronaut) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo and the true dot positions on it (in the detected face's crop)."""
    crop = dots_det.detect(astronaut)[0].crop
    return astronaut, dots_face(crop)


@pytest.fixture
def finder_calls(monkeypatch) -> list[int]:
    """Counts face detector runs: the frame number (order of calls) of each."""
    calls: list[int] = []
    original = FaceFinder.find

    def counting(self, image):
        calls.append(len(calls))
        return original(self, image)

    monkeypatch.setattr(FaceFinder, "find", counting)
    return calls


def smooth_path(n: int) -> list[tuple[float, float, float]]:
    """A face drifting right and down while growing: (scale, ox, oy) per frame."""
    return [(0.9 + 0.2 * t / n, 40 + 6.0 * t, 10 + 2.0 * t) for t in range(n)]


# ------------------------------------------------------------------------- tracking
def test_tracking_follows_motion_and_runs_the_detector_only_when_due(
    dots_det, base, finder_calls
):
    frames, truths = zip(*(render(base, *p) for p in smooth_path(25)), strict=True)
    results = list(dots_det.track(list(frames), redetect_interval=10, smoothing=False))
    assert len(results) == 25 and all(isinstance(r, FrameFaces) for r in results)
    assert [r.frame_index for r in results if r.detected] == [0, 10, 20]
    assert len(finder_calls) == 3
    for r, truth in zip(results, truths, strict=True):
        assert len(r) == 1 and r[0].track_id == 0
        np.testing.assert_allclose(r[0].landmarks, truth, atol=1.5)
        assert r[0].confidence > 0.5
    # followed, not detected: the crop moved with the face
    assert results[9][0].crop != results[0][0].crop
    assert results[5][0].score == pytest.approx(np.clip(results[5][0].confidence, 0, 1),
                                                abs=1e-6)


def test_detecting_every_frame_costs_one_detector_run_per_frame(dots_det, base, finder_calls):
    frames = [render(base, *p)[0] for p in smooth_path(8)]
    for f in frames:
        dots_det.detect(f)
    assert len(finder_calls) == 8
    finder_calls.clear()
    list(dots_det.track(frames, redetect_interval=0))
    assert len(finder_calls) == 1


def test_a_lost_face_is_looked_for_on_the_same_frame(dots_det, base, finder_calls):
    """The face jumps across the picture (frame 6) and loses its dots (frames 10-11)."""
    plan = []
    for t in range(16):
        ox = 20.0 if t < 6 else 330.0
        plan.append(((1.0, ox, 0.0), not 10 <= t < 12))
    tracker = Tracker(dots_det, redetect_interval=0, smoothing=False)
    out = []
    for (p, dots) in plan:
        frame, truth = render(base, *p, dots=dots)
        out.append((tracker.update(frame), truth, dots))
    detected = [faces.frame_index for faces, _, _ in out if faces.detected]
    assert detected == [0, 6, 10, 11]  # first frame, the jump, each frame without dots
    for faces, truth, dots in out:
        assert len(faces) == 1
        if dots:
            np.testing.assert_allclose(faces[0].landmarks, truth, atol=1.5)
        else:
            assert faces[0].confidence < 0.25
    ids = [faces[0].track_id for faces, _, _ in out]
    # lost at the jump: a new track; re-found in place while dotless: same track
    assert ids == [0] * 6 + [1] * 10
    assert tracker.detector_runs == 4


def test_tracks_seeded_by_boxes_need_no_face_detector(dots_det, base, finder_calls):
    """Dots without a face: YuNet finds nothing, tracks come from the box passed."""
    _, truth0 = base
    blank = (np.zeros((480, 640, 3), np.uint8), truth0)
    frames, truths = [], []
    for t in range(12):
        f, tr = render(blank, 1.0, 30 + 8.0 * t, 20 + 3.0 * t)
        frames.append(f)
        truths.append(tr)
    x1, y1 = truths[0].min(axis=0)
    x2, y2 = truths[0].max(axis=0)
    mf = DOT_MEANFACE
    box = crop_of(truths[0], mf)
    results = list(dots_det.track(frames, boxes=[box], redetect_interval=5, smoothing=False))
    # periodic detections run (and find nothing) but do not end the track
    assert [r.frame_index for r in results if r.detected] == [5, 10]
    assert len(finder_calls) == 2
    for r, truth in zip(results, truths, strict=True):
        assert [f.track_id for f in r] == [0]
        np.testing.assert_allclose(r[0].landmarks, truth, atol=1.5)
    assert x1 < x2 and y1 < y2


def crop_of(points: np.ndarray, meanface: np.ndarray) -> tuple[float, ...]:
    from pipdetect.crop import crop_from_landmarks

    return tuple(crop_from_landmarks(points[None], meanface)[0])


def test_a_new_face_is_picked_up_at_the_next_redetection(dots_det, base, finder_calls):
    frames, truths = [], []
    for t in range(14):
        canvas = np.full((*CANVAS, 3), 90, np.uint8)
        frame, truth_a = render(base, 0.6, 10 + 2.0 * t, 60, canvas=canvas)
        truth = [truth_a]
        if t >= 7:
            frame, truth_b = render(base, 0.6, 330, 90, canvas=frame)
            truth.append(truth_b)
        frames.append(frame)
        truths.append(truth)
    results = list(dots_det.track(frames, redetect_interval=5, smoothing=False))
    assert [r.frame_index for r in results if r.detected] == [0, 5, 10]
    assert [len(r) for r in results] == [1] * 10 + [2] * 4
    for r, truth in zip(results, truths, strict=True):
        for face in r:
            np.testing.assert_allclose(face.landmarks, truth[face.track_id], atol=1.5)
    capped = list(dots_det.track(frames, redetect_interval=5, smoothing=False, max_faces=1))
    assert max(len(r) for r in capped) == 1


def test_boxes_passed_to_update_recrop_a_tracked_face(dots_det, base):
    tracker = Tracker(dots_det, redetect_interval=0, smoothing=False)
    frame, truth = render(base, 1.0, 50, 50)
    first = tracker.update(frame)
    x1, y1, x2, y2, _ = first[0].crop
    box = (x1 - 8.0, y1 - 5.0, x2 + 6.0, y2 + 9.0)  # overlaps the tracked face: same face
    second = tracker.update(frame, boxes=[box])
    assert len(second) == 1 and second[0].track_id == first[0].track_id
    # the box passed is the detection; the crop is then re-built from the landmarks
    assert second[0].box == box and abs(second[0].crop.angle) < 1.0
    assert second[0].score == 1.0 and not second.detected
    np.testing.assert_allclose(second[0].landmarks, truth, atol=1.5)
    elsewhere = tracker.update(frame, boxes=[(400.0, 300.0, 500.0, 420.0)])
    assert [f.track_id for f in elsewhere] == [0, 1]  # a box elsewhere is a new face


# ------------------------------------------------------------------------ smoothing
def jitter(track: np.ndarray) -> float:
    """RMS frame-to-frame movement (pixels)."""
    return float(np.sqrt(np.mean(np.sum(np.diff(track, axis=0) ** 2, axis=-1))))


def test_smoothing_removes_jitter_and_follows_a_step_within_a_few_frames(dots_det, base):
    rng = np.random.default_rng(7)
    n, step_at, step = 40, 25, np.array([24.0, 12.0])  # a third of the face in 1/30 s
    frames, truths = [], []
    for t in range(n):
        noise = rng.normal(0.0, 1.2, (len(DOT_MEANFACE), 2))
        offset = (0.0, 0.0) if t < step_at else step
        f, tr = render(base, 1.0, 60 + offset[0], 40 + offset[1], noise=noise)
        frames.append(f)
        truths.append(tr - noise)  # the face itself does not jitter
    raw = np.array([r[0].landmarks for r in dots_det.track(frames, smoothing=False)])
    smooth = np.array([r[0].landmarks for r in dots_det.track(frames)])
    truth = np.array(truths)
    still = slice(5, step_at)
    # 7 dots with 1.2 px of noise each: ~2 % of the face per point and frame, 4x the
    # trained model's noise on real faces, where the default FaceSmoother cuts jitter ~4x
    # (benchmarks/video_bench.py, tests/test_video_accuracy.py). Here the pose filter,
    # fitted to only 7 noisy points, stays partly open.
    assert jitter(smooth[still]) < 0.65 * jitter(raw[still])
    assert np.abs(smooth[still] - truth[still]).mean() < np.abs(raw[still] - truth[still]).mean()
    # the step: at most 3 frames until within 10 % of its size
    size = np.linalg.norm(step)
    err = np.linalg.norm(smooth - truth, axis=-1).max(axis=1)
    assert err[step_at + 3 :].max() < 0.1 * size + 2.0
    assert err[step_at] < 0.1 * size + 2.0  # the pose filter opens at once: no lag


def test_smoothing_is_per_track(dots_det, base):
    tracker = Tracker(dots_det, redetect_interval=0)
    frame, _ = render(base, 1.0, 10, 10)
    tracker.update(frame)
    far, truth = render(base, 1.0, 330, 10)
    # the old track is lost at the jump; the new one starts unsmoothed at its true place
    faces = tracker.update(far)
    assert faces[0].track_id == 1
    np.testing.assert_allclose(faces[0].landmarks, truth, atol=1.5)


def test_one_euro_noisy_constant_and_step():
    rng = np.random.default_rng(0)
    f = OneEuroFilter()
    t = np.arange(120) / 30.0
    truth = np.where(np.arange(120) < 60, 0.0, 30.0)[:, None] * [1.0, -1.0]
    noisy = truth + rng.normal(0, 1.0, truth.shape)
    out = np.array([f(v, ti, scale=100.0) for v, ti in zip(noisy, t, strict=True)])
    assert jitter(out[5:59]) < 0.3 * jitter(noisy[5:59])
    err = np.abs(out - truth).max(axis=1)
    assert err[63:].max() < 3.0 + 3 * 1.0  # within 10 % (+ noise) three frames after the step


@settings(max_examples=25, deadline=None)
@given(
    value=st.floats(-1e4, 1e4),
    scale=st.floats(1.0, 1e3),
    beta=st.floats(0, 50),
    min_cutoff=st.floats(0.01, 30),
)
def test_one_euro_constant_input_is_a_fixed_point(value, scale, beta, min_cutoff):
    f = OneEuroFilter(min_cutoff, beta)
    x = np.full((3, 2), value)
    for i in range(5):
        np.testing.assert_allclose(f(x, i / 30, scale), x, rtol=1e-12, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=2, max_size=30))
def test_one_euro_output_stays_within_the_input_range(values):
    f = OneEuroFilter(1.0, 5.0)
    out = [float(f(np.array([v]), i / 30, 10.0)[0]) for i, v in enumerate(values)]
    assert min(values) - 1e-9 <= min(out) and max(out) <= max(values) + 1e-9


def test_one_euro_parameters_and_reset():
    for bad in ({"min_cutoff": 0}, {"beta": -1}, {"d_cutoff": float("nan")}):
        with pytest.raises(ValueError):
            OneEuroFilter(**bad)
    f = OneEuroFilter()
    f(np.zeros(2), 0.0)
    assert f(np.ones(2), 1 / 30)[0] < 1.0
    f.reset()
    np.testing.assert_array_equal(f(np.ones(2), 2 / 30), np.ones(2))
    # a timestamp that does not advance is not a division by zero
    assert np.isfinite(f(np.full(2, 5.0), 2 / 30)).all()


# --------------------------------------------------------------------------- API
def test_tracker_frame_by_frame_equals_the_generator(dots_det, base):
    frames = [render(base, *p)[0] for p in smooth_path(6)]
    tracker = Tracker(dots_det, redetect_interval=3)
    manual = [tracker.update(f) for f in frames]
    auto = list(dots_det.track(frames, redetect_interval=3))
    for a, b in zip(manual, auto, strict=True):
        assert a.frame_index == b.frame_index and a.detected == b.detected and a.time == b.time
        np.testing.assert_array_equal(a[0].landmarks, b[0].landmarks)
        assert a.image.shape == (*CANVAS, 3)
    assert tracker.frame_index == 6 and tracker.track_ids == [0]
    assert tracker.detector_runs == 2 and tracker.network_runs == 6
    assert "frame_index=5" in repr(manual[-1])
    tracker.reset()
    assert tracker.frame_index == 0 and tracker.track_ids == []
    assert tracker.update(frames[0]).detected


@pytest.mark.parametrize("smoothing", [True, False])
def test_a_followed_frame_does_each_step_once(dots_det, base, monkeypatch, smoothing):
    """One face followed into the next frame: one network pass, no face detector, one next
    crop, one Face, and the confidences computed once, for all followed tracks together
    (a face's value does not depend on the batch), then reused as the lost-check, the
    tracking score and Face.confidence."""
    frames = [render(base, *p)[0] for p in smooth_path(3)]
    tracker = Tracker(dots_det, redetect_interval=0, smoothing=smoothing)
    tracker.update(frames[0])
    calls: dict[str, int] = {}
    for name in ("run_network", "find_faces", "locate", "confidence", "crops_from_landmarks",
                 "build_faces"):
        original = getattr(dots_det, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(dots_det, name, counted)
    faces = tracker.update(frames[1])
    assert not faces.detected and len(faces) == 1
    assert calls == {"run_network": 1, "confidence": 1, "crops_from_landmarks": 1,
                     "build_faces": 1}
    monkeypatch.undo()
    (face,) = faces
    (raw,) = dots_det.run_network([(frames[1], np.asarray([face.crop]))])
    want = float(dots_det.confidence(raw.scores)[0])
    assert face.confidence == want and face.score == want


def test_timestamps_drive_the_smoothing(dots_det, base):
    frame_a, _ = render(base, 1.0, 60, 40)
    frame_b, truth_b = render(base, 1.0, 64, 40)
    slow = Tracker(dots_det, redetect_interval=0, beta=0.0)
    slow.update(frame_a, timestamp=0.0)
    # 10 s later the filter has fully caught up; 1/30 s later it has not
    late = slow.update(frame_b, timestamp=10.0)
    np.testing.assert_allclose(late[0].landmarks, truth_b, atol=1.5)
    quick = Tracker(dots_det, redetect_interval=0, beta=0.0)
    quick.update(frame_a, timestamp=0.0)
    soon = quick.update(frame_b, timestamp=1 / 30)
    assert np.abs(soon[0].landmarks - truth_b).max() > 2.0


def test_points_and_bad_options(tmp_path, wflw_meanface, astronaut):
    from modelfactory import make_spec

    spec = make_spec(wflw_meanface, scheme="wflw98")
    det = LandmarkDetector(known_answer_model(tmp_path / "k.onnx", wflw_meanface, spec))
    faces = next(iter(det.track([astronaut], points=68)))
    assert faces[0].landmarks.shape == (68, 2) and faces[0].scheme == "300w68"
    for bad in ({"redetect_interval": -1}, {"fps": 0}, {"match_iou": 2},
                {"max_faces": 0}, {"beta": -1}, {"redetect_interval": 1.5}):
        with pytest.raises(ValueError):
            Tracker(det, **bad)
    with pytest.raises(ValueError, match="cannot return"):
        Tracker(det, points=19)


def test_missing_video_fails_before_the_first_frame(dots_det, tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        dots_det.track(tmp_path / "nope.mp4")


def test_face_smoother_follows_rigid_motion_and_steadies_noise():
    from pipdetect.track import FaceSmoother

    rng = np.random.default_rng(3)
    shape = rng.uniform(0, 100, (68, 2))
    f = FaceSmoother()
    for t in range(30):  # a pan of 6 px per frame with a 3-degree roll per frame: no lag
        a = np.radians(3.0 * t)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        truth = (shape - 50) @ rot.T + 50 + [6.0 * t, 0.0]
        out = f(truth, t / 30)
    np.testing.assert_allclose(out, truth, atol=0.5)
    f.reset()
    outs = [f(shape + rng.normal(0, 1.0, shape.shape), t / 30) for t in range(40)]
    assert jitter(np.array(outs[10:])) < 0.3 * jitter(shape + rng.normal(0, 1.0, (30, 68, 2)))


def test_smoothing_presets_and_the_old_one_euro_filter(dots_det):
    from pipdetect.track import FaceSmoother

    assert isinstance(Tracker(dots_det, smoothing="responsive")._new_filter(), FaceSmoother)
    assert isinstance(Tracker(dots_det)._new_filter(), FaceSmoother)
    old = Tracker(dots_det, min_cutoff=1.0)._new_filter()
    assert isinstance(old, OneEuroFilter) and (old.min_cutoff, old.beta) == (1.0, 5.0)
    assert Tracker(dots_det, smoothing=False)._new_filter() is None
    with pytest.raises(ValueError, match="smoothing"):
        Tracker(dots_det, smoothing="sharp")


def test_a_tracker_fed_by_two_threads_at_once_raises(dots_det, base):
    """While one thread is inside update() (held there by the detector), a second
    thread's update() raises ConcurrentUseError; the first finishes normally, and the
    tracker keeps working afterwards."""
    import threading

    from pipdetect.errors import ConcurrentUseError, PipdetectError

    inside, release = threading.Event(), threading.Event()

    class HeldDetector:
        def __getattr__(self, name):
            return getattr(dots_det, name)

        def run_network(self, *args, **kwargs):
            inside.set()
            assert release.wait(30)
            return dots_det.run_network(*args, **kwargs)

    tracker = Tracker(HeldDetector())
    frame = base[0]
    results: list = []
    first = threading.Thread(target=lambda: results.append(tracker.update(frame)))
    first.start()
    try:
        assert inside.wait(30)
        with pytest.raises(ConcurrentUseError, match="one Tracker per stream") as info:
            tracker.update(frame)
        assert isinstance(info.value, PipdetectError)
    finally:
        release.set()
        first.join(30)
    assert len(results) == 1 and len(results[0]) == 1
    assert len(tracker.update(frame)) == 1  # the same thread, or another, later: fine
    later = threading.Thread(target=lambda: results.append(tracker.update(frame)))
    later.start()
    later.join(30)
    assert len(results) == 2 and tracker.frame_index == 3
