"""The data that passes between the detector's stages, and the stage API itself.

:class:`~pipdetect.LandmarkDetector` is a pipeline of five stages; its
:meth:`~pipdetect.LandmarkDetector.detect` runs them in order, and
:class:`~pipdetect.track.Tracker`, the command line and :mod:`pipdetect.results`
call them one by one. :class:`Stages` declares them; ``LandmarkDetector``
implements them (in :mod:`pipdetect.detector`):

1. :meth:`Stages.output_scheme` chooses the landmark scheme of the results
   (once per call, before any image is seen).
2. :meth:`Stages.find_faces` runs the face detector on an image, or
   :meth:`Stages.given_faces` takes boxes the caller passed: :class:`FaceBoxes`.
3. :meth:`Stages.make_crops` turns face boxes into the regions fed to the
   network (the model's crop policy): oriented crops, levelled by the face's roll.
4. :meth:`Stages.run_network` warps the crops of one or several images into one
   batch (turned upright), runs the network and the decoder and maps the landmarks
   back to image pixels: one :class:`CropLandmarks` per image.
   :meth:`Stages.locate` wraps 3 and 4 for faces at any roll: unsure faces are
   tried turned, and faces are re-cropped from their landmarks
   (:meth:`Stages.crops_from_landmarks`) until the crop is level;
   :meth:`Stages.confidence` turns per-landmark scores into a probability.
5. :meth:`Stages.build_faces` packs the landmarks into read-only :class:`Face`
   objects in the chosen scheme.

Conventions (as everywhere in pipdetect; docs/design.md explains them): boxes and
crops are ``(x1, y1, x2, y2)`` float64 pixels of the original image, x to the
right, y down, pixel centres at integer coordinates (OpenCV's convention);
landmarks are ``(x, y)`` in the same pixels; scores are unitless confidences,
face-detector scores in [0, 1], landmark scores PIP-Net's raw heatmap values
(roughly [0, 1]).

This module imports nothing from the rest of pipdetect at import time, so every
other module may depend on it (see docs/design.md, "Modules and imports").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .model import ModelSpec

__all__ = ["Crop", "CropLandmarks", "Face", "FaceBoxes", "OutputScheme", "Stages"]


class Crop(NamedTuple):
    """The region of the image fed to the network: an oriented rectangle.

    ``(x1, y1, x2, y2)`` is the rectangle before it is turned, in original-image
    pixels; ``angle`` (degrees) turns it about its centre, positive clockwise on
    screen (y points down): the crop's x axis is ``(cos a, sin a)`` in the image.
    The network sees the crop upright, so ``angle`` is the roll the face was
    levelled by. ``angle == 0`` is an ordinary axis-aligned box.

    Changed in 0.2: ``Face.crop`` had four numbers; code that unpacks it as
    ``x1, y1, x2, y2 = face.crop`` now reads ``x1, y1, x2, y2, angle = face.crop``
    (or ``face.crop[:4]``, which is the box only when ``angle`` is 0; use
    :meth:`corners` for the region actually used).
    """

    x1: float
    y1: float
    x2: float
    y2: float
    angle: float = 0.0

    @property
    def center(self) -> tuple[float, float]:
        return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2

    @property
    def size(self) -> tuple[float, float]:
        """(width, height) in pixels, measured along the crop's own axes."""
        return self.x2 - self.x1, self.y2 - self.y1

    def corners(self) -> np.ndarray:
        """(4, 2) float64 image pixels of the corners: top-left, top-right, bottom-right,
        bottom-left as the network sees them."""
        cx, cy = self.center
        w, h = self.size
        a = np.radians(self.angle)
        ex = np.array([np.cos(a), np.sin(a)])
        ey = np.array([-np.sin(a), np.cos(a)])
        signs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) / 2
        return np.array([cx, cy]) + signs[:, :1] * w * ex + signs[:, 1:] * h * ey


@dataclass(frozen=True, eq=False)
class Face:
    """One face and its landmarks, all in original-image pixels.

    Arrays are read-only. ``box`` is the face detector's box (or the box you
    passed), ``(x1, y1, x2, y2)``; ``crop`` the region actually fed to the model, a
    :class:`Crop` ``(x1, y1, x2, y2, angle)`` turned by ``angle`` degrees (the face's
    roll: the network always sees the face upright); ``score`` is the face
    detector's confidence in [0, 1] (1.0 for boxes you passed); ``scores`` the
    model's per-landmark confidence (PIP-Net's raw heatmap score, roughly in [0, 1],
    higher is surer); ``confidence`` the estimated probability, in [0, 1], that the
    landmarks are right (inter-ocular NME <= 8 %), see :mod:`pipdetect.confidence`.

    ``scheme`` names the landmarks' meaning (see :mod:`pipdetect.schemes`;
    ``"custom"`` for models pipdetect cannot name); ``track_id`` is set on faces
    returned by :meth:`LandmarkDetector.track` / :class:`pipdetect.track.Tracker`
    (the same number for the same face across frames), ``None`` otherwise. On a
    frame where a tracked face was followed rather than detected, ``box`` is the
    bounding box of its (unsmoothed) landmarks and ``score`` its tracking
    confidence (:attr:`confidence` of the unsmoothed result, clipped to [0, 1]).
    """

    landmarks: np.ndarray
    """(N, 2) float32, x and y in image pixels."""
    scores: np.ndarray
    """(N,) float32 per-landmark confidence."""
    box: tuple[float, float, float, float]
    crop: Crop
    score: float
    scheme: str = "custom"
    track_id: int | None = None
    confidence: float = float("nan")
    """Probability in [0, 1] that the landmarks are right (NME <= 8 %); for models
    without a calibration, the mean landmark score clipped to [0, 1]."""

    def __post_init__(self) -> None:
        if not isinstance(self.crop, Crop):
            object.__setattr__(self, "crop", Crop(*(float(v) for v in self.crop)))
        if self.confidence != self.confidence:  # NaN: not given
            mean = float(np.mean(self.scores)) if self.scores.size else 0.0
            object.__setattr__(self, "confidence", min(max(mean, 0.0), 1.0))

    def __repr__(self) -> str:
        box = ", ".join(f"{v:.1f}" for v in self.box)
        track = "" if self.track_id is None else f", track_id={self.track_id}"
        return (f"Face({len(self.landmarks)} points {self.scheme}, box=({box}), "
                f"score={self.score:.2f}, confidence={self.confidence:.2f}{track})")

    @property
    def pose(self) -> tuple[float, float, float] | None:
        """Head pose ``(roll, yaw, pitch)`` in degrees (a :class:`pipdetect.pose.Pose`),
        from the landmarks; ``None`` for schemes without the 68 points it needs
        (300w68 and wflw98 have them). Axes and signs: :mod:`pipdetect.pose`."""
        from .pose import Pose, head_pose
        from .schemes import conversion_indices

        try:
            _, idx = conversion_indices(self.scheme, 68)
        except ValueError:
            return None
        pts = self.landmarks if idx is None else self.landmarks[idx]
        if len(pts) != 68:
            return None
        roll, yaw, pitch = head_pose(pts[None])[0]
        return Pose(float(roll), float(yaw), float(pitch))

    def part(self, name: str) -> np.ndarray:
        """Landmarks (n, 2) of a named part, e.g. ``"left_eye"`` (the subject's left).

        Names and conventions: :mod:`pipdetect.schemes`. Raises :class:`KeyError`
        for a name the scheme lacks, :class:`ValueError` for ``"custom"`` models.
        """
        from .schemes import SCHEMES

        scheme = SCHEMES.get(self.scheme)
        if scheme is None or scheme.num_points != len(self.landmarks):
            from .errors import InvalidArgumentError

            raise InvalidArgumentError(
                f"this face's landmarks follow the {self.scheme!r} scheme, which has no named "
                "parts; named parts need a model whose metadata names its scheme "
                "(wflw98, 300w68, cofw29, aflw19, lapa106)"
            )
        return scheme.part(self.landmarks, name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: box, crop ``[x1, y1, x2, y2, angle]``, score,
        confidence, pose ``[roll, yaw, pitch]`` (or ``None``), landmarks [[x, y], ...],
        scores, and ``track_id`` for tracked faces. Coordinates rounded to 1/1000 pixel,
        angles to 1/100 degree."""
        pose = self.pose
        out: dict[str, Any] = {
            "box": [round(float(v), 3) for v in self.box],
            "crop": [round(float(v), 3) for v in self.crop[:4]] + [round(self.crop.angle, 2)],
            "score": round(float(self.score), 5),
            "confidence": round(float(self.confidence), 5),
            "pose": None if pose is None or any(v != v for v in pose)
            else [round(float(v), 2) for v in pose],
            "landmarks": np.round(self.landmarks.astype(np.float64), 3).tolist(),
            "scores": np.round(self.scores.astype(np.float64), 5).tolist(),
        }
        if self.track_id is not None:
            out["track_id"] = int(self.track_id)
        return out


class OutputScheme(NamedTuple):
    """The landmark scheme results are returned in (:meth:`Stages.output_scheme`)."""

    name: str
    """Scheme name (:mod:`pipdetect.schemes`), ``"custom"`` if the model's is unknown."""
    indices: np.ndarray | None
    """Indices (n,) of the model's landmarks to keep, in output order; ``None``: all."""


class FaceBoxes(NamedTuple):
    """Faces of one image before the network: what :meth:`Stages.find_faces` and
    :meth:`Stages.given_faces` return, in the order results will have."""

    boxes: np.ndarray
    """(n, 4) float64 face boxes ``(x1, y1, x2, y2)``, original-image pixels."""
    scores: np.ndarray
    """(n,) float64 face-detector confidence in [0, 1] (1.0 for boxes passed)."""
    keypoints: np.ndarray | None
    """(n, 5, 2) float64 YuNet keypoints in image pixels (order:
    :data:`pipdetect.faces.KEYPOINT_NAMES`), or ``None`` for boxes passed."""


class CropLandmarks(NamedTuple):
    """The network's answer for the crops of one image (:meth:`Stages.run_network`)."""

    points: np.ndarray
    """(n, L, 2) float64 landmarks in original-image pixels, the model's own scheme."""
    scores: np.ndarray
    """(n, L) per-landmark confidence (raw heatmap score, roughly [0, 1])."""


class Stages(Protocol):
    """The stage API of a landmark detector (implemented by ``LandmarkDetector``).

    The front ends (``Tracker``, the command line, :mod:`pipdetect.results`) use
    these and nothing else of the detector. Images are (H, W, 3) uint8 BGR arrays
    as :func:`pipdetect.image.load_image` returns them.
    """

    @property
    def spec(self) -> ModelSpec:
        """The model's metadata (mean face, input size, scheme ...)."""

    @property
    def num_landmarks(self) -> int:
        """L: landmarks the model predicts (before any scheme conversion)."""

    @property
    def max_faces(self) -> int | None:
        """At most this many faces per image are kept (largest first); ``None``: all."""

    def output_scheme(self, points: int | str | None) -> OutputScheme:
        """The scheme for ``points`` (a count, a scheme name, or ``None`` for the model's).

        Raises :class:`ValueError` when the model's landmarks cannot be converted.
        """

    @property
    def min_confidence(self) -> float:
        """Detected faces with a lower confidence are left out of results."""

    def confidence(self, scores: np.ndarray) -> np.ndarray:
        """Confidence (n,) in [0, 1] of faces with per-landmark scores (n, L): the
        estimated probability that their landmarks are right."""

    def find_faces(self, image: np.ndarray, *, turn: int = 0) -> FaceBoxes:
        """Faces the face detector finds in ``image`` (turned ``turn`` quarter turns
        clockwise first, results mapped back): largest box first (ties: higher score
        first), at most :attr:`max_faces`."""

    def given_faces(self, boxes: Any, image: np.ndarray) -> FaceBoxes:
        """Boxes ``(x1, y1, x2, y2)`` (one (4,) or (n, 4)) passed by a caller, validated
        against ``image``, in the order given, with score 1.0 and no keypoints.

        Raises :class:`~pipdetect.errors.InvalidBoxError` for a malformed box, one
        entirely outside the image or one far larger than it.
        """

    def make_crops(self, faces: FaceBoxes) -> np.ndarray:
        """(n, 5) float64 oriented crops ``(x1, y1, x2, y2, angle)`` for ``faces``, by the
        model's crop policy (levelled by the keypoints when present). Crops are not
        square and may reach outside the image (the warp pads with black)."""

    def crops_from_landmarks(
        self, landmarks: CropLandmarks, image_size: tuple[int, int]
    ) -> np.ndarray:
        """(n, 5) oriented crops in which the model was trained to see faces with these
        landmarks (pixels of an image of ``image_size`` (height, width)), levelled by
        their eye line: the second pass of detection and the tracker's next crop."""

    def locate(
        self, items: Sequence[tuple[np.ndarray, FaceBoxes]]
    ) -> list[tuple[np.ndarray, CropLandmarks]]:
        """Crops (n_i, 5) and landmarks for ``(image, faces)`` pairs: :meth:`make_crops`,
        :meth:`run_network`, then turns and levelling passes for faces at any roll."""

    def run_network(
        self, items: Sequence[tuple[np.ndarray, np.ndarray]]
    ) -> list[CropLandmarks]:
        """Landmarks for ``(image, crops (n_i, 5))`` pairs (oriented crops; (n_i, 4) are
        axis-aligned), all crops through the network together (in chunks of the batch
        size); one result per pair."""

    def build_faces(
        self,
        landmarks: CropLandmarks,
        boxes: np.ndarray,
        box_scores: np.ndarray,
        crops: np.ndarray,
        output: OutputScheme,
        track_ids: Sequence[int] | None = None,
        *,
        confidence: np.ndarray | None = None,
    ) -> list[Face]:
        """:class:`Face` objects (read-only float32 arrays) for n faces, in ``output``'s
        scheme: ``landmarks`` from :meth:`run_network` (or smoothed points of the same
        shape), ``boxes`` (n, 4), ``box_scores`` (n,), ``crops`` (n, 4); ``confidence``
        (n,): the faces' :meth:`confidence` if already known (default: computed)."""
