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
   network (the model's crop policy).
4. :meth:`Stages.run_network` warps the crops of one or several images into one
   batch, runs the network and the decoder and maps the landmarks back to image
   pixels: one :class:`CropLandmarks` per image.
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

__all__ = ["CropLandmarks", "Face", "FaceBoxes", "OutputScheme", "Stages"]


@dataclass(frozen=True, eq=False)
class Face:
    """One face and its landmarks, all in original-image pixels.

    Arrays are read-only. ``box`` is the face detector's box (or the box you
    passed), ``crop`` the region actually fed to the model, both
    ``(x1, y1, x2, y2)``; ``score`` is the face detector's confidence in [0, 1]
    (1.0 for boxes you passed); ``scores`` the model's per-landmark confidence
    (PIP-Net's raw heatmap score, roughly in [0, 1], higher is surer).

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
    crop: tuple[float, float, float, float]
    score: float
    scheme: str = "custom"
    track_id: int | None = None

    def __repr__(self) -> str:
        box = ", ".join(f"{v:.1f}" for v in self.box)
        track = "" if self.track_id is None else f", track_id={self.track_id}"
        return (f"Face({len(self.landmarks)} points {self.scheme}, box=({box}), "
                f"score={self.score:.2f}{track})")

    @property
    def confidence(self) -> float:
        """Mean per-landmark score: how sure the model is about this face as a whole."""
        return float(np.mean(self.scores)) if self.scores.size else 0.0

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
        """A JSON-serialisable dict: box, crop, score, landmarks [[x, y], ...], scores,
        and ``track_id`` for tracked faces. Coordinates rounded to 1/1000 pixel."""
        out: dict[str, Any] = {
            "box": [round(float(v), 3) for v in self.box],
            "crop": [round(float(v), 3) for v in self.crop],
            "score": round(float(self.score), 5),
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

    def find_faces(self, image: np.ndarray) -> FaceBoxes:
        """Faces the face detector finds in ``image``: largest box first (ties: higher
        score first), at most :attr:`max_faces`."""

    def given_faces(self, boxes: Any, image: np.ndarray) -> FaceBoxes:
        """Boxes ``(x1, y1, x2, y2)`` (one (4,) or (n, 4)) passed by a caller, validated
        against ``image``, in the order given, with score 1.0 and no keypoints.

        Raises :class:`~pipdetect.errors.InvalidBoxError` for a malformed box, one
        entirely outside the image or one far larger than it.
        """

    def make_crops(self, faces: FaceBoxes) -> np.ndarray:
        """(n, 4) float64 crops ``(x1, y1, x2, y2)`` for ``faces``, by the model's crop
        policy (keypoints used when present). Crops are not square and may reach
        outside the image (the warp pads with black)."""

    def run_network(
        self, items: Sequence[tuple[np.ndarray, np.ndarray]]
    ) -> list[CropLandmarks]:
        """Landmarks for ``(image, crops (n_i, 4))`` pairs, all crops through the
        network together (in chunks of the batch size); one result per pair."""

    def build_faces(
        self,
        landmarks: CropLandmarks,
        boxes: np.ndarray,
        box_scores: np.ndarray,
        crops: np.ndarray,
        output: OutputScheme,
        track_ids: Sequence[int] | None = None,
    ) -> list[Face]:
        """:class:`Face` objects (read-only float32 arrays) for n faces, in ``output``'s
        scheme: ``landmarks`` from :meth:`run_network` (or smoothed points of the same
        shape), ``boxes`` (n, 4), ``box_scores`` (n,), ``crops`` (n, 4)."""
