"""Face detection with YuNet (OpenCV Zoo, MIT licence) through ``cv2.FaceDetectorYN``.

The detector model ships inside the package (``pipdetect/assets/face_detection_yunet.onnx``,
licence in ``assets/LICENSE-yunet.txt``). :class:`FaceFinder` is used by
:class:`pipdetect.LandmarkDetector`; it is usable on its own but not part of the
stable public API.

Coordinates follow pipdetect's convention (see :mod:`pipdetect.crop`): pixels of the
original image, x right, y down, pixel centres at integer coordinates.

YuNet's box convention: OpenCV decodes a detection in cell ``(col, row)`` of stride ``s``
as ``((col + dx) * s, (row + dy) * s)``, the cell grid anchored at the image's top-left
*corner* with no half-cell offset, as in the mmdetection-style point priors YuNet was
trained with (where boxes scale as ``x * scale`` under resizing). We read its numbers
as continuous pixel-*edge* coordinates (0 = left edge of the first pixel):
:class:`FaceFinder` maps them back from the detection resolution by dividing by the
per-axis scale, then subtracts 0.5 to land in the pixel-centre convention. The choice
moves boxes by half a pixel; a scale test on real photos could not confirm it either
way (YuNet's own jitter is a few pixels), and the fitted crop policy absorbs it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from .errors import InvalidImageError

__all__ = ["KEYPOINT_NAMES", "Detections", "FaceFinder"]

KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")
"""YuNet's five keypoints, in its output order. "Right" is the subject's right, which
appears on the image's left in a frontal photo (verified on ``examples/astronaut.jpg``)."""

_MODEL_FILE = "face_detection_yunet.onnx"
_MIN_SIDE = 10
"""Images (after any downscaling) with a side shorter than this hold no detectable face."""
_MIN_MAX_SIDE = 32
"""``max_side`` may not be smaller than YuNet's coarsest stride."""

_create_lock = threading.Lock()


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, in YuNet's output order (the caller decides sorting).

    * ``boxes``: (N, 4) float64 ``x1, y1, x2, y2`` in original-image pixels
      (pixel-centre convention); may reach outside the image.
    * ``scores``: (N,) float64 detection confidences in [0, 1].
    * ``keypoints``: (N, 5, 2) float64 original-image pixels, order :data:`KEYPOINT_NAMES`.
    """

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Detections:
        """No faces."""
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))


def _model_bytes() -> np.ndarray:
    # Read through importlib.resources and pass a buffer: works from zipped installs
    # and from paths OpenCV cannot open (non-ASCII paths on Windows).
    data = resources.files("pipdetect").joinpath("assets", _MODEL_FILE).read_bytes()
    return np.frombuffer(data, dtype=np.uint8)


def _check_fraction(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= out <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return out


class FaceFinder:
    """All faces in a BGR image, with YuNet.

    Parameters
    ----------
    score_threshold:
        Minimum detection confidence, in [0, 1]. Lower finds more (and more false) faces.
    nms_threshold:
        IoU in [0, 1] above which overlapping detections are merged (non-maximum suppression).
    top_k:
        Candidates kept before non-maximum suppression (positive integer).
    max_side:
        Images whose longest side exceeds this many pixels are downscaled (``INTER_AREA``)
        for detection only; results are mapped back to original pixels. ``None``
        detects at full resolution (slow on large photos, finds smaller faces).

    One ``cv2.FaceDetectorYN`` is not safe to share between threads and keeps the input
    size as per-call state, so each thread gets its own instance: a single
    ``FaceFinder`` may be shared freely between threads.
    """

    def __init__(
        self,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        max_side: int | None = 640,
    ) -> None:
        self._score_threshold = _check_fraction("score_threshold", score_threshold)
        self._nms_threshold = _check_fraction("nms_threshold", nms_threshold)
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        self._top_k = int(top_k)
        if max_side is not None:
            if (isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer))
                    or max_side < _MIN_MAX_SIDE):
                raise ValueError(
                    f"max_side must be an integer >= {_MIN_MAX_SIDE} (pixels) or None "
                    f"for no downscaling, got {max_side!r}"
                )
            max_side = int(max_side)
        self._max_side = max_side
        self._local = threading.local()

    @property
    def score_threshold(self) -> float:
        return self._score_threshold

    @property
    def nms_threshold(self) -> float:
        return self._nms_threshold

    @property
    def top_k(self) -> int:
        return self._top_k

    @property
    def max_side(self) -> int | None:
        return self._max_side

    def __repr__(self) -> str:
        return (f"FaceFinder(score_threshold={self._score_threshold}, "
                f"nms_threshold={self._nms_threshold}, top_k={self._top_k}, "
                f"max_side={self._max_side})")

    def _detector(self, size: tuple[int, int]) -> Any:
        """This thread's ``cv2.FaceDetectorYN``, set to input ``size`` (width, height)."""
        import cv2

        local = self._local
        det = getattr(local, "detector", None)
        if det is None:
            with _create_lock:
                # OpenCV 5 warns on every creation that the new DNN engine ignores the
                # (default) target; silence just that moment, then restore the level.
                level = cv2.utils.logging.getLogLevel()
                quiet = level == cv2.utils.logging.LOG_LEVEL_WARNING
                if quiet:
                    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
                try:
                    det = cv2.FaceDetectorYN.create(
                        "onnx", _model_bytes(), np.zeros(0, np.uint8), size,
                        self._score_threshold, self._nms_threshold, self._top_k,
                    )
                finally:
                    if quiet:
                        cv2.utils.logging.setLogLevel(level)
            local.detector = det
            local.size = size
        elif local.size != size:
            det.setInputSize(size)
            local.size = size
        return det

    def find(self, image_bgr: np.ndarray) -> Detections:
        """Detect every face in ``image_bgr``, an (H, W, 3) uint8 BGR image.

        Returns :class:`Detections` in original-image pixels, in YuNet's order.
        Images too small to hold a face (a side under 10 pixels) give no faces.
        """
        import cv2

        if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8:
            raise InvalidImageError(
                "FaceFinder.find needs a numpy uint8 array (H, W, 3) in BGR order, got "
                f"{type(image_bgr).__name__}"
                + (f" of dtype {image_bgr.dtype}" if isinstance(image_bgr, np.ndarray) else "")
            )
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise InvalidImageError(
                f"FaceFinder.find needs an (H, W, 3) BGR image, got shape {image_bgr.shape}"
            )
        height, width = image_bgr.shape[:2]
        if min(height, width) < _MIN_SIDE:
            return Detections.empty()

        small = np.ascontiguousarray(image_bgr)
        sx = sy = 1.0
        if self._max_side is not None and max(height, width) > self._max_side:
            s = self._max_side / max(height, width)
            new_w = min(self._max_side, max(1, round(width * s)))
            new_h = min(self._max_side, max(1, round(height * s)))
            if min(new_w, new_h) < _MIN_SIDE:
                return Detections.empty()
            small = cv2.resize(small, (new_w, new_h), interpolation=cv2.INTER_AREA)
            sx, sy = new_w / width, new_h / height

        det = self._detector((small.shape[1], small.shape[0]))
        _, raw = det.detect(small)
        if raw is None or len(raw) == 0:
            return Detections.empty()
        raw = np.asarray(raw, dtype=np.float64).reshape(-1, 15)
        raw = raw[np.all(np.isfinite(raw), axis=1) & (raw[:, 2] > 0) & (raw[:, 3] > 0)]
        if len(raw) == 0:
            return Detections.empty()

        # Pixel-edge coordinates at detection scale -> edge at full scale -> centre convention.
        scale = np.array([sx, sy])
        x1y1 = raw[:, 0:2] / scale - 0.5
        x2y2 = (raw[:, 0:2] + raw[:, 2:4]) / scale - 0.5
        boxes = np.concatenate([x1y1, x2y2], axis=1)
        keypoints = raw[:, 4:14].reshape(-1, 5, 2) / scale - 0.5
        scores = raw[:, 14].copy()
        return Detections(boxes=boxes, scores=scores, keypoints=keypoints)
