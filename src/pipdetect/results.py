"""Result files: the JSON document, CSV rows and NumPy arrays pipdetect writes.

JSON schema (``"format": "pipdetect.landmarks/2"``)
---------------------------------------------------
One document per image or video, and per input that failed (below). Coordinates
are pixels of the original image or frame: x to the right, y down, pixel centres at
integer values (OpenCV's convention); boxes are ``[x1, y1, x2, y2]``. Numbers are
rounded to 1/1000 pixel (scores to 1e-5).

Image::

    {
      "format": "pipdetect.landmarks/2",
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

Failed input (:func:`error_record`): where the document of an input that failed
would be (an item of the JSON array of several inputs, or the output of one input
written to standard output), there is one with these four fields only::

    {
      "format": "pipdetect.landmarks/2",
      "kind": "error",
      "source": "photos/bad.jpg",    # the path as given (null if there is none)
      "error": "cannot decode ..."   # why, in one line (what stderr said)
    }

So a JSON array accounts for every input given, in the order given, as CSV does. A
reader must check ``kind`` (or whether ``error`` is there) before reading ``faces``
or ``frames``: code that takes every item of an array for an image or a video trips
on a failed input. The format stays ``/2``: documents of images and videos are
unchanged, and no document valid before reads differently; earlier versions left
failed inputs out. (The command line never replaces a result file with one holding
failures only, and writes no file for a failed input with ``-o DIR/``: docs/cli.md.)

FACE (:meth:`pipdetect.Face.to_dict`)::

    {
      "box": [x1, y1, x2, y2],       # face detector's box (or the box passed, or, on a
                                     #   tracked frame, the landmarks' bounding box)
      "crop": [x1, y1, x2, y2, angle],  # region fed to the model: the rectangle turned by
                                     #   angle degrees (clockwise on screen) about its
                                     #   centre, the face's roll (pipdetect.Crop)
      "score": 0.93,                 # face detector confidence in [0, 1] (1 for boxes
                                     #   passed; tracking confidence on tracked frames)
      "confidence": 0.97,            # probability that the landmarks are right
                                     #   (NME <= 8 %), pipdetect.confidence
      "pose": [roll, yaw, pitch],    # head pose in degrees (pipdetect.pose), or null
      "landmarks": [[x, y], ...],    # num_landmarks points, in the scheme's order
      "scores": [s, ...],            # per-landmark confidence, roughly [0, 1]
      "track_id": 0                  # videos only: same number for the same face
    }

CSV
---
One row per face, header first: ``source, frame, time, face, track_id, score,
confidence, box_x1, box_y1, box_x2, box_y2, crop_x1, crop_y1, crop_x2, crop_y2,
crop_angle, roll, yaw, pitch, x0 .. x{N-1}, y0 .. y{N-1}, s0 .. s{N-1}, error``
(``frame``, ``time``, ``track_id`` empty for images; ``face`` is the face's position
in its image or frame; ``crop_angle`` the crop's turn in degrees; ``roll, yaw, pitch``
the head pose in degrees, empty where the scheme has no pose). An image or video frame
without a face still has one row, with ``face`` and everything after it empty; an
input that failed (its :func:`error_record`) has one row with only ``source`` and
``error`` filled.

NumPy (``.npy``)
----------------
Landmarks only, float32. An image gives ``(faces, N, 2)``; a video
``(frames, tracks, N, 2)`` with one slot per track id (in increasing order, NaN
where that face is absent), or per face position when tracking is off.

Writing files
-------------
:class:`ResultsFile` writes documents one at a time, never leaving a file cut: into a
temporary file beside the target, renamed over it (``os.replace``) only once complete.
:func:`replacing` gives the same for any file another library writes (drawings, videos).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .stages import Face, Stages
    from .track import FrameFaces

__all__ = [
    "FORMAT",
    "ResultsFile",
    "csv_header",
    "csv_rows",
    "csv_text",
    "dumps",
    "error_record",
    "frame_record",
    "image_record",
    "landmark_array",
    "replacing",
    "save_npy",
    "video_record",
    "write_csv",
]

FORMAT = "pipdetect.landmarks/2"
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
        ["source", "frame", "time", "face", "track_id", "score", "confidence"]
        + [f"box_{k}" for k in ("x1", "y1", "x2", "y2")]
        + [f"crop_{k}" for k in ("x1", "y1", "x2", "y2", "angle")]
        + ["roll", "yaw", "pitch"]
        + [f"x{i}" for i in n] + [f"y{i}" for i in n] + [f"s{i}" for i in n]
        + ["error"]
    )


def error_record(source: str | os.PathLike[str] | None, message: str) -> dict[str, Any]:
    """The document of an input that failed (``"kind": "error"``, see the module docs):
    in JSON as it is, in CSV one row with only ``source`` and ``error`` filled.
    ``message`` is one line saying why."""
    return {
        "format": FORMAT,
        "kind": "error",
        "source": None if source is None else str(source),
        "error": str(message),
    }


def csv_rows(record: dict[str, Any], num_landmarks: int | None = None) -> Iterator[list[Any]]:
    """The CSV rows (without header) of one image or video document, or of an
    :func:`error_record` (whose row needs ``num_landmarks`` to know its width)."""
    source = record.get("source") or ""
    n = int(record.get("num_landmarks", num_landmarks or 0))
    blank = [""] * (len(csv_header(n)) - 4)  # the cells from "face" to the last point's
    if "error" in record:
        yield [source, "", "", *blank, record["error"]]
        return
    if "frames" in record:
        groups: Iterable[tuple[Any, Any, list[dict[str, Any]]]] = (
            (fr["frame"], fr["time"], fr["faces"]) for fr in record["frames"]
        )
    else:
        groups = [("", "", record["faces"])]
    for frame, time, faces in groups:
        if not faces:
            yield [source, frame, time, *blank, ""]
        for k, face in enumerate(faces):
            lm = face["landmarks"]
            yield (
                [source, frame, time, k, face.get("track_id", ""), face["score"],
                 face.get("confidence", "")]
                + list(face["box"]) + list(face["crop"]) + [""] * (5 - len(face["crop"]))
                + list(face.get("pose") or ["", "", ""])
                + [p[0] for p in lm] + [p[1] for p in lm] + list(face["scores"]) + [""]
            )


def write_csv(stream: IO[str], records: Iterable[dict[str, Any]], header: bool = True,
              num_landmarks: int | None = None) -> None:
    """Write documents as CSV rows (header first unless ``header=False``).

    All documents must have the same ``num_landmarks``; an :func:`error_record` has the
    width of the documents before it, or of ``num_landmarks`` when it comes first.
    """
    writer = csv.writer(stream, lineterminator="\n")
    n = num_landmarks
    for record in records:
        if "num_landmarks" not in record:
            pass
        elif n is None:
            n = int(record["num_landmarks"])
        elif int(record["num_landmarks"]) != n:
            raise ValueError("all documents in one CSV file must have the same number of points")
        if header:
            writer.writerow(csv_header(n or 0))
            header = False
        writer.writerows(csv_rows(record, n))


def csv_text(records: Iterable[dict[str, Any]]) -> str:
    """:func:`write_csv` into a string."""
    buf = io.StringIO()
    write_csv(buf, records)
    return buf.getvalue()


def landmark_array(record: dict[str, Any]) -> np.ndarray:
    """Landmarks of one document as a float32 array (shapes in the module docs).

    Raises :class:`ValueError` for an :func:`error_record` (a failed input has none)."""
    if "error" in record:
        raise ValueError(f"{record.get('source')}: a failed input has no landmarks to write "
                         f"({record['error']}); JSON and CSV keep such errors, .npy cannot")
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
    """Write :func:`landmark_array` of ``record`` to ``path`` (``.npy``), atomically."""
    with ResultsFile(path, "npy", many=False) as out:
        out.add(record)


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path``, with the same extension, to write a file to.

    When the ``with`` block ends normally the temporary file is synced to disk and
    renamed over ``path`` (``os.replace``: ``path`` is either the old file or the whole
    new one, and a symbolic or hard link at ``path`` is replaced, never written through); when the
    block raises, the temporary file is removed. The folder is created if needed. A
    path that exists but is neither a file nor a folder (``/dev/null``, a pipe) is
    yielded itself, to be written directly: a device is never replaced.
    """
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        if tmp.exists():  # on disk before the rename: a power loss leaves old or new
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class ResultsFile:
    """Result documents written one at a time into one file (or stream), never left cut.

    ``fmt``: ``"json"`` (``many=False``: one document; ``many=True``: a JSON array),
    ``"csv"`` (the header, then every document's rows; give ``num_landmarks``) or
    ``"npy"`` (one document, :func:`landmark_array`). JSON and CSV take
    :func:`error_record` documents as well; ``.npy`` files have no place for them.

    ``target`` is a path or a binary stream (``sys.stdout.buffer``). A path is written
    to a temporary file beside it, flushed after every document, and renamed over it by
    :meth:`commit`; :meth:`discard` (or an exception inside ``with``) removes the
    temporary file and leaves ``path`` as it was. Paths that are not regular files
    (``/dev/null``, a pipe) are written directly.

    When a write fails (disk full...), :meth:`add` or :meth:`commit` raises
    :class:`OSError` and the documents completed before are kept, as a whole file of
    their own, in :attr:`partial` (``PATH.partial``; ``None`` when there were none);
    :meth:`keep_partial` does the same on purpose (an interrupted run).
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[bytes],
        fmt: str = "json",
        *,
        many: bool = True,
        num_landmarks: int = 0,
    ) -> None:
        if fmt not in ("json", "csv", "npy") or (fmt == "npy" and many):
            raise ValueError(f"cannot stream several documents as {fmt!r}")
        self.fmt, self.many, self.num_landmarks = fmt, many, int(num_landmarks)
        self.count = 0
        """Documents added so far."""
        self.partial: Path | None = None
        self.path: Path | None = None
        self._tmp: Path | None = None
        self._good = 0  # bytes written that end with a whole document
        if isinstance(target, (str, os.PathLike)):
            self.path = Path(target)
            if self.path.exists() and not self.path.is_file():
                self._file: Any = open(self.path, "wb", buffering=0)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
                self._file = open(self._tmp, "xb", buffering=0)
        else:
            self._file = target
        self._write(self._head())

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()

    def add(self, record: dict[str, Any]) -> None:
        """Append one document, or an :func:`error_record` (JSON and CSV)."""
        if self.count and not self.many:
            raise ValueError(f"one {self.fmt} file holds one document")
        self._write(self._piece(record))
        self.count += 1

    def commit(self) -> None:
        """Finish the file and put it in place (rename over the target)."""
        self._write(self._tail())
        if self._tmp is not None and self.path is not None:
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self.path)
            self._tmp = None
        elif self.path is not None:
            self._file.close()
        else:
            self._file.flush()

    def discard(self) -> None:
        """Leave the target as it was: close and remove the temporary file."""
        if self.path is not None:
            self._file.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    # the bytes of each part
    def _head(self) -> bytes:
        if self.fmt == "csv":
            return self._csv([csv_header(self.num_landmarks)])
        return b"[" if self.fmt == "json" and self.many else b""

    def _piece(self, record: dict[str, Any]) -> bytes:
        if self.fmt == "npy":
            buf = io.BytesIO()
            np.save(buf, landmark_array(record), allow_pickle=False)
            return buf.getvalue()
        if self.fmt == "csv":
            return self._csv(csv_rows(record, self.num_landmarks))
        if not self.many:
            return (dumps(record) + "\n").encode()
        return (",\n  " if self.count else "\n  ").encode() + _dump(record, 2, 1).encode()

    def _tail(self) -> bytes:
        if self.fmt == "json" and self.many:
            return b"\n]\n" if self.count else b"]\n"
        return b""

    @staticmethod
    def _csv(rows: Iterable[list[Any]]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        return buf.getvalue().encode()

    def _write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[self._file.write(view) or 0 :]
            if self.path is None:
                self._file.flush()
        except OSError:
            self.keep_partial()
            raise
        self._good += len(data)

    def keep_partial(self) -> None:
        """Stop here (a failed write, an interrupted run): the documents added so far
        become a whole file of their own, :attr:`partial` (``PATH.partial``), and the
        target is left as it was. Nothing is kept when no document was added."""
        if self._tmp is None or self.path is None:
            return
        tmp, self._tmp = self._tmp, None
        try:
            os.ftruncate(self._file.fileno(), self._good)
            os.lseek(self._file.fileno(), self._good, os.SEEK_SET)
            with contextlib.suppress(OSError):  # the closing bracket, if room is left
                self._file.write(self._tail() if self.count else b"")
            self._file.close()
            if self.count:
                self.partial = self.path.with_name(self.path.name + ".partial")
                os.replace(tmp, self.partial)
        except OSError:
            self.partial = None
        finally:
            with contextlib.suppress(OSError):
                self._file.close()
            tmp.unlink(missing_ok=True)
