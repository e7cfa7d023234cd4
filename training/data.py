"""Annotated faces -> augmented training crops (256x256 by default) and PIP-Net targets.

Coordinates follow pipdetect (``pipdetect.crop``): 0-based, pixel-centre image
coordinates (OpenCV convention); a normalised crop coordinate ``u`` is
``x1 + u * (x2 - x1)`` image pixels, and the crop is sampled exactly like
:func:`pipdetect.crop.warp_crops` (bilinear, black outside the photo).

The training crop is the 300W convention of the PIP-Net reference: the 68-point
landmark box enlarged 1.1 about its centre, stretched to 256x256 (or any other
size: the same part of the face at another resolution). Late in training the
crop can instead come from the library's own path, YuNet box -> crop policy
(``detector_crops``), the crop the model sees in use.

Nothing here writes anything: the faces are read in place (300-W is for research
use only).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipdetect.schemes import get_scheme

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))  # fit_crop_policy

NUM_LMS = 68
CROP_ENLARGE = 1.1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTEROCULAR = (36, 45)
"""300W inter-ocular normalisation: outer corners of the two eyes (0-based)."""
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


FLIP_68: tuple[int, ...] = get_scheme("300w68").mirror or ()
"""68-point index of each landmark's mirror partner: after a left-right flip of the
image, landmark ``i`` of the flipped face is landmark ``FLIP_68[i]`` of the original
(the library's table, ``pipdetect.schemes.Scheme.mirror``)."""


# ----------------------------------------------------------------------------- reading
def read_pts(path: Path, one_based: bool = False) -> np.ndarray:
    """(68, 2) float64 landmarks of a 300-W ``.pts`` file, 0-based pixel-centre.

    ``one_based``: the file holds the original 300-W 1-based coordinates (1 is
    subtracted); otherwise it is taken as 0-based already.
    """
    text = path.read_text()
    try:
        body = text[text.index("{") + 1 : text.index("}")]
        points = np.array(body.split(), dtype=np.float64).reshape(-1, 2)
    except ValueError as exc:
        raise ValueError(f"{path}: not a 300-W .pts file ({exc})") from None
    if points.shape != (NUM_LMS, 2):
        raise ValueError(f"{path}: expected {NUM_LMS} points, got {len(points)}")
    return points - 1.0 if one_based else points


def find_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """Every (image, .pts) pair of ``folder``, sorted by name; images without .pts are skipped."""
    pairs = []
    for pts in sorted(folder.glob("*.pts")):
        for suffix in IMAGE_SUFFIXES:
            image = pts.with_suffix(suffix)
            if image.exists():
                pairs.append((image, pts))
                break
    if not pairs:
        raise FileNotFoundError(f"no image + .pts pairs in {folder}")
    return pairs


def landmark_crop(points: np.ndarray, enlarge: float = CROP_ENLARGE) -> np.ndarray:
    """The 300W training crop (x1, y1, x2, y2): landmark bounding box enlarged about its centre."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre, half = (lo + hi) / 2, (hi - lo) * enlarge / 2
    return np.concatenate([centre - half, centre + half])


@dataclass
class Face:
    """One annotated face: the BGR photo, its landmarks and, if found, the detector's crop."""

    image: np.ndarray
    points: np.ndarray
    """(68, 2) landmarks in the photo's pixels (0-based, pixel-centre)."""
    name: str
    detector_crop: np.ndarray | None = field(default=None)
    """(4,) crop the library builds from YuNet's box (``None``: YuNet missed the face)."""


def load_faces(folder: Path, one_based: bool = False, limit: int | None = None) -> list[Face]:
    """Read every image + .pts pair of ``folder`` (the first ``limit`` by name, if given)."""
    import cv2

    faces = []
    for image_path, pts_path in find_pairs(folder)[:limit]:
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read {image_path}")
        faces.append(Face(image, read_pts(pts_path, one_based), image_path.stem))
    return faces


# ----------------------------------------------------------------------------- detector crops
def _match(finder: object, face: Face) -> tuple[np.ndarray, np.ndarray] | None:
    """YuNet's box (4,) and keypoints (5, 2) for the annotated face, or ``None``.

    The detection matched to a face is the one whose box overlaps the landmark box
    most, with IoU at least 0.3.
    """
    from fit_crop_policy import iou

    det = finder.find(face.image)  # type: ignore[attr-defined]
    if len(det) == 0:
        return None
    overlap = iou(det.boxes, landmark_crop(face.points, 1.0)[None])
    best = int(np.argmax(overlap))
    if overlap[best] < 0.3:
        return None
    return det.boxes[best], det.keypoints[best]


def attach_detector_crops(faces: Sequence[Face], policy: object) -> int:
    """Run YuNet on each photo and store ``policy``'s crop for the annotated face.

    Faces YuNet misses keep ``detector_crop = None``. Returns the number found.
    """
    from pipdetect.faces import FaceFinder

    finder = FaceFinder()
    found = 0
    for face in faces:
        match = _match(finder, face)
        if match is not None:
            box, kps = match
            face.detector_crop = policy.crops(box[None], kps[None])[0]  # type: ignore[attr-defined]
            found += 1
    return found


def detections_for_policy(faces: Sequence[Face]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YuNet boxes (N, 4), keypoints (N, 5, 2) and the annotated landmarks (N, 68, 2) of
    the faces YuNet finds: the data a crop policy for this training crop is fitted on."""
    from pipdetect.faces import FaceFinder

    finder = FaceFinder()
    boxes, kps, targets = [], [], []
    for face in faces:
        match = _match(finder, face)
        if match is not None:
            boxes.append(match[0])
            kps.append(match[1])
            targets.append(face.points)
    return (np.array(boxes).reshape(-1, 4), np.array(kps).reshape(-1, 5, 2),
            np.array(targets).reshape(-1, 68, 2))


# ----------------------------------------------------------------------------- augmentation
@dataclass(frozen=True)
class Augment:
    """Random augmentation, each part with its own probability (as in the reference).

    Geometric parts are one similarity transform about the crop centre (a single
    resampling of the photo); photometric parts then act on the crop. Sizes are
    fractions of the crop (the blur: pixels of a 256x256 crop, scaled with the crop),
    so an augmentation does the same to the face at every input size.
    """

    rotate_p: float = 0.5
    rotate_deg: float = 30.0
    scale_p: float = 0.5
    scale: float = 0.1
    """Face size in the crop uniform in [1 - scale, 1 + scale]."""
    shift_p: float = 0.5
    shift: float = 30 / 256
    """Shift of the crop, uniform in +-shift of its width and height."""
    flip_p: float = 0.5
    colour_p: float = 0.5
    colour: float = 0.3
    """Brightness, contrast and saturation factors uniform in [1 - colour, 1 + colour]."""
    grey_p: float = 0.2
    blur_p: float = 0.3
    blur_sigma: float = 2.0
    """Gaussian blur sigma uniform in [0, blur_sigma] pixels of a 256x256 crop (times
    size / 256 for a crop of another size)."""
    occlude_p: float = 0.5
    occlude: float = 0.4
    """Occluding rectangle up to this fraction of the crop's width and height."""
    detector_p: float = 0.0
    """Probability of starting from the detector's crop instead of the landmark crop."""
    annotation_offset: float = 0.0
    """The annotations' own offset in image x, as a fraction of the face's inter-ocular
    distance (annotation minus the feature's true place: ``training/output_offset.py`` reports
    it as ``annotation_offset``, from a model trained with plain mirrors).
    A mirrored label is moved by twice this along the mirrored photo's x axis, so that
    flipped examples keep the annotation convention instead of teaching its opposite
    (with 0, the reference's plain mirror, a flip-trained model learns the average and
    lands that far from the annotations on every set: issue 21)."""


NO_AUGMENT = Augment(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def with_detector_crops(aug: Augment, p: float) -> Augment:
    """``aug`` with the detector's crop used with probability ``p``."""
    return replace(aug, detector_p=p)


def make_example(face: Face, rng: np.random.Generator, aug: Augment,
                 size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One training crop: (size, size, 3) BGR uint8 and its 68 landmarks normalised to it.

    The augmentation is a similarity transform ``G`` of the photo about the crop
    centre; the crop is taken in the transformed photo, so a landmark at ``p`` has
    normalised coordinates ``(G p - (x1, y1)) / (w, h)``. Flipping permutes the
    landmarks by :data:`FLIP_68` and, with ``aug.annotation_offset``, keeps the
    annotation convention (see :class:`Augment`).
    """
    import cv2

    crop_angle = 0.0
    if face.detector_crop is not None and aug.detector_p > 0 and rng.random() < aug.detector_p:
        # the library's oriented crop (x1, y1, x2, y2, angle): the face is levelled first
        x1, y1, x2, y2 = face.detector_crop[:4]
        crop_angle = math.radians(float(face.detector_crop[4]))
    else:
        x1, y1, x2, y2 = landmark_crop(face.points)
    w, h = x2 - x1, y2 - y1
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    angle = (math.radians(rng.uniform(-aug.rotate_deg, aug.rotate_deg))
             if rng.random() < aug.rotate_p else 0.0) - crop_angle
    zoom = rng.uniform(1 - aug.scale, 1 + aug.scale) if rng.random() < aug.scale_p else 1.0
    shift = (rng.uniform(-aug.shift, aug.shift, 2) * [w, h]
             if rng.random() < aug.shift_p else np.zeros(2))
    flip = rng.random() < aug.flip_p
    rot = zoom * np.array([[math.cos(angle), -math.sin(angle)],
                           [math.sin(angle), math.cos(angle)]])
    if flip:
        rot = rot @ np.diag([-1.0, 1.0])
    g = np.eye(3)
    g[:2, :2] = rot
    g[:2, 2] = centre + shift - rot @ centre
    points = face.points @ g[:2, :2].T + g[:2, 2]
    if flip:
        if aug.annotation_offset:
            iod = float(np.linalg.norm(face.points[INTEROCULAR[0]] - face.points[INTEROCULAR[1]]))
            # the mirror of (truth + c) is (mirrored truth - c): move it by 2c, in the
            # mirrored photo's x, turned and scaled with it
            points = points + (g[:2, :2] @ np.diag([-1.0, 1.0])) @ [
                2 * aug.annotation_offset * iod, 0.0]
        points = points[list(FLIP_68)]
    norm = (points - [x1, y1]) / [w, h]
    k = np.array([[w / size, 0.0, x1 + 0.5 * w / size - 0.5],
                  [0.0, h / size, y1 + 0.5 * h / size - 0.5],
                  [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(g) @ k  # output pixel -> photo pixel
    crop = cv2.warpAffine(face.image, inverse[:2], (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    crop = _photometric(crop, rng, aug)
    return crop, norm


def _photometric(crop: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    import cv2

    img = crop
    if rng.random() < aug.colour_p:
        x = img.astype(np.float32)
        x *= rng.uniform(1 - aug.colour, 1 + aug.colour)  # brightness
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * rng.uniform(1 - aug.colour, 1 + aug.colour)  # saturation
        mean = x.mean()
        x = mean + (x - mean) * rng.uniform(1 - aug.colour, 1 + aug.colour)  # contrast
        img = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < aug.grey_p:
        img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if rng.random() < aug.blur_p:
        sigma = rng.uniform(0, aug.blur_sigma) * (img.shape[0] / 256)
        if sigma > 0.1:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
    if rng.random() < aug.occlude_p:
        size = img.shape[0]
        ow = int(rng.uniform(0.05, aug.occlude) * size)
        oh = int(rng.uniform(0.05, aug.occlude) * size)
        ox, oy = int(rng.integers(0, size - ow + 1)), int(rng.integers(0, size - oh + 1))
        img = img.copy() if img is crop else img
        img[oy : oy + oh, ox : ox + ow] = rng.integers(0, 256, 3)
    return img


# ----------------------------------------------------------------------------- targets
def make_targets(norm: np.ndarray, neighbours: np.ndarray, map_size: tuple[int, int] = (8, 8)
                 ) -> dict[str, np.ndarray]:
    """PIP-Net targets for landmarks (L, 2) normalised to the crop.

    ``cell``: flat index ``row * W + col`` of each landmark's cell (clipped to the
    map, as in the reference); ``cls``: (L, H, W) one-hot maps; ``x``, ``y``: (L,)
    offsets from the cell's top-left corner in cell units; ``nb_x``, ``nb_y``:
    (L * K,) offsets of neighbour ``k`` of landmark ``i`` (index ``i * K + k``) from
    landmark ``i``'s cell.
    """
    mh, mw = map_size
    gx, gy = norm[:, 0] * mw, norm[:, 1] * mh
    col = np.clip(np.floor(gx), 0, mw - 1).astype(np.int64)
    row = np.clip(np.floor(gy), 0, mh - 1).astype(np.int64)
    num_lms = neighbours.shape[0]
    cls = np.zeros((num_lms, mh, mw), np.float32)
    cls[np.arange(num_lms), row, col] = 1.0
    return {
        "cell": row * mw + col,
        "cls": cls,
        "x": (gx - col).astype(np.float32),
        "y": (gy - row).astype(np.float32),
        "nb_x": (gx[neighbours] - col[:, None]).reshape(-1).astype(np.float32),
        "nb_y": (gy[neighbours] - row[:, None]).reshape(-1).astype(np.float32),
    }


def to_input(crops: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) BGR uint8 -> (N, 3, H, W) float32, RGB, ImageNet-normalised.

    The input convention the converted model records (``pipdetect convert``'s default).
    """
    x = crops[..., ::-1].astype(np.float32) / np.float32(255)
    x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def nme(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-face inter-ocular NME (%) of predictions (N, 68, 2) against the truth (N, 68, 2)."""
    iod = np.linalg.norm(truth[:, INTEROCULAR[0]] - truth[:, INTEROCULAR[1]], axis=1)
    return np.linalg.norm(pred - truth, axis=2).mean(axis=1) / iod * 100


def signed_offset(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-face mean signed error (N, 2) of predictions (N, 68, 2): ``pred - truth`` in image
    x and y, averaged over the landmarks, in % of the inter-ocular distance (negative x: the
    landmarks land left of the annotation)."""
    iod = np.linalg.norm(truth[:, INTEROCULAR[0]] - truth[:, INTEROCULAR[1]], axis=1)
    return (pred - truth).mean(axis=1) / iod[:, None] * 100
