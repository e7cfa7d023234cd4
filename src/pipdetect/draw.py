"""Drawing landmarks: points and contour lines per named group, sized to each face.

>>> from pipdetect.draw import draw_faces
>>> annotated = draw_faces(image, detector.detect(image))   # a BGR copy, image untouched

Points and lines come in one colour per group (jaw, brows, nose, eyes, lips, pupils;
:data:`GROUP_COLORS`, BGR) and grow with the face: a dot's radius is about 1 % of
the face's size, so a crowd photo and a close-up both stay readable. Faces whose
model names no scheme (``"custom"``) get points only. Coordinates are drawn with
sub-pixel precision (OpenCV's fractional ``shift`` of 4 bits).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidArgumentError, InvalidImageError
from .schemes import SCHEMES, Scheme

if TYPE_CHECKING:  # pragma: no cover
    from .detector import Face

__all__ = ["GROUP_COLORS", "draw_faces", "draw_landmarks", "style_for"]

GROUP_COLORS: dict[str, tuple[int, int, int]] = {
    "jaw": (255, 200, 0),
    "right_brow": (0, 200, 255),
    "left_brow": (0, 200, 255),
    "nose_bridge": (255, 0, 200),
    "nose_base": (255, 0, 200),
    "nose": (255, 0, 200),
    "right_eye": (0, 255, 0),
    "left_eye": (0, 255, 0),
    "right_pupil": (0, 0, 255),
    "left_pupil": (0, 0, 255),
    "outer_lips": (60, 60, 255),
    "inner_lips": (160, 120, 255),
    "mouth": (60, 60, 255),
}
"""BGR colour per group name; groups not listed are drawn in :data:`DEFAULT_COLOR`."""

DEFAULT_COLOR = (0, 255, 255)
BOX_COLOR = (255, 255, 255)
_SHIFT = 4
_ONE = 1 << _SHIFT


def style_for(size: float) -> tuple[int, int]:
    """(point radius, line thickness) in pixels for a face ``size`` pixels across."""
    size = float(size) if math.isfinite(size) and size > 1.0 else 1.0
    return max(1, round(size / 90.0)), max(1, round(size / 200.0))


def _canvas(image: Any, copy: bool) -> np.ndarray:
    if copy:
        from .image import load_image

        return np.array(load_image(image, "bgr"), copy=True)
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
        or not image.flags.c_contiguous
        or not image.flags.writeable
    ):
        raise InvalidImageError(
            "drawing in place (copy=False) needs a writeable C-contiguous (H, W, 3) uint8 "
            "BGR array; pass copy=True to draw on a copy of anything else"
        )
    return image


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64) * _ONE).astype(np.int32)


def draw_landmarks(
    image: Any,
    landmarks: np.ndarray,
    scheme: str | Scheme | None = None,
    *,
    color: tuple[int, int, int] | None = None,
    points: bool = True,
    lines: bool = True,
    size: float | None = None,
    copy: bool = True,
) -> np.ndarray:
    """Draw one face's landmarks (N, 2 image pixels) and return the image.

    ``scheme``: a :class:`~pipdetect.schemes.Scheme` or scheme name, to draw the
    contour lines and colour by group (``None`` / ``"custom"``: points only, or a
    known scheme with N points guessed from N). ``color`` (BGR) overrides the group
    colours. ``size``: the face's size in pixels, which sets dot and line sizes
    (default: ``sqrt(width * height)`` of the landmarks' bounding box).
    ``copy=False`` draws into ``image`` itself (which must then be a writeable
    contiguous BGR uint8 array).
    """
    import cv2

    canvas = _canvas(image, copy)
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return canvas
    sch = _resolve(scheme, len(pts))
    finite = np.all(np.isfinite(pts), axis=1)
    if not finite.any():
        return canvas
    if size is None:
        span = pts[finite].max(axis=0) - pts[finite].min(axis=0)
        size = math.sqrt(max(span[0], 1.0) * max(span[1], 1.0))
    radius, thickness = style_for(size)
    fixed = _fixed(np.where(finite[:, None], pts, 0.0))
    colors = [color or DEFAULT_COLOR] * len(pts)
    if sch is not None:
        names = list(sch.groups)
        for i, g in enumerate(sch.group_of().tolist()):
            if g >= 0 and color is None:
                colors[i] = GROUP_COLORS.get(names[g], DEFAULT_COLOR)
        if lines:
            for line in sch.lines:
                idx = list(line)
                if not finite[idx].all():
                    continue
                c = color or colors[line[0]]
                cv2.polylines(canvas, [fixed[idx].reshape(-1, 1, 2)], False, c, thickness,
                              cv2.LINE_AA, _SHIFT)
    if points:
        for k in np.flatnonzero(finite).tolist():
            cv2.circle(canvas, (int(fixed[k, 0]), int(fixed[k, 1])), radius * _ONE,
                       colors[k], -1, cv2.LINE_AA, _SHIFT)
    return canvas


def _resolve(scheme: str | Scheme | None, n: int) -> Scheme | None:
    if isinstance(scheme, Scheme):
        sch: Scheme | None = scheme
    elif scheme is None or scheme == "custom":
        sch = None
    else:
        sch = SCHEMES.get(str(scheme))
        if sch is None:
            raise InvalidArgumentError(
                f"unknown landmark scheme {scheme!r}; known: {', '.join(SCHEMES)}"
            )
    if sch is not None and sch.num_points != n:
        raise InvalidArgumentError(
            f"scheme {sch.name!r} has {sch.num_points} points, got {n} landmarks"
        )
    return sch


def draw_faces(
    image: Any,
    faces: Iterable[Face],
    *,
    color: tuple[int, int, int] | None = None,
    points: bool = True,
    lines: bool = True,
    boxes: bool = False,
    labels: bool = True,
    copy: bool = True,
) -> np.ndarray:
    """Draw every face (landmarks, optionally boxes) and return the image.

    ``faces``: :class:`~pipdetect.Face` objects, e.g. from
    :meth:`~pipdetect.LandmarkDetector.detect` or a frame of
    :meth:`~pipdetect.LandmarkDetector.track`. Each face is drawn in its own
    scheme, sized to its crop. ``boxes``: also draw each face's box. ``labels``:
    write each tracked face's ``track_id`` above it. ``copy=False`` draws into
    ``image`` itself (see :func:`draw_landmarks`).
    """
    import cv2

    canvas = _canvas(image, copy)
    for face in faces:
        crop_w, crop_h = face.crop[2] - face.crop[0], face.crop[3] - face.crop[1]
        size = math.sqrt(max(crop_w, 1.0) * max(crop_h, 1.0)) / 1.3
        radius, thickness = style_for(size)
        if boxes:
            b = _fixed(np.asarray(face.box, dtype=np.float64).reshape(2, 2))
            cv2.rectangle(canvas, (int(b[0, 0]), int(b[0, 1])), (int(b[1, 0]), int(b[1, 1])),
                          color or BOX_COLOR, thickness, cv2.LINE_AA, _SHIFT)
        scheme = face.scheme if face.scheme in SCHEMES else None
        draw_landmarks(canvas, face.landmarks, scheme, color=color, points=points,
                       lines=lines, size=size, copy=False)
        if labels and face.track_id is not None and np.isfinite(face.landmarks).all():
            top = face.landmarks.min(axis=0)
            scale = max(0.4, size / 250.0)
            org = (round(float(top[0])), round(float(top[1]) - 3 * radius))
            cv2.putText(canvas, str(face.track_id), org, cv2.FONT_HERSHEY_SIMPLEX, scale,
                        color or BOX_COLOR, max(1, thickness), cv2.LINE_AA)
    return canvas

