"""Facial landmarks on Ray Data: one model per actor, rows ready for Parquet.

Install with ``pip install ".[ray]"`` in the pipdetect checkout. ``import pipdetect`` never imports
Ray; only this module does.

>>> import ray
>>> from pipdetect.integrations.ray import detect_landmarks
>>> ds = ray.data.read_binary_files("photos/", include_paths=True, num_cpus=0)
>>> detect_landmarks(ds, "pipnet-r18-wflw", actors=2, threads=1).write_parquet(
...     "out/", ray_remote_args={"num_cpus": 0})

which is shorthand for::

    ds.map_batches(
        PipdetectPredictor,
        fn_constructor_kwargs={"model": "pipnet-r18-wflw", "threads": 1},
        compute=ray.data.ActorPoolStrategy(size=2),  # actors, each with its own model
        num_cpus=1,         # = threads: onnxruntime threads per actor
        batch_size=16,      # images per call
        batch_format="numpy",
    )

Inputs
------
Each batch (``batch_format="numpy"`` or ``"pandas"``) must hold one of these
columns, used in this order of preference:

* ``image``: decoded images, as :func:`ray.data.read_images` produces them:
  **RGB** (H, W, 3) uint8 arrays (grayscale and RGBA are accepted too). Pass
  ``color="bgr"`` for arrays that came from OpenCV.
* ``bytes``: encoded image files, as :func:`ray.data.read_binary_files`
  produces them; decoded by OpenCV exactly as ``LandmarkDetector.detect(path)``
  reads a file (EXIF orientation applied).
* ``path``: files read by the worker itself (they must be visible to every node).

**Prefer** ``read_binary_files(..., include_paths=True)`` **for folders you did not
make yourself**: ``read_images`` decodes in Ray's read tasks, and one file PIL
cannot decode fails the whole job (seen with Ray 2.60), whereas undecodable
bytes become a row with an ``error`` here.

Optional columns: ``path`` names the image in the output (``source``);
``boxes`` (name set by ``boxes_column``) holds known face boxes per image, ``(N, 4)`` as
``(x1, y1, x2, y2)`` pixels, which skips face detection for that image
(``None``/null: detect; an empty list: no faces). Columns listed in
``keep_columns`` are copied to the output unchanged (ids to join on).

Outputs
-------
A :class:`pyarrow.Table` with a fixed schema (:func:`output_schema`), so every
block and every Parquet file agree even when a batch holds no face or no error.
The fields are those of the CLI's JSON document of an image
(:mod:`pipdetect.results`, ``"format": "pipdetect.landmarks/2"``), plus ``error``:
coordinates in pixels of the original image, x right, y down, pixel centres at
integers, rounded to 1/1000 pixel as in the JSON.

``rows="images"`` (default, recommended): one row per input image, exactly the
CLI's document for it: ``format``, ``kind`` (``"image"``), ``source`` (the input
``path``, or null), ``width`` and ``height`` (pixels), ``model``, ``scheme``,
``num_landmarks``, ``faces`` (a list of structs ``box``, ``crop`` (five numbers),
``score``, ``confidence``, ``pose``, ``landmarks`` as ``[[x, y], ...]``,
``scores``; largest face first), and
``error`` (null, or ``"ErrorType: message"`` for an image that could not be
used; its ``faces``, ``width`` and ``height`` are then null). Row count = input
count, so nothing is lost silently, and a row is one JSON document: Parquet
stores ``faces`` as a nested list that pandas, DuckDB (``UNNEST``) and Spark
(``explode``) read directly.

``rows="faces"``: one row per face, flat columns for engines that dislike
nesting: the image fields, then ``face`` (its position in the image, largest
first), ``box``, ``crop``, ``score``, ``confidence``, ``pose``, ``landmarks``,
``scores``. An image with no face, or with an error, still gets one row, with
``face`` and the face columns null.

A bad image (undecodable, empty, too large, a wrong box) never fails the job: it
becomes a row with ``error`` set. Problems with the job itself (no usable input
column, a model that cannot be loaded) do raise.

Models on a cluster
-------------------
The model is loaded once per actor, in the actor (never pickled). Given a zoo
*name*, each actor resolves it into its node's Hugging Face cache; resolution
holds a file lock in the cache, so the actors of one node download the file
once and the others then find it cached (one download per node, verified by
SHA-256). Given a *path*, the file must exist at that path on every node (a
shared filesystem, or a single machine). To avoid any download from workers,
fetch the model on the driver with :func:`pipdetect.zoo.resolve_model` and pass
the path when the driver's cache is shared with the workers.

Threads and actors
------------------
Each actor runs onnxruntime with ``threads`` intra-op threads and limits
OpenCV's thread pool (decoding, resizing, face detection) to the same number
(an actor is a process of its own). Reserve exactly that many CPUs per actor
(``num_cpus=threads``, as :func:`detect_landmarks` does) and keep
``threads x actors per node <= cores``, so Ray never runs more threads than a
node has cores. Many small actors (``threads=1``) usually give the best
throughput for batch work (processes scale with cores more evenly than the
intra-op threads of one small network); fewer, wider actors use less memory
(one model per actor, about 50 MB for ResNet-18) and suit a few huge images.

Ray Data's read and write tasks reserve CPUs too (1 each by default): when the
actors hold every CPU of the cluster, they wait forever and the job stalls
with no error (seen with 2 actors on 2 CPUs). Either leave a core per node for
them, or give them none (``read_binary_files(..., num_cpus=0)``,
``write_parquet(..., ray_remote_args={"num_cpus": 0})``): they only move bytes,
and the decoding happens in the actors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

try:
    import pyarrow as pa
    import ray.data
except ImportError as _exc:  # pragma: no cover - tested in a subprocess
    raise ImportError(
        'pipdetect.integrations.ray needs Ray Data; install it with: pip install "ray[data]", '
        'or in the pipdetect checkout: pip install ".[ray]"'
    ) from _exc

from ..errors import InvalidArgumentError, InvalidBoxError, InvalidImageError
from ..image import decode_image, load_image
from ..results import image_record

if TYPE_CHECKING:  # pragma: no cover
    from ..detector import Face, LandmarkDetector

__all__ = ["PipdetectPredictor", "detect_landmarks", "output_schema"]

INPUT_COLUMNS = ("image", "bytes", "path")
"""Columns an input batch may hold the images in, in order of preference."""

_ROWS = ("images", "faces")
_IMAGE_ERRORS = (InvalidImageError, InvalidBoxError, OSError)
"""Errors that belong to one image (turned into an error row), not to the job."""


def _face_fields() -> list[pa.Field]:
    coords = pa.list_(pa.float64())
    return [
        pa.field("box", coords),
        pa.field("crop", coords),
        pa.field("score", pa.float64()),
        pa.field("confidence", pa.float64()),
        pa.field("pose", coords),
        pa.field("landmarks", pa.list_(coords)),
        pa.field("scores", coords),
    ]


def _image_fields() -> list[pa.Field]:
    return [
        pa.field("format", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("source", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("model", pa.string()),
        pa.field("scheme", pa.string()),
        pa.field("num_landmarks", pa.int32()),
    ]


def output_schema(rows: str = "images") -> pa.Schema:
    """The Arrow schema of :class:`PipdetectPredictor`'s output (without ``keep_columns``)."""
    _check_rows(rows)
    if rows == "images":
        fields = [*_image_fields(), pa.field("faces", pa.list_(pa.struct(_face_fields())))]
    else:
        fields = [*_image_fields(), pa.field("face", pa.int32()), *_face_fields()]
    return pa.schema([*fields, pa.field("error", pa.string())])


class PipdetectPredictor:
    """A callable class for :meth:`ray.data.Dataset.map_batches` (see the module docs).

    Parameters
    ----------
    model:
        A pipdetect ``.onnx`` path (visible on every node) or a zoo name
        (fetched once per node into the Hugging Face cache); ``None`` for the
        default model.
    threads:
        onnxruntime intra-op threads and OpenCV threads of this actor; reserve the
        same number with ``num_cpus`` in ``map_batches``.
    rows:
        ``"images"`` (one row per image, faces nested) or ``"faces"`` (one row per face).
    color:
        Channel order of arrays in the ``image`` column: ``"rgb"`` (Ray's
        ``read_images``) or ``"bgr"`` (OpenCV).
    points:
        Return another landmark scheme, e.g. ``68`` for the 300W subset of a
        98-point model (as ``LandmarkDetector.detect(points=...)``); ``None``:
        the model's own.
    boxes_column:
        Name of the optional column of known face boxes.
    keep_columns:
        Input columns copied unchanged to every output row of the same image.
    detector_options:
        Passed to :class:`pipdetect.LandmarkDetector` (``max_faces``,
        ``score_threshold``, ``detection_size``, ``batch_size`` ...).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        threads: int = 1,
        rows: str = "images",
        color: str = "rgb",
        points: int | str | None = None,
        boxes_column: str = "boxes",
        keep_columns: Sequence[str] = (),
        **detector_options: Any,
    ) -> None:
        _check_rows(rows)
        if color not in ("rgb", "bgr"):
            raise InvalidArgumentError(f"color must be 'rgb' or 'bgr', got {color!r}")
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise InvalidArgumentError(f"threads must be a positive integer, got {threads!r}")
        import cv2

        from ..detector import LandmarkDetector

        cv2.setNumThreads(threads)
        self._detector: LandmarkDetector = LandmarkDetector(
            model, threads=threads, **detector_options
        )
        self._rows = rows
        self._color = color
        self._boxes_column = boxes_column
        self._keep = tuple(keep_columns)
        self._schema = output_schema(rows)
        self._points = points
        # The CLI's document of an image without faces: the per-image fields every row
        # shares (format, kind, model, scheme, num_landmarks); also checks ``points``.
        self._header = {
            k: v
            for k, v in image_record(self._detector, [], size=(0, 0), points=points).items()
            if k not in ("source", "width", "height", "faces")
        }

    @property
    def detector(self) -> LandmarkDetector:
        """The actor's :class:`~pipdetect.LandmarkDetector`."""
        return self._detector

    def __call__(self, batch: Mapping[str, Any] | Any) -> pa.Table:
        """Landmarks of every image of ``batch`` (dict of arrays or pandas DataFrame)."""
        source = next((c for c in INPUT_COLUMNS if _has(batch, c)), None)
        if source is None:
            raise InvalidArgumentError(
                f"the batch has columns {sorted(_names(batch))}; pipdetect needs one of "
                f"{', '.join(INPUT_COLUMNS)} (use ray.data.read_binary_files(..., "
                "include_paths=True) or ray.data.read_images)"
            )
        values = _column(batch, source)
        n = len(values)
        paths = _column(batch, "path") if _has(batch, "path") else [None] * n
        boxes = (
            _column(batch, self._boxes_column) if _has(batch, self._boxes_column) else [None] * n
        )
        missing = [c for c in self._keep if not _has(batch, c)]
        if missing:
            raise InvalidArgumentError(
                f"keep_columns {missing} are not in the batch (columns: {sorted(_names(batch))})"
            )

        results: list[list[Face] | BaseException] = [[] for _ in range(n)]
        sizes: list[tuple[int, int] | None] = [None] * n
        todo_images: list[np.ndarray] = []
        todo_boxes: list[np.ndarray | None] = []
        todo_rows: list[int] = []
        for i in range(n):
            try:
                img = self._load(source, values[i])
                sizes[i] = (int(img.shape[1]), int(img.shape[0]))
                box = _boxes_value(boxes[i])
            except _IMAGE_ERRORS as exc:
                results[i] = exc
                continue
            if box is not None and len(box) == 0:
                continue  # boxes given, but none: no faces
            todo_images.append(img)
            todo_boxes.append(box)
            todo_rows.append(i)
        for i, found in zip(todo_rows, self._detect(todo_images, todo_boxes), strict=True):
            results[i] = found

        names = [None if _missing(p) else str(p) for p in paths]
        table, row_of = self._table(names, sizes, results)
        for name in self._keep:
            table = table.append_column(name, _take(batch[name], row_of))
        return table

    # ----------------------------------------------------------------- private
    def _load(self, source: str, value: Any) -> np.ndarray:
        if _missing(value):
            raise InvalidImageError(f"the {source!r} column is empty for this row")
        if source == "image":
            return load_image(np.asarray(value), self._color)
        if source == "bytes":
            return _decode(value)
        return load_image(os.fspath(value))

    def _detect(
        self, images: list[np.ndarray], boxes: list[np.ndarray | None]
    ) -> list[list[Face] | BaseException]:
        """Faces of every image (one network pass for the batch), or the error it raised."""
        if not images:
            return []
        try:
            return list(self._detector.detect_batch(images, boxes=boxes, points=self._points))
        except _IMAGE_ERRORS:
            pass  # one bad image (e.g. a box outside it) fails the batch: find which
        out: list[list[Face] | BaseException] = []
        for img, box in zip(images, boxes, strict=True):
            try:
                out.append(self._detector.detect(img, boxes=box, points=self._points))
            except _IMAGE_ERRORS as exc:
                out.append(exc)
        return out

    def _table(
        self,
        names: list[str | None],
        sizes: list[tuple[int, int] | None],
        results: list[list[Face] | BaseException],
    ) -> tuple[pa.Table, list[int]]:
        """The output table, and for each of its rows the input row it came from."""
        records: list[dict[str, Any]] = []
        keep_rows: list[int] = []
        face_keys = [f.name for f in _face_fields()]
        for i, result in enumerate(results):
            size = sizes[i]
            base: dict[str, Any] = {
                **self._header,
                "source": names[i],
                "width": None if size is None else size[0],
                "height": None if size is None else size[1],
            }
            error = _describe(result) if isinstance(result, BaseException) else None
            faces = [] if isinstance(result, BaseException) else result
            dicts = [_pick(f.to_dict(), face_keys) for f in faces]
            if self._rows == "images":
                records.append({**base, "faces": None if error else dicts, "error": error})
                keep_rows.append(i)
            elif not dicts:
                records.append({**base, "face": None, "error": error})
                keep_rows.append(i)
            else:
                for j, d in enumerate(dicts):
                    records.append({**base, "face": j, **d, "error": None})
                    keep_rows.append(i)
        return pa.Table.from_pylist(records, schema=self._schema), keep_rows


def detect_landmarks(
    ds: ray.data.Dataset,
    model: str | os.PathLike[str] | None = None,
    *,
    actors: int = 1,
    threads: int = 1,
    batch_size: int = 16,
    **predictor_options: Any,
) -> ray.data.Dataset:
    """``ds.map_batches`` with :class:`PipdetectPredictor` and sound resource settings.

    ``actors`` actors, each with its own model and ``threads`` CPU threads, each
    reserving ``num_cpus=threads`` so a node never runs more threads than it has
    cores. ``batch_size`` images go to an actor per call. ``predictor_options``
    go to :class:`PipdetectPredictor` (``rows``, ``color``, ``keep_columns``,
    ``max_faces`` ...). Lazy, like every Ray Data transform.
    """
    if not isinstance(actors, int) or isinstance(actors, bool) or actors < 1:
        raise InvalidArgumentError(f"actors must be a positive integer, got {actors!r}")
    return ds.map_batches(
        PipdetectPredictor,
        fn_constructor_kwargs={"model": model, "threads": threads, **predictor_options},
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=threads,
        batch_size=batch_size,
        batch_format="numpy",
    )


# --------------------------------------------------------------------------- helpers


def _check_rows(rows: str) -> None:
    if rows not in _ROWS:
        raise InvalidArgumentError(f"rows must be 'images' or 'faces', got {rows!r}")


def _names(batch: Any) -> Iterable[str]:
    return [str(c) for c in (batch.keys() if isinstance(batch, Mapping) else batch.columns)]


def _has(batch: Any, name: str) -> bool:
    if isinstance(batch, Mapping):
        return name in batch
    if hasattr(batch, "columns") and hasattr(batch, "iloc"):  # pandas.DataFrame
        return name in batch.columns
    raise InvalidArgumentError(
        f"pipdetect batches must be dicts of NumPy arrays or pandas DataFrames, got "
        f"{type(batch).__name__}; call map_batches with batch_format='numpy' or 'pandas'"
    )


def _column(batch: Any, name: str) -> list[Any]:
    """One column as a list of per-row values (arrays stay arrays)."""
    return list(batch[name])


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ == "NAType"  # pandas.NA


def _pick(d: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    return {k: d[k] for k in keys}


def _take(column: Any, rows: list[int]) -> pa.Array:
    """Rows of an input column as an Arrow array, keeping its type where it has one."""
    idx = np.asarray(rows, dtype=np.intp)
    if isinstance(column, np.ndarray):
        picked = column[idx]
        if picked.dtype != object and picked.ndim == 1:
            return pa.array(picked)
        return pa.array(list(picked))
    if hasattr(column, "iloc"):  # pandas.Series
        return pa.array(column.iloc[idx])
    values = list(column)
    return pa.array([values[i] for i in rows])


def _decode(data: Any) -> np.ndarray:
    """Encoded image bytes -> BGR uint8, as :func:`pipdetect.image.load_image` reads files."""
    return decode_image(data, "the 'bytes' value")


def _boxes_value(value: Any) -> np.ndarray | None:
    """A row's ``boxes`` value as (N, 4) float64, or None (detect faces)."""
    if _missing(value):
        return None
    if isinstance(value, np.ndarray) and value.dtype != object:
        arr = value
    else:
        try:
            items = list(value)
        except TypeError:
            raise InvalidBoxError(
                f"boxes must be a list of (x1, y1, x2, y2), got {type(value).__name__}"
            ) from None
        if not items:
            return np.zeros((0, 4))
        if all(np.ndim(b) == 0 for b in items):
            arr = np.asarray(items, dtype=np.float64)
        else:
            try:
                arr = np.array([np.asarray(b, dtype=np.float64) for b in items])
            except (TypeError, ValueError):
                raise InvalidBoxError(
                    "boxes must be a list of (x1, y1, x2, y2) numbers per face"
                ) from None
    from ..crop import as_boxes

    if arr.size == 0:
        return np.zeros((0, 4))
    return as_boxes(arr, "boxes")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or repr(exc)
    return f"{type(exc).__name__}: {text}"
