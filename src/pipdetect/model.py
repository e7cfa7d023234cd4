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
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ModelFormatError

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime

__all__ = [
    "FORMAT_VERSION",
    "INPUT_NAME",
    "METADATA_KEY",
    "OUTPUT_NAMES",
    "LoadedModel",
    "ModelSpec",
    "load_model",
    "set_global_threads",
]

FORMAT_VERSION = 1
METADATA_KEY = "pipdetect"
INPUT_NAME = "image"
OUTPUT_NAMES = ("cls", "x", "y", "nb_x", "nb_y")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_MODEL_BYTES = 2 * 1024**3
"""Model files above this size are refused before parsing (ONNX protobufs are capped at 2 GiB)."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything the runtime needs to know about a model besides its graph.

    Coordinates in ``meanface`` are normalised to the training crop: (0, 0) is
    the crop's top-left corner, (1, 1) its bottom-right (x to the right, y down).
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
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
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
        }

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` entries to store in an ONNX model."""
        return {METADATA_KEY: json.dumps(self.to_dict(), separators=(",", ":"))}

    @classmethod
    def from_dict(cls, data: Any, source: str = "model") -> ModelSpec:
        """Build and validate a spec from :meth:`to_dict` output."""
        if not isinstance(data, dict):
            raise ModelFormatError(f"{source}: pipdetect metadata must be a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelFormatError(
                f"{source}: model format version {version!r} is not supported by this "
                f"pipdetect (it reads version {FORMAT_VERSION}); upgrade pipdetect or "
                "re-convert the model"
            )
        required = ("name", "num_landmarks", "num_nb", "meanface", "crop_policy")
        missing = [key for key in required if key not in data]
        if missing:
            raise ModelFormatError(
                f"{source}: pipdetect metadata lacks {', '.join(missing)}; "
                "re-convert the model with `pipdetect convert`"
            )
        try:
            meanface = np.asarray(data["meanface"], dtype=np.float64).reshape(-1, 2)
            kwargs: dict[str, Any] = {
                "name": str(data["name"]),
                "num_landmarks": _as_int(data["num_landmarks"], "num_landmarks"),
                "num_nb": _as_int(data["num_nb"], "num_nb"),
                "meanface": meanface,
                "crop_policy": data["crop_policy"],
            }
            if "input_size" in data:
                h, w = data["input_size"]
                kwargs["input_size"] = (_as_int(h, "input_size"), _as_int(w, "input_size"))
            if "stride" in data:
                kwargs["stride"] = _as_int(data["stride"], "stride")
            for key in ("mean", "std"):
                if key in data:
                    kwargs[key] = tuple(float(v) for v in data[key])
            for key in ("channel_order", "scheme", "license"):
                if key in data:
                    kwargs[key] = str(data[key])
            for key in ("dataset", "backbone"):
                if data.get(key) is not None:
                    kwargs[key] = str(data[key])
            for key in ("accuracy", "provenance"):
                if data.get(key) is not None:
                    kwargs[key] = dict(data[key])
        except ModelFormatError:
            raise
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"{source}: malformed pipdetect metadata: {exc}") from None
        try:
            return cls(**kwargs)
        except ModelFormatError as exc:
            raise ModelFormatError(f"{source}: {exc}") from None


def _as_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ModelFormatError(f"{key} must be an integer, got {value!r}")
    return int(value)


def _validate(spec: ModelSpec) -> None:
    from .crop import CropPolicy  # local: crop imports cv2

    L, K = spec.num_landmarks, spec.num_nb
    if L < 2:
        raise ModelFormatError(f"num_landmarks must be at least 2, got {L}")
    if not 1 <= K < L:
        raise ModelFormatError(f"num_nb must be between 1 and num_landmarks - 1 = {L - 1}, got {K}")
    mf = np.asarray(spec.meanface)
    if mf.shape != (L, 2):
        raise ModelFormatError(
            f"meanface has {mf.size} values, expected {2 * L} (x, y for {L} landmarks)"
        )
    if not np.all(np.isfinite(mf)):
        raise ModelFormatError("meanface contains NaN or infinity")
    h, w = spec.input_size
    if h <= 0 or w <= 0 or spec.stride <= 0 or h % spec.stride or w % spec.stride:
        raise ModelFormatError(
            f"input_size {spec.input_size} must be positive multiples of stride {spec.stride}"
        )
    if spec.channel_order not in ("RGB", "BGR"):
        raise ModelFormatError(f"channel_order must be 'RGB' or 'BGR', got {spec.channel_order!r}")
    for key in ("mean", "std"):
        values = getattr(spec, key)
        if len(values) != 3 or not all(math.isfinite(v) for v in values):
            raise ModelFormatError(f"{key} must be three finite numbers, got {values!r}")
    if any(v <= 0 for v in spec.std):
        raise ModelFormatError(f"std must be positive, got {spec.std!r}")
    CropPolicy.from_dict(spec.crop_policy)


@dataclass(frozen=True)
class LoadedModel:
    """An onnxruntime session together with the spec read from its metadata."""

    session: onnxruntime.InferenceSession
    spec: ModelSpec
    path: Path

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the network on a preprocessed (B, 3, H, W) float32 batch; returns the 5 maps."""
        return self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})


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
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
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
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
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


def new_session_options(ort: Any, threads: int | None, *,
                        default_threads: int | None = None) -> Any:
    """Options for a new onnxruntime session of pipdetect's (landmark or face model).

    ``threads`` given: a pool of that many threads for this session. ``None``: the
    process-wide pool of :func:`set_global_threads` if it is on, otherwise a pool of
    ``default_threads`` (``None``: onnxruntime's default, one per physical core).
    Marks the process as having sessions, so that a later :func:`set_global_threads`
    (which must precede onnxruntime's first session) is refused. Internal.
    """
    global _SESSIONS_CREATED
    pooled = threads is None and _GLOBAL_THREADS is not None
    options = _session_options(ort, threads if threads is not None or pooled else default_threads)
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
    try:
        data = json.loads(meta[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path}: pipdetect metadata is not valid JSON ({exc})") from None
    spec = ModelSpec.from_dict(data, source)
    _check_io(session, spec, source)
    from ._cpu import int8_warning  # full-range int8 weights on an x86 CPU without VNNI

    warning = int8_warning(spec.provenance.get("quantization"), source)
    if warning:
        warnings.warn(warning, RuntimeWarning, stacklevel=3)
    return LoadedModel(session=session, spec=spec, path=path)


def _session_options(ort: Any, threads: int | None) -> Any:
    """onnxruntime session options, chosen from measurements (benchmarks/README.md).

    * Graph optimisation ``ORT_ENABLE_ALL`` (also onnxruntime's default, set
      explicitly): its layout transforms (blocked NCHWc convolutions) make
      ResNet-18 1.2-1.3x faster than ``ORT_ENABLE_EXTENDED`` or ``BASIC``.
    * Intra-op threads: onnxruntime's default (one per physical core) unless
      ``threads`` is given; 2 threads run ResNet-18 about 1.5x faster than 1 on
      2 cores. Sequential execution, so inter-op threads are irrelevant (1).
    * Worker threads do not spin-wait between runs: an idle process stays idle
      (no core burnt between video frames or requests). Spinning would be a few
      per cent faster (2 % per photo, 4-6 % with boxes given, since the face
      detector runs on onnxruntime's single caller thread; when it ran in
      OpenCV's threads, not spinning was 4-16 % faster per photo).
    * Memory arena and memory patterns: onnxruntime's defaults (on); a process
      that loads ResNet-18 and processes a photo peaks at about 230 MB with them.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def _check_io(session: Any, spec: ModelSpec, source: str) -> None:
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
    mh, mw = spec.map_size
    L, K = spec.num_landmarks, spec.num_nb
    expected = {"cls": L, "x": L, "y": L, "nb_x": L * K, "nb_y": L * K}
    for name, channels in expected.items():
        oshape = outputs[name]
        if len(oshape) != 4 or not _dims_match(oshape[1:], (channels, mh, mw)):
            raise ModelFormatError(
                f"{source}: output {name!r} has shape {oshape}, but the metadata "
                f"(num_landmarks={L}, num_nb={K}, map {mh}x{mw}) implies "
                f"(batch, {channels}, {mh}, {mw})"
            )


def _dims_match(actual: Any, expected: tuple[int, ...]) -> bool:
    """Static dims must equal; symbolic (str/None) dims are accepted and checked at run time."""
    return all(not isinstance(a, int) or a == e for a, e in zip(actual, expected, strict=False))
