"""pipdetect's model file format: an ONNX graph plus a JSON spec in its metadata.

Format version 1
----------------
* Graph input ``image``: float32 ``(batch, 3, H, W)``, the crop resized to the
  model's input size, channels in ``channel_order``, values ``(pixel / 255 - mean) / std``.
* Graph outputs, float32, same ``batch`` axis, feature map ``h x w``
  (``h = H / stride``, ``w = W / stride``): ``cls`` ``(batch, L, h, w)``, ``x`` and
  ``y`` ``(batch, L, h, w)``, ``nb_x`` and ``nb_y`` ``(batch, L*K, h, w)``.
* ``metadata_props["pipdetect"]``: a JSON object, the fields of :class:`ModelSpec`
  (see :meth:`ModelSpec.to_dict`).

The converter (``pipdetect convert``) writes exactly this; :func:`load_model`
refuses anything else with a :class:`~pipdetect.errors.ModelFormatError` that
says what is missing.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidArgumentError, ModelFormatError

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime

__all__ = [
    "FIELDS",
    "FORMAT_VERSION",
    "INPUT_NAME",
    "MAX_LANDMARKS",
    "MAX_NEIGHBOURS",
    "METADATA_KEY",
    "OUTPUT_NAMES",
    "READ_VERSIONS",
    "LoadedModel",
    "ModelSpec",
    "load_model",
    "parse_metadata",
    "set_global_threads",
]

FORMAT_VERSION = 2
"""The model format version ``pipdetect convert`` writes: 2, neighbour outputs read at the
selected cells, ``(batch, L*K)``. This pipdetect also reads version 1, whose neighbour
outputs are full maps ``(batch, L*K, h, w)`` (files converted before 0.3)."""
READ_VERSIONS = (1, 2)
"""Model format versions this pipdetect reads."""
METADATA_KEY = "pipdetect"
INPUT_NAME = "image"
OUTPUT_NAMES = ("cls", "x", "y", "nb_x", "nb_y")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_MODEL_BYTES = 2 * 1024**3
"""Model files above this size are refused before parsing (ONNX protobufs are capped at 2 GiB)."""


MAX_LANDMARKS = 1024
"""Most landmarks a model may have (the official models have 19 to 106)."""
MAX_NEIGHBOURS = 64
"""Most neighbours per landmark (the official models use 10)."""
MAX_INPUT_SIDE = 1024
"""Largest network input side in pixels (the official models use 256)."""
MAX_MAP_VALUES = 1 << 24
"""Most output values per crop, ``L * (3 + 2K) * h * w`` (64 MB of float32)."""
MAX_METADATA_CHARS = 4 * 1024**2
"""Longest metadata JSON text read (the bundled model's is a few kB)."""
MAX_METADATA_DEPTH = 32
"""Deepest nesting of JSON arrays and objects in the metadata."""
_MAX_INT_DIGITS = 30
MAX_OUTPUT_OFFSET = 0.25
"""Largest ``output_offset`` component, in crop widths / heights (fitted ones: < 0.01)."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything the runtime needs to know about a model besides its graph.

    Coordinates in ``meanface`` are normalised to the training crop: (0, 0) is
    the crop's top-left corner, (1, 1) its bottom-right (x to the right, y down).
    Every field is checked when a spec is made (see :data:`FIELDS`), then the
    fields against each other; any failure is a
    :class:`~pipdetect.errors.ModelFormatError` naming the field.
    """

    name: str
    num_landmarks: int
    num_nb: int
    meanface: np.ndarray
    """(L, 2) float64, normalised to the training crop."""
    crop_policy: dict[str, Any]
    """How a face box becomes the model's crop; see :class:`pipdetect.crop.CropPolicy`."""
    scheme: str = "custom"
    input_size: tuple[int, int] = (256, 256)
    """(height, width) in pixels of the network input."""
    stride: int = 32
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    dataset: str | None = None
    backbone: str | None = None
    license: str = "unknown"
    accuracy: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    confidence: dict[str, Any] | None = None
    """How per-landmark scores become a face's confidence (a probability that its
    landmarks are right); see :class:`pipdetect.confidence.Calibration`. ``None``:
    uncalibrated."""
    output_offset: tuple[float, float] = (0.0, 0.0)
    """(du, dv) added to every decoded landmark in the crop's normalised frame (u along the
    crop's x axis, v along its y axis, so it turns with an oriented crop) before it is
    mapped to image pixels: a correction fitted on the training faces for a systematic
    offset between the network and its annotations (``training/output_offset.py``)."""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        data = self.to_dict()
        for key, check in FIELDS.items():
            _field(key, check.parse, data[key], "model spec")
        _validate(self)

    @property
    def map_size(self) -> tuple[int, int]:
        """(h, w) of the score / offset maps."""
        return self.input_size[0] // self.stride, self.input_size[1] // self.stride

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the metadata stored in the ONNX file)."""
        return {
            "format_version": self.format_version,
            "name": self.name,
            "num_landmarks": self.num_landmarks,
            "num_nb": self.num_nb,
            "input_size": list(self.input_size),
            "stride": self.stride,
            "channel_order": self.channel_order,
            "mean": list(self.mean),
            "std": list(self.std),
            "meanface": np.asarray(self.meanface, dtype=np.float64).reshape(-1).tolist(),
            "scheme": self.scheme,
            "crop_policy": self.crop_policy,
            "dataset": self.dataset,
            "backbone": self.backbone,
            "license": self.license,
            "accuracy": self.accuracy,
            "provenance": self.provenance,
            "confidence": self.confidence,
            "output_offset": list(self.output_offset),
        }

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` entries to store in an ONNX model."""
        return {METADATA_KEY: json.dumps(self.to_dict(), separators=(",", ":"))}

    @classmethod
    def from_json(cls, text: Any, source: str = "model") -> ModelSpec:
        """Parse and validate the metadata text of a model (see :func:`parse_metadata`)."""
        return cls.from_dict(parse_metadata(text, source), source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "model") -> ModelSpec:
        """Build and validate a spec from :meth:`to_dict` output (each field by :data:`FIELDS`)."""
        if not isinstance(data, dict):
            raise ModelFormatError(f"{source}: pipdetect metadata must be a JSON object")
        version = data.get("format_version")
        if type(version) is not int or version not in READ_VERSIONS:
            raise ModelFormatError(
                f"{source}: model format version {_short(version)} is not supported by this "
                f"pipdetect (it reads versions {', '.join(map(str, READ_VERSIONS))}); upgrade "
                "pipdetect or re-convert the model"
            )
        missing = [key for key, check in FIELDS.items() if check.required and key not in data]
        if missing:
            raise ModelFormatError(
                f"{source}: pipdetect metadata lacks {', '.join(missing)}; "
                "re-convert the model with `pipdetect convert`"
            )
        kwargs = {key: _field(key, check.parse, data[key], source)
                  for key, check in FIELDS.items() if key in data}
        kwargs = {key: value for key, value in kwargs.items() if value is not None}
        kwargs["format_version"] = version
        try:
            return cls(**kwargs)
        except ModelFormatError as exc:
            raise ModelFormatError(f"{source}: {exc}") from None


# --------------------------------------------------------------------------- fields
# One parser per metadata field: it takes the JSON value and returns the ModelSpec
# value (None: use the default) or raises _Bad with what is wrong. ModelSpec runs them
# on its own values too, so specs made in Python obey the same rules.


class _Bad(ValueError):
    """What is wrong with one field's value (turned into a ModelFormatError naming it)."""


@dataclass(frozen=True)
class FieldCheck:
    """How one metadata field is read: ``parse(json_value) -> spec value or None``."""

    parse: Callable[[Any], Any]
    required: bool = False


def _field(key: str, parse: Callable[[Any], Any], value: Any, source: str) -> Any:
    try:
        return parse(value)
    except (_Bad, ModelFormatError) as exc:
        raise ModelFormatError(f"{source}: metadata field {key!r}: {exc}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _LongInteger:
    """Stands for an integer of too many digits in metadata JSON (never converted: a
    5000-digit string would cost quadratic time, and Python refuses over 4300)."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"an integer of {self.digits} digits"


def _not_finite(value: Any) -> str:
    return " (too large for a float, or NaN / Infinity)" if isinstance(value, float) and (
        not math.isfinite(value)) else ""


def _integer(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if type(value) is not int and not isinstance(value, np.integer):
            raise _Bad(f"must be an integer, got {_short(value)}{_not_finite(value)}")
        if not lo <= value <= hi:
            raise _Bad(f"must be between {lo} and {hi}, got {_short(value)}")
        return int(value)

    return parse


def _number(value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise _Bad(f"must hold numbers, got {_short(value)}")
    number = float(value)
    if not (math.isfinite(number) and lo <= number <= hi):
        raise _Bad(f"values must be finite and within [{lo:g}, {hi:g}], got "
                   f"{_short(value)}{_not_finite(value)}")
    return number


def _numbers(count: int, lo: float, hi: float) -> Callable[[Any], tuple[float, ...]]:
    def parse(value: Any) -> tuple[float, ...]:
        if not isinstance(value, (list, tuple)) or len(value) != count:
            raise _Bad(f"must be a list of {count} numbers, got {_short(value)}")
        return tuple(_number(v, lo, hi) for v in value)

    return parse


def _text(max_chars: int, *, nullable: bool = False,
          choices: tuple[str, ...] = ()) -> Callable[[Any], str | None]:
    def parse(value: Any) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise _Bad(f"must be a string{' or null' if nullable else ''}, got {_short(value)}")
        if len(value) > max_chars:
            raise _Bad(f"must be at most {max_chars} characters, got {len(value)}")
        if choices and value not in choices:
            raise _Bad(f"must be one of {', '.join(map(repr, choices))}, got {_short(value)}")
        return value

    return parse


def _json_object(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Bad(f"must be a JSON object or null, got {_short(value)}")
    _plain_json(value, "")
    return dict(value)


def _plain_json(value: Any, path: str) -> None:
    """Free-form JSON (accuracy, provenance) holds only finite numbers and sane integers."""
    if isinstance(value, dict):
        for key, item in value.items():
            _plain_json(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _plain_json(item, f"{path}[{i}]")
    elif isinstance(value, _LongInteger) or (isinstance(value, float)
                                            and not math.isfinite(value)):
        raise _Bad(f"{path[1:] or 'value'} is {_short(value)}{_not_finite(value)}")


def _meanface(value: Any) -> np.ndarray:
    if not isinstance(value, (list, tuple)) or not 4 <= len(value) <= 2 * MAX_LANDMARKS:
        raise _Bad(f"must be a flat list x1, y1, x2, y2, ... of 4 to {2 * MAX_LANDMARKS} numbers")
    if len(value) % 2:
        raise _Bad(f"must hold an even number of values (x, y pairs), got {len(value)}")
    return np.array([_number(v, -100.0, 100.0) for v in value]).reshape(-1, 2)


def _input_size(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _Bad(f"must be [height, width], got {_short(value)}")
    side = _integer(1, MAX_INPUT_SIDE)
    return tuple(side(v) for v in value)


def _crop_policy(value: Any) -> dict[str, Any]:
    from .crop import CropPolicy  # local: crop imports cv2

    CropPolicy.from_dict(value)
    return dict(value)


def _confidence(value: Any) -> dict[str, Any] | None:
    from .confidence import Calibration

    Calibration.from_dict(value)
    return None if value is None else dict(value)


FIELDS: dict[str, FieldCheck] = {
    "name": FieldCheck(_text(200), required=True),
    "num_landmarks": FieldCheck(_integer(2, MAX_LANDMARKS), required=True),
    "num_nb": FieldCheck(_integer(1, MAX_NEIGHBOURS), required=True),
    "meanface": FieldCheck(_meanface, required=True),
    "crop_policy": FieldCheck(_crop_policy, required=True),
    "scheme": FieldCheck(_text(100)),
    "input_size": FieldCheck(_input_size),
    "stride": FieldCheck(_integer(1, 256)),
    "channel_order": FieldCheck(_text(3, choices=("RGB", "BGR"))),
    "mean": FieldCheck(_numbers(3, -1e3, 1e3)),
    "std": FieldCheck(_numbers(3, 1e-6, 1e3)),
    "dataset": FieldCheck(_text(1000, nullable=True)),
    "backbone": FieldCheck(_text(200, nullable=True)),
    "license": FieldCheck(_text(20_000)),
    "accuracy": FieldCheck(_json_object),
    "provenance": FieldCheck(_json_object),
    "confidence": FieldCheck(_confidence),
    "output_offset": FieldCheck(_numbers(2, -MAX_OUTPUT_OFFSET, MAX_OUTPUT_OFFSET)),
}
"""The metadata fields read by :meth:`ModelSpec.from_dict`, each with its one check.
A new field gets its parser here (and its attribute in :class:`ModelSpec`); checks of
fields against each other are in ``_validate``. Unknown fields are ignored."""


def parse_metadata(text: Any, source: str = "model") -> Any:
    """The JSON value of a model's metadata text, parsed within bounds.

    Refused with :class:`~pipdetect.errors.ModelFormatError`: text over
    :data:`MAX_METADATA_CHARS`, nesting deeper than :data:`MAX_METADATA_DEPTH`
    and invalid JSON. Integers of more than 30 digits are never converted (a
    placeholder stands for them), and non-finite numbers (``NaN``, ``Infinity``,
    ``1e400``) are kept: the check of the field that holds one refuses it by name.
    """
    if not isinstance(text, str):
        raise ModelFormatError(f"{source}: pipdetect metadata must be text")
    if len(text) > MAX_METADATA_CHARS:
        raise ModelFormatError(
            f"{source}: pipdetect metadata is {len(text):,} characters, more than "
            f"{MAX_METADATA_CHARS:,}; this is not a pipdetect model"
        )
    depth = _nesting_depth(text)
    if depth > MAX_METADATA_DEPTH:
        raise ModelFormatError(
            f"{source}: pipdetect metadata nests {depth} levels deep, more than "
            f"{MAX_METADATA_DEPTH}; this is not a pipdetect model"
        )

    def parse_int(digits: str) -> int | _LongInteger:
        if len(digits.lstrip("-")) > _MAX_INT_DIGITS:
            return _LongInteger(len(digits.lstrip("-")))
        return int(digits)

    try:  # 1e400 parses as inf, NaN and Infinity as themselves: FIELDS refuse them by name
        return json.loads(text, parse_int=parse_int)
    except (ValueError, RecursionError) as exc:
        raise ModelFormatError(
            f"{source}: pipdetect metadata is not valid JSON ({_first_line(exc)})"
        ) from None


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')


def _nesting_depth(text: str) -> int:
    """Deepest nesting of [ and { outside JSON strings (vectorised: fast on long text)."""
    bare = _STRINGS.sub("", text).encode("utf-8", "replace")
    codes = np.frombuffer(bare, dtype=np.uint8)
    steps = ((codes == ord("[")) | (codes == ord("{"))).astype(np.int32)
    steps -= ((codes == ord("]")) | (codes == ord("}"))).astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))


def _validate(spec: ModelSpec) -> None:
    """The fields against each other (each field alone is checked by :data:`FIELDS`)."""
    L, K = spec.num_landmarks, spec.num_nb
    if not K < L:
        raise ModelFormatError(f"num_nb must be between 1 and num_landmarks - 1 = {L - 1}, got {K}")
    mf = np.asarray(spec.meanface)
    if mf.shape != (L, 2):
        raise ModelFormatError(
            f"meanface has {mf.size} values, expected {2 * L} (x, y for {L} landmarks)"
        )
    h, w = spec.input_size
    if h % spec.stride or w % spec.stride:
        raise ModelFormatError(
            f"input_size {spec.input_size} must be positive multiples of stride {spec.stride}"
        )
    mh, mw = spec.map_size
    values = L * (3 + 2 * K) * mh * mw
    if values > MAX_MAP_VALUES:
        raise ModelFormatError(
            f"num_landmarks={L}, num_nb={K} and a {mh}x{mw} map make {values:,} output values "
            f"per face, more than pipdetect allows ({MAX_MAP_VALUES:,})"
        )


@dataclass(frozen=True)
class LoadedModel:
    """An onnxruntime session together with the spec read from its metadata."""

    session: onnxruntime.InferenceSession
    spec: ModelSpec
    path: Path
    neighbours_at_cell: bool = False
    """``True`` when the file evaluates the neighbour heads only at each landmark's
    selected cell: ``nb_x`` / ``nb_y`` are ``(B, L*K)`` (format version 2, what
    ``pipdetect convert`` writes); ``False`` for full ``(B, L*K, h, w)`` maps
    (version 1, files converted before)."""

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the network on a preprocessed (B, 3, H, W) float32 batch; returns the 5
        outputs: ``cls``, ``x``, ``y`` maps ``(B, L, h, w)`` and ``nb_x``, ``nb_y`` as
        :attr:`neighbours_at_cell` says, the form :class:`~pipdetect.decode.PIPDecoder`
        takes either way.

        Raises :class:`~pipdetect.errors.ModelFormatError` when an output's shape is not
        what the metadata promises (symbolic dims are checked here).
        """
        maps = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        expected = _output_shapes(self.spec, len(batch), self.neighbours_at_cell)
        for name, out in zip(OUTPUT_NAMES, maps, strict=True):
            if out.shape != expected[name]:
                raise ModelFormatError(
                    f"{self.path}: output {name!r} has shape {out.shape} for a batch of "
                    f"{len(batch)}, but the metadata implies {expected[name]}; the model "
                    "file is broken or not a pipdetect model"
                )
        return maps


def _output_shapes(spec: ModelSpec, batch: Any,
                   neighbours_at_cell: bool) -> dict[str, tuple[Any, ...]]:
    """Each output's shape for a batch size (or the input's symbolic batch dim)."""
    mh, mw = spec.map_size
    L, K = spec.num_landmarks, spec.num_nb
    channels = {"cls": L, "x": L, "y": L, "nb_x": L * K, "nb_y": L * K}
    return {name: (batch, c) if neighbours_at_cell and name in _AT_CELL else (batch, c, mh, mw)
            for name, c in channels.items()}


_AT_CELL = ("nb_x", "nb_y")
"""Outputs a model may give at each landmark's selected cell, ``(B, L*K)``."""


_SHARED: weakref.WeakValueDictionary[tuple[Any, ...], LoadedModel] = weakref.WeakValueDictionary()
_STATE_LOCK = threading.Lock()
_GLOBAL_THREADS: int | None = None
_SESSIONS_CREATED = False


def set_global_threads(threads: int) -> None:
    """Run every model loaded later with ``threads=None`` on one process-wide thread pool.

    By default each model file gets its own onnxruntime pool with one thread
    per core, so a process holding several *different* models (or other
    onnxruntime users) can run more busy threads than it has cores when they
    work at the same time. After ``set_global_threads(n)`` all of pipdetect's
    models loaded with ``threads=None`` share a single pool of ``n`` threads.
    (Detectors of the *same* model file and settings always share one session,
    and so one pool, anyway.) Call it once, before pipdetect loads its first
    model; later calls raise :class:`RuntimeError`.
    """
    global _GLOBAL_THREADS
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidArgumentError(f"threads must be a positive integer, got {threads!r}")
    from onnxruntime.capi import _pybind_state

    with _STATE_LOCK:
        if _SESSIONS_CREATED:
            raise RuntimeError(
                "set_global_threads() must be called before pipdetect loads its first model "
                "(onnxruntime creates its thread pools with the first session)"
            )
        _pybind_state.set_global_thread_pool_sizes(threads, 1)
        _GLOBAL_THREADS = threads


def load_model(
    path: str | os.PathLike[str],
    *,
    threads: int | None = None,
    providers: list[str] | None = None,
) -> LoadedModel:
    """Open a pipdetect ONNX model and validate it before anything runs.

    ``threads`` sets onnxruntime's intra-op thread count (``None``: onnxruntime's
    default, one per physical core, or the pool of :func:`set_global_threads`).
    Loading the same unchanged file with the same settings again returns the
    same session (thread-safe to share), so several detectors of one model cost
    one model's memory and threads. Raises :class:`FileNotFoundError` for a
    missing file and :class:`~pipdetect.errors.ModelFormatError` for anything
    that is not a valid pipdetect model.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise ModelFormatError(
            f"{path}: {size} bytes is larger than any pipdetect model can be (2 GiB ONNX limit)"
        )
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InvalidArgumentError(f"threads must be a positive integer or None, got {threads!r}")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, threads,
           tuple(providers or ()))
    with _STATE_LOCK:
        shared = _SHARED.get(key)
        if shared is not None:
            return shared
        loaded = _open(ort, path, threads, providers)
        _SHARED[key] = loaded
        return loaded


def new_session_options(ort: Any, threads: int | None, *, spin: bool = True) -> Any:
    """Options for a new onnxruntime session of pipdetect's (landmark or face model;
    ``spin``: whether its workers spin within a run, see :func:`_session_options`).

    ``threads`` given: a pool of that many threads for this session. ``None``: the
    process-wide pool of :func:`set_global_threads` if it is on, otherwise a pool of
    onnxruntime's default size (one thread per physical core).
    Marks the process as having sessions, so that a later :func:`set_global_threads`
    (which must precede onnxruntime's first session) is refused. Internal.
    """
    global _SESSIONS_CREATED
    pooled = threads is None and _GLOBAL_THREADS is not None
    options = _session_options(ort, threads, spin=spin)
    if pooled:
        options.use_per_session_threads = False
    _SESSIONS_CREATED = True
    return options


def _open(ort: Any, path: Path, threads: int | None, providers: list[str] | None) -> LoadedModel:
    options = new_session_options(ort, threads)
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=providers or ["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises several unrelated types here
        raise ModelFormatError(
            f"{path}: not a loadable ONNX model ({type(exc).__name__}: {_first_line(exc)}); "
            "expected a pipdetect model file (see `pipdetect convert`)"
        ) from None
    meta = session.get_modelmeta().custom_metadata_map
    source = str(path)
    if METADATA_KEY not in meta:
        raise ModelFormatError(
            f"{path}: valid ONNX, but without pipdetect metadata (metadata_props key "
            f"{METADATA_KEY!r}); convert a PIP-Net checkpoint with `pipdetect convert`"
        )
    spec = ModelSpec.from_json(meta[METADATA_KEY], source)
    at_cell = _check_io(session, spec, source)
    from ._cpu import int8_warning  # full-range int8 weights on an x86 CPU without VNNI

    warning = int8_warning(spec.provenance.get("quantization"), source)
    if warning:
        warnings.warn(warning, RuntimeWarning, stacklevel=3)
    return LoadedModel(session=session, spec=spec, path=path, neighbours_at_cell=at_cell)


def _session_options(ort: Any, threads: int | None, *, spin: bool = True) -> Any:
    """onnxruntime session options, chosen from measurements (benchmarks/README.md).

    * Graph optimisation ``ORT_ENABLE_ALL`` (also onnxruntime's default, set
      explicitly): its layout transforms (blocked NCHWc convolutions) make
      ResNet-18 1.2-1.3x faster than ``ORT_ENABLE_EXTENDED`` or ``BASIC``.
    * Intra-op threads: onnxruntime's default (one per physical core) unless
      ``threads`` is given; 2 threads run ResNet-18 about 1.5x faster than 1 on
      2 cores. Sequential execution, so inter-op threads are irrelevant (1).
    * Spinning (``benchmarks/threads_bench.py``, each setting in its own process).
      With ``spin`` (the landmark networks), worker threads spin-wait *within* a
      run, between one operator's parallel work and the next's, and stop when
      the run ends (``session.force_spinning_stop``): an idle process stays idle,
      with no core burnt between video frames or requests. Without ``spin`` (the
      face detector) they never spin, so that two spinning pools never hold more
      busy threads than there are cores. Against never spinning with the face
      detector on one thread (pipdetect 0.3.0), a whole photo took 0.79-0.84x
      the time and one crop's network pass 0.91x (two runs, fp32 and int8
      default); onnxruntime's default (spinning also for tens of milliseconds
      after each run) took 1.24-1.58x, as each session's pool spins while the
      other works.
    * Memory arena and memory patterns: onnxruntime's defaults (on); a process
      that loads ResNet-18 and processes a photo peaks at about 230 MB with them.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if spin:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def _check_io(session: Any, spec: ModelSpec, source: str) -> bool:
    """Check the model's input and outputs against its metadata; returns whether its
    neighbour outputs are given at the selected cells (``(batch, L*K)``: format
    version 2) rather than as full maps (version 1)."""
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        names = [i.name for i in inputs]
        raise ModelFormatError(f"{source}: expected one input named {INPUT_NAME!r}, found {names}")
    shape = inputs[0].shape
    h, w = spec.input_size
    if len(shape) != 4 or not _dims_match(shape[1:], (3, h, w)):
        raise ModelFormatError(
            f"{source}: input {INPUT_NAME!r} has shape {shape}, metadata says (batch, 3, {h}, {w})"
        )
    outputs = {o.name: o.shape for o in session.get_outputs()}
    missing = [n for n in OUTPUT_NAMES if n not in outputs]
    if missing:
        raise ModelFormatError(
            f"{source}: outputs {missing} are missing (found {sorted(outputs)}); "
            f"a pipdetect model has outputs {list(OUTPUT_NAMES)}"
        )
    batch = shape[0]
    at_cell = spec.format_version >= 2
    for name, want in _output_shapes(spec, batch, at_cell).items():
        oshape = outputs[name]
        if len(oshape) != len(want) or not _dims_match(oshape[1:], want[1:]):
            mh, mw = spec.map_size
            form = f"({', '.join(['batch', *map(str, want[1:])])})"
            if name in _AT_CELL:
                form += (f" (format version {spec.format_version}: neighbour outputs "
                         + ("read at the selected cells)" if at_cell else "as full maps)"))
            raise ModelFormatError(
                f"{source}: output {name!r} has shape {oshape}, but the metadata "
                f"(num_landmarks={spec.num_landmarks}, num_nb={spec.num_nb}, map "
                f"{mh}x{mw}) implies {form}"
            )
        if not _same_batch(batch, oshape[0]):
            raise ModelFormatError(
                f"{source}: output {name!r} has batch dimension {oshape[0]!r} but the input "
                f"{INPUT_NAME!r} has {batch!r}; every output must keep the input's batch"
            )
    return at_cell


def _same_batch(batch: Any, out: Any) -> bool:
    """A fixed output batch must equal the input's (fixed) batch; symbolic ones are
    checked when the model runs."""
    if isinstance(out, int):
        return isinstance(batch, int) and out == batch
    return True


def _dims_match(actual: Any, expected: tuple[int, ...]) -> bool:
    """Static dims must equal; symbolic (str/None) dims are accepted and checked at run time."""
    return all(not isinstance(a, int) or a == e for a, e in zip(actual, expected, strict=False))
