"""Face detection with YuNet (OpenCV Zoo, MIT licence), run through onnxruntime.

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

Runtime: the network runs in onnxruntime and its outputs are decoded in numpy exactly as
OpenCV's ``cv2.FaceDetectorYN`` (OpenCV 4.8+/5, the 2023 YuNet with ``cls/obj/bbox/kps``
outputs at strides 8/16/32) does it: input zero-padded at the bottom/right to a multiple
of 32, fed as BGR float32 NCHW without normalisation, the same float32 decoding, NMS
with ``cv2.dnn.NMSBoxes`` on integer-truncated boxes. Results match the
``cv2.FaceDetectorYN`` path (on which ``assets/crop_policies.json`` was fitted) to
about 1e-4 px and 1e-6 in score on the 224 LFPW test photos, the astronaut and
variants of it. Speed, median of 150 interleaved ``find`` calls, two runs on a
shared 2-core machine (onnxruntime 1.32, OpenCV 5.0): 640x480 5.4 / 10.6 ms vs
8.1 / 13.0 ms with ``cv2.FaceDetectorYN`` (1.5x / 1.2x); 1920x1080 (detected at
640x360) 6.0 / 5.9 ms vs 7.8 / 7.9 ms (1.3x), then on one onnxruntime thread where
OpenCV uses two. The session now has as many threads as the landmark sessions (one per
physical core) but workers that never spin (:func:`pipdetect.model._session_options`):
two threads made a whole photo faster than one (``benchmarks/threads_bench.py``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from .errors import InvalidArgumentError, InvalidImageError

__all__ = ["KEYPOINT_NAMES", "MIN_MAX_SIDE", "Detections", "FaceFinder", "downscale"]

KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")
"""YuNet's five keypoints, in its output order. "Right" is the subject's right, which
appears on the image's left in a frontal photo (verified on ``examples/astronaut.jpg``)."""

_MODEL_FILE = "face_detection_yunet.onnx"
_MIN_SIDE = 10
"""Images (after any downscaling) with a side shorter than this hold no detectable face."""
MIN_MAX_SIDE = 32
"""``max_side`` may not be smaller than YuNet's coarsest stride."""

_create_lock = threading.Lock()

_INPUT_NAME = "input"
_STRIDES = (8, 16, 32)
_DIVISOR = 32
"""The network's input is zero-padded (bottom and right) to a multiple of this many pixels."""
_OUTPUT_NAMES = [f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps")
                 for stride in _STRIDES]


def downscale(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float, float]:
    """``image`` (H, W, C) shrunk to ``width`` x ``height`` pixels with ``INTER_AREA``, as
    the face detector shrinks a photo to ``max_side``, and the scales applied per axis,
    ``sx = width / W`` and ``sy = height / H``: a pixel centre ``x`` of ``image`` is
    ``(x + 0.5) * sx - 0.5`` in the result."""
    import cv2

    small = cv2.resize(np.ascontiguousarray(image), (width, height),
                       interpolation=cv2.INTER_AREA)
    return small, width / image.shape[1], height / image.shape[0]


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


def _new_session() -> Any:
    import onnxruntime as ort

    from .model import new_session_options

    # The landmark sessions' thread count (onnxruntime's default), or the process-wide
    # pool of pipdetect.set_global_threads() when that is on; workers never spin.
    options = new_session_options(ort, None, spin=False)
    return ort.InferenceSession(_model_bytes().tobytes(), sess_options=options,
                                providers=["CPUExecutionProvider"])


def _postprocess(outputs: list[np.ndarray], pad_w: int, pad_h: int, score_threshold: float,
                 nms_threshold: float, top_k: int) -> np.ndarray:
    """Decode YuNet's outputs (in :data:`_OUTPUT_NAMES` order) as OpenCV's
    ``FaceDetectorYN`` does, float32 arithmetic included.

    Per stride ``s`` the outputs hold one candidate per cell of the padded input's
    ``(pad_h / s) x (pad_w / s)`` grid, row-major. Score ``sqrt(clip(cls) * clip(obj))``
    (both clipped to [0, 1]); candidates below ``score_threshold`` are dropped. Cell
    ``(col, row)`` decodes to centre ``((col + dx) * s, (row + dy) * s)``, size
    ``exp(dw) * s, exp(dh) * s``, keypoints ``((col + kx) * s, (row + ky) * s)``.
    With more than one candidate, ``cv2.dnn.NMSBoxes`` on the boxes truncated to
    integers (as OpenCV does) keeps at most ``top_k`` of them, best score first.
    Returns (N, 15) float32 rows ``x, y, w, h, 5 x (x, y), score``.
    """
    n = len(_STRIDES)
    rows: list[np.ndarray] = []
    for i, stride in enumerate(_STRIDES):
        cols = pad_w // stride
        cls = outputs[i].reshape(-1)
        obj = outputs[i + n].reshape(-1)
        score = np.sqrt(np.clip(cls, 0.0, 1.0) * np.clip(obj, 0.0, 1.0)).astype(np.float32)
        keep = np.flatnonzero(score >= np.float32(score_threshold))
        if len(keep) == 0:
            continue
        bbox = outputs[i + 2 * n].reshape(-1, 4)[keep].astype(np.float32)
        kps = outputs[i + 3 * n].reshape(-1, 5, 2)[keep].astype(np.float32)
        cell = np.stack([keep % cols, keep // cols], axis=1).astype(np.float32)  # (col, row)
        s = np.float32(stride)
        centre = (cell + bbox[:, 0:2]) * s
        size = np.exp(bbox[:, 2:4]) * s
        corner = centre - size / np.float32(2.0)
        points = (kps + cell[:, None, :]) * s
        rows.append(np.concatenate(
            [corner, size, points.reshape(-1, 10), score[keep, None]], axis=1))
    if not rows:
        return np.zeros((0, 15), dtype=np.float32)
    faces = np.concatenate(rows, axis=0)
    if len(faces) > 1:
        import cv2

        # OpenCV hands NMS integer rectangles: each value truncated towards zero.
        boxes = [tuple(int(v) for v in box) for box in faces[:, 0:4].tolist()]
        keep_idx = cv2.dnn.NMSBoxes(boxes, faces[:, 14].tolist(), score_threshold,
                                    nms_threshold, 1.0, top_k)
        faces = faces[np.asarray(keep_idx, dtype=np.intp).reshape(-1)]
    return faces


def _check_fraction(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"{name} must be a number between 0 and 1, got {value!r}"
        ) from None
    if not 0.0 <= out <= 1.0:
        raise InvalidArgumentError(f"{name} must be between 0 and 1, got {value!r}")
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

    Each ``FaceFinder`` owns one onnxruntime session (created on first use), which
    onnxruntime allows to run from several threads at once: a single ``FaceFinder``
    may be shared freely between threads.
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
            raise InvalidArgumentError(f"top_k must be a positive integer, got {top_k!r}")
        self._top_k = int(top_k)
        if max_side is not None:
            if (isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer))
                    or max_side < MIN_MAX_SIDE):
                raise InvalidArgumentError(
                    f"max_side must be an integer >= {MIN_MAX_SIDE} (pixels) or None "
                    f"for no downscaling, got {max_side!r}"
                )
            max_side = int(max_side)
        self._max_side = max_side
        self._ort_session: Any = None

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

    def _session(self) -> Any:
        """This finder's onnxruntime session, created on first use (thread-safe to share)."""
        session = self._ort_session
        if session is None:
            with _create_lock:
                session = self._ort_session
                if session is None:
                    session = _new_session()
                    self._ort_session = session
        return session

    def find(self, image_bgr: np.ndarray) -> Detections:
        """Detect every face in ``image_bgr``, an (H, W, 3) uint8 BGR image.

        Returns :class:`Detections` in original-image pixels, in YuNet's order.
        Images too small to hold a face (a side under 10 pixels) give no faces.
        """
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
            small, sx, sy = downscale(small, max(1, round(width * s)), max(1, round(height * s)))
            if min(small.shape[:2]) < _MIN_SIDE:
                return Detections.empty()

        raw = self._detect(small)
        if len(raw) == 0:
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

    def _detect(self, image: np.ndarray) -> np.ndarray:
        """YuNet on a contiguous (H, W, 3) uint8 BGR image, post-processed as
        ``cv2.FaceDetectorYN.detect`` does: (N, 15) float32 rows ``x, y, w, h``,
        five keypoints ``x, y``, score, in pixel-edge coordinates of ``image``."""
        height, width = image.shape[:2]
        pad_h = -(-height // _DIVISOR) * _DIVISOR
        pad_w = -(-width // _DIVISOR) * _DIVISOR
        # blobFromImage of the image zero-padded at the bottom/right: BGR, float32,
        # NCHW, no mean subtraction or scaling.
        blob = np.zeros((1, 3, pad_h, pad_w), dtype=np.float32)
        blob[0, :, :height, :width] = image.transpose(2, 0, 1)
        outputs = self._session().run(_OUTPUT_NAMES, {_INPUT_NAME: blob})
        return _postprocess(outputs, pad_w, pad_h, self._score_threshold,
                            self._nms_threshold, self._top_k)
