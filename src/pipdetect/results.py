"""Result files: the JSON document, CSV rows and NumPy arrays pipdetect writes.

JSON schema (``"format": "pipdetect.landmarks/1"``)
---------------------------------------------------
One document per image or video. Coordinates are pixels of the original image or
frame: x to the right, y down, pixel centres at integer values (OpenCV's
convention); boxes are ``[x1, y1, x2, y2]``. Numbers are rounded to 1/1000 pixel
(scores to 1e-5).

Image::

    {
      "format": "pipdetect.landmarks/1",
      "kind": "image",
      "source": "photos/a.jpg",      # the path as given (null for in-memory images)
      "width": 512, "height": 512,   # pixels
      "model": "pipnet-r18-wflw",    # the model's name (its metadata "name")
      "scheme": "wflw98",            # landmark scheme (pipdetect.schemes), "custom" if unknown
      "num_landmarks": 98,
      "faces": [FACE, ...]            # largest first
    }

Video or camera: the same header with ``"kind": "video"`` (or ``"camera"``, with
``"source": "camera:0"``), plus ``"fps"`` (frames per second, float), and instead of
``faces``::

      "frames": [{"frame": 0, "time": 0.0, "detected": true, "faces": [FACE, ...]}, ...]

``frame`` is the 0-based frame index, ``time`` seconds from the start, ``detected``
whether the face detector ran on that frame (otherwise faces were tracked).

FACE (:meth:`pipdetect.Face.to_dict`)::

    {
      "box": [x1, y1, x2, y2],       # face detector's box (or the box passed, or, on a
                                     #   tracked frame, the landmarks' bounding box)
      "crop": [x1, y1, x2, y2],      # region fed to the model
      "score": 0.93,                 # face detector confidence in [0, 1] (1 for boxes
                                     #   passed; tracking confidence on tracked frames)
      "landmarks": [[x, y], ...],    # num_landmarks points, in the scheme's order
      "scores": [s, ...],            # per-landmark confidence, roughly [0, 1]
      "track_id": 0                  # videos only: same number for the same face
    }

CSV
---
One row per face, header first: ``source, frame, time, face, track_id, score,
box_x1, box_y1, box_x2, box_y2, crop_x1, crop_y1, crop_x2, crop_y2, x0 .. x{N-1},
y0 .. y{N-1}, s0 .. s{N-1}`` (``frame``, ``time``, ``track_id`` empty for images;
``face`` is the face's position in its image or frame).

NumPy (``.npy``)
----------------
Landmarks only, float32. An image gives ``(faces, N, 2)``; a video
``(frames, tracks, N, 2)`` with one slot per track id (in increasing order, NaN
where that face is absent), or per face position when tracking is off.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .stages import Face, Stages
    from .track import FrameFaces

__all__ = [
    "FORMAT",
    "csv_header",
    "csv_rows",
    "csv_text",
    "dumps",
    "frame_record",
    "image_record",
    "landmark_array",
    "save_npy",
    "video_record",
    "write_csv",
]

FORMAT = "pipdetect.landmarks/1"
"""The ``format`` value of every JSON document this version writes."""


def _header(detector: Stages, scheme: str, num_landmarks: int) -> dict[str, Any]:
    return {
        "model": detector.spec.name,
        "scheme": scheme,
        "num_landmarks": int(num_landmarks),
    }


def _describe(detector: Stages, faces: Sequence[Face], points: Any) -> tuple[str, int]:
    if faces:
        return faces[0].scheme, len(faces[0].landmarks)
    scheme, subset = detector.output_scheme(points)
    return scheme, detector.num_landmarks if subset is None else len(subset)


def image_record(
    detector: Stages,
    faces: Sequence[Face],
    *,
    size: tuple[int, int],
    source: str | os.PathLike[str] | None = None,
    points: int | str | None = None,
) -> dict[str, Any]:
    """The JSON document of one image (see the module docs). ``size`` is (width, height).

    ``points`` is what the faces were detected with (names the scheme when there is
    no face to read it from).
    """
    scheme, n = _describe(detector, faces, points)
    return {
        "format": FORMAT,
        "kind": "image",
        "source": None if source is None else str(source),
        "width": int(size[0]),
        "height": int(size[1]),
        **_header(detector, scheme, n),
        "faces": [f.to_dict() for f in faces],
    }


def frame_record(faces: FrameFaces) -> dict[str, Any]:
    """One entry of a video document's ``frames``."""
    return {
        "frame": int(faces.frame_index),
        "time": round(float(faces.time), 6),
        "detected": bool(faces.detected),
        "faces": [f.to_dict() for f in faces],
    }


def video_record(
    detector: Stages,
    frames: Sequence[dict[str, Any]],
    *,
    size: tuple[int, int],
    fps: float,
    source: str | os.PathLike[str] | None = None,
    kind: str = "video",
    points: int | str | None = None,
) -> dict[str, Any]:
    """The JSON document of a video (or camera) from its :func:`frame_record` entries."""
    scheme, n = _describe(detector, [], points)
    return {
        "format": FORMAT,
        "kind": kind,
        "source": None if source is None else str(source),
        "width": int(size[0]),
        "height": int(size[1]),
        "fps": round(float(fps), 6),
        **_header(detector, scheme, n),
        "frames": list(frames),
    }


def dumps(obj: Any, indent: int = 2) -> str:
    """JSON text with objects indented but lists of numbers (points) kept on one line."""
    return _dump(obj, indent, 0)


def _dump(obj: Any, indent: int, level: int) -> str:
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad}{json.dumps(str(k))}: {_dump(v, indent, level + 1)}"
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(obj, (list, tuple)):
        if not obj:
            return "[]"
        if all(_is_flat(v) for v in obj):
            return json.dumps(obj, separators=(", ", ": "), allow_nan=False)
        return "[\n" + ",\n".join(pad + _dump(v, indent, level + 1) for v in obj) + "\n" + end + "]"
    return json.dumps(obj, allow_nan=False)


def _is_flat(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    return value is None or isinstance(value, (int, float, str, bool))


def csv_header(num_landmarks: int) -> list[str]:
    """Column names of the CSV format for ``num_landmarks`` points (see the module docs)."""
    n = range(num_landmarks)
    return (
        ["source", "frame", "time", "face", "track_id", "score"]
        + [f"box_{k}" for k in ("x1", "y1", "x2", "y2")]
        + [f"crop_{k}" for k in ("x1", "y1", "x2", "y2")]
        + [f"x{i}" for i in n] + [f"y{i}" for i in n] + [f"s{i}" for i in n]
    )


def csv_rows(record: dict[str, Any]) -> Iterator[list[Any]]:
    """The CSV rows (without header) of one image or video document."""
    source = record.get("source") or ""
    if "frames" in record:
        groups: Iterable[tuple[Any, Any, list[dict[str, Any]]]] = (
            (fr["frame"], fr["time"], fr["faces"]) for fr in record["frames"]
        )
    else:
        groups = [("", "", record["faces"])]
    for frame, time, faces in groups:
        for k, face in enumerate(faces):
            lm = face["landmarks"]
            yield (
                [source, frame, time, k, face.get("track_id", ""), face["score"]]
                + list(face["box"]) + list(face["crop"])
                + [p[0] for p in lm] + [p[1] for p in lm] + list(face["scores"])
            )


def write_csv(stream: IO[str], records: Iterable[dict[str, Any]], header: bool = True) -> None:
    """Write documents as CSV rows (header first unless ``header=False``).

    All documents must have the same ``num_landmarks``.
    """
    writer = csv.writer(stream, lineterminator="\n")
    n: int | None = None
    for record in records:
        if n is None:
            n = int(record["num_landmarks"])
            if header:
                writer.writerow(csv_header(n))
        elif int(record["num_landmarks"]) != n:
            raise ValueError("all documents in one CSV file must have the same number of points")
        writer.writerows(csv_rows(record))


def csv_text(records: Iterable[dict[str, Any]]) -> str:
    """:func:`write_csv` into a string."""
    buf = io.StringIO()
    write_csv(buf, records)
    return buf.getvalue()


def landmark_array(record: dict[str, Any]) -> np.ndarray:
    """Landmarks of one document as a float32 array (shapes in the module docs)."""
    n = int(record["num_landmarks"])
    if "frames" not in record:
        faces = record["faces"]
        return np.asarray([f["landmarks"] for f in faces], dtype=np.float32).reshape(-1, n, 2)
    frames = record["frames"]
    ids = sorted({f["track_id"] for fr in frames for f in fr["faces"] if "track_id" in f})
    width = len(ids) if ids else max((len(fr["faces"]) for fr in frames), default=0)
    slot = {tid: k for k, tid in enumerate(ids)}
    out = np.full((len(frames), width, n, 2), np.nan, dtype=np.float32)
    for t, fr in enumerate(frames):
        for k, face in enumerate(fr["faces"]):
            out[t, slot[face["track_id"]] if ids else k] = face["landmarks"]
    return out


def save_npy(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Write :func:`landmark_array` of ``record`` to ``path`` (``.npy``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.save(Path(path), landmark_array(record), allow_pickle=False)

