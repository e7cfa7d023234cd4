"""Face box -> model crop, the warp into the network input, and the way back.

Conventions (used everywhere in pipdetect):

* Boxes and crops are ``(x1, y1, x2, y2)`` float pixel coordinates in the
  original image, x to the right, y down, pixel centres at integer coordinates
  (OpenCV convention). A box's width is ``x2 - x1``.
* A crop is axis-aligned and need not be square: like the PIP-Net training
  crops it is stretched to the network's input size.
* A normalised model coordinate ``u`` (0 = crop's left edge, 1 = right edge)
  maps to ``x1 + u * (x2 - x1)`` image pixels (the reference convention:
  ``u * crop_width`` pixels into the crop). The warp samples the crop exactly
  like ``cv2.resize`` of ``image[y1:y2, x1:x2]`` with bilinear interpolation, so
  integer crops reproduce the reference preprocessing.
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
    "crop_from_landmark_box",
    "crop_from_landmarks",
    "crops_to_image",
    "training_crop_enlargement",
    "warp_crops",
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

    def crops(self, boxes: np.ndarray, keypoints: np.ndarray | None = None) -> np.ndarray:
        """Crops (N, 4) for face boxes (N, 4), optionally with YuNet keypoints (N, 5, 2)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        cy = (boxes[:, 1] + boxes[:, 3]) / 2
        if keypoints is not None and self.keypoints is not None:
            kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 5, 2)
            feats = np.empty((len(boxes), _FEATURES))
            feats[:, 0] = 1.0
            feats[:, 1::2] = (kp[:, :, 0] - cx[:, None]) / w[:, None]
            feats[:, 2::2] = (kp[:, :, 1] - cy[:, None]) / h[:, None]
            params = feats @ self.keypoints
        else:
            params = np.broadcast_to(np.asarray(self.box), (len(boxes), 4))
        params = np.clip(params, -_PARAM_LIMITS, _PARAM_LIMITS)  # keypoints far off: still finite
        ccx = cx + params[:, 0] * w
        ccy = cy + params[:, 1] * h
        cw = w * np.exp(params[:, 2])
        ch = h * np.exp(params[:, 3])
        return np.stack([ccx - cw / 2, ccy - ch / 2, ccx + cw / 2, ccy + ch / 2], axis=1)


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
    """The 300W-style training crop (N, 4) of 68-point landmarks (N, 68, 2): their bounding
    box enlarged by ``enlarge`` about its centre (not square), as the model was trained.

    ``upright``: measure the box in the face's own frame (rolled back by the angle of the
    line through the eye centres, points 36-41 and 42-47), then lay it axis-aligned at the
    same centre. Training crops are the box of the annotated, mostly upright face, rotated
    afterwards by augmentation; the box of a rolled face's landmarks is larger than that.
    """
    pts = np.asarray(points, dtype=np.float64)
    if upright and pts.shape[1] == 68:
        d = pts[:, 42:48].mean(axis=1) - pts[:, 36:42].mean(axis=1)
        angle = np.arctan2(d[:, 1], d[:, 0])
        c, s = np.cos(angle), np.sin(angle)
        rot = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)  # rolls back by angle
        mid0 = (pts.min(axis=1) + pts.max(axis=1)) / 2
        q = np.einsum("nij,nlj->nli", rot, pts - mid0[:, None])
        lo, hi = q.min(axis=1), q.max(axis=1)
        m = (lo + hi) / 2
        centre = mid0 + np.einsum("nji,nj->ni", rot, m)  # back into the image
    else:
        lo, hi = pts.min(axis=1), pts.max(axis=1)
        centre = (lo + hi) / 2
    half = np.maximum(hi - lo, 1.0) * float(enlarge) / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def warp_crops(image: np.ndarray, crops: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Sample each crop of ``image`` (H, W, C uint8) into a (N, h, w, C) uint8 batch.

    ``size`` is the network input (height, width). Bilinear, black padding outside.
    """
    import cv2

    out_h, out_w = size
    crops = np.asarray(crops, dtype=np.float64).reshape(-1, 4)
    out = np.empty((len(crops), out_h, out_w, image.shape[2]), dtype=np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(crops):
        sx = (x2 - x1) / out_w
        sy = (y2 - y1) / out_h
        # dst pixel centre d maps to crop pixel (d + 0.5) * s - 0.5, i.e. image x1 + that.
        m = np.array([[sx, 0.0, x1 + 0.5 * sx - 0.5], [0.0, sy, y1 + 0.5 * sy - 0.5]])
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


def crops_to_image(points: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """Map normalised crop coordinates (N, L, 2) to image pixels via crops (N, 4)."""
    crops = np.asarray(crops, dtype=np.float64).reshape(-1, 1, 4)
    return crops[:, :, :2] + np.asarray(points, dtype=np.float64) * (
        crops[:, :, 2:] - crops[:, :, :2]
    )


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
