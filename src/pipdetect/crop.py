"""Face box -> model crop, the warp into the network input, and the way back.

Conventions (used everywhere in pipdetect):

* Boxes and crops are ``(x1, y1, x2, y2)`` float pixel coordinates in the
  original image, x to the right, y down, pixel centres at integer coordinates
  (OpenCV convention). A box's width is ``x2 - x1``.
* A crop is an oriented rectangle ``(x1, y1, x2, y2, angle)``: the rectangle
  ``(x1, y1, x2, y2)`` turned by ``angle`` degrees about its centre. The angle is
  the direction of the crop's x axis in the image, ``(cos a, sin a)`` with y down,
  so a positive angle turns the crop clockwise on screen; it is the face's roll
  (the eye line's angle) for levelled crops, and 0 for axis-aligned ones, which
  are the special case: everything here also accepts ``(N, 4)`` crops (angle 0).
  Crops need not be square: like the PIP-Net training crops they are stretched
  to the network's input size, so the network always sees an upright face.
* A normalised model coordinate ``(u, v)`` (0 = crop's left / top edge, 1 = right
  / bottom edge) maps to ``centre + (u - 0.5) * w * ex + (v - 0.5) * h * ey`` image
  pixels, with ``ex = (cos a, sin a)`` and ``ey = (-sin a, cos a)``; at angle 0 that
  is ``x1 + u * (x2 - x1)`` (the reference convention: ``u * crop_width`` pixels into
  the crop). The warp samples the crop exactly like ``cv2.resize`` of
  ``image[y1:y2, x1:x2]`` with bilinear interpolation at angle 0, so integer crops
  reproduce the reference preprocessing.
* Crops that reach outside the image are padded with black, never squeezed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidBoxError, ModelFormatError

__all__ = [
    "CropPolicy",
    "as_boxes",
    "as_crops",
    "box_iou",
    "crop_affine",
    "crop_corners",
    "crop_from_landmark_box",
    "crop_from_landmarks",
    "crop_from_points",
    "crops_to_image",
    "keypoint_roll",
    "landmark_roll",
    "levelled_faces",
    "training_crop_enlargement",
    "turned_image",
    "warp_crops",
    "wrap_degrees",
]

_FEATURES = 11  # 1 + 5 keypoints x (x, y)
_PARAM_LIMITS = np.array([4.0, 4.0, 3.0, 3.0])
"""Bounds of a crop's (dcx, dcy, log w ratio, log h ratio): the crop's centre within 4 box
sizes of the box's, its size within e^3 = 20x of the box's (the official policies: < 0.5)."""
_MAX_KEYPOINT_WEIGHT = 100.0


@dataclass(frozen=True, eq=False)
class CropPolicy:
    """How a face detector's box (and its five keypoints) becomes the model's crop.

    Both mappings predict the crop relative to the face box: centre offset in
    units of the box's width / height and the log of the size ratio,
    ``(dcx, dcy, log(crop_w / box_w), log(crop_h / box_h))``.

    * ``box``: 4 numbers, used when only a box is known (a box given by the user).
    * ``keypoints``: an (11, 4) matrix applied to the features
      ``[1, (kx1 - cx) / w, (ky1 - cy) / h, ..., (ky5 - cy) / h]`` built from
      YuNet's five keypoints (right eye, left eye, nose tip, right and left
      mouth corner); ``None`` to use ``box`` for detections too.

    Stored in the model metadata as ``{"type": "box-linear", "box": [...],
    "keypoints": [[...], ...] or null, "fitted_on": "..."}``.
    """

    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    keypoints: np.ndarray | None = None
    fitted_on: str = ""

    TYPE = "box-linear"

    @classmethod
    def from_dict(cls, data: Any) -> CropPolicy:
        if not isinstance(data, dict):
            raise ModelFormatError("crop_policy must be a JSON object")
        if data.get("type") != cls.TYPE:
            raise ModelFormatError(
                f"crop_policy type {data.get('type')!r} is not supported (expected {cls.TYPE!r})"
            )
        try:
            box = np.asarray(data["box"], dtype=np.float64)
            kps = data.get("keypoints")
            kp = None if kps is None else np.asarray(kps, dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"crop_policy is malformed: {exc!r}") from None
        if box.shape != (4,) or not np.all(np.isfinite(box)):
            raise ModelFormatError("crop_policy.box must be 4 finite numbers")
        if np.any(np.abs(box) > _PARAM_LIMITS):
            raise ModelFormatError(
                f"crop_policy.box {box.tolist()} is out of range: centre offsets within "
                f"+-{_PARAM_LIMITS[0]:g} box sizes, log size ratios within +-{_PARAM_LIMITS[2]:g}"
            )
        if kp is not None and (kp.shape != (_FEATURES, 4) or not np.all(np.isfinite(kp))
                               or np.any(np.abs(kp) > _MAX_KEYPOINT_WEIGHT)):
            raise ModelFormatError(
                f"crop_policy.keypoints must be a {_FEATURES}x4 matrix of finite numbers "
                f"within +-{_MAX_KEYPOINT_WEIGHT:g}"
            )
        fitted_on = data.get("fitted_on", "")
        if not isinstance(fitted_on, str) or len(fitted_on) > 4096:
            raise ModelFormatError("crop_policy.fitted_on must be a string of at most 4096 chars")
        b = box.tolist()
        return cls(
            box=(b[0], b[1], b[2], b[3]), keypoints=kp, fitted_on=fitted_on
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CropPolicy):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "box": [float(v) for v in self.box],
            "keypoints": None if self.keypoints is None else self.keypoints.tolist(),
            "fitted_on": self.fitted_on,
        }

    def crops(self, boxes: np.ndarray, keypoints: np.ndarray | None = None,
              quarter_turns: np.ndarray | int = 0) -> np.ndarray:
        """Oriented crops (N, 5) ``(x1, y1, x2, y2, angle)`` for face boxes (N, 4).

        With YuNet keypoints (N, 5, 2) the crop is levelled: its angle is the roll of
        the eye keypoints (:func:`keypoint_roll`), and box and keypoints are measured
        in that levelled frame (:func:`levelled_faces`) before the policy is applied,
        so a rolled face gets the crop an upright one would, turned with it. Without
        keypoints (boxes a caller passed) the box-only policy is applied with the face
        assumed turned ``quarter_turns`` (one per box, or one for all) quarter turns
        clockwise: angle ``90 * quarter_turns``, 0 by default (axis-aligned).
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        angle = np.zeros(len(boxes))
        if keypoints is not None:
            angle, boxes, kp = levelled_faces(boxes, keypoints)
        else:
            turns = np.broadcast_to(np.asarray(quarter_turns, dtype=np.int64), (len(boxes),))
            angle = wrap_degrees(90.0 * turns)
            odd = turns % 2 == 1
            centre = (boxes[:, :2] + boxes[:, 2:]) / 2
            size = np.where(odd[:, None], (boxes[:, 2:] - boxes[:, :2])[:, ::-1],
                            boxes[:, 2:] - boxes[:, :2])
            boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        cy = (boxes[:, 1] + boxes[:, 3]) / 2
        if keypoints is not None and self.keypoints is not None:
            feats = np.empty((len(boxes), _FEATURES))
            feats[:, 0] = 1.0
            feats[:, 1::2] = (kp[:, :, 0] - cx[:, None]) / w[:, None]
            feats[:, 2::2] = (kp[:, :, 1] - cy[:, None]) / h[:, None]
            params = feats @ self.keypoints
        else:
            params = np.broadcast_to(np.asarray(self.box), (len(boxes), 4))
        params = np.clip(params, -_PARAM_LIMITS, _PARAM_LIMITS)  # keypoints far off: still finite
        # The centre offset is measured in the levelled frame: turn it into the image's.
        dx, dy = params[:, 0] * w, params[:, 1] * h
        c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        ccx = cx + c * dx - s * dy
        ccy = cy + s * dx + c * dy
        cw = w * np.exp(params[:, 2])
        ch = h * np.exp(params[:, 3])
        return np.stack([ccx - cw / 2, ccy - ch / 2, ccx + cw / 2, ccy + ch / 2, angle], axis=1)


def as_crops(crops: Any) -> np.ndarray:
    """Crops as float64 (N, 5) ``(x1, y1, x2, y2, angle)``: (4,), (5,), (N, 4) or (N, 5)
    in; four-number crops are axis-aligned (angle 0)."""
    arr = np.asarray(crops, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise InvalidBoxError(
            f"crops must be (x1, y1, x2, y2[, angle]) or an (N, 4) / (N, 5) array, "
            f"got shape {arr.shape}"
        )
    if arr.shape[1] == 4:
        arr = np.concatenate([arr, np.zeros((len(arr), 1))], axis=1)
    return arr


def wrap_degrees(angle: np.ndarray) -> np.ndarray:
    """Angles in degrees wrapped to [-180, 180)."""
    return (np.asarray(angle, dtype=np.float64) + 180.0) % 360.0 - 180.0


def keypoint_roll(keypoints: np.ndarray) -> np.ndarray:
    """Roll (N,) in degrees of faces from YuNet's keypoints (N, 5, 2): the angle of the
    line from the right eye (the subject's; the image's left in a frontal photo) to the
    left eye, in the convention of oriented crops (positive: clockwise on screen)."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 5, 2)
    d = kp[:, 1] - kp[:, 0]
    return np.degrees(np.arctan2(d[:, 1], d[:, 0]))


def landmark_roll(points: np.ndarray, right_eye: Any, left_eye: Any) -> np.ndarray:
    """Roll (N,) in degrees of faces from landmarks (N, L, 2): the angle of the line from
    the centre of the ``right_eye`` landmarks (indices) to that of the ``left_eye`` ones
    (the subject's eyes), as :func:`keypoint_roll` measures it."""
    pts = np.asarray(points, dtype=np.float64)
    d = pts[:, list(left_eye)].mean(axis=1) - pts[:, list(right_eye)].mean(axis=1)
    return np.degrees(np.arctan2(d[:, 1], d[:, 0]))


def levelled_faces(
    boxes: np.ndarray, keypoints: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face-detector boxes (N, 4) and keypoints (N, 5, 2) measured in each face's
    levelled frame: ``(angle (N,) degrees, boxes (N, 4), keypoints (N, 5, 2))``.

    The frame is turned by the eye keypoints' roll about the box centre. Keypoints are
    turned exactly. An axis-aligned box has no exact levelled form; it is read in the
    frame of the detector's nearest quarter turn: its width and height swap when the
    roll is nearer 90 or 270 degrees than 0 or 180 (a face found in the image turned a
    quarter, as the orientation search does, keeps the box the detector saw).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 5, 2)
    angle = keypoint_roll(kp)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = boxes[:, 2:] - boxes[:, :2]
    quarter = np.round(angle / 90.0).astype(np.int64) % 2 == 1
    size = np.where(quarter[:, None], size[:, ::-1], size)
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    rel = kp - centre[:, None]
    # turn by -angle: (x, y) -> (c x + s y, -s x + c y)
    lx = c[:, None] * rel[..., 0] + s[:, None] * rel[..., 1]
    ly = -s[:, None] * rel[..., 0] + c[:, None] * rel[..., 1]
    levelled_kp = np.stack([lx, ly], axis=-1) + centre[:, None]
    levelled_boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    return angle, levelled_boxes, levelled_kp


def as_boxes(boxes: Any, name: str = "box") -> np.ndarray:
    """Validate one box (4,) or several (N, 4) and return them as float64 (N, 4).

    Raises :class:`InvalidBoxError` for wrong shapes, non-finite values, or
    ``x2 <= x1`` / ``y2 <= y1`` (zero-area or swapped corners).
    """
    try:
        arr = np.array(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidBoxError(
            f"{name} must be numbers (x1, y1, x2, y2), got {type(boxes).__name__}"
        ) from None
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InvalidBoxError(
            f"{name} must be (x1, y1, x2, y2) or an (N, 4) array, got shape {np.shape(boxes)}"
        )
    finite = np.all(np.isfinite(arr), axis=1)
    if not np.all(finite):
        raise InvalidBoxError(
            f"the box {arr[~finite][0].tolist()} holds NaN or infinity; a box is four finite "
            "pixel coordinates (x1, y1, x2, y2)"
        )
    bad = (arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1])
    if np.any(bad):
        raise InvalidBoxError(
            f"the box {arr[bad][0].tolist()} is empty or inside out: a box is (x1, y1, x2, y2) "
            "in pixels with x2 > x1 and y2 > y1"
        )
    return arr


def crop_from_landmarks(points: np.ndarray, meanface: np.ndarray) -> np.ndarray:
    """The training-style crop (N, 4) that best explains landmarks (N, L, 2).

    Per axis, the least-squares fit ``points = x1 + meanface * (x2 - x1)``: the crop
    in which these landmarks look most like the model's mean face. Used by the
    tracker to derive the next frame's crop from the current landmarks.
    """
    pts = np.asarray(points, dtype=np.float64)
    mf = np.asarray(meanface, dtype=np.float64)
    mc = mf - mf.mean(axis=0)
    pc = pts - pts.mean(axis=1, keepdims=True)
    size = np.einsum("nlk,lk->nk", pc, mc) / np.sum(mc * mc, axis=0)
    # A degenerate fit (collapsed or mirrored points) falls back to the landmark box.
    span = pts.max(axis=1) - pts.min(axis=1)
    mspan = mf.max(axis=0) - mf.min(axis=0)
    size = np.where(size > 0, size, np.maximum(span, 1.0) / mspan)
    start = pts.mean(axis=1) - mf.mean(axis=0) * size
    return np.concatenate([start, start + size], axis=1)


PRESET_BOX_RULES = {"300W": 1.1, "300W-CelebA": 1.3, "300W-COFW-WFLW": 1.3}
"""Presets whose training crop is the 68-point landmark box enlarged by this factor about
its centre (the reference preprocessing; the same table as ``models/fit_crop_policy.py``'s
``BOX_RULES``). The other presets' crops come from dataset face boxes: no landmark rule."""

_BOX_TARGET = re.compile(r"target:\s*landmark box x\s*([0-9]*\.?[0-9]+)")


def training_crop_enlargement(spec: Any) -> float | None:
    """The landmark-box factor of a model's training crop, from its metadata; ``None``
    when its crops were not built from the landmark box (use :func:`crop_from_landmarks`).

    Read from the crop policy's ``fitted_on`` (``"...; target: landmark box x 1.1; ..."``,
    written by ``pipdetect convert --crop-policy`` for models we train and by
    ``models/fit_crop_policy.py`` for the presets), else from the model's ``dataset``
    when it names a preset of :data:`PRESET_BOX_RULES`. Only for 68-point models (the
    rule is defined on the 300W landmarks).
    """
    if getattr(spec, "num_landmarks", None) != 68:
        return None
    policy = getattr(spec, "crop_policy", None) or {}
    fitted_on = str(policy.get("fitted_on", "")) if isinstance(policy, dict) else ""
    found = _BOX_TARGET.search(fitted_on)
    if found:
        value = float(found.group(1))
        return value if 1.0 <= value <= 3.0 else None
    if "target:" in fitted_on:  # e.g. "target: mean-face fit of the landmarks"
        return None
    dataset = getattr(spec, "dataset", None)
    if dataset:
        from .presets import get_preset

        try:
            name = get_preset(str(dataset)).name
        except KeyError:
            return None
        return PRESET_BOX_RULES.get(name)
    return None


def crop_from_landmark_box(points: np.ndarray, enlarge: float, upright: bool = True) -> np.ndarray:
    """The 300W-style training crop (N, 5) of 68-point landmarks (N, 68, 2): their bounding
    box enlarged by ``enlarge`` about its centre (not square), as the model was trained.

    ``upright``: measure the box in the face's own frame, levelled by the line through
    the eye centres (points 36-41 and 42-47), and return it as an oriented crop turned
    by that roll, so the network sees the face upright; ``False``: the axis-aligned box
    of the points as they lie (angle 0).
    """
    pts = np.asarray(points, dtype=np.float64)
    if upright and pts.shape[1] == 68:
        angle = landmark_roll(pts, range(36, 42), range(42, 48))
    else:
        angle = np.zeros(len(pts))
    return crop_from_points(pts, angle, lambda q: _enlarged_box(q, float(enlarge)))


def _enlarged_box(points: np.ndarray, enlarge: float) -> np.ndarray:
    lo, hi = points.min(axis=1), points.max(axis=1)
    centre = (lo + hi) / 2
    half = np.maximum(hi - lo, 1.0) * enlarge / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def crop_from_points(points: np.ndarray, angle: np.ndarray, rule: Any) -> np.ndarray:
    """Oriented crops (N, 5) turned by ``angle`` (N,) degrees: ``rule`` maps landmarks
    (N, L, 2) measured in each levelled frame to axis-aligned crops (N, 4) there (e.g. an
    enlarged landmark box, or :func:`crop_from_landmarks`)."""
    pts = np.asarray(points, dtype=np.float64)
    angle = np.asarray(angle, dtype=np.float64).reshape(-1)
    c, s = np.cos(np.radians(angle))[:, None], np.sin(np.radians(angle))[:, None]
    mid = (pts.min(axis=1) + pts.max(axis=1)) / 2
    rel = pts - mid[:, None]
    q = np.stack([c * rel[..., 0] + s * rel[..., 1], -s * rel[..., 0] + c * rel[..., 1]], -1)
    box = np.asarray(rule(q), dtype=np.float64).reshape(-1, 4)
    m = (box[:, :2] + box[:, 2:]) / 2
    half = (box[:, 2:] - box[:, :2]) / 2
    centre = mid + np.stack([c[:, 0] * m[:, 0] - s[:, 0] * m[:, 1],
                             s[:, 0] * m[:, 0] + c[:, 0] * m[:, 1]], axis=1)
    return np.concatenate([centre - half, centre + half, angle[:, None]], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union (N, M) of boxes ``a`` (N, 4+) and ``b`` (M, 4+), each row
    ``(x1, y1, x2, y2, ...)`` in pixels (a crop's angle, if any, is ignored: the
    axis-aligned rectangles are compared). Boxes without area have IoU 0."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.asarray(np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0))


def crop_corners(crops: np.ndarray) -> np.ndarray:
    """(N, 4, 2) image pixels of the corners of crops (N, 4 or 5): top-left, top-right,
    bottom-right, bottom-left as the network sees them."""
    c5 = as_crops(crops) if len(crops) else np.zeros((0, 5))
    unit = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    return crops_to_image(np.broadcast_to(unit, (len(c5), 4, 2)), c5)


def crop_affine(crops: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, 2, 3) affine maps from network-input pixels to image pixels for oriented
    crops (N, 4 or 5) warped to ``size`` (height, width): input pixel centre ``(j, i)``
    samples crop coordinate ``((j + 0.5) / w, (i + 0.5) / h)`` (see the module notes)."""
    c5 = as_crops(crops)
    out_h, out_w = size
    w = c5[:, 2] - c5[:, 0]
    h = c5[:, 3] - c5[:, 1]
    cx = (c5[:, 0] + c5[:, 2]) / 2
    cy = (c5[:, 1] + c5[:, 3]) / 2
    a = np.radians(c5[:, 4])
    co, si = np.cos(a), np.sin(a)
    sx, sy = w / out_w, h / out_h
    # Input pixel j samples crop pixel (j + 0.5) * sx - 0.5 (as cv2.resize does), and crop
    # pixel c lies at corner + R @ c (the corner (x1, y1) before turning is crop pixel 0,
    # as crops_to_image has it): image = centre + R @ (c - (w, h) / 2).
    ox = 0.5 * sx - 0.5 - w / 2
    oy = 0.5 * sy - 0.5 - h / 2
    m = np.empty((len(c5), 2, 3))
    m[:, 0, 0] = co * sx
    m[:, 0, 1] = -si * sy
    m[:, 1, 0] = si * sx
    m[:, 1, 1] = co * sy
    m[:, 0, 2] = cx + co * ox - si * oy
    m[:, 1, 2] = cy + si * ox + co * oy
    return m


def warp_crops(image: np.ndarray, crops: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Sample each crop (N, 4 or 5, oriented) of ``image`` (H, W, C uint8) into a
    (N, h, w, C) uint8 batch, the face turned upright. ``size`` is the network input
    (height, width). Bilinear, black padding outside the image."""
    import cv2

    out_h, out_w = size
    maps = crop_affine(crops, size)
    out = np.empty((len(maps), out_h, out_w, image.shape[2]), dtype=np.uint8)
    for i, m in enumerate(maps):
        cv2.warpAffine(
            image,
            m,
            (out_w, out_h),
            dst=out[i],
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0, 0),
        )
    return out


def turned_image(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (H, W, C) turned ``degrees`` clockwise on screen about its centre, onto a
    canvas grown to hold the whole picture (bilinear, black corners), and the (2, 3)
    affine map from pixels of ``image`` to pixels of the canvas (pixel centres at
    integers; the image's centre lands on the canvas's). A face rolled ``-degrees`` in
    ``image`` stands upright on the canvas."""
    import cv2

    h, w = image.shape[:2]
    a = np.radians(degrees)
    c, s = abs(float(np.cos(a))), abs(float(np.sin(a)))
    nw, nh = int(np.ceil(w * c + h * s - 1e-9)), int(np.ceil(w * s + h * c - 1e-9))
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), -float(degrees), 1.0)
    m[:, 2] += ((nw - 1) / 2 - (w - 1) / 2, (nh - 1) / 2 - (h - 1) / 2)
    out = cv2.warpAffine(image, m, (nw, nh), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    return out, m


def crops_to_image(points: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """Map normalised crop coordinates (N, L, 2) to image pixels via crops (N, 4 or 5)."""
    c5 = as_crops(crops)
    pts = np.asarray(points, dtype=np.float64)
    w = (c5[:, 2] - c5[:, 0])[:, None]
    h = (c5[:, 3] - c5[:, 1])[:, None]
    du = (pts[..., 0] - 0.5) * w
    dv = (pts[..., 1] - 0.5) * h
    a = np.radians(c5[:, 4])[:, None]
    co, si = np.cos(a), np.sin(a)
    cx = ((c5[:, 0] + c5[:, 2]) / 2)[:, None]
    cy = ((c5[:, 1] + c5[:, 3]) / 2)[:, None]
    return np.stack([cx + co * du - si * dv, cy + si * du + co * dv], axis=-1)


def preset_crop_policy(preset: str | None) -> CropPolicy:
    """The crop policy fitted for a dataset preset (``None``: the 300W convention).

    The numbers live in ``pipdetect/assets/crop_policies.json``, written by
    ``models/fit_crop_policy.py`` (YuNet boxes and keypoints fitted to the
    training crops on annotated faces).
    """
    import json
    from importlib import resources

    from .presets import get_preset

    text = resources.files("pipdetect").joinpath("assets/crop_policies.json").read_text()
    table = json.loads(text)
    key = "300W" if preset is None else get_preset(preset).name
    if key not in table:
        raise KeyError(f"no crop policy fitted for preset {key!r}")
    return CropPolicy.from_dict(table[key])
