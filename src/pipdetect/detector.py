"""LandmarkDetector: image -> faces -> crops -> model -> maps -> landmarks -> image pixels.

Coordinates returned by this module are float32 pixel coordinates of the
original image: x to the right, y down, pixel centres at integer values
(OpenCV convention), so ``image[int(round(y)), int(round(x))]`` is the pixel
under a landmark.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .crop import CropPolicy, as_boxes, crops_to_image, warp_crops
from .decode import PIPDecoder
from .errors import InvalidBoxError, InvalidImageError, ModelOutputError, NoFaceError
from .image import ImageInput, load_image
from .model import LoadedModel, ModelSpec, load_model

__all__ = ["Face", "LandmarkDetector"]

Box = Sequence[float]


@dataclass(frozen=True, eq=False)
class Face:
    """One face and its landmarks, all in original-image pixels.

    Arrays are read-only. ``box`` is the face detector's box (or the box you
    passed), ``crop`` the region actually fed to the model, both
    ``(x1, y1, x2, y2)``; ``score`` is the face detector's confidence in [0, 1]
    (1.0 for boxes you passed); ``scores`` the model's per-landmark confidence
    (PIP-Net's raw heatmap score, roughly in [0, 1], higher is surer).
    """

    landmarks: np.ndarray
    """(N, 2) float32, x and y in image pixels."""
    scores: np.ndarray
    """(N,) float32 per-landmark confidence."""
    box: tuple[float, float, float, float]
    crop: tuple[float, float, float, float]
    score: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: box, crop, score, landmarks [[x, y], ...], scores."""
        return {
            "box": [round(float(v), 3) for v in self.box],
            "crop": [round(float(v), 3) for v in self.crop],
            "score": round(float(self.score), 5),
            "landmarks": np.round(self.landmarks.astype(np.float64), 3).tolist(),
            "scores": np.round(self.scores.astype(np.float64), 5).tolist(),
        }


class LandmarkDetector:
    """Finds faces and their PIP-Net landmarks.

    >>> detector = LandmarkDetector("pipnet-r18-wflw.onnx")
    >>> points = detector(image)            # (N, 2) float32, most prominent face
    >>> faces = detector.detect(image)      # every face, largest first

    Parameters
    ----------
    model:
        Path to a pipdetect ``.onnx`` model file, or a model name from
        :func:`pipdetect.list_models` (downloaded once, then cached); ``None`` for
        the default model.
    threads:
        onnxruntime intra-op threads for this detector (``None``: one per core).
    score_threshold, nms_threshold:
        Face detector (YuNet) confidence threshold and non-maximum suppression IoU.
    max_faces:
        Keep at most this many faces per image (the largest); ``None`` for all.
    detection_size:
        Images are downscaled so their longest side is at most this many pixels
        for face detection only (landmarks are always computed at full
        resolution). Raise it to find small faces in large photos; ``None`` to
        never downscale.
    batch_size:
        Largest number of faces sent through the network in one call.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        threads: int | None = None,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_faces: int | None = None,
        detection_size: int | None = 640,
        batch_size: int = 16,
        providers: list[str] | None = None,
    ) -> None:
        if max_faces is not None and (not isinstance(max_faces, int) or max_faces < 1):
            raise ValueError(f"max_faces must be a positive integer or None, got {max_faces!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self._model: LoadedModel = load_model(
            _model_path(model), threads=threads, providers=providers
        )
        spec = self._model.spec
        self._decoder = PIPDecoder(spec.meanface, num_nb=spec.num_nb)
        self._policy = CropPolicy.from_dict(spec.crop_policy)
        self._max_faces = max_faces
        self._batch_size = batch_size
        self._face_options = {
            "score_threshold": score_threshold,
            "nms_threshold": nms_threshold,
            "max_side": detection_size,
        }
        self._finder: Any = None
        mean = np.asarray(spec.mean, dtype=np.float32)
        std = np.asarray(spec.std, dtype=np.float32)
        # (pixel / 255 - mean) / std == pixel * scale + offset, per channel of the BGR crop.
        order = slice(None, None, -1) if spec.channel_order == "RGB" else slice(None)
        self._scale = (1.0 / (255.0 * std))[order]
        self._offset = (-mean / std)[order]
        self._rgb = spec.channel_order == "RGB"

    # ------------------------------------------------------------------ public
    @property
    def spec(self) -> ModelSpec:
        """The model's metadata: landmark count, scheme, mean face, provenance ..."""
        return self._model.spec

    @property
    def num_landmarks(self) -> int:
        return self._model.spec.num_landmarks

    def __repr__(self) -> str:
        s = self._model.spec
        path = str(self._model.path)
        return f"LandmarkDetector({s.name!r}, landmarks={s.num_landmarks}, file={path!r})"

    def __call__(
        self, image: ImageInput, box: Box | None = None, *, color: str = "bgr"
    ) -> np.ndarray:
        """Landmarks (N, 2) float32 in image pixels of the most prominent face.

        The most prominent face is the one with the largest box. With ``box``
        (x1, y1, x2, y2) face detection is skipped and that face is used.
        Raises :class:`~pipdetect.errors.NoFaceError` when no face is found.
        """
        faces = self.detect(image, boxes=None if box is None else [box], color=color)
        if not faces:
            raise NoFaceError(
                "no face found in the image; pass box=(x1, y1, x2, y2) if you know where "
                "the face is, or lower score_threshold / raise detection_size"
            )
        return faces[0].landmarks

    def detect(
        self,
        image: ImageInput,
        *,
        boxes: Sequence[Box] | np.ndarray | None = None,
        color: str = "bgr",
    ) -> list[Face]:
        """Every face in the image, largest box first (ties: higher score first).

        ``boxes``: optional face boxes (N, 4) as (x1, y1, x2, y2) pixels; when
        given, face detection is skipped and one :class:`Face` is returned per
        box, in the order given. Returns ``[]`` when no face is found.
        """
        img = load_image(image, color)
        if boxes is not None:
            face_boxes = as_boxes(boxes, "boxes")
            _check_overlap(face_boxes, img.shape)
            scores = np.ones(len(face_boxes))
            crops = self._policy.crops(face_boxes)
        else:
            found = self._find_faces(img)
            face_boxes, scores = found.boxes, found.scores
            if len(face_boxes) == 0:
                return []
            area = (face_boxes[:, 2] - face_boxes[:, 0]) * (face_boxes[:, 3] - face_boxes[:, 1])
            order = np.lexsort((-scores, -area))
            if self._max_faces is not None:
                order = order[: self._max_faces]
            face_boxes, scores = face_boxes[order], scores[order]
            crops = self._policy.crops(face_boxes, found.keypoints[order])
        return self._faces_from_crops(img, face_boxes, scores, crops)

    def predict_crops(
        self, crops: np.ndarray | Sequence[np.ndarray], *, color: str = "bgr"
    ) -> np.ndarray:
        """Landmarks of already-cropped faces, the reference evaluation protocol.

        ``crops`` is one (H, W, 3) image or a list / array of them, any sizes.
        Each is resized (bilinear) to the model input as a whole, no extension.
        Returns (B, N, 2) float32 in each crop's own pixel frame:
        ``u * crop_width, v * crop_height`` for normalised model output (u, v).
        """
        import cv2

        if isinstance(crops, np.ndarray) and crops.ndim in (2, 3):
            items: list[Any] = [crops]
        elif isinstance(crops, (list, tuple)) or (
            isinstance(crops, np.ndarray) and crops.ndim == 4
        ):
            items = list(crops)
        else:
            raise InvalidImageError(
                "crops must be one (H, W, 3) image or a list / (B, H, W, 3) array of them"
            )
        if not items:
            return np.zeros((0, self.num_landmarks, 2), dtype=np.float32)
        h, w = self.spec.input_size
        batch = np.empty((len(items), h, w, 3), dtype=np.uint8)
        sizes = np.empty((len(items), 2), dtype=np.float64)
        for i, item in enumerate(items):
            img = load_image(item, color)
            batch[i] = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
            sizes[i] = img.shape[1], img.shape[0]
        points, _ = self._landmarks(batch)
        return (points * sizes[:, None, :]).astype(np.float32)

    # ----------------------------------------------------------------- private
    def _find_faces(self, img: np.ndarray) -> Any:
        if self._finder is None:
            from .faces import FaceFinder

            self._finder = FaceFinder(**self._face_options)
        return self._finder.find(img)

    def _faces_from_crops(
        self, img: np.ndarray, boxes: np.ndarray, scores: np.ndarray, crops: np.ndarray
    ) -> list[Face]:
        batch = warp_crops(img, crops, self.spec.input_size)
        points, lm_scores = self._landmarks(batch)
        pixels = crops_to_image(points, crops).astype(np.float32)
        faces = []
        for i in range(len(crops)):
            lm = pixels[i]
            sc = lm_scores[i].astype(np.float32)
            lm.flags.writeable = False
            sc.flags.writeable = False
            faces.append(
                Face(
                    landmarks=lm,
                    scores=sc,
                    box=_box_tuple(boxes[i]),
                    crop=_box_tuple(crops[i]),
                    score=float(scores[i]),
                )
            )
        return faces

    def _landmarks(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run (B, h, w, 3) uint8 BGR crops through the network and the decoder.

        Returns normalised landmarks (B, L, 2) float64 and scores (B, L).
        """
        points, scores = [], []
        for start in range(0, len(crops), self._batch_size):
            chunk = crops[start : start + self._batch_size]
            maps = self._model.run(self._preprocess(chunk))
            p, s = self._decoder(*maps)
            points.append(p)
            scores.append(s)
        pts = np.concatenate(points).astype(np.float64)
        sc = np.concatenate(scores)
        if not (np.all(np.isfinite(pts)) and np.all(np.isfinite(sc))):
            raise ModelOutputError(
                f"model {self.spec.name!r} produced NaN or infinite outputs; the model file "
                "is broken (re-download or re-convert it)"
            )
        return pts, sc

    def _preprocess(self, crops: np.ndarray) -> np.ndarray:
        """(B, h, w, 3) uint8 BGR -> (B, 3, h, w) float32 normalised in the model's order."""
        x = crops.astype(np.float32)
        x *= self._scale
        x += self._offset
        if self._rgb:
            x = x[..., ::-1]
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _box_tuple(b: np.ndarray) -> tuple[float, float, float, float]:
    return float(b[0]), float(b[1]), float(b[2]), float(b[3])


def _check_overlap(boxes: np.ndarray, shape: tuple[int, ...]) -> None:
    h, w = shape[:2]
    outside = (
        (boxes[:, 2] <= -0.5)
        | (boxes[:, 3] <= -0.5)
        | (boxes[:, 0] >= w - 0.5)
        | (boxes[:, 1] >= h - 0.5)
    )
    if np.any(outside):
        raise InvalidBoxError(
            f"box {boxes[outside][0].tolist()} lies entirely outside the {w}x{h} image; "
            "boxes are (x1, y1, x2, y2) in pixels of the image passed"
        )


def _model_path(model: str | os.PathLike[str] | None) -> Path:
    if model is not None:
        path = Path(model)
        if path.exists() or path.suffix.lower() == ".onnx":
            if not path.is_file():
                raise FileNotFoundError(f"model file not found: {path}")
            return path
    from .zoo import resolve_model

    return resolve_model(model)
