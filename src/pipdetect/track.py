"""Video: follow faces from frame to frame and smooth their landmarks.

How a :class:`Tracker` handles a frame:

1. **Follow.** Each tracked face's landmarks of the previous frame give its crop
   for this one, by the rule the model was trained with, levelled by the landmarks'
   eye line (the detector's stage ``crops_from_landmarks``: an oriented crop, the
   same representation detection uses, so a face rolling in the picture is always
   seen upright). The network runs on all tracked faces at once. No face detection.
2. **Check.** A track whose confidence (:attr:`pipdetect.Face.confidence`, the
   calibrated probability that the landmarks are right) falls below
   ``min_confidence`` is *lost*.
3. **Detect** only when needed: when there is no track, when a track was lost, and
   every ``redetect_interval`` frames (to pick up faces that entered the picture).
   Detections overlapping a followed face are that face (its followed landmarks are
   kept); a lost track overlapped by a detection is re-found there (same id);
   other detections start new tracks (up to ``max_faces``); lost tracks nobody
   re-found end. Boxes you pass to :meth:`Tracker.update` act as that frame's
   detections (the face detector does not run) and take precedence over following.
   New and re-found faces go through the detector's ``locate`` stage: levelled,
   searched at quarter turns when unsure, as :meth:`LandmarkDetector.detect` does.
4. **Smooth** each track's landmarks over time with a :class:`FaceSmoother`: the
   face's pose (shift, scale, roll, fitted to all landmarks) and its shape are
   smoothed separately, so head motion passes without lag while the per-landmark
   jitter of a still face is removed. The crops of step 1 use the unsmoothed
   landmarks, so smoothing never slows tracking down.

Times are in seconds: a frame's time is ``timestamp`` if given, else its index
divided by ``fps``. Coordinates are original-image pixels as everywhere in pipdetect.

Thread safety: a :class:`Tracker` is the state of one video stream; use one per
stream and do not call :meth:`Tracker.update` from two threads at once (a call made
while another thread is inside ``update`` raises
:class:`~pipdetect.errors.ConcurrentUseError`). Several
trackers (in several threads) may share one :class:`~pipdetect.LandmarkDetector`.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .crop import box_iou, crop_corners
from .errors import ConcurrentUseError, InvalidArgumentError
from .image import load_image
from .stages import CropLandmarks, FaceBoxes

if TYPE_CHECKING:  # pragma: no cover
    from .stages import Face, Stages

__all__ = ["SMOOTHING_PRESETS", "FaceSmoother", "FrameFaces", "OneEuroFilter", "Tracker", "track"]

UNCALIBRATED_MIN_CONFIDENCE = 0.25
"""A tracked face of a model without a confidence calibration is lost when its mean landmark
score falls below this (the rule of earlier versions)."""
AFTER_CUT_FRAMES = 4
"""Frames after a followed face was last cut by the border in which the face detector
still runs and its crop is used (the face has just re-entered the picture)."""
DEFAULT_MIN_CUTOFF = 1.0
DEFAULT_BETA = 5.0
DEFAULT_D_CUTOFF = 1.0


class OneEuroFilter:
    """The One Euro filter (Casiez, Roussel and Vogel, CHI 2012), elementwise on arrays.

    A first-order low-pass filter whose cutoff frequency rises with speed:
    ``cutoff = min_cutoff + beta * |speed| / scale``. Still signals are smoothed
    hard (jitter goes), fast ones barely (no lag).

    Parameters
    ----------
    min_cutoff:
        Cutoff frequency in Hz at rest. Lower removes more jitter (and lags slow motion).
    beta:
        Speed coefficient: how fast the cutoff rises with speed. Speed is measured in
        ``scale`` units per second; pipdetect passes the face size as ``scale``, so
        ``beta`` is in "per face size": the same setting works for faces of any size.
        Higher means less lag on fast motion.
    d_cutoff:
        Cutoff frequency in Hz of the speed estimate itself.

    Each call filters a whole array (e.g. all landmarks of one face); every element
    is an independent signal. The first call returns its input unchanged.
    """

    def __init__(
        self,
        min_cutoff: float = DEFAULT_MIN_CUTOFF,
        beta: float = DEFAULT_BETA,
        d_cutoff: float = DEFAULT_D_CUTOFF,
    ) -> None:
        for name, value in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InvalidArgumentError(
                    f"{name} must be a positive frequency in Hz, got {value!r}"
                )
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise InvalidArgumentError(f"beta must be a number >= 0, got {beta!r}")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    def reset(self) -> None:
        """Forget the past: the next call starts afresh."""
        self._x = self._dx = None

    @staticmethod
    def _alpha(dt: float, cutoff: np.ndarray | float) -> Any:
        r = 2.0 * math.pi * np.asarray(cutoff) * dt
        return r / (r + 1.0)

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filtered value of ``x`` (any shape, fixed across calls) at time ``t`` seconds.

        ``scale`` divides the speed before it raises the cutoff (see ``beta``).
        A time that does not advance counts as 1 ms.
        """
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._dx is None or self._x.shape != x.shape:
            self._x = x.copy()
            self._dx = np.zeros_like(x)
            self._t = float(t)
            return x.copy()
        dt = float(t) - self._t
        if not dt > 0:
            dt = 1e-3
        self._t = float(t)
        speed = (x - self._x) / dt
        self._dx = self._dx + self._alpha(dt, self.d_cutoff) * (speed - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx) / max(float(scale), 1e-9)
        self._x = self._x + self._alpha(dt, cutoff) * (x - self._x)
        return self._x.copy()


SmoothingParams = tuple[float, float, float]
"""(min_cutoff Hz, beta, d_cutoff Hz) of a :class:`OneEuroFilter`."""

SMOOTHING_PRESETS: dict[str, tuple[SmoothingParams, SmoothingParams]] = {
    "smooth": ((0.5, 100.0, 30.0), (0.3, 10.0, 1.0)),
    "responsive": ((1.0, 300.0, 30.0), (0.3, 30.0, 1.0)),
}
"""``(pose, shape)`` One Euro parameters of :class:`FaceSmoother` by preset name.

Chosen with ``benchmarks/video_bench.py`` (see :class:`FaceSmoother` for the numbers).
``"smooth"`` (the default) steadies still faces most; ``"responsive"`` follows sudden
head motion and expressions sooner at the cost of more jitter at rest."""


class FaceSmoother:
    """Smooths one face's landmarks over time: its pose and its shape separately.

    Each frame's landmarks are split into a **pose**, the similarity transform (shift,
    scale, roll) that best maps the face's first landmarks onto them (weighted by the
    landmark scores, so an occluded point does not move the face), and a **shape**, the
    landmarks brought back into that first frame by the inverse transform. Both are
    smoothed by a :class:`OneEuroFilter` and recombined. Head motion is all pose: four
    numbers fitted to every landmark at once, so they are steady and their speed is
    reliable, and the filter opens as soon as the head moves. The shape (expressions,
    the per-landmark noise of the network) is smoothed hard. A per-coordinate One Euro
    filter cannot tell the two apart: the per-point noise raises its cutoff at rest,
    and a low cutoff lags every pan.

    Parameters
    ----------
    pose, shape:
        ``(min_cutoff, beta, d_cutoff)`` of the two filters (see :class:`OneEuroFilter`).
        Speeds are measured in face sizes per second (shift, shape) and in log-scale /
        radians per second (zoom, roll): the same setting works for faces of any size.
        Times are seconds, so frame rates need no retuning.

    Measured with ``benchmarks/video_bench.py`` (``pipnet-lite0-300w``, fp32, 8 clips x 32
    frames per motion kind at 30 fps; NME / jitter in % of the inter-ocular distance,
    lag in frames):

    ==========  ================  ================  ==================  ============
    motion      per-frame detect  tracked, raw      tracked, "smooth"   smooth lag
    ==========  ================  ================  ==================  ============
    still       2.87 / 0.59       2.84 / 0.52       2.81 / 0.15         -
    slow pan    2.87 / 0.77       2.88 / 0.71       2.85 / 0.39         0.00
    fast pan    2.86 / 0.88       2.88 / 0.63       2.86 / 0.31         0.00
    zoom        2.85 / 0.71       2.86 / 0.60       2.84 / 0.29         0.09
    roll        2.95 / 0.85       2.95 / 0.78       2.89 / 0.38         0.03
    leave       2.81 / 0.54       2.86 / 0.73       2.84 / 0.44         0.00
    cross       3.14 / 1.07       3.12 / 0.79       3.09 / 0.37         0.03
    ==========  ================  ================  ==================  ============

    The per-coordinate One Euro filter with the old defaults (1 Hz, beta 5) on the
    same tracks: still 2.81 / 0.09 but slow pan 6.65 % NME (lag 1.1 frames), fast pan
    9.18 %, zoom 3.92 %, roll 4.09 %. ``"responsive"`` (pose 1 Hz / 300 / 30 Hz, shape
    0.3 Hz / 30 / 1 Hz): the same NME within 0.02, still jitter 0.22 (2.7x below
    per-frame instead of 3.9x), expressions pass sooner.
    """

    def __init__(self, pose: SmoothingParams = SMOOTHING_PRESETS["smooth"][0],
                 shape: SmoothingParams = SMOOTHING_PRESETS["smooth"][1]) -> None:
        self._pose = OneEuroFilter(*pose)
        self._shape = OneEuroFilter(*shape)
        self._ref: np.ndarray | None = None
        self._size = 1.0
        self._angle = 0.0

    def reset(self) -> None:
        """Forget the past: the next call starts afresh."""
        self._pose.reset()
        self._shape.reset()
        self._ref = None

    def __call__(self, points: np.ndarray, t: float, scores: np.ndarray | None = None,
                 scale: float | None = None) -> np.ndarray:
        """Smoothed landmarks (L, 2) for landmarks ``points`` (L, 2) at time ``t`` seconds.

        ``scores`` (L,) weight the pose fit (default: all alike); ``scale`` is unused
        (the face's own size is the unit), accepted for :class:`OneEuroFilter` callers.
        """
        x = np.asarray(points, dtype=np.float64)
        w = (np.ones(len(x)) if scores is None
             else np.clip(np.asarray(scores, dtype=np.float64), 1e-3, None))
        zx = x[:, 0] + 1j * x[:, 1]
        if self._ref is None or len(self._ref) != len(x):
            self.reset()
            span = x.max(axis=0) - x.min(axis=0)
            self._size = max(float(np.sqrt(span[0] * span[1])), 1e-6)
            self._ref = (zx - zx.mean()) / self._size
            self._angle = 0.0
        ref = self._ref
        w = w / w.sum()
        mr, mx = np.sum(w * ref), np.sum(w * zx)
        a, b = ref - mr, zx - mx
        z = np.sum(w * np.conj(a) * b) / max(float(np.sum(w * np.abs(a) ** 2)), 1e-12)
        if abs(z) < 1e-9:
            z = complex(self._size)
        shift = mx - z * mr  # where the reference origin lands
        angle = float(np.angle(z))  # unwrapped: continuous through +-180 degrees
        angle = self._angle + (angle - self._angle + math.pi) % (2 * math.pi) - math.pi
        self._angle = angle
        pose = np.array([shift.real / self._size, shift.imag / self._size,
                         math.log(abs(z) / self._size), angle])
        u = (zx - shift) / z  # the shape, in reference units
        p = self._pose(pose, t)
        us = self._shape(np.stack([u.real, u.imag], axis=1), t)
        zs = self._size * math.exp(p[2]) * complex(math.cos(p[3]), math.sin(p[3]))
        q = zs * (us[:, 0] + 1j * us[:, 1]) + self._size * complex(p[0], p[1])
        return np.stack([q.real, q.imag], axis=1)


class FrameFaces(list):
    """The faces of one video frame: a ``list`` of :class:`~pipdetect.Face` (by track id)
    with the frame attached.

    Attributes: ``image`` (the frame, (H, W, 3) uint8 BGR), ``frame_index`` (0-based
    frame number), ``time`` (seconds) and ``detected`` (whether the face detector ran
    on this frame).
    """

    def __init__(
        self,
        faces: Sequence[Face],
        image: np.ndarray,
        frame_index: int,
        time: float,
        detected: bool,
    ) -> None:
        super().__init__(faces)
        self.image = image
        self.frame_index = frame_index
        self.time = time
        self.detected = detected

    def __repr__(self) -> str:
        return (
            f"FrameFaces(frame_index={self.frame_index}, time={self.time:.3f}, "
            f"faces={len(self)})"
        )


@dataclass
class _Track:
    id: int
    next_crop: np.ndarray
    """(5,) oriented crop for the next frame: from the last landmarks when they were confident,
    else the last crop (a face re-found with low confidence keeps its detector crop)."""
    smoother: OneEuroFilter | FaceSmoother | None
    since_cut: int = 1 << 30
    """Frames since this face's crop was last cut by the picture's border."""


class _Found(NamedTuple):
    """One track's face in this frame, followed or (re-)found by the face detector."""

    points: np.ndarray
    """(L, 2) landmarks, image pixels, unsmoothed."""
    scores: np.ndarray
    """(L,) per-landmark scores."""
    box: np.ndarray | None
    """The face detector's box, ``None`` for a followed face."""
    box_score: float | None
    """The face detector's score, ``None`` for a followed face."""
    crop: np.ndarray
    """(5,) the oriented crop the landmarks were read in."""
    confidence: float
    """The face's confidence: ``Stages.confidence`` of its scores, computed once per frame
    and used for ranking duplicates, the next crop, a followed face's score and its Face."""


def _greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) by decreasing IoU, each row and column used once, IoU >= threshold."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    order = np.argsort(-iou, axis=None, kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    for flat in order:
        r, c = divmod(int(flat), iou.shape[1])
        if iou[r, c] < threshold:
            break
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        pairs.append((r, c))
    return pairs


def _one_caller_at_a_time(method: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse a call while another thread is inside the method on the same object: a
    tracker fed by two threads would mix their streams' faces silently."""

    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._in_use.acquire(blocking=False):
            raise ConcurrentUseError(
                f"{type(self).__name__}.{method.__name__} was called from two threads at "
                "once: a Tracker holds the faces of one video stream. Use one Tracker per "
                "stream (per thread); they may share one LandmarkDetector"
            )
        try:
            return method(self, *args, **kwargs)
        finally:
            self._in_use.release()

    return guarded


class Tracker:
    """Faces followed through a stream of frames, one frame at a time.

    >>> tracker = Tracker(detector)
    >>> for frame in my_frames:                # your own video loop
    ...     faces = tracker.update(frame)      # list of Face, each with a track_id

    Parameters
    ----------
    detector:
        The :class:`~pipdetect.LandmarkDetector` to use (its face detector settings,
        ``max_faces`` and ``batch_size`` apply). Only its stage API
        (:class:`pipdetect.stages.Stages`) is used.
    redetect_interval:
        Run the face detector at least every this many frames to find new faces
        (``0`` or ``None``: only when there is no face or one was lost).
    min_confidence:
        A followed face whose :attr:`~pipdetect.Face.confidence` falls below this is
        lost (and looked for again with the face detector on the same frame).
        ``None`` (default): the detector's ``min_confidence`` (the model's calibrated
        threshold), or 0.25 for a model without a calibration (its mean landmark score).
    smoothing:
        Smooth landmarks over time, per face: ``True`` or ``"smooth"`` (default) or
        ``"responsive"``, a :class:`FaceSmoother` with those :data:`SMOOTHING_PRESETS`;
        ``False``: raw landmarks. ``"smooth"`` cuts the jitter of still faces about 4x
        with no measurable lag on pans, zooms and rolls; ``"responsive"`` follows
        sudden motion and expressions sooner and leaves more jitter at rest.
    min_cutoff, beta, d_cutoff:
        Giving any of these selects the per-coordinate :class:`OneEuroFilter` of
        earlier versions with these parameters (the others at their old defaults 1 Hz,
        5 per face size, 1 Hz; ``beta`` is per face size). That filter lags moving
        faces: on the benchmark its old defaults cost 24 % NME on moving faces.
    fps:
        Frame rate used to time frames passed without ``timestamp``.
    points:
        Landmark scheme of the returned faces, as in :meth:`LandmarkDetector.detect`.
    match_iou:
        Smallest overlap (IoU of crops) for a detection to be an already tracked face.
    max_faces:
        Most faces tracked at once (default: the detector's ``max_faces``, else no limit).

    A tracker is per-stream state: see the module documentation on thread safety.
    """

    def __init__(
        self,
        detector: Stages,
        *,
        redetect_interval: int | None = 10,
        min_confidence: float | None = None,
        smoothing: bool | str = True,
        min_cutoff: float | None = None,
        beta: float | None = None,
        d_cutoff: float | None = None,
        fps: float = 30.0,
        points: int | str | None = None,
        match_iou: float = 0.3,
        max_faces: int | None = None,
    ) -> None:
        if redetect_interval is not None and (
            isinstance(redetect_interval, bool)
            or not isinstance(redetect_interval, (int, np.integer))
            or redetect_interval < 0
        ):
            raise InvalidArgumentError(
                f"redetect_interval must be a number of frames >= 0 or None, got "
                f"{redetect_interval!r}"
            )
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise InvalidArgumentError(
                f"fps must be a positive number of frames per second, got {fps!r}"
            )
        if not 0.0 <= float(match_iou) <= 1.0:
            raise InvalidArgumentError(
                f"match_iou must be between 0 and 1, got {match_iou!r}"
            )
        if max_faces is not None and (not isinstance(max_faces, int) or max_faces < 1):
            raise InvalidArgumentError(
                f"max_faces must be a positive integer or None, got {max_faces!r}"
            )
        one_euro = (
            DEFAULT_MIN_CUTOFF if min_cutoff is None else min_cutoff,
            DEFAULT_BETA if beta is None else beta,
            DEFAULT_D_CUTOFF if d_cutoff is None else d_cutoff,
        )
        OneEuroFilter(*one_euro)  # validates the parameters
        if isinstance(smoothing, str):
            if smoothing not in SMOOTHING_PRESETS:
                raise InvalidArgumentError(
                    f"smoothing must be True, False or one of {', '.join(SMOOTHING_PRESETS)}, "
                    f"got {smoothing!r}"
                )
            preset: str | None = smoothing
        else:
            preset = "smooth" if smoothing else None
        if preset is not None and (min_cutoff, beta, d_cutoff) != (None, None, None):
            preset = "one-euro"
        self._det = detector
        self._interval = int(redetect_interval or 0)
        if min_confidence is None:
            min_confidence = detector.min_confidence or UNCALIBRATED_MIN_CONFIDENCE
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise InvalidArgumentError(
                f"min_confidence must be between 0 and 1 or None, got {min_confidence!r}")
        self._min_confidence = float(min_confidence)
        self._smoothing = preset
        self._filter_args = tuple(float(v) for v in one_euro)
        self._fps = float(fps)
        self._output = detector.output_scheme(points)
        self._match_iou = float(match_iou)
        self._max_faces = max_faces if max_faces is not None else detector.max_faces
        self._meanface = np.asarray(detector.spec.meanface, dtype=np.float64)
        self._in_use = threading.Lock()  # see _one_caller_at_a_time
        self.reset()

    def reset(self) -> None:
        """Forget every track and the frame count (e.g. at a scene cut or a new video)."""
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._frame = 0
        self._last_detection: int | None = None
        self.detector_runs = 0
        """How many frames the face detector ran on so far."""
        self.network_runs = 0
        """How many faces went through the landmark network so far."""

    @property
    def frame_index(self) -> int:
        """Index of the next frame :meth:`update` will see."""
        return self._frame

    @property
    def track_ids(self) -> list[int]:
        """Ids of the faces currently tracked."""
        return [t.id for t in self._tracks]

    @_one_caller_at_a_time
    def update(
        self,
        frame: Any,
        *,
        boxes: Sequence[Sequence[float]] | np.ndarray | None = None,
        timestamp: float | None = None,
        color: str = "bgr",
    ) -> FrameFaces:
        """Track faces into the next frame; returns its faces ordered by ``track_id``.

        ``frame``: an image as :meth:`LandmarkDetector.detect` accepts. ``boxes``:
        face boxes (x1, y1, x2, y2) to use as this frame's detections (the face
        detector does not run; a box overlapping a tracked face re-crops it).
        ``timestamp``: the frame's time in seconds (default ``index / fps``); it only
        matters for smoothing and must increase from frame to frame.
        """
        img = load_image(frame, color)
        index = self._frame
        time = float(timestamp) if timestamp is not None else index / self._fps
        det = self._det

        # 1. follow: last landmarks -> this frame's crops -> network
        tracks = self._tracks
        crops = np.stack([t.next_crop for t in tracks]) if tracks else np.zeros((0, 5))
        pixels, scores = det.run_network([(img, crops)])[0]
        self.network_runs += len(tracks)
        followed = det.confidence(scores)  # a face's value is the same in any batch
        alive = followed >= self._min_confidence
        result: dict[int, _Found] = {}
        for i, t in enumerate(tracks):
            if alive[i]:
                result[t.id] = _Found(pixels[i], scores[i], None, None, crops[i],
                                      float(followed[i]))

        # 2. detect when there is no face, one was lost, it is time, boxes were given, or
        # a followed face is cut by the border (or was, less than AFTER_CUT_FRAMES ago):
        # there the crop built from the previous landmarks is less accurate than the
        # detector's (leave and re-enter, benchmarks/video_bench.py, smoothed: 2.84 %
        # NME without this, 2.82 % while cut, 2.80 % also 4 frames after; per-frame
        # detection 2.81 %; 8 or 16 frames after gave no more).
        height, width = img.shape[:2]
        corners = crop_corners(crops)
        cut = ((corners < 0).any(axis=(1, 2)) | (corners[..., 0] > width - 1).any(axis=1)
               | (corners[..., 1] > height - 1).any(axis=1))
        for i, t in enumerate(tracks):
            t.since_cut = 0 if cut[i] else t.since_cut + 1
            cut[i] = t.since_cut <= AFTER_CUT_FRAMES
        due = (
            boxes is not None
            or not tracks
            or not alive.all()
            or bool((alive & cut).any())
            or (self._interval > 0 and (
                self._last_detection is None or index - self._last_detection >= self._interval))
        )
        detected = False
        new_tracks: list[_Track] = []
        if due:
            if boxes is not None:
                found = det.given_faces(boxes, img)
            else:
                found = det.find_faces(img)
                self.detector_runs += 1
                detected = True
            dboxes, dscores = found.boxes, found.scores
            dcrops = det.make_crops(found)
            self._last_detection = index
            pairs = _greedy_match(box_iou(dcrops, crops), self._match_iou)
            matched_dets = {d for d, _ in pairs}
            rerun: list[tuple[int, int]] = []  # (detection, track id)
            for d, ti in pairs:
                if boxes is not None or not alive[ti] or cut[ti]:
                    rerun.append((d, tracks[ti].id))
            room = (
                len(dcrops) if self._max_faces is None
                else self._max_faces - len(result) - sum(1 for _, ti in pairs if not alive[ti])
            )
            for d in range(len(dcrops)):
                if d not in matched_dets and room > 0:
                    track = _Track(self._next_id, np.zeros(4), self._new_filter())
                    self._next_id += 1
                    new_tracks.append(track)
                    rerun.append((d, track.id))
                    room -= 1
            if rerun:
                idx = [d for d, _ in rerun]
                kps = None if found.keypoints is None else found.keypoints[idx]
                lcrops, (lp, ls) = det.locate(
                    [(img, FaceBoxes(dboxes[idx], dscores[idx], kps))])[0]
                self.network_runs += len(rerun)
                lconf = det.confidence(ls)
                for k, (d, tid) in enumerate(rerun):
                    result[tid] = _Found(lp[k], ls[k], dboxes[d], float(dscores[d]), lcrops[k],
                                         float(lconf[k]))

        # 3. keep tracks that have a result this frame; drop duplicates of one face
        by_id = {t.id: t for t in tracks + new_tracks}
        ids = sorted(result, key=lambda tid: (-result[tid].confidence, tid))
        kept: list[int] = []
        for tid in ids:
            crop = result[tid].crop[None]
            if kept and box_iou(crop, np.stack([result[k].crop for k in kept])).max() > 0.6:
                continue
            kept.append(tid)
        kept.sort()

        # 4. next crops, smoothing, faces
        self._tracks = [by_id[tid] for tid in kept]
        for tid in kept:
            pts, sc, crop = result[tid].points, result[tid].scores, result[tid].crop
            if result[tid].confidence >= self._min_confidence:
                by_id[tid].next_crop = det.crops_from_landmarks(
                    CropLandmarks(pts[None], sc[None]), img.shape[:2])[0]
            else:
                by_id[tid].next_crop = np.asarray(crop)
        out: list[Face] = []
        for tid in kept:
            track = by_id[tid]
            pts, sc, box, dscore, crop, conf = result[tid]
            if box is None:
                box = np.concatenate([pts.min(axis=0), pts.max(axis=0)])
                dscore = conf
            shown = pts
            if isinstance(track.smoother, FaceSmoother):
                shown = track.smoother(pts, time, scores=sc)
            elif track.smoother is not None:
                size = math.sqrt(max((crop[2] - crop[0]) * (crop[3] - crop[1]), 1e-9))
                shown = track.smoother(pts, time, scale=size)
            out.extend(
                det.build_faces(CropLandmarks(shown[None], sc[None]), box[None],
                                np.array([dscore]), crop[None], self._output, [tid],
                                confidence=np.array([conf]))
            )
        self._frame += 1
        return FrameFaces(out, img, index, time, detected)

    def _new_filter(self) -> OneEuroFilter | FaceSmoother | None:
        if self._smoothing is None:
            return None
        if self._smoothing == "one-euro":
            a, b, c = self._filter_args
            return OneEuroFilter(a, b, c)
        return FaceSmoother(*SMOOTHING_PRESETS[self._smoothing])


def track(
    detector: Stages,
    source: Any,
    *,
    boxes: Sequence[Sequence[float]] | np.ndarray | None = None,
    color: str = "bgr",
    points: int | str | None = None,
    fps: float | None = None,
    **options: Any,
) -> Iterator[FrameFaces]:
    """Generator behind :meth:`pipdetect.LandmarkDetector.track` (see there).

    Opens ``source`` at once (so a missing file raises here, not at the first
    frame) and releases it when the generator is exhausted or closed.
    """
    from .video import open_frames

    frames, info = open_frames(source)
    tracker = Tracker(detector, points=points, fps=fps or info.fps, **options)
    return _run(tracker, frames, boxes, color)


def _run(
    tracker: Tracker, frames: Iterator[Any], boxes: Any, color: str
) -> Iterator[FrameFaces]:
    try:
        for i, frame in enumerate(frames):
            yield tracker.update(frame, boxes=boxes if i == 0 else None, color=color)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
