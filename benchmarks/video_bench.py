"""Video benchmark on real faces: per-frame detection vs tracking vs tracking + smoothing.

    python benchmarks/video_bench.py               # bundled default model, ~4 min on 2 cores
    python benchmarks/video_bench.py --model m.onnx --photos 2 --frames 24     # quicker
    python benchmarks/video_bench.py --compare-crops   # + tracking with the mean-face crop
    python benchmarks/video_bench.py --json out.json   # results (default video_results.json)
    python benchmarks/video_bench.py --speed --update-docs   # speed only, ~1 min; docs table

Clips are synthesised from the annotated LFPW test photos (``../shared/data/lfpw_test``,
68 points, read in place, never copied): every frame is the photo under a known
similarity warp (camera pan, zoom, roll about the face), plus Gaussian sensor noise
(sigma 3 grey levels), so every frame's true landmarks are the photo's landmarks
under the same warp. Motion kinds (``KINDS``):

* ``still``: noise only; ``slow-pan`` / ``fast-pan``: back-and-forth pans of 6 % of
  the frame width per half-period of the clip / 20 % of it every 8 frames (up to
  ~25 px, ~20 % of the face width per frame); ``zoom``: scale 0.8-1.25;
  ``roll``: +-15 degrees; ``leave``: the face pans (~20 px per frame) out of the right
  edge, stays out for 6 frames and comes back; ``cross``: two photos' faces (the second pasted
  with a feathered mask) pass each other horizontally.

Per motion kind and method it reports

* **NME**: mean landmark error in % of the inter-ocular distance (outer eye
  corners, points 36 and 45), over the frames where the face is wholly in view
  and was found;
* **jitter**: mean frame-to-frame change of the error vector (prediction - truth),
  per point, in % of the inter-ocular distance: how much the landmarks shake
  around the truth;
* **lag**: the delay d (frames, in steps of 1/4, between -2 and 4) for which the
  predictions best match the truth of d frames earlier (0 for still faces by
  definition; "-" there);
* **lost**: frames where the face was wholly in view but no prediction matched it
  (a prediction matches a true face when its mean point error is below 50 % of
  the inter-ocular distance; one-to-one, greedy);
* **switches**: changes of the track id matched to one true face between two
  frames (a face that left the picture entirely may come back with a new id:
  not a switch). Per-frame detection has no ids ("-").

Methods, measured side by side in one run on the same clips: ``per-frame``
(``det.detect`` on every frame), ``tracked`` (``det.track(frames, smoothing=False)``)
and ``smoothed`` (``det.track(frames)``, the defaults). Prints a Markdown table and
the CPU; ``--json`` writes everything (default ``benchmarks/video_results.json``).
The core (``make_clip``, ``run_method``, ``score_clip``, ``summarise``) is also used
by ``tests/test_video_accuracy.py``.

**Speed** (``measure_speed``, part of the default run; ``--speed`` measures only it
and replaces only the ``"speed"`` section of the JSON): frames per second of the
three methods on one whole clip, a slow pan of one face in 640x480 frames
(``SPEED_*``), so the frames on which tracking re-runs the face detector
(``redetect_interval`` 10) count as they come. The methods take turns in a fresh
random order every round (``bench.Timer``); figures are medians over ``--rounds``,
speed-ups medians of the per-round ratios. The section names the CPU and counts
the face-detector runs and network passes of each method on the clip.
``--update-docs`` rewrites the table in docs/video.md from the JSON
(``speed_markdown``; ``tests/test_readme.py`` checks the page against the JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import inspect
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LFPW = ROOT.parent / "shared" / "data" / "lfpw_test"
DEFAULT_JSON = HERE / "video_results.json"
DOCS_PAGE = ROOT / "docs" / "video.md"
KINDS = ("still", "slow-pan", "fast-pan", "zoom", "roll", "leave", "cross")
METHODS = ("per-frame", "tracked", "smoothed")
CANVAS = (480, 360)
"""(width, height) of the synthesised frames."""
FACE_WIDTH = 140.0
"""Width in pixels of the landmark box of a face in the synthesised frames (100 in ``cross``)."""
NOISE_SIGMA = 3.0
FPS = 30.0
INTEROCULAR = (36, 45)
SPEED_CANVAS = (640, 480)
"""(width, height) of the frames the speed is measured on."""
SPEED_KIND = "slow-pan"
SPEED_FRAMES = 60
"""Frames of the speed clip: 6 face-detector runs at the default redetect_interval 10."""
SPEED_ROUNDS = 9
MATCH_NME = 0.5
LAG_STEPS = np.arange(-2.0, 4.0001, 0.25)


@dataclass
class Photo:
    """An annotated photo: BGR image and its 68 landmarks (0-based, pixel-centre)."""

    image: np.ndarray
    points: np.ndarray
    name: str


@dataclass
class Clip:
    """A synthesised clip: frames and every face's true landmarks in every frame."""

    kind: str
    name: str
    frames: list[np.ndarray]
    truth: np.ndarray
    """(T, F, L, 2) true landmarks (also where the face is out of view)."""
    in_view: np.ndarray
    """(T, F) bool: the face's landmark box lies wholly inside the frame."""
    out_of_view: np.ndarray
    """(T, F) bool: no landmark inside the frame."""


def read_pts(path: Path) -> np.ndarray:
    text = path.read_text()
    body = text[text.index("{") + 1 : text.index("}")]
    return np.array(body.split(), dtype=np.float64).reshape(-1, 2)


def load_photos(folder: Path = LFPW, count: int = 4, offset: int = 0) -> list[Photo]:
    """The first ``count`` photos (by name, after ``offset``) of an image + .pts folder."""
    import cv2

    out = []
    for pts_path in sorted(folder.glob("*.pts"))[offset : offset + count]:
        image_path = pts_path.with_suffix(".jpg")
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read {image_path}")
        out.append(Photo(image, read_pts(pts_path), pts_path.stem))
    return out


def _sim(scale: float, angle_deg: float, centre: Sequence[float], shift: Sequence[float]) -> Any:
    """3x3 similarity: scale and rotate about ``centre``, then translate by ``shift``."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    cx, cy = centre
    return np.array([
        [c, -s, cx - c * cx + s * cy + shift[0]],
        [s, c, cy - s * cx - c * cy + shift[1]],
        [0.0, 0.0, 1.0],
    ])


def _placement(points: np.ndarray, width: float, centre: Sequence[float]) -> Any:
    """3x3 transform scaling the photo so its face's landmark box is ``width`` wide,
    centred at ``centre`` of the canvas."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    k = width / float(hi[0] - lo[0])
    mid = (lo + hi) / 2
    return np.array([[k, 0, centre[0] - k * mid[0]], [0, k, centre[1] - k * mid[1]], [0, 0, 1.0]])


def face_width(canvas: tuple[int, int] = CANVAS) -> float:
    """Width of a face's landmark box in frames of ``canvas`` (width, height): FACE_WIDTH
    on the standard canvas, the same share of the frame's width on others."""
    return FACE_WIDTH * canvas[0] / CANVAS[0]


def motion(kind: str, t: int, frames: int, face: int = 0,
           canvas: tuple[int, int] = CANVAS) -> tuple[float, float, float, float]:
    """(dx, dy, scale, roll in degrees) of face ``face`` at frame ``t`` in frames of
    ``canvas`` (width, height); dx, dy in pixels."""
    w = canvas[0]
    phase = 2 * math.pi * t / frames
    if kind == "still":
        return 0.0, 0.0, 1.0, 0.0
    if kind == "slow-pan":
        return 0.06 * w * math.sin(phase), 0.02 * w * math.sin(2 * phase), 1.0, 0.0
    if kind == "fast-pan":  # triangle wave: 0.2 w per 8 frames
        u = (t % 16) / 8.0
        tri = u if u <= 1 else 2 - u
        return 0.2 * w * (tri - 0.5), 0.0, 1.0, 0.0
    if kind == "zoom":
        return 0.0, 0.0, math.exp(math.log(1.25) * math.sin(phase)), 0.0
    if kind == "roll":
        return 0.0, 0.0, 1.0, 15.0 * math.sin(phase)
    if kind == "leave":  # from near the right edge out of the picture, 6 frames away, back
        near = 0.5 * w - 0.5 * face_width(canvas) - 20
        away = 0.5 * w + 0.6 * face_width(canvas)
        hold = max(1, frames // 8)
        ramp = max(1, (frames - 6 - 2 * hold) // 2)  # ~20 px per frame at 32 frames
        k = t - hold
        if k <= 0:
            return near, 0.0, 1.0, 0.0
        if k <= ramp:
            return near + (away - near) * k / ramp, 0.0, 1.0, 0.0
        if k <= ramp + 6:
            return away, 0.0, 1.0, 0.0
        back = min(1.0, (k - ramp - 6) / ramp)
        return away - (away - near) * back, 0.0, 1.0, 0.0
    if kind == "cross":  # face 0 left -> right, face 1 right -> left, overlapping a little
        u = t / max(frames - 1, 1)
        span = 0.55 * w
        dx = span * (u - 0.5) * (1 if face == 0 else -1)
        return dx, 0.0, 1.0, 0.0
    raise ValueError(f"unknown motion kind {kind!r}; known: {', '.join(KINDS)}")


def _face_mask(photo: Photo, shape: tuple[int, int]) -> np.ndarray:
    """A feathered elliptical mask (float32 0..1) around the face of ``photo``."""
    import cv2

    lo, hi = photo.points.min(axis=0), photo.points.max(axis=0)
    mid, half = (lo + hi) / 2, (hi - lo) / 2 * np.array([1.35, 1.6])
    mask = np.zeros(shape, np.float32)
    cv2.ellipse(mask, (int(mid[0]), int(mid[1] - 0.15 * half[1])),
                (int(half[0]), int(half[1])), 0, 0, 360, 1.0, -1)
    k = int(max(3, 0.15 * half[0])) | 1
    return cv2.GaussianBlur(mask, (k, k), 0)


def make_clip(kind: str, photos: Sequence[Photo], frames: int = 32, seed: int = 0,
              noise: float = NOISE_SIGMA, canvas: tuple[int, int] = CANVAS) -> Clip:
    """Clip ``kind`` of ``photos[0]`` (and ``photos[1]`` for ``cross``) with its truth,
    frames of ``canvas`` (width, height) pixels (faces and motions scale with its width)."""
    import cv2

    w, h = canvas
    rng = np.random.default_rng(seed)
    faces = list(photos[:2]) if kind == "cross" else [photos[0]]
    if kind == "cross" and len(faces) < 2:
        raise ValueError("a cross clip needs two photos")
    if kind == "cross":
        width = 100.0 * w / CANVAS[0]
        centres = [(w / 2, h / 2 - 0.55 * width), (w / 2, h / 2 + 0.55 * width)]
    else:
        width = face_width(canvas)
        centres = [(w / 2, h / 2)]
    masks = [None] + [_face_mask(p, p.image.shape[:2]) for p in faces[1:]]
    out, truth = [], np.zeros((frames, len(faces), len(faces[0].points), 2))
    for t in range(frames):
        canvas = None
        for f, (photo, centre, mask) in enumerate(zip(faces, centres, masks, strict=True)):
            dx, dy, s, roll = motion(kind, t, frames, f, (w, h))
            m = (_sim(s, roll, centre, (dx, dy)) @ _placement(photo.points, width, centre))[:2]
            pts = photo.points @ m[:, :2].T + m[:, 2]
            truth[t, f] = pts
            warped = cv2.warpAffine(photo.image, m, (w, h), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
            if canvas is None:
                canvas = warped.astype(np.float32)
            else:
                alpha = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
                canvas = canvas * (1 - alpha) + warped.astype(np.float32) * alpha
        assert canvas is not None
        canvas += rng.normal(0.0, noise, canvas.shape).astype(np.float32)
        out.append(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
    lo, hi = truth.min(axis=2), truth.max(axis=2)
    in_view = (lo[..., 0] >= 0) & (lo[..., 1] >= 0) & (hi[..., 0] <= w - 1) & (hi[..., 1] <= h - 1)
    inside = ((truth[..., 0] >= 0) & (truth[..., 0] <= w - 1)
              & (truth[..., 1] >= 0) & (truth[..., 1] <= h - 1))
    name = "+".join(p.name for p in faces)
    return Clip(kind, name, out, truth, in_view, ~inside.any(axis=2))


# ----------------------------------------------------------------------------- running


Prediction = list[tuple[np.ndarray, np.ndarray, "int | None"]]
"""One frame's faces: (landmarks (L, 2), scores (L,), track id or None)."""


def run_method(det: Any, clip: Clip, method: str, **options: Any) -> list[Prediction]:
    """Every frame's faces by ``method`` (``per-frame``, ``tracked``, ``smoothed``).

    ``options`` go to ``det.track`` (tracked / smoothed)."""
    def faces_of(faces: Iterable[Any]) -> Prediction:
        return [(np.asarray(f.landmarks, np.float64), np.asarray(f.scores, np.float64),
                 f.track_id) for f in faces]

    if method == "per-frame":
        return [faces_of(det.detect(frame)) for frame in clip.frames]
    if method in ("tracked", "smoothed"):
        opts = {"smoothing": method == "smoothed", **options}
        if opts.pop("crop_rule", "model") == "meanface":  # the pre-issue-15 tracking crop
            from unittest import mock

            with mock.patch("pipdetect.track.training_crop_enlargement", return_value=None):
                return [faces_of(r) for r in det.track(iter(clip.frames), fps=FPS, **opts)]
        return [faces_of(r) for r in det.track(iter(clip.frames), fps=FPS, **opts)]
    raise ValueError(f"unknown method {method!r}")


def _iod(points: np.ndarray) -> Any:
    a, b = INTEROCULAR
    return np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1)


def match(clip: Clip, preds: Sequence[Prediction]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame and true face: matched landmarks (T, F, L, 2) (NaN: none), ids (T, F)
    (-1: none or no id) and the matched faces' scores (T, F, L) (NaN: none)."""
    t_n, f_n, l_n, _ = clip.truth.shape
    pts = np.full((t_n, f_n, l_n, 2), np.nan)
    ids = np.full((t_n, f_n), -1)
    scores = np.full((t_n, f_n, l_n), np.nan)
    for t, faces in enumerate(preds):
        if not faces:
            continue
        iod = _iod(clip.truth[t])
        err = np.array([[np.linalg.norm(p[0] - clip.truth[t, f], axis=1).mean() / iod[f]
                         if p[0].shape == clip.truth[t, f].shape else np.inf
                         for p in faces] for f in range(f_n)])
        used_f: set[int] = set()
        used_k: set[int] = set()
        for flat in np.argsort(err, axis=None):
            f, k = divmod(int(flat), len(faces))
            if err[f, k] >= MATCH_NME:
                break
            if f in used_f or k in used_k:
                continue
            used_f.add(f)
            used_k.add(k)
            pts[t, f] = faces[k][0]
            scores[t, f] = faces[k][1]
            ids[t, f] = -1 if faces[k][2] is None else int(faces[k][2])
    return pts, ids, scores


def _lag(pred: np.ndarray, truth: np.ndarray, ok: np.ndarray) -> float | None:
    """Delay in frames (LAG_STEPS) that best aligns pred (T, L, 2) with truth (T, L, 2)."""
    t_n = len(truth)
    idx = np.arange(t_n)
    best, best_err = None, math.inf
    for d in LAG_STEPS:
        src = idx - d
        valid = ok & (src >= 0) & (src <= t_n - 1)
        if valid.sum() < max(4, ok.sum() // 2):
            continue
        lo = np.clip(np.floor(src).astype(int), 0, t_n - 1)
        hi = np.clip(lo + 1, 0, t_n - 1)
        frac = (src - lo)[:, None, None]
        shifted = truth[lo] * (1 - frac) + truth[hi] * frac
        e = float(np.linalg.norm(pred[valid] - shifted[valid], axis=-1).mean())
        if e < best_err - 1e-9:
            best, best_err = float(d), e
    return best


def score_clip(clip: Clip, preds: Sequence[Prediction]) -> dict[str, Any]:
    """NME, jitter and lag (per face), lost frames and identity switches of one clip."""
    pts, ids, _ = match(clip, preds)
    iod = _iod(clip.truth)  # (T, F)
    found = ~np.isnan(pts[..., 0, 0])
    ok = found & clip.in_view
    err = pts - clip.truth
    nme = np.linalg.norm(err, axis=-1).mean(axis=-1) / iod  # (T, F)
    jit = []
    for f in range(clip.truth.shape[1]):
        both = ok[1:, f] & ok[:-1, f]
        if both.any():
            d = np.linalg.norm(err[1:, f] - err[:-1, f], axis=-1).mean(axis=-1) / iod[1:, f]
            jit.extend(d[both].tolist())
    lags = []
    if clip.kind != "still":
        for f in range(clip.truth.shape[1]):
            lag = _lag(np.nan_to_num(pts[:, f]), clip.truth[:, f], ok[:, f])
            if lag is not None:
                lags.append(lag)
    switches = 0
    for f in range(clip.truth.shape[1]):
        last = None
        for t in range(len(ids)):
            if clip.out_of_view[t, f]:
                last = None
            if ids[t, f] < 0:
                continue
            if last is not None and ids[t, f] != last:
                switches += 1
            last = int(ids[t, f])
    has_ids = bool((ids >= 0).any())
    return {
        "clip": clip.name,
        "nme_sum": float(nme[ok].sum()),
        "nme_n": int(ok.sum()),
        "jitter_sum": float(np.sum(jit)),
        "jitter_n": len(jit),
        "lags": lags,
        "lost": int((clip.in_view & ~found).sum()),
        "switches": switches if has_ids else None,
    }


def summarise(scores: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pool per-clip scores of one motion kind and method: NME and jitter in %, mean lag."""
    n = sum(s["nme_n"] for s in scores)
    jn = sum(s["jitter_n"] for s in scores)
    lags = [v for s in scores for v in s["lags"]]
    sw = [s["switches"] for s in scores if s["switches"] is not None]
    return {
        "nme": 100 * sum(s["nme_sum"] for s in scores) / n if n else None,
        "jitter": 100 * sum(s["jitter_sum"] for s in scores) / jn if jn else None,
        "lag": float(np.mean(lags)) if lags else None,
        "lost": sum(s["lost"] for s in scores),
        "switches": sum(sw) if sw else None,
        "face_frames": n,
        "clips": len(scores),
    }


def photos_for(kind: str, photos: Sequence[Photo], count: int) -> list[list[Photo]]:
    """The photo groups of ``kind``'s clips: one photo each, two for ``cross``."""
    if kind == "cross":
        return [[photos[i % len(photos)], photos[(i + 1) % len(photos)]] for i in range(count)]
    return [[photos[i % len(photos)]] for i in range(count)]


def evaluate(det: Any, photos: Sequence[Photo], *, kinds: Sequence[str] = KINDS,
             clips_per_kind: int = 4, frames: int = 32,
             methods: dict[str, tuple[str, dict[str, Any]]] | None = None,
             progress: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """{kind: {method label: summary}} for the clips of ``kinds``.

    ``methods``: label -> (method, det.track options); default the three of METHODS."""
    methods = methods or {m: (m, {}) for m in METHODS}
    out: dict[str, dict[str, Any]] = {}
    for k_i, kind in enumerate(kinds):
        per: dict[str, list[dict[str, Any]]] = {label: [] for label in methods}
        for c_i, group in enumerate(photos_for(kind, photos, clips_per_kind)):
            clip = make_clip(kind, group, frames, seed=1000 * k_i + c_i)
            for label, (method, opts) in methods.items():
                per[label].append(score_clip(clip, run_method(det, clip, method, **opts)))
        out[kind] = {label: summarise(s) for label, s in per.items()}
        if progress:
            progress(kind)
    return out


# ----------------------------------------------------------------------------- speed


@contextlib.contextmanager
def _counting(det: Any, name: str, items: Callable[..., int] | None = None) -> Iterator[list[int]]:
    """Count calls of ``det.<name>`` (or what ``items(*args)`` says each call is worth)."""
    calls = [0]
    original = getattr(det, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1 if items is None else items(*args)
        return original(*args, **kwargs)

    setattr(det, name, counted)  # an instance attribute: shadows the method
    try:
        yield calls
    finally:
        delattr(det, name)


def measure_speed(det: Any, photo: Photo, *, frames: int = SPEED_FRAMES,
                  rounds: int = SPEED_ROUNDS, kind: str = SPEED_KIND,
                  canvas: tuple[int, int] = SPEED_CANVAS, other: Any = None) -> dict[str, Any]:
    """Frames per second of the METHODS on one whole clip of ``photo``'s face (see the
    module documentation): the ``"speed"`` section of the results JSON. ``other``: a
    second detector (the other bundled model) whose smoothed tracking takes turns too."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import bench

    from pipdetect import Tracker
    from pipdetect._cpu import cpu_info, cpu_summary

    clip = make_clip(kind, [photo], frames, seed=0, canvas=canvas)
    runs: dict[str, Callable[[], list[Any]]] = {
        "per-frame": lambda: [det.detect(frame) for frame in clip.frames],
        "tracked": lambda: list(det.track(iter(clip.frames), fps=FPS, smoothing=False)),
        "smoothed": lambda: list(det.track(iter(clip.frames), fps=FPS)),
    }
    owner = dict.fromkeys(runs, det)
    if other is not None:
        runs["smoothed, other model"] = lambda: list(other.track(iter(clip.frames), fps=FPS))
        owner["smoothed, other model"] = other
    methods: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():  # once untimed: what each method does on the clip
        who = owner[name]
        with _counting(who, "find_faces") as finder, _counting(
                who, "run_network", lambda items: sum(len(c) for _, c in items)) as network:
            result = run()
        methods[name] = {"detector_runs": finder[0], "network_passes": network[0],
                         "frames_with_one_face": sum(len(faces) == 1 for faces in result)}
    load_before = os.getloadavg()[0]
    samples = bench.Timer(rounds, block=0.0).run(runs)
    load_after = os.getloadavg()[0]
    for name, times in samples.items():
        methods[name].update({
            "fps": round(frames / bench.med(times), 1),
            "ms_per_frame": round(1000 * bench.med(times) / frames, 2),
            "times_faster_than_per_frame": round(bench.ratio(samples["per-frame"], times), 2),
            "seconds_per_clip": [round(t, 5) for t in times],
        })
    info = cpu_info()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "model": det.spec.name, "other_model": None if other is None else other.spec.name,
        "cpu_summary": cpu_summary(info), "cpu_info": info,
        "photo": photo.name, "kind": kind, "canvas": list(canvas), "frames": frames,
        "face_width": face_width(canvas), "fps_of_clip": FPS, "noise_sigma": NOISE_SIGMA,
        "redetect_interval": inspect.signature(Tracker).parameters["redetect_interval"].default,
        "rounds": rounds,
        "load_average_before_after": [round(load_before, 2), round(load_after, 2)],
        "methods": methods,
    }


SPEED_LABELS = {
    "smoothed": "`det.track(frames)` (smoothing on, the default)",
    "tracked": "`det.track(frames, smoothing=False)`",
    "per-frame": "`det.detect(frame)` on every frame",
    "smoothed, other model": "`det.track(frames)` with the other bundled model",
}
SPEED_BEGIN = "<!-- speed table: python benchmarks/video_bench.py --speed --update-docs -->"
SPEED_END = "<!-- end of speed table -->"


def speed_markdown(results: dict[str, Any]) -> str:
    """The speed table of docs/video.md, made from the results JSON (with its markers)."""
    speed = results.get("speed")
    if not speed:
        body = ("Not measured yet: `python benchmarks/video_bench.py --speed --update-docs` "
                "measures it and writes the table here.")
        return f"{SPEED_BEGIN}\n{body}\n{SPEED_END}"
    w, h = speed["canvas"]
    n = speed["frames"]
    lines = [f"| {w}×{h}, one face, {n} frames | frames per second | ms per frame "
             "| × detect every frame | face detector runs | network passes |",
             "|---|---|---|---|---|---|"]
    for key, label in SPEED_LABELS.items():
        if key not in speed["methods"]:
            continue
        m = speed["methods"][key]
        lines.append(f"| {label} | {m['fps']:.1f} | {m['ms_per_frame']:.2f} "
                     f"| {m['times_faster_than_per_frame']:.2f} | {m['detector_runs']} "
                     f"| {m['network_passes']} |")
    before, after = speed["load_average_before_after"]
    motion_name = speed["kind"].replace("-", " ")
    other = f" (other row: `{speed['other_model']}`)" if speed.get("other_model") else ""
    lines += ["", f"Measured {speed['date']} on {speed['cpu_summary']}: the model "
              f"`{speed['model']}`{other}, a {motion_name} of the face of `{speed['photo']}` "
              f"(landmark box {speed['face_width']:.0f} px wide, σ = {speed['noise_sigma']:g} "
              "noise), "
              f"`redetect_interval={speed['redetect_interval']}`; medians of "
              f"{speed['rounds']} rounds in which the methods took turns in random order; "
              f"load average {before:.2f} before, {after:.2f} after."]
    return "\n".join([SPEED_BEGIN, *lines, SPEED_END])


def update_docs(results: dict[str, Any], page: Path = DOCS_PAGE) -> None:
    """Replace the speed table of ``page`` (between its markers) by :func:`speed_markdown`."""
    text = page.read_text()
    start, end = text.index(SPEED_BEGIN), text.index(SPEED_END) + len(SPEED_END)
    page.write_text(text[:start] + speed_markdown(results) + text[end:])


# ----------------------------------------------------------------------------- report


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown(results: dict[str, dict[str, Any]]) -> str:
    labels = list(next(iter(results.values())))
    head = "| motion | " + " | ".join(
        f"NME % {lb}" for lb in labels) + " | " + " | ".join(
        f"jitter % {lb}" for lb in labels) + " | " + " | ".join(
        f"lag {lb}" for lb in labels) + " | lost (" + " / ".join(labels) + ") | switches (" + \
        " / ".join(labels[1:]) + ") |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for kind, row in results.items():
        cells = [kind]
        cells += [_fmt(row[lb]["nme"]) for lb in labels]
        cells += [_fmt(row[lb]["jitter"]) for lb in labels]
        cells += [_fmt(row[lb]["lag"]) for lb in labels]
        cells.append(" / ".join(_fmt(row[lb]["lost"]) for lb in labels))
        cells.append(" / ".join(_fmt(row[lb]["switches"]) for lb in labels[1:]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model file or name (default: the bundled default)")
    parser.add_argument("--data", type=Path, default=LFPW, help="LFPW test folder (images + .pts)")
    parser.add_argument("--photos", type=int, default=8, help="clips (photos) per motion kind")
    parser.add_argument("--frames", type=int, default=32, help="frames per clip")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated motion kinds")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compare-crops", action="store_true",
                        help="also track with the mean-face-fit crop (the rule before issue 15)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help=f"write results here (default {DEFAULT_JSON.relative_to(ROOT)})")
    parser.add_argument("--speed", action="store_true",
                        help="measure only the speed; replace only the JSON's speed section")
    parser.add_argument("--no-speed", action="store_true",
                        help="measure only the accuracy (the JSON's speed section is kept)")
    parser.add_argument("--rounds", type=int, default=SPEED_ROUNDS, help="speed rounds")
    parser.add_argument("--speed-frames", type=int, default=SPEED_FRAMES,
                        help="frames of the speed clip")
    parser.add_argument("--other", default="pipnet-lite0-300w", metavar="MODEL",
                        help="a second model also timed tracking (default: the bundled fp32 "
                             "model; 'none' to skip)")
    parser.add_argument("--update-docs", action="store_true",
                        help="rewrite docs/video.md's speed table from the JSON afterwards")
    args = parser.parse_args(argv)
    if args.speed and args.no_speed:
        parser.error("--speed and --no-speed exclude each other")

    from pipdetect import LandmarkDetector

    if not args.data.is_dir():
        print(f"no LFPW test photos at {args.data} (research data, developers' machines only)",
              file=sys.stderr)
        return 2
    det = LandmarkDetector(args.model, threads=args.threads) if args.model else \
        LandmarkDetector(threads=args.threads)
    old = json.loads(args.json.read_text()) if args.json.is_file() else {}
    if args.speed:
        report = {**old, "speed": _speed(det, args)}
    else:
        report = _accuracy(det, args)
        speed = old.get("speed") if args.no_speed else _speed(det, args)
        if speed:
            report["speed"] = speed
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.json}")
    if args.update_docs:
        update_docs(report)
        print(f"wrote the speed table of {DOCS_PAGE.relative_to(ROOT)}")
    return 0


def _speed(det: Any, args: argparse.Namespace) -> dict[str, Any]:
    photo = load_photos(args.data, 1)[0]
    start = time.perf_counter()
    from pipdetect import LandmarkDetector

    other = None if args.other == "none" else LandmarkDetector(args.other, threads=args.threads)
    speed = measure_speed(det, photo, frames=args.speed_frames, rounds=args.rounds, other=other)
    speed["threads"] = args.threads
    print(f"speed, {time.perf_counter() - start:.0f} s:\n")
    print(speed_markdown({"speed": speed}).split("\n", 1)[1].rsplit("\n", 1)[0])
    lost = {k: m["frames_with_one_face"] for k, m in speed["methods"].items()
            if m["frames_with_one_face"] != speed["frames"]}
    if lost:
        print(f"WARNING: frames with exactly one face, by method: {lost} of {speed['frames']}",
              file=sys.stderr)
    return speed


def _accuracy(det: Any, args: argparse.Namespace) -> dict[str, Any]:
    from pipdetect._cpu import cpu_info

    photos = load_photos(args.data, args.photos + 1)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    start = time.perf_counter()
    methods = {m: (m, {}) for m in METHODS}
    if args.compare_crops:
        methods["tracked, mean-face crop"] = ("tracked", {"crop_rule": "meanface"})
    results = evaluate(det, photos, methods=methods,
                       kinds=kinds, clips_per_kind=args.photos, frames=args.frames,
                       progress=lambda k: print(f"  {k}: {time.perf_counter() - start:.0f} s",
                                                file=sys.stderr))
    cpu = cpu_info()
    print(f"model: {det.spec.name} ({args.model or 'bundled default'}); CPU: {cpu.get('model')}, "
          f"{cpu.get('cores')} cores; {args.photos} clips x {args.frames} frames per kind, "
          f"{time.perf_counter() - start:.0f} s")
    print()
    print(markdown(results))
    print()
    return {
        "model": det.spec.name, "model_file": args.model, "accuracy": det.spec.accuracy,
        "cpu": cpu.get("model"), "cores": cpu.get("cores"), "photos": args.photos,
        "frames": args.frames, "fps": FPS, "canvas": list(CANVAS), "noise_sigma": NOISE_SIGMA,
        "results": results,
    }


if __name__ == "__main__":
    sys.exit(main())
