"""LandmarkDetector: image -> faces -> crops -> model -> maps -> landmarks -> image pixels.

Each arrow is a stage with a public method (the stage API, declared by
:class:`pipdetect.stages.Stages`): :meth:`LandmarkDetector.output_scheme`,
:meth:`~LandmarkDetector.find_faces` / :meth:`~LandmarkDetector.given_faces`,
:meth:`~LandmarkDetector.make_crops`, :meth:`~LandmarkDetector.run_network` and
:meth:`~LandmarkDetector.build_faces`. :meth:`LandmarkDetector.detect_batch` runs
them in order; :class:`pipdetect.track.Tracker`, the command line and
:mod:`pipdetect.results` call them one by one and use nothing private.

Coordinates returned by this module are float32 pixel coordinates of the
original image: x to the right, y down, pixel centres at integer values
(OpenCV convention), so ``image[int(round(y)), int(round(x))]`` is the pixel
under a landmark.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .crop import CropPolicy, as_boxes, crops_to_image, warp_crops
from .decode import PIPDecoder
from .errors import InvalidArgumentError, InvalidBoxError, InvalidImageError, NoFaceError
from .faces import MIN_MAX_SIDE
from .image import ImageInput, load_image
from .model import LoadedModel, ModelSpec, load_model
from .schemes import conversion_indices, scheme_for
from .stages import CropLandmarks, Face, FaceBoxes, OutputScheme

if TYPE_CHECKING:  # pragma: no cover
    from .track import FrameFaces

__all__ = ["Face", "LandmarkDetector"]

Box = Sequence[float]


class LandmarkDetector:
    """Finds faces and their PIP-Net landmarks.

    >>> detector = LandmarkDetector()           # the bundled default model, offline
    >>> points = detector(image)            # (N, 2) float32, most prominent face
    >>> faces = detector.detect(image)      # every face, largest first

    Parameters
    ----------
    model:
        Path to a pipdetect ``.onnx`` model file, or a model name from
        :func:`pipdetect.list_models`; ``None`` (or ``"pipnet-lite0-300w"``) for the
        default model, which ships inside the package (68 points, no network).
        Zoo names are downloaded once, then cached, when the zoo is published.
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
        _check_options(model=model, threads=threads, score_threshold=score_threshold,
                       nms_threshold=nms_threshold, max_faces=max_faces,
                       detection_size=detection_size, batch_size=batch_size,
                       providers=providers)
        from .zoo import resolve_model  # paths pass through; names are downloaded once

        path = resolve_model(model)
        self._model: LoadedModel = load_model(path, threads=threads, providers=providers)
        # What pickling sends: the model's path and the settings, never the weights.
        self._settings: dict[str, Any] = {
            "model": str(path),
            "threads": threads,
            "score_threshold": score_threshold,
            "nms_threshold": nms_threshold,
            "max_faces": max_faces,
            "detection_size": detection_size,
            "batch_size": batch_size,
            "providers": providers,
        }
        spec = self._model.spec
        self._decoder = PIPDecoder(spec.meanface, num_nb=spec.num_nb)
        self._policy = CropPolicy.from_dict(spec.crop_policy)
        self._max_faces = max_faces
        self._batch_size = batch_size
        self._face_options: dict[str, Any] = {
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
        self._scheme = scheme_for(spec)

    # ------------------------------------------------------------------ public
    @property
    def spec(self) -> ModelSpec:
        """The model's metadata: landmark count, scheme, mean face, provenance ..."""
        return self._model.spec

    @property
    def num_landmarks(self) -> int:
        return self._model.spec.num_landmarks

    @property
    def scheme(self) -> str:
        """The model's landmark scheme (``"wflw98"`` ...; ``"custom"`` if unknown).

        See :mod:`pipdetect.schemes`.
        """
        return self._scheme

    @property
    def batch_size(self) -> int:
        """Largest number of faces sent through the network in one call."""
        return self._batch_size

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        """Pickle by settings: the receiving process loads the same model file again.

        This is what ``multiprocessing`` (spawn or forkserver) and process pools use;
        the model file must exist at the same path there (true on one machine, and
        for zoo models in a shared cache).
        """
        return _restore, (dict(self._settings),)

    def __repr__(self) -> str:
        s = self._model.spec
        path = str(self._model.path)
        return f"LandmarkDetector({s.name!r}, landmarks={s.num_landmarks}, file={path!r})"

    def __call__(
        self,
        image: ImageInput,
        box: Box | None = None,
        *,
        color: str = "bgr",
        points: int | str | None = None,
    ) -> np.ndarray:
        """Landmarks (N, 2) float32 in image pixels of the most prominent face.

        The most prominent face is the one with the largest box. With ``box``
        (x1, y1, x2, y2) face detection is skipped and that face is used.
        ``points``: see :meth:`detect`.
        Raises :class:`~pipdetect.errors.NoFaceError` when no face is found.
        """
        faces = self.detect(
            image, boxes=None if box is None else [box], color=color, points=points
        )
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
        points: int | str | None = None,
    ) -> list[Face]:
        """Every face in the image, largest box first (ties: higher score first).

        ``boxes``: optional face boxes (N, 4) as (x1, y1, x2, y2) pixels; when
        given, face detection is skipped and one :class:`Face` is returned per
        box, in the order given. Returns ``[]`` when no face is found.

        ``points``: return another landmark scheme than the model's, by number of
        points or scheme name; e.g. ``points=68`` on a 98-point WFLW model gives the
        standard 68-point (300W / Multi-PIE) subset (:mod:`pipdetect.schemes`).
        Raises :class:`~pipdetect.errors.InvalidArgumentError` when the model's points cannot be
        converted.
        """
        return self.detect_batch([image], boxes=None if boxes is None else [boxes],
                                 color=color, points=points)[0]

    def detect_batch(
        self,
        images: Iterable[ImageInput],
        *,
        boxes: Sequence[Sequence[Box] | np.ndarray | None] | None = None,
        color: str = "bgr",
        points: int | str | None = None,
    ) -> list[list[Face]]:
        """Every face of several images, the network run on all of them together.

        Faces of all images go through the network in chunks of ``batch_size``
        (one call when they fit), so many small images cost fewer network calls
        than one :meth:`detect` each; the results are those of :meth:`detect` on
        each image (bit for bit on CPU, unless the runtime picks batch-size-dependent
        kernels, which can change the last digits). ``boxes``, if given, holds one
        entry per image: that image's boxes, or ``None`` to detect its faces.
        Returns one list of faces per image, in the order given. Any bad image
        raises (as :meth:`detect` would) and nothing is returned: check images
        first if some may be unreadable.
        """
        imgs = [load_image(image, color) for image in images]
        if boxes is not None and len(boxes) != len(imgs):
            raise InvalidArgumentError(
                f"boxes must hold one entry (boxes or None) per image: got {len(boxes)} "
                f"entries for {len(imgs)} images"
            )
        output = self.output_scheme(points)
        found = [
            self.find_faces(img) if boxes is None or boxes[i] is None
            else self.given_faces(boxes[i], img)
            for i, img in enumerate(imgs)
        ]
        crops = [self.make_crops(f) for f in found]
        results = self.run_network(list(zip(imgs, crops, strict=True)))
        return [
            self.build_faces(lm, f.boxes, f.scores, c, output)
            for lm, f, c in zip(results, found, crops, strict=True)
        ]

    def track(
        self,
        source: Any,
        *,
        boxes: Sequence[Box] | np.ndarray | None = None,
        color: str = "bgr",
        points: int | str | None = None,
        fps: float | None = None,
        **options: Any,
    ) -> Iterator[FrameFaces]:
        """Follow faces through a video: yields each frame's faces, with track ids.

        ``source``: a video file path, a camera index (``int``), or any iterable of
        frames (images as :meth:`detect` accepts them). For every frame a
        :class:`~pipdetect.track.FrameFaces` is yielded: a ``list`` of :class:`Face`
        (ordered by ``track_id``) that also carries ``.image`` (the BGR frame),
        ``.frame_index`` and ``.time`` (seconds). ``boxes`` seeds tracks on the first frame
        (skipping face detection there). ``fps`` sets the time base (default: the
        video's, else 30). Other keyword options (``redetect_interval``,
        ``min_confidence``, ``smoothing``, ``min_cutoff``, ``beta`` ...) are those of
        :class:`~pipdetect.track.Tracker`. Smoothing is on by default.

        >>> for faces in detector.track("clip.mp4"):
        ...     for face in faces:
        ...         print(faces.frame_index, face.track_id, face.landmarks[0])
        """
        from .track import track

        return track(self, source, boxes=boxes, color=color, points=points, fps=fps,
                     **options)

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

    # ------------------------------------------------------------------- stages
    # The stage API (declared in pipdetect.stages.Stages): what detect_batch runs in
    # order, and what Tracker, the command line and pipdetect.results call one by one.
    @property
    def max_faces(self) -> int | None:
        """At most this many faces per image are kept (largest first); ``None``: all."""
        return self._max_faces

    def output_scheme(self, points: int | str | None) -> OutputScheme:
        """Stage 0: the scheme results are returned in, for ``points`` as :meth:`detect`
        takes it (``None`` or the model's own count: the model's scheme, all landmarks).

        Raises :class:`~pipdetect.errors.InvalidArgumentError` when the model's landmarks cannot
        be converted.
        """
        if points is None:
            return OutputScheme(self._scheme, None)
        if isinstance(points, (int, np.integer)) and not isinstance(points, bool) and (
            int(points) == self.num_landmarks
        ):
            return OutputScheme(self._scheme, None)
        name, indices = conversion_indices(self._scheme, points)
        return OutputScheme(name, indices)

    def find_faces(self, image: np.ndarray) -> FaceBoxes:
        """Stage 1: faces the face detector (YuNet) finds in ``image`` ((H, W, 3) uint8 BGR).

        Boxes ``(x1, y1, x2, y2)`` and keypoints in original-image pixels, largest
        box first (ties: higher score first), at most :attr:`max_faces`. The image is
        downscaled to ``detection_size`` for the face detector only.
        """
        if self._finder is None:
            from .faces import FaceFinder

            self._finder = FaceFinder(**self._face_options)
        found = self._finder.find(image)
        face_boxes, scores = found.boxes, found.scores
        if len(face_boxes) == 0:
            return FaceBoxes(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        area = (face_boxes[:, 2] - face_boxes[:, 0]) * (face_boxes[:, 3] - face_boxes[:, 1])
        order = np.lexsort((-scores, -area))
        if self._max_faces is not None:
            order = order[: self._max_faces]
        return FaceBoxes(face_boxes[order], scores[order], found.keypoints[order])

    def given_faces(self, boxes: Any, image: np.ndarray) -> FaceBoxes:
        """Stage 1, for boxes a caller passed: one (4,) or several (n, 4)
        ``(x1, y1, x2, y2)`` pixels of ``image``, kept in the order given, score 1.0.

        Raises :class:`~pipdetect.errors.InvalidBoxError` for a malformed box, a box
        entirely outside the image, or one more than :data:`MAX_BOX_FACTOR` times
        the image's size.
        """
        face_boxes = as_boxes(boxes, "boxes")
        _check_overlap(face_boxes, image.shape)
        return FaceBoxes(face_boxes, np.ones(len(face_boxes)), None)

    def make_crops(self, faces: FaceBoxes) -> np.ndarray:
        """Stage 2: the crops (n, 4) float64 ``(x1, y1, x2, y2)`` image pixels fed to the
        network, by the model's crop policy (:class:`~pipdetect.crop.CropPolicy`): from
        box and keypoints for detections, from the box alone for boxes passed. Crops are
        axis-aligned, not necessarily square, and may reach outside the image."""
        if len(faces.boxes) == 0:
            return np.zeros((0, 4))
        return self._policy.crops(faces.boxes, faces.keypoints)

    def run_network(
        self, items: Sequence[tuple[np.ndarray, np.ndarray]]
    ) -> list[CropLandmarks]:
        """Stage 3: landmarks for ``(image, crops)`` pairs, the crops (n_i, 4) of all
        images through the network together (chunks of :attr:`batch_size`).

        Each crop is warped (bilinear, black padding) to the model input, run, decoded
        (:class:`~pipdetect.decode.PIPDecoder`) and mapped back to its image: per pair,
        points (n_i, L, 2) float64 in original-image pixels and scores (n_i, L).
        """
        counts = [len(crops) for _, crops in items]
        if sum(counts) == 0:
            empty = CropLandmarks(
                np.zeros((0, self.num_landmarks, 2)), np.zeros((0, self.num_landmarks))
            )
            return [empty for _ in items]
        batch = np.concatenate(
            [warp_crops(img, crops, self.spec.input_size) for img, crops in items if len(crops)]
        )
        points, lm_scores = self._landmarks(batch)
        out = []
        start = 0
        for (_, crops), n in zip(items, counts, strict=True):
            pix = crops_to_image(points[start : start + n], crops)
            out.append(CropLandmarks(pix, lm_scores[start : start + n]))
            start += n
        return out

    def build_faces(
        self,
        landmarks: CropLandmarks,
        boxes: np.ndarray,
        box_scores: np.ndarray,
        crops: np.ndarray,
        output: OutputScheme,
        track_ids: Sequence[int] | None = None,
    ) -> list[Face]:
        """Stage 4: :class:`Face` objects for n faces in ``output``'s scheme.

        ``landmarks``: points (n, L, 2) image pixels and scores (n, L), as
        :meth:`run_network` returns them (a tracker passes smoothed points);
        ``boxes`` (n, 4), ``box_scores`` (n,) and ``crops`` (n, 4) as in
        :class:`Face`; ``track_ids`` (n,) or ``None``. Arrays become read-only float32.
        """
        pixels, lm_scores = landmarks
        subset = output.indices
        faces = []
        for i in range(len(crops)):
            lm = pixels[i].astype(np.float32)
            sc = lm_scores[i].astype(np.float32)
            if subset is not None:
                lm, sc = lm[subset], sc[subset]
            lm.flags.writeable = False
            sc.flags.writeable = False
            faces.append(
                Face(
                    landmarks=lm,
                    scores=sc,
                    box=_box_tuple(boxes[i]),
                    crop=_box_tuple(crops[i]),
                    score=float(box_scores[i]),
                    scheme=output.name,
                    track_id=None if track_ids is None else int(track_ids[i]),
                )
            )
        return faces

    # ----------------------------------------------------------------- private
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
        # The decoder raises ModelOutputError rather than return non-finite values.
        return np.concatenate(points), np.concatenate(scores)

    def _preprocess(self, crops: np.ndarray) -> np.ndarray:
        """(B, h, w, 3) uint8 BGR -> (B, 3, h, w) float32 normalised in the model's order.

        One pass per channel from the interleaved uint8 crops straight into the
        planar float32 batch: no float (B, h, w, 3) temporary and no transpose
        copy. Same float32 arithmetic as ``crops.astype(float32) * scale + offset``
        (bit-identical), 5-10x faster (benchmarks/README.md).
        """
        b, h, w, _ = crops.shape
        out = np.empty((b, 3, h, w), dtype=np.float32)
        for k in range(3):
            src = 2 - k if self._rgb else k  # the crop (BGR) channel feeding model channel k
            np.multiply(crops[..., src], self._scale[src], out=out[:, k], dtype=np.float32)
            out[:, k] += self._offset[src]
        return out


def _box_tuple(b: np.ndarray) -> tuple[float, float, float, float]:
    return float(b[0]), float(b[1]), float(b[2]), float(b[3])


MAX_BOX_FACTOR = 8
"""A face box may be at most this many times the image's larger side (wider or taller)."""


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
    limit = MAX_BOX_FACTOR * max(h, w)
    too_big = (boxes[:, 2] - boxes[:, 0] > limit) | (boxes[:, 3] - boxes[:, 1] > limit)
    if np.any(too_big):
        raise InvalidBoxError(
            f"box {boxes[too_big][0].tolist()} is more than {MAX_BOX_FACTOR} times the size "
            f"of the {w}x{h} image; boxes are (x1, y1, x2, y2) in pixels of the image passed"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_options(**options: Any) -> None:
    """Refuse a bad ``LandmarkDetector(...)`` argument now, under its own name, rather than
    at the first ``detect()`` under an internal one."""

    def bad(name: str, wanted: str) -> InvalidArgumentError:
        return InvalidArgumentError(
            f"LandmarkDetector({name}={options[name]!r}): {name} must be {wanted}"
        )

    model = options["model"]
    if model is not None and not isinstance(model, (str, os.PathLike)):
        raise bad("model", "None (the bundled default), a path to a pipdetect .onnx file, or "
                  "a model name (pipdetect --list-models)")
    for name in ("score_threshold", "nms_threshold"):
        value = options[name]
        if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                or not 0.0 <= float(value) <= 1.0):
            raise bad(name, "a number between 0 and 1 (face detector "
                      + ("confidence)" if name == "score_threshold" else "overlap, IoU)"))
    for name, low, unit in (("threads", 1, "onnxruntime threads; None: one per core"),
                            ("max_faces", 1, "faces per image; None: all"),
                            ("detection_size", MIN_MAX_SIDE,
                             "pixels, the longest side used for face detection; "
                             "None: never downscale")):
        value = options[name]
        if value is not None and not (_is_int(value) and value >= low):
            raise bad(name, f"an integer >= {low} or None ({unit})")
    if not (_is_int(options["batch_size"]) and options["batch_size"] >= 1):
        raise bad("batch_size", "an integer >= 1 (faces per network call)")
    providers = options["providers"]
    if providers is not None and not (
        isinstance(providers, (list, tuple)) and all(isinstance(p, str) for p in providers)
    ):
        raise bad("providers", "None or a list of onnxruntime provider names, e.g. "
                  "['CPUExecutionProvider']")


def _restore(settings: dict[str, Any]) -> LandmarkDetector:
    settings = dict(settings)
    return LandmarkDetector(settings.pop("model"), **settings)

