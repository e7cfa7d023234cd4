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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .confidence import Calibration
from .crop import (
    CropPolicy,
    as_boxes,
    as_crops,
    box_iou,
    crop_from_landmark_box,
    crop_from_landmarks,
    crop_from_points,
    crops_to_image,
    keypoint_roll,
    landmark_roll,
    training_crop_enlargement,
    turned_image,
    warp_crops,
    wrap_degrees,
)
from .decode import PIPDecoder
from .errors import InvalidArgumentError, InvalidBoxError, InvalidImageError, NoFaceError
from .faces import MIN_MAX_SIDE
from .image import ImageInput, load_image
from .model import LoadedModel, ModelSpec, load_model
from .schemes import SCHEMES, Scheme, conversion_indices, scheme_for
from .stages import Crop, CropLandmarks, Face, FaceBoxes, OutputScheme

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
        :func:`pipdetect.list_models`; ``None`` (or ``"pipnet-lite0-300w-int8"``) for the
        default model, which ships inside the package (68 points, no network): an int8
        PIP-Net, as does the fp32 network it was quantised from, ``"pipnet-lite0-300w"``
        (NME 0.008 points lower on LFPW, slower; exact float arithmetic; docs/models.md).
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
    min_confidence:
        Faces the face detector found whose :attr:`Face.confidence` (the estimated
        probability that their landmarks are right) is below this are left out of
        :meth:`detect`. ``None`` (default): the model's calibrated threshold (for the
        bundled model it keeps over 99 % of right faces; see docs/angles.md), or 0 for
        an uncalibrated model. ``0`` keeps every face. Faces for boxes you pass are
        always returned, with their confidence.
    orientation_search:
        Faces at any roll. ``"auto"`` (default): crops are levelled by the face
        detector's eye keypoints and then by the landmarks' eye line; a face the
        network is unsure of is also tried a quarter and half turn round; when no
        confident face is found upright, the face detector looks again in the image
        turned 90, 180 and 270 degrees; and when there is still no confident face at any
        roll, in the image turned 45, 135, 225 and 315 degrees (a face rolled 45 degrees
        off every quarter turn, which the face detector can miss in all four). A photo
        without a face pays both searches: eight face-detector runs instead of one.
        ``"always"``: also search the image turned 90, 180 and 270 degrees when upright
        faces were found (a face lying down in a group photo), at the cost of three more
        face-detector runs per image; the 45-degree turns still only where no face is
        confident. ``"off"``: only levelling by the detector's keypoints, for images known
        to be upright (the fastest on photos without faces: one face-detector run).
    flip_test:
        ``True``: the "accurate" setting. Every network pass also runs each crop's
        left-right mirror image, in the same batch (one call with twice the crops), maps
        the mirrored landmarks back (``u -> 1 - u`` in the crop's normalised frame, each
        point swapped with its mirror partner, :attr:`pipdetect.schemes.Scheme.mirror`)
        and averages the two; the scores are averaged too. The average is then moved
        along the crop's x so that its mean x is the unmirrored pass's: the annotations
        a model learned from need not be mirror-symmetric (300-W's sit about 0.8 % of
        the inter-ocular distance right of the features, and the bundled model keeps
        that), and a plain average would lose that convention. Applies to
        :meth:`detect`, :meth:`detect_batch`, boxes given, :meth:`predict_crops` and
        :meth:`track`. Costs about one more network run per face (docs/accuracy-and-speed.md
        has the measured gain and cost). Raises
        :class:`~pipdetect.errors.InvalidArgumentError` for a model whose scheme has no
        known mirror pairs (only ``300w68`` has them today). ``False`` (default): one pass.
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
        min_confidence: float | None = None,
        orientation_search: str = "auto",
        flip_test: bool = False,
    ) -> None:
        _check_options(model=model, threads=threads, score_threshold=score_threshold,
                       nms_threshold=nms_threshold, max_faces=max_faces,
                       detection_size=detection_size, batch_size=batch_size,
                       providers=providers, min_confidence=min_confidence,
                       orientation_search=orientation_search, flip_test=flip_test)
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
            "min_confidence": min_confidence,
            "orientation_search": orientation_search,
            "flip_test": flip_test,
        }
        spec = self._model.spec
        self._decoder = PIPDecoder(spec.meanface, num_nb=spec.num_nb)
        self._policy = CropPolicy.from_dict(spec.crop_policy)
        self._calibration = Calibration.from_dict(spec.confidence)
        self._search_below = (SEARCH_BELOW if self._calibration.calibrated
                              else UNCALIBRATED_SEARCH_BELOW)
        self._min_confidence = (self._calibration.threshold if min_confidence is None
                                else float(min_confidence))
        self._search = orientation_search
        self._enlarge = training_crop_enlargement(spec)
        self._meanface = np.asarray(spec.meanface, dtype=np.float64)
        offset = np.asarray(spec.output_offset, dtype=np.float64)
        self._output_offset = offset if np.any(offset) else None
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
        self._eyes = _eye_indices(self._scheme, spec.num_landmarks)
        self._mirror = _mirror_indices(self._scheme, spec.num_landmarks) if flip_test else None
        if flip_test and self._mirror is None:
            raise InvalidArgumentError(
                f"LandmarkDetector(flip_test=True): model {spec.name!r} has landmark scheme "
                f"{self._scheme!r}, whose left/right mirror pairs pipdetect does not know "
                "(known: " + ", ".join(n for n, sc in SCHEMES.items() if sc.mirror is not None)
                + "); leave flip_test off for this model"
            )

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
        """Largest number of faces sent through the network in one call (with
        :attr:`flip_test`, each call holds their mirror images too: twice as many crops)."""
        return self._batch_size

    @property
    def flip_test(self) -> bool:
        """Whether each crop's mirror image is run too and averaged in (``flip_test=True``)."""
        return self._mirror is not None

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
        ((faces, dropped),) = self._detect_batch(
            [image], boxes=None if box is None else [[box]], color=color, points=points
        )
        if not faces and dropped:
            raise NoFaceError(
                f"{len(dropped)} face(s) found, but their landmarks are unlikely to be right "
                f"(best confidence {max(dropped):.2f}, below min_confidence "
                f"{self._min_confidence:.2f}): a blurred, tiny or half-hidden face, or not a "
                "face at all. Pass min_confidence=0 to get them anyway, or box=(x1, y1, x2, y2)"
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
        return [faces for faces, _ in self._detect_batch(
            images, boxes=boxes, color=color, points=points)]

    def _detect_batch(
        self,
        images: Iterable[ImageInput],
        *,
        boxes: Sequence[Sequence[Box] | np.ndarray | None] | None,
        color: str,
        points: int | str | None,
    ) -> list[tuple[list[Face], list[float]]]:
        """:meth:`detect_batch`, with the confidences of the detected faces left out
        for being below ``min_confidence`` (per image)."""
        imgs = [load_image(image, color) for image in images]
        if boxes is not None and len(boxes) != len(imgs):
            raise InvalidArgumentError(
                f"boxes must hold one entry (boxes or None) per image: got {len(boxes)} "
                f"entries for {len(imgs)} images"
            )
        output = self.output_scheme(points)
        given = [boxes is not None and boxes[i] is not None for i in range(len(imgs))]
        found = [
            self.given_faces(boxes[i], img) if boxes is not None and boxes[i] is not None
            else self.find_faces(img)
            for i, img in enumerate(imgs)
        ]
        located = self.locate(list(zip(imgs, found, strict=True)))
        if self._search != "off":
            self._search_turned(imgs, given, found, located)
            self._search_diagonal(imgs, given, found, located)
        out = []
        for img_given, f, (crops, lm) in zip(given, found, located, strict=True):
            conf = self.confidence(lm.scores)
            keep = np.ones(len(crops), dtype=bool) if img_given else conf >= self._min_confidence
            faces = self.build_faces(CropLandmarks(lm.points[keep], lm.scores[keep]),
                                     f.boxes[keep], f.scores[keep], crops[keep], output,
                                     confidence=conf[keep])
            out.append((faces, [float(c) for c in conf[~keep]]))
        return out

    def _search_turned(
        self,
        imgs: list[np.ndarray],
        given: list[bool],
        found: list[FaceBoxes],
        located: list[tuple[np.ndarray, CropLandmarks]],
    ) -> None:
        """The face detector on images turned 90, 180 and 270 degrees, where no
        confident face lies within :data:`TURNED_PICTURE` degrees of upright: none
        was found, or every confident face lies rolled past it (the picture itself is
        probably turned, and the detector misses faces in it) (``"auto"``); or always
        (``"always"``). One confident face near upright says the picture is upright:
        a rolled face beside it (a head on a shoulder) was found already. Faces it
        adds replace ``found`` / ``located`` entries in place, merged with the upright
        ones (the more confident of two faces with overlapping landmarks is kept),
        largest box first."""
        def wanted(crops: np.ndarray, lm: CropLandmarks) -> bool:
            sure = self.confidence(lm.scores) >= self._search_below
            return not np.any(np.abs(wrap_degrees(crops[sure, 4])) <= TURNED_PICTURE)

        todo = [
            i for i, (crops, lm) in enumerate(located)
            if not given[i] and (self._search == "always" or wanted(crops, lm))
        ]
        self._merge_found(imgs, todo, [
            _concat_faces([self.find_faces(imgs[i], turn=k) for k in (1, 2, 3)]) for i in todo
        ], found, located)

    def _search_diagonal(
        self,
        imgs: list[np.ndarray],
        given: list[bool],
        found: list[FaceBoxes],
        located: list[tuple[np.ndarray, CropLandmarks]],
    ) -> None:
        """The face detector on images turned 45, 135, 225 and 315 degrees
        (:meth:`_find_diagonal`), where no face at any roll is confident (at least
        :data:`SEARCH_BELOW`) after :meth:`_search_turned`: a face rolled about 45 degrees
        off every quarter turn, which the face detector can miss in all four. Runs with
        ``"auto"`` and ``"always"`` alike; photos without a face pay four more face-detector
        runs. Faces it adds are merged as :meth:`_search_turned` merges them."""
        todo = [
            i for i, (_, lm) in enumerate(located)
            if not given[i] and not np.any(self.confidence(lm.scores) >= self._search_below)
        ]
        self._merge_found(imgs, todo, [self._find_diagonal(imgs[i]) for i in todo],
                          found, located)

    def _merge_found(
        self,
        imgs: list[np.ndarray],
        todo: list[int],
        extra: list[FaceBoxes],
        found: list[FaceBoxes],
        located: list[tuple[np.ndarray, CropLandmarks]],
    ) -> None:
        """Faces ``extra[j]`` that a search of the turned picture found in ``imgs[todo[j]]``,
        located (:meth:`locate`) and merged in place into that image's ``found`` /
        ``located`` entries: of two faces with overlapping landmarks the more confident is
        kept; largest box first, at most :attr:`max_faces`."""
        if not todo:
            return
        more = self.locate([(imgs[i], t) for i, t in zip(todo, extra, strict=True)])
        for i, t, (crops, lm) in zip(todo, extra, more, strict=True):
            if not len(t.boxes):
                continue
            faces = _concat_faces([found[i], t])
            all_crops = np.concatenate([located[i][0], crops])
            pts = np.concatenate([located[i][1].points, lm.points])
            sc = np.concatenate([located[i][1].scores, lm.scores])
            keep = _distinct(pts, self.confidence(sc))
            area = ((faces.boxes[:, 2] - faces.boxes[:, 0])
                    * (faces.boxes[:, 3] - faces.boxes[:, 1]))
            order = keep[np.lexsort((-faces.scores[keep], -area[keep]))]
            if self._max_faces is not None:
                order = order[: self._max_faces]
            found[i] = FaceBoxes(faces.boxes[order], faces.scores[order],
                                 None if faces.keypoints is None else faces.keypoints[order])
            located[i] = (all_crops[order], CropLandmarks(pts[order], sc[order]))

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

    @property
    def min_confidence(self) -> float:
        """Detected faces with a lower :attr:`Face.confidence` are left out of :meth:`detect`."""
        return self._min_confidence

    def confidence(self, scores: np.ndarray) -> np.ndarray:
        """Confidence (n,) in [0, 1] of faces with per-landmark scores (n, L): the
        estimated probability that their landmarks are right (the model's calibration,
        :class:`pipdetect.confidence.Calibration`)."""
        return self._calibration(scores)

    def find_faces(self, image: np.ndarray, *, turn: int = 0) -> FaceBoxes:
        """Stage 1: faces the face detector (YuNet) finds in ``image`` ((H, W, 3) uint8 BGR).

        Boxes ``(x1, y1, x2, y2)`` and keypoints in original-image pixels, largest
        box first (ties: higher score first), at most :attr:`max_faces`. The image is
        downscaled to ``detection_size`` for the face detector only. ``turn``: look in
        the image turned this many quarter turns clockwise (0-3); the results are
        mapped back into ``image`` (boxes stay axis-aligned there).
        """
        k = int(turn) % 4
        small, to_small = image, np.eye(3)
        if k:  # shrink before turning: the face detector would, after a full-size copy
            small, to_small = self._shrunk(image, max(image.shape[:2]), round)
        found = self._face_finder().find(np.rot90(small, -k) if k else small)
        face_boxes, scores, keypoints = found.boxes, found.scores, found.keypoints
        if len(face_boxes) == 0:
            return _no_faces()
        if k:
            m = (np.linalg.inv(to_small)
                 @ np.vstack([_unturn(k, small.shape[:2]), [0.0, 0.0, 1.0]]))[:2]
            corners = _apply(m, face_boxes.reshape(-1, 2, 2))
            face_boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
            keypoints = _apply(m, keypoints)
        return self._largest_first(face_boxes, scores, keypoints)

    def _find_diagonal(self, image: np.ndarray) -> FaceBoxes:
        """Stage 1 in ``image`` turned 45, 135, 225 and 315 degrees clockwise (one warp
        onto a canvas grown to hold the whole picture, :func:`~pipdetect.crop.turned_image`,
        then its quarter turns), the faces mapped back into ``image``: a face rolled about
        45 + k * 90 degrees stands upright for the face detector in one of them.

        Keypoints are mapped back exactly. A box, axis-aligned in the turned picture, has
        no axis-aligned form in ``image``: its centre is mapped back and its width and
        height are kept as the detector saw them, swapped where needed so that
        :func:`~pipdetect.crop.levelled_faces` (which reads a box in the frame of its
        keypoints' nearest quarter turn) measures the detector's own box in the face's
        levelled frame. The crop policy then gives the face the crop it would get upright,
        turned with it. Faces of each turned picture: largest box first, at most
        :attr:`max_faces`.
        """
        # the canvas of the photo turned 45 degrees is (h + w) / sqrt(2) pixels wide;
        # rounding the shrunk photo's size down keeps that within detection_size
        small, to_small = self._shrunk(image, sum(image.shape[:2]) * np.sqrt(0.5), int)
        canvas, to_canvas = turned_image(small, DIAGONAL)
        back = np.linalg.inv(np.vstack([to_canvas, [0.0, 0.0, 1.0]]) @ to_small)
        unshrink = float(np.sqrt(abs(np.linalg.det(back[:2, :2]))))
        parts = []
        for k in range(4):
            found = self._face_finder().find(np.rot90(canvas, -k) if k else canvas)
            if not len(found):
                continue
            m = (back @ np.vstack([_unturn(k, canvas.shape[:2]), [0.0, 0.0, 1.0]]))[:2]
            keypoints = _apply(m, found.keypoints)
            centre = _apply(m, (found.boxes[:, :2] + found.boxes[:, 2:]) / 2)
            # the detector's box size, in pixels of ``image`` (the canvas may be shrunk)
            size = (found.boxes[:, 2:] - found.boxes[:, :2]) * unshrink
            roll = keypoint_roll(keypoints)  # as levelled_faces will measure it
            # lying sideways in the turned picture: its levelled box is the detector's, swapped
            sideways = np.round((roll + DIAGONAL + 90.0 * k) / 90.0) % 2 == 1
            swapped = np.round(roll / 90.0) % 2 == 1  # levelled_faces will swap it
            size = np.where((sideways != swapped)[:, None], size[:, ::-1], size)
            parts.append(self._largest_first(
                np.concatenate([centre - size / 2, centre + size / 2], axis=1),
                found.scores, keypoints))
        return _concat_faces(parts) if parts else _no_faces()

    def _shrunk(self, image: np.ndarray, side: float,
                fit: Callable[[float], int]) -> tuple[np.ndarray, np.ndarray]:
        """``image`` shrunk (:func:`~pipdetect.faces.downscale`) by ``detection_size /
        side`` (its pixel counts rounded by ``fit``), where ``side`` is the longest side of
        the picture the face detector will get made from it (a turned copy), so that the
        detector need not shrink that picture itself: turning a photo at full size first
        costs a full-size copy (300 MB for a 10,000-pixel photo; its 45-degree canvas,
        600 MB). Unchanged when ``side`` is within ``detection_size``. Also returns the
        (3, 3) map from pixels of ``image`` to pixels of the result (centres at integers)."""
        from .faces import downscale

        limit = self._face_options["max_side"]
        if limit is None or side <= limit:
            return image, np.eye(3)
        h, w = image.shape[:2]
        scale = limit / side
        small, sx, sy = downscale(image, max(1, fit(w * scale)), max(1, fit(h * scale)))
        return small, np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5],
                                [0.0, 0.0, 1.0]])

    def _face_finder(self) -> Any:
        if self._finder is None:
            from .faces import FaceFinder

            self._finder = FaceFinder(**self._face_options)
        return self._finder

    def _largest_first(
        self, boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray
    ) -> FaceBoxes:
        """Faces sorted by box area, largest first (ties: higher score first), at most
        :attr:`max_faces`."""
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        order = np.lexsort((-scores, -area))
        if self._max_faces is not None:
            order = order[: self._max_faces]
        return FaceBoxes(boxes[order], scores[order], keypoints[order])

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
        """Stage 2: the crops (n, 5) float64 ``(x1, y1, x2, y2, angle)`` fed to the
        network, by the model's crop policy (:class:`~pipdetect.crop.CropPolicy`): for
        detections, levelled by the keypoints' roll and placed from box and keypoints;
        for boxes passed, from the box alone, axis-aligned. Crops are not necessarily
        square and may reach outside the image (the warp pads with black)."""
        if len(faces.boxes) == 0:
            return np.zeros((0, 5))
        return self._policy.crops(faces.boxes, faces.keypoints)

    def crops_from_landmarks(
        self, landmarks: CropLandmarks, image_size: tuple[int, int]
    ) -> np.ndarray:
        """Stage 2 again, from landmarks: the crops (n, 5) in which the model was trained
        to see faces with these landmarks (points (n, L, 2) in pixels of an image of
        ``image_size`` (height, width), scores (n, L)), levelled by their eye line.

        Models trained on the 68-point landmark box x F (the 300W presets, pipdetect's
        own models: :func:`~pipdetect.crop.training_crop_enlargement`) get exactly that
        box, measured in the levelled frame; others the crop in which the landmarks best
        match the mean face. Landmarks the model is unsure of (score below
        :data:`SURE_SCORE`) or outside the image are first replaced by the mean face's
        fit to the others. Used for second passes and by the tracker for the next frame.
        """
        points, scores = landmarks
        h, w = image_size[:2]
        out = np.zeros((len(points), 5))
        for i, (pts, sc) in enumerate(zip(points, scores, strict=True)):
            inside = ((pts[:, 0] >= 0) & (pts[:, 0] <= w - 1)
                      & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1))
            sure = (sc >= SURE_SCORE) & inside
            if sure.sum() < max(3, len(sc) // 4):
                sure[:] = True
            if self._enlarge is not None and len(pts) == 68 and sure.all():
                out[i] = crop_from_landmark_box(pts[None], self._enlarge)[0]
                continue  # (the usual case: the mean-face fit below is not needed)
            angle = (landmark_roll(pts[None], *self._eyes) if self._eyes is not None
                     else np.zeros(1))
            mf = self._meanface[sure]
            fit = crop_from_points(pts[sure][None], angle,
                                   lambda q, mf=mf: crop_from_landmarks(q, mf))
            if self._enlarge is None or len(pts) != 68:
                out[i] = fit[0]
                continue
            # unsure points: the mean face's, placed by the fit
            pts = np.where(sure[:, None], pts, crops_to_image(self._meanface[None], fit)[0])
            out[i] = crop_from_landmark_box(pts[None], self._enlarge)[0]
        return out

    def locate(
        self, items: Sequence[tuple[np.ndarray, FaceBoxes]]
    ) -> list[tuple[np.ndarray, CropLandmarks]]:
        """Stages 2-3 for faces at any roll: ``(image, faces)`` pairs to ``(crops (n, 5),
        landmarks)`` per image, all images' faces through the network together.

        1. Crops by :meth:`make_crops` (levelled by the detector's eye keypoints), the
           network.
        2. Every face from a box the caller passed (whose style may differ from the
           training crop) is run again in :meth:`crops_from_landmarks` until the crop
           settles, up to :data:`MAX_REFINE` times.
        3. Unless ``orientation_search="off"``: a face whose confidence is still below
           :data:`SEARCH_BELOW` is tried in its box's crop turned by 90, 180 and 270
           degrees; the most confident of the four is kept (the detector's keypoints are
           wrong on faces rolled past about 45 degrees). With ``"auto"``, only in an
           image without a confident face lying within :data:`TURNED_PICTURE` degrees
           of upright.
        4. Levelling: a face whose landmarks' eye line is more than
           :data:`LEVEL_TOLERANCE` degrees off its crop's angle (:data:`ROLLED_TOLERANCE`
           for crops turned :data:`ROLLED` degrees or more), and every face moved to a
           turned crop, is run again in :meth:`crops_from_landmarks` until it settles.

        On an upright photo step 1 is usually all that runs (docs/angles.md has the cost).
        """
        imgs = [img for img, _ in items]
        crops = [self.make_crops(f) for _, f in items]
        owner = np.concatenate(
            [np.full(len(c), i, dtype=np.intp) for i, c in enumerate(crops)]
            or [np.zeros(0, dtype=np.intp)]
        )
        flat = np.concatenate(crops) if len(owner) else np.zeros((0, 5))
        boxes = np.concatenate([f.boxes for _, f in items]) if len(owner) else np.zeros((0, 4))
        # Faces from boxes the caller passed start from a crop of unknown style: levelled
        # and re-cropped by the training rule until the crop settles.
        unsure_start = np.concatenate(
            [np.full(len(f.boxes), f.keypoints is None) for _, f in items] or [np.zeros(0)]
        ).astype(bool)
        if np.any(unsure_start) and GIVEN_START != 1.0:
            # a box of unknown style: start wide (a face too small in its crop is read
            # better than one cut off), then settle on the landmarks' own crop
            c = flat[unsure_start]
            centre, half = (c[:, :2] + c[:, 2:4]) / 2, (c[:, 2:4] - c[:, :2]) * GIVEN_START / 2
            flat = flat.copy()
            flat[unsure_start, :2], flat[unsure_start, 2:4] = centre - half, centre + half
        pts, sc = self._run_flat(imgs, owner, flat)
        # A caller's box most often holds an upright face of another crop style: settle it
        # first, and try it turned only if the network is still unsure.
        flat, pts, sc = self._level(imgs, owner, flat, pts, sc, unsure_start)
        # Unsure detections in a picture with a confident face lying upright are mostly
        # small, blurred or not faces, not turned ones: they get no more passes ("always"
        # tries them), unless the face detector is sure of them (a face rolled far beside
        # an upright one, whose detector keypoints misled its crop). Boxes passed are
        # each tried on their own, whatever the others are.
        conf = self.confidence(sc)
        sure = conf >= self._search_below
        upright = np.zeros(len(imgs), dtype=bool)
        upright[owner[sure & (np.abs(wrap_degrees(flat[:, 4])) <= TURNED_PICTURE)]] = True
        detector_sure = np.concatenate(
            [f.scores for _, f in items] or [np.zeros(0)]) >= SURE_DETECTION
        worth = sure | unsure_start | detector_sure | ~upright[owner] | (self._search == "always")
        turned = np.zeros(len(flat), dtype=bool)
        if self._search != "off" and len(flat):
            flat, pts, sc, turned = self._turn_unsure(imgs, owner, boxes, flat, pts, sc, conf,
                                                      ~sure & worth)
        flat, pts, sc = self._level(imgs, owner, flat, pts, sc, turned, check_roll=worth)
        out = []
        for i in range(len(items)):
            sel = owner == i
            out.append((flat[sel], CropLandmarks(pts[sel], sc[sel])))
        return out

    def _run_flat(
        self, imgs: list[np.ndarray], owner: np.ndarray, crops: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """run_network on crops (n, 5) of ``imgs[owner]``: points (n, L, 2), scores (n, L)."""
        n, size = len(crops), self.num_landmarks
        pts, sc = np.zeros((n, size, 2)), np.zeros((n, size))
        images = np.unique(owner)
        results = self.run_network([(imgs[i], crops[owner == i]) for i in images])
        for i, res in zip(images, results, strict=True):
            pts[owner == i], sc[owner == i] = res.points, res.scores
        return pts, sc

    def _turn_unsure(
        self, imgs: list[np.ndarray], owner: np.ndarray, boxes: np.ndarray,
        crops: np.ndarray, pts: np.ndarray, sc: np.ndarray, conf: np.ndarray,
        todo: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Faces ``todo`` tried in their box's crop turned 90, 180 and 270 degrees (box-only
        policy in that frame); the most confident of the four is kept (``conf``: the
        faces' confidence as they are). Also returns which faces moved to a turned crop."""
        moved_mask = np.zeros(len(crops), dtype=bool)
        unsure = np.flatnonzero(todo)
        if not len(unsure):
            return crops, pts, sc, moved_mask
        turned = np.concatenate([self._policy.crops(boxes[unsure], None, k) for k in (1, 2, 3)])
        tp, ts = self._run_flat(imgs, np.tile(owner[unsure], 3), turned)
        conf = np.concatenate([conf[unsure], self.confidence(ts)])
        best = np.argmax(conf.reshape(4, -1), axis=0)  # ties keep the crop as it was
        pick = (best - 1) * len(unsure) + np.arange(len(unsure))
        moved = best > 0
        crops, pts, sc = crops.copy(), pts.copy(), sc.copy()
        crops[unsure[moved]] = turned[pick[moved]]
        pts[unsure[moved]] = tp[pick[moved]]
        sc[unsure[moved]] = ts[pick[moved]]
        moved_mask[unsure[moved]] = True
        return crops, pts, sc, moved_mask

    def _level(
        self, imgs: list[np.ndarray], owner: np.ndarray, crops: np.ndarray,
        pts: np.ndarray, sc: np.ndarray, unsure_start: np.ndarray,
        check_roll: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces re-run in crops built from their landmarks (:meth:`crops_from_landmarks`):
        those in ``unsure_start`` until the crop settles (turns less than :data:`SETTLED`
        degrees and moves less than :data:`SETTLED_SHIFT` of its size), and those in
        ``check_roll`` whose eye line is more than :data:`LEVEL_TOLERANCE` degrees off the
        crop's angle (then also until it settles); at most :data:`MAX_REFINE` extra
        passes."""
        crops, pts, sc = crops.copy(), pts.copy(), sc.copy()
        active = unsure_start.copy()
        if check_roll is not None and self._eyes is not None and len(crops):
            off = np.abs(wrap_degrees(landmark_roll(pts, *self._eyes) - crops[:, 4]))
            rolled = np.abs(wrap_degrees(crops[:, 4])) >= ROLLED
            active |= check_roll & (off > np.where(rolled, ROLLED_TOLERANCE, LEVEL_TOLERANCE))
        for step in range(MAX_REFINE):
            idx = np.flatnonzero(active)
            if not len(idx):
                break
            new = np.concatenate([
                self.crops_from_landmarks(CropLandmarks(pts[[j]], sc[[j]]),
                                          imgs[owner[j]].shape[:2]) for j in idx])
            if step:  # after a pass: run again only where the next crop would differ
                old = crops[idx]
                size = np.maximum(old[:, 2:4] - old[:, :2], 1e-9)
                shift = np.abs((new[:, :2] + new[:, 2:4] - old[:, :2] - old[:, 2:4]) / 2) / size
                grow = np.abs(np.log(np.maximum(new[:, 2:4] - new[:, :2], 1e-9) / size))
                turn = np.abs(wrap_degrees(new[:, 4] - old[:, 4]))
                moving = ((turn > SETTLED) | (shift.max(axis=1) > SETTLED_SHIFT)
                          | (grow.max(axis=1) > SETTLED_SHIFT))
                idx, new = idx[moving], new[moving]
                if not len(idx):
                    break
            crops[idx] = new
            pts[idx], sc[idx] = self._run_flat(imgs, owner[idx], new)
            active[:] = False
            active[idx] = True
        return crops, pts, sc

    def run_network(
        self, items: Sequence[tuple[np.ndarray, np.ndarray]]
    ) -> list[CropLandmarks]:
        """Stage 3: landmarks for ``(image, crops)`` pairs, the crops (n_i, 5) (or axis-
        aligned (n_i, 4)) of all images through the network together, in chunks of
        :attr:`batch_size`: at most that many crops are warped at once, so memory stays
        bounded however many faces there are.

        Each crop is warped (bilinear, black padding, turned upright) to the model input,
        run, decoded (:class:`~pipdetect.decode.PIPDecoder`) and mapped back to its image:
        per pair, points (n_i, L, 2) float64 in original-image pixels and scores (n_i, L).
        """
        counts = [len(crops) for _, crops in items]
        total = sum(counts)
        size = self.num_landmarks
        points, lm_scores = np.zeros((total, size, 2)), np.zeros((total, size))
        refs = [(img, as_crops(crops)) for img, crops in items]
        jobs = [(img, c[j]) for img, c in refs for j in range(len(c))]
        for start in range(0, total, self._batch_size):
            chunk = jobs[start : start + self._batch_size]
            batch = np.concatenate(
                [warp_crops(img, c[None], self.spec.input_size) for img, c in chunk])
            p, s = self._landmarks(batch)
            stop = start + len(chunk)
            points[start:stop] = crops_to_image(p, np.stack([c for _, c in chunk]))
            lm_scores[start:stop] = s
        out = []
        start = 0
        for n in counts:
            out.append(CropLandmarks(points[start : start + n], lm_scores[start : start + n]))
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
        *,
        confidence: np.ndarray | None = None,
    ) -> list[Face]:
        """Stage 4: :class:`Face` objects for n faces in ``output``'s scheme.

        ``landmarks``: points (n, L, 2) image pixels and scores (n, L), as
        :meth:`run_network` returns them (a tracker passes smoothed points);
        ``boxes`` (n, 4), ``box_scores`` (n,) and ``crops`` (n, 4) as in
        :class:`Face`; ``track_ids`` (n,) or ``None``; ``confidence`` (n,): the faces'
        :meth:`confidence`, when the caller has it already (default: computed here).
        Arrays become read-only float32.
        """
        pixels, lm_scores = landmarks
        subset = output.indices
        if confidence is None:
            confidence = self.confidence(lm_scores) if len(crops) else np.zeros(0)
        crops = as_crops(crops) if len(crops) else np.zeros((0, 5))
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
                    crop=Crop(*(float(v) for v in crops[i])),
                    score=float(box_scores[i]),
                    scheme=output.name,
                    track_id=None if track_ids is None else int(track_ids[i]),
                    confidence=float(confidence[i]),
                )
            )
        return faces

    # ----------------------------------------------------------------- private
    def _landmarks(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run (B, h, w, 3) uint8 BGR crops through the network and the decoder.

        Returns normalised landmarks (B, L, 2) float64, with the model's
        ``output_offset`` added (the one place normalised landmarks are made, so
        :meth:`detect`, :meth:`predict_crops` and tracking all get it), and scores (B, L).
        With ``flip_test``, each chunk runs with its mirror images in one call
        (:func:`_flip_average`).
        """
        points, scores = [], []
        for start in range(0, len(crops), self._batch_size):
            chunk = crops[start : start + self._batch_size]
            if self._mirror is not None:
                chunk = np.concatenate([chunk, chunk[:, :, ::-1]])
            maps = self._model.run(self._preprocess(chunk))
            p, s = self._decoder(*maps)
            if self._output_offset is not None:
                # in each pass's own frame: the mirrored pass's x offset changes sign below
                p = p + self._output_offset
            if self._mirror is not None:
                p, s = _flip_average(p, s, self._mirror)
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


ORIENTATION_SEARCH = ("auto", "always", "off")
"""Values of ``LandmarkDetector(orientation_search=...)``."""
SEARCH_BELOW = 0.5
"""A face less confident than this is tried turned a quarter and half round; an image with
no face at least this confident is searched turned (``orientation_search="auto"``)."""
GIVEN_START = 1.3
"""The first crop of a box the caller passed is the box-only policy's, enlarged this much
(LFPW, 80 photos, NME of a tight landmark box: 4.15 % at 1.0, 3.31 % at 1.3, 3.39 % at 1.6;
a loose box shifted up: 3.34, 3.48, 5.30 %; the detector path 3.30 %)."""
SURE_DETECTION = 0.8
"""A face the face detector scores at least this high is tried turned and re-levelled when
the network is unsure of it, even in a picture with a confident upright face."""
TURNED_PICTURE = 25.0
"""Degrees of roll within which a confident face counts as upright: a picture without one
(no confident face, or all of them rolled further) is searched turned too by
``orientation_search="auto"`` (a sideways or upside-down photo)."""
DIAGONAL = 45.0
"""Degrees (clockwise) the picture is turned by the diagonal search, then turned a quarter
three times more: a face rolled 45 degrees off every quarter turn is upright in one."""
UNCALIBRATED_SEARCH_BELOW = 0.5
""":data:`SEARCH_BELOW` for models without a confidence calibration (mean landmark score)."""
LEVEL_TOLERANCE = 20.0
"""Degrees between a near-upright crop's angle and its landmarks' eye line above which the
face is run again in a crop levelled by the landmarks (upright photos rarely pay it)."""
ROLLED = 10.0
"""A crop turned at least this many degrees is a rolled face's, whose detector keypoints are
less reliable: it is re-levelled from :data:`ROLLED_TOLERANCE` degrees off."""
ROLLED_TOLERANCE = 8.0
""":data:`LEVEL_TOLERANCE` for rolled crops."""
SETTLED = 3.0
"""A face already re-levelled goes round again while its eye line is more than this many
degrees off its crop's angle."""
SETTLED_SHIFT = 0.03
"""... or while its crop moves or changes size by more than this fraction of its size."""
MAX_REFINE = 4
"""Most extra network passes a face gets for levelling."""
SURE_SCORE = 0.25
"""Landmarks scored below this are treated as unsure (occluded) when a crop is built from
landmarks (the tracker's choice, benchmarks/video_bench.py)."""


def _flip_average(
    points: np.ndarray, scores: np.ndarray, mirror: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks (2B, L, 2) normalised and scores (2B, L) of B crops followed by their
    mirror images -> (B, L, 2), (B, L): the mirrored half mapped back (``u -> 1 - u``, points
    swapped with their ``mirror`` partners), averaged with the unmirrored half, then moved
    along the crop's x so that the mean x is the unmirrored pass's (the annotations'
    own x convention, which a mirror image reverses, is kept: training/flip_test.py);
    scores averaged."""
    b = len(points) // 2
    normal, back = points[:b], points[b:][:, mirror].copy()
    back[..., 0] = 1.0 - back[..., 0]
    mean = (normal + back) / 2
    mean[..., 0] += (normal[..., 0] - mean[..., 0]).mean(axis=1, keepdims=True)
    return mean, (scores[:b] + scores[b:][:, mirror]) / 2


def _named_scheme(scheme: str, num_landmarks: int) -> Scheme | None:
    """The named scheme ``scheme`` if pipdetect knows it with ``num_landmarks`` points."""
    known = SCHEMES.get(scheme)
    return known if known is not None and known.num_points == num_landmarks else None


def _mirror_indices(scheme: str, num_landmarks: int) -> np.ndarray | None:
    """A named scheme's mirror permutation (:attr:`Scheme.mirror`), or ``None``."""
    known = _named_scheme(scheme, num_landmarks)
    if known is None or known.mirror is None:
        return None
    return np.asarray(known.mirror, dtype=np.intp)


def _eye_indices(scheme: str, num_landmarks: int) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The (right eye, left eye) landmark indices of a named scheme, or ``None``."""
    known = _named_scheme(scheme, num_landmarks)
    if known is None:
        return None
    try:
        return known.indices("right_eye"), known.indices("left_eye")
    except KeyError:
        return None


def _unturn(k: int, shape: tuple[int, int]) -> np.ndarray:
    """(2, 3) affine map from pixels of an image turned ``k`` quarter turns clockwise
    (``np.rot90(image, -k)``) back to pixels of the (H, W) image (pixel centres at
    integers)."""
    h, w = shape
    m = np.eye(3)
    for step in range(k):
        # one clockwise quarter turn of an (hh, ww) image: (x, y) -> (hh - 1 - y, x)
        hh = h if step % 2 == 0 else w
        turn = np.array([[0.0, -1.0, hh - 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        m = turn @ m
    return np.linalg.inv(m)[:2]


def _apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points @ m[:, :2].T + m[:, 2])


def _no_faces() -> FaceBoxes:
    return FaceBoxes(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))


def _concat_faces(parts: list[FaceBoxes]) -> FaceBoxes:
    kps = [p.keypoints if p.keypoints is not None else np.full((len(p.boxes), 5, 2), np.nan)
           for p in parts]
    return FaceBoxes(np.concatenate([p.boxes for p in parts]),
                     np.concatenate([p.scores for p in parts]), np.concatenate(kps))


def _distinct(points: np.ndarray, confidence: np.ndarray, overlap: float = 0.3) -> np.ndarray:
    """Indices of faces kept when faces whose landmark boxes overlap (IoU above
    ``overlap``) are the same face: the most confident of each group."""
    boxes = np.concatenate([points.min(axis=1), points.max(axis=1)], axis=1)
    iou = box_iou(boxes, boxes)
    kept: list[int] = []
    for i in np.argsort(-confidence, kind="stable"):
        if not kept or not np.any(iou[kept, i] > overlap):
            kept.append(int(i))
    return np.asarray(sorted(kept), dtype=np.intp)


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
    confidence = options["min_confidence"]
    if confidence is not None and (
        isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.number))
        or not 0.0 <= float(confidence) <= 1.0
    ):
        raise bad("min_confidence", "a number between 0 and 1, or None (the model's calibrated "
                  "threshold)")
    if not isinstance(options["flip_test"], (bool, np.bool_)):
        raise bad("flip_test", "True or False (run each crop's mirror image too and average)")
    if options["orientation_search"] not in ORIENTATION_SEARCH:
        raise bad("orientation_search", "one of " + ", ".join(map(repr, ORIENTATION_SEARCH)))
    providers = options["providers"]
    if providers is not None and not (
        isinstance(providers, (list, tuple)) and all(isinstance(p, str) for p in providers)
    ):
        raise bad("providers", "None or a list of onnxruntime provider names, e.g. "
                  "['CPUExecutionProvider']")


def _restore(settings: dict[str, Any]) -> LandmarkDetector:
    settings = dict(settings)
    return LandmarkDetector(settings.pop("model"), **settings)

