"""Read PyTorch checkpoints without PyTorch, and without running any code from them.

``torch.save`` writes a pickle. Unpickling an untrusted pickle can run arbitrary
code, so this module never calls :func:`pickle.load` on a checkpoint with the
default class lookup: :class:`_RestrictedUnpickler` resolves only the handful of
globals a tensor ``state_dict`` needs (``collections.OrderedDict``, the tensor
rebuild functions and the ``torch.*Storage`` type names) to pipdetect's own
NumPy implementations, and refuses everything else with a
:class:`~pipdetect.errors.CheckpointError` before anything runs.

Both of PyTorch's on-disk formats are read:

* **zip** (the default since PyTorch 1.6): ``<archive>/data.pkl`` holds the pickle,
  ``<archive>/data/<key>`` the raw bytes of each storage, ``<archive>/byteorder``
  their byte order (little-endian when absent).
* **legacy** (``_use_new_zipfile_serialization=False``): one file holding the
  pickled magic number, protocol version and system info, the object pickle,
  the pickled list of storage keys, then for every storage an int64 element
  count followed by its little-endian bytes.

Tensors come back as NumPy arrays (C-contiguous copies, views and strides
resolved). ``bfloat16`` is widened to ``float32`` (NumPy has no bfloat16).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Union

import numpy as np

from ..errors import CheckpointError

__all__ = ["Checkpoint", "extract_state_dict", "load_checkpoint", "load_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_MAX_ELEMENTS = 2**31
"""A single tensor with more elements than this is refused (no PIP-Net layer comes close)."""
_BYTES_PER_FILE_BYTE = 4
_SLACK_BYTES = 64 * 1024**2


class _Budget:
    """Bytes the tensors of one checkpoint may take: what the file can honestly hold.

    A checkpoint's storages are stored uncompressed, and its tensors are views of
    them; a few tensors may share one storage (tied weights). So all storages read and
    all tensors built may take at most 4 times the file's size plus 64 MiB. Stride-0
    tensors, zip members that inflate, and storages claiming more than the file holds
    exhaust it and are refused before the memory is spent.
    """

    def __init__(self, file_bytes: int, source: str) -> None:
        self.limit = _BYTES_PER_FILE_BYTE * file_bytes + _SLACK_BYTES
        self.used = 0
        self.source = source

    def spend(self, nbytes: int, what: str) -> None:
        if nbytes > self.limit - self.used:
            raise CheckpointError(
                f"{self.source}: {what} would take {nbytes:,} bytes, more than a "
                f"{(self.limit - _SLACK_BYTES) // _BYTES_PER_FILE_BYTE:,}-byte checkpoint can "
                f"hold ({self.used:,} of {self.limit:,} bytes already used); the file is "
                "corrupt or made to exhaust memory"
            )
        self.used += nbytes

# torch.<Name>Storage -> NumPy dtype (little-endian); "bfloat16" is widened on load.
_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}

# Wrapper keys under which training scripts commonly store the weights.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights")

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's tensors as NumPy arrays, with what was learned while reading it."""

    state_dict: dict[str, np.ndarray]
    """Parameter and buffer arrays by name, in file order."""
    format: str
    """``"zip"`` or ``"legacy"``."""
    wrapper_key: str | None = None
    """Key of the enclosing dict the weights were found under (``"state_dict"`` ...), if any."""
    dtypes: tuple[str, ...] = field(default_factory=tuple)
    """Distinct stored dtypes of the tensors (before any widening), sorted."""


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: str


@dataclass
class _Storage:
    """One storage: a flat array, filled in once its bytes are read."""

    key: str
    dtype: str
    numel: int
    data: np.ndarray | None = None
    offset: int = 0
    """Element offset into ``root`` (legacy storage views)."""
    root: _Storage | None = None

    def array(self) -> np.ndarray:
        if self.root is not None:
            base = self.root.array()
            return base[self.offset : self.offset + self.numel]
        if self.data is None:  # pragma: no cover - guarded by the readers
            raise CheckpointError(f"storage {self.key!r} was never read")
        return self.data


@dataclass
class _PendingTensor:
    """A tensor whose storage bytes may come later in the file (legacy format)."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _as_int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise CheckpointError(f"malformed tensor record: {what} is {value!r}, expected integers")
    return tuple(value)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> _PendingTensor:
    if not isinstance(storage, _Storage):
        raise CheckpointError("malformed tensor record: its storage is not a stored tensor buffer")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise CheckpointError(f"malformed tensor record: storage offset {storage_offset!r}")
    shape = _as_int_tuple(size, "size")
    strides = _as_int_tuple(stride, "stride")
    if len(shape) != len(strides) or any(s < 0 for s in shape) or any(s < 0 for s in strides):
        raise CheckpointError(f"malformed tensor record: size {shape} with stride {strides}")
    return _PendingTensor(storage, storage_offset, shape, strides)


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _PendingTensor:
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None,
                       state: Any = None) -> Any:
    if not isinstance(data, _PendingTensor):
        raise CheckpointError("malformed parameter record: it does not wrap a tensor")
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that can build tensors, dicts, lists and plain values, and nothing else.

    The pure-Python unpickler is used (the pickles hold only the structure; the
    tensor bytes are read separately) so that ``BUILD`` can be restricted too:
    it may only target the ``OrderedDict`` a state_dict is (whose ``_metadata``
    attribute is dropped), never one of the functions this module hands out.
    """

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)
    stack: list[Any]  # set by pickle._Unpickler.load

    def __init__(self, file: IO[bytes], source: str,
                 load_storage: Callable[[Any], _Storage] | None = None) -> None:
        super().__init__(file, encoding="utf-8")
        self._source = source
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        value = _ALLOWED_GLOBALS.get((module, name))
        if value is None:
            raise CheckpointError(
                f"{self._source}: refused: the checkpoint's pickle asks for "
                f"`{module}.{name}`, which a tensor state_dict never needs. pipdetect "
                "refuses to run code from checkpoint files. If you trust this file, load it "
                "with PyTorch and save only the weights: "
                "torch.save(model.state_dict(), 'weights.pth')"
            )
        return value

    def persistent_load(self, pid: Any) -> Any:
        if self._load_storage is None:
            raise CheckpointError(f"{self._source}: unexpected storage reference in a header")
        return self._load_storage(pid)

    def _load_build(self) -> None:
        self.stack.pop()  # the state: module metadata of a state_dict, not needed
        if type(self.stack[-1]) is not collections.OrderedDict:
            raise CheckpointError(
                f"{self._source}: refused: the pickle tries to set the state of a "
                f"{type(self.stack[-1]).__name__}, which a tensor state_dict never does"
            )

    dispatch[pickle.BUILD[0]] = _load_build


def _storage_id(pid: Any, source: str) -> tuple[str, str, int, tuple[str, int, int] | None]:
    """Validate a persistent id ``('storage', type, key, location, numel[, view])``."""
    if not isinstance(pid, tuple) or len(pid) not in (5, 6):
        raise CheckpointError(f"{source}: malformed storage reference {pid!r:.80}")
    tag = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    storage_type, key, numel = pid[1], pid[2], pid[4]
    if tag != "storage" or not isinstance(storage_type, _StorageType):
        raise CheckpointError(f"{source}: malformed storage reference {pid!r:.80}")
    key = key.decode("ascii") if isinstance(key, bytes) else key
    if not isinstance(key, str) or not isinstance(numel, int) or not 0 <= numel <= _MAX_ELEMENTS:
        raise CheckpointError(f"{source}: malformed storage reference {pid!r:.80}")
    view = pid[5] if len(pid) == 6 else None
    if view is not None:
        if (not isinstance(view, tuple) or len(view) != 3
                or not all(isinstance(v, int) for v in view[1:])):
            raise CheckpointError(f"{source}: malformed storage view {view!r:.80}")
        vkey = view[0].decode("ascii") if isinstance(view[0], bytes) else str(view[0])
        view = (vkey, view[1], view[2])
    return storage_type.dtype, key, numel, view


def _itemsize(dtype: str) -> int:
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def _decode_storage(raw: bytes, dtype: str, numel: int, big_endian: bool) -> np.ndarray:
    if dtype == "bfloat16":
        half = np.frombuffer(raw, dtype=">u2" if big_endian else "<u2", count=numel)
        return (half.astype(np.uint32) << 16).view(np.float32)
    dt = np.dtype(dtype).newbyteorder(">" if big_endian else "<")
    return np.frombuffer(raw, dtype=dt, count=numel).astype(np.dtype(dtype), copy=False)


def _materialise(obj: Any, budget: _Budget, memo: dict[int, Any] | None = None,
                 depth: int = 0) -> Any:
    """Replace pending tensors by NumPy arrays, walking dicts, lists and tuples.

    Shared references (pickle's memo) are converted once and shared in the result,
    never expanded: a list holding another twice, 45 levels deep, is 45 lists, not 2^45.
    """
    memo = {} if memo is None else memo
    if not isinstance(obj, (_PendingTensor, dict, list, tuple)):
        return obj
    if id(obj) in memo:
        done = memo[id(obj)]
        if done is None:  # a tuple that contains itself (through a list or dict)
            raise CheckpointError(f"{budget.source}: a container refers to itself")
        return done
    if depth > 50:
        raise CheckpointError(f"{budget.source}: containers nested deeper than any checkpoint's")
    if isinstance(obj, _PendingTensor):
        memo[id(obj)] = _tensor_array(obj, budget)
    elif isinstance(obj, dict):
        out: dict[Any, Any] = {}
        memo[id(obj)] = out
        for k, v in obj.items():
            out[k] = _materialise(v, budget, memo, depth + 1)
    elif isinstance(obj, list):
        items: list[Any] = []
        memo[id(obj)] = items
        items.extend(_materialise(v, budget, memo, depth + 1) for v in obj)
    else:
        memo[id(obj)] = None
        memo[id(obj)] = tuple(_materialise(v, budget, memo, depth + 1) for v in obj)
    return memo[id(obj)]


def _tensor_array(t: _PendingTensor, budget: _Budget) -> np.ndarray:
    source = budget.source
    flat = t.storage.array()
    numel = int(np.prod(t.size, dtype=np.int64)) if t.size else 1
    if numel > _MAX_ELEMENTS:
        raise CheckpointError(f"{source}: a tensor of shape {t.size} is implausibly large")
    if numel == 0:
        return np.zeros(t.size, dtype=flat.dtype)
    last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride, strict=True))
    if last >= flat.size:
        raise CheckpointError(
            f"{source}: a tensor of shape {t.size} reaches element {last} of a storage holding "
            f"{flat.size}; the file is corrupt or truncated"
        )
    if not t.size:
        return np.array(flat[t.offset])
    item = flat.dtype.itemsize
    budget.spend(numel * item, f"a tensor of shape {t.size}")
    view = np.lib.stride_tricks.as_strided(
        flat[t.offset :], shape=t.size, strides=[s * item for s in t.stride], writeable=False
    )
    return np.array(view, copy=True, order="C")


def _read_member(archive: zipfile.ZipFile, name: str, nbytes: int, budget: _Budget) -> bytes:
    """At most ``nbytes`` of a zip member, never inflating more (counted in ``budget``)."""
    budget.spend(nbytes, f"zip member {name}")
    with archive.open(name) as member:
        return member.read(nbytes)


def _read_zip(path: Path, budget: _Budget) -> tuple[Any, str, set[str]]:
    source = budget.source
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise CheckpointError(
            f"{source}: looks like a PyTorch zip checkpoint but its zip directory is missing "
            "or damaged; the file is truncated or corrupt (download or copy it again)"
        ) from None
    with archive:
        names = archive.namelist()
        pkls = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if not pkls:
            raise CheckpointError(
                f"{source}: a zip file without data.pkl is not a PyTorch checkpoint"
            )
        pkl = min(pkls, key=len)
        prefix = pkl[: -len("data.pkl")]
        if any(n.startswith(prefix + "code/") for n in names) or prefix + "constants.pkl" in names:
            raise CheckpointError(
                f"{source}: this is a TorchScript archive (torch.jit.save), not a state_dict; "
                "save the weights with torch.save(model.state_dict(), 'weights.pth')"
            )
        big_endian = False
        if prefix + "byteorder" in names:
            order = _read_member(archive, prefix + "byteorder", 16, budget).strip()
            if order not in (b"little", b"big"):
                raise CheckpointError(f"{source}: unknown byte order record {order!r:.20}")
            big_endian = order == b"big"
        storages: dict[str, _Storage] = {}

        def load_storage(pid: Any) -> _Storage:
            dtype, key, numel, _view = _storage_id(pid, source)
            if key in storages:
                return storages[key]
            member = f"{prefix}data/{key}"
            expected = numel * _itemsize(dtype)
            try:
                raw = _read_member(archive, member, expected, budget)
            except KeyError:
                raise CheckpointError(f"{source}: storage {member} is missing from the archive") \
                    from None
            if len(raw) < expected:
                raise CheckpointError(
                    f"{source}: storage {member} holds {len(raw)} bytes, expected {expected}; "
                    "the file is truncated or corrupt"
                )
            arr = _decode_storage(raw[:expected], dtype, numel, big_endian)
            storages[key] = _Storage(key, dtype, numel, arr)
            return storages[key]

        pickle_bytes = archive.getinfo(pkl).file_size
        data = _read_member(archive, pkl, pickle_bytes, budget)
        obj = _RestrictedUnpickler(io.BytesIO(data), source, load_storage).load()
        return obj, "zip", {s.dtype for s in storages.values()}


def _read_legacy(path: Path, budget: _Budget) -> tuple[Any, str, set[str]]:
    source = budget.source
    size = path.stat().st_size
    with open(path, "rb") as f:
        def header() -> Any:
            return _RestrictedUnpickler(f, source).load()

        try:
            magic = header()
        except CheckpointError:
            raise
        except Exception:
            magic = None
        if magic != _LEGACY_MAGIC:
            raise CheckpointError(
                f"{source}: not a PyTorch checkpoint (neither the zip format nor the legacy "
                "format of torch.save); expected a .pth/.pt file holding a state_dict"
            )
        version = header()
        if version != _LEGACY_PROTOCOL:
            raise CheckpointError(f"{source}: unsupported legacy protocol version {version!r}")
        header()  # sys_info: the data is little-endian whatever it says
        roots: dict[str, _Storage] = {}
        views: dict[str, _Storage] = {}

        def load_storage(pid: Any) -> _Storage:
            dtype, key, numel, view = _storage_id(pid, source)
            root = roots.get(key)
            if root is None:
                root = roots[key] = _Storage(key, dtype, numel)
            if view is None:
                return root
            vkey, offset, size = view
            if vkey not in views:
                views[vkey] = _Storage(vkey, dtype, size, offset=offset, root=root)
            return views[vkey]

        obj = _RestrictedUnpickler(f, source, load_storage).load()
        keys = header()
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise CheckpointError(f"{source}: malformed list of storage keys")
        for key in keys:
            storage = roots.get(key)
            if storage is None:
                raise CheckpointError(f"{source}: storage {key!r} is listed but never used")
            head = f.read(8)
            if len(head) < 8:
                raise _truncated(source, key)
            (numel,) = struct.unpack("<q", head)
            if numel != storage.numel:
                raise CheckpointError(
                    f"{source}: storage {key!r} records {numel} elements, the tensor table "
                    f"says {storage.numel}; the file is corrupt"
                )
            nbytes = numel * _itemsize(storage.dtype)
            if nbytes > size - f.tell():
                raise _truncated(source, key)
            budget.spend(nbytes, f"storage {key!r}")
            raw = f.read(nbytes)
            if len(raw) < nbytes:
                raise _truncated(source, key)
            storage.data = _decode_storage(raw, storage.dtype, numel, big_endian=False)
        unread = [k for k, s in roots.items() if s.data is None]
        if unread:
            raise CheckpointError(f"{source}: storages {unread[:3]} have no data in the file")
        return obj, "legacy", {s.dtype for s in roots.values()}


def _truncated(source: str, key: str) -> CheckpointError:
    return CheckpointError(
        f"{source}: the file ends inside the data of storage {key!r}; it is truncated "
        "(download or copy it again)"
    )


def _read(path: Path) -> tuple[Any, str, set[str]]:
    source = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{source}: the file is empty")
    budget = _Budget(path.stat().st_size, source)
    try:
        if head == b"PK\x03\x04":
            obj, fmt, dtypes = _read_zip(path, budget)
        else:
            obj, fmt, dtypes = _read_legacy(path, budget)
        return _materialise(obj, budget), fmt, dtypes
    except CheckpointError:
        raise
    except (EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, TypeError,
            IndexError, KeyError, AttributeError, struct.error, OverflowError,
            MemoryError, RecursionError) as exc:
        raise CheckpointError(
            f"{source}: cannot read the checkpoint ({type(exc).__name__}: {str(exc)[:120]}); "
            "the file is truncated or corrupt"
        ) from None
    except OSError as exc:  # zlib / zipfile CRC errors surface as OSError subclasses too
        raise CheckpointError(f"{source}: cannot read the checkpoint ({exc})") from None


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, np.ndarray) for v in obj.values())
    )


def extract_state_dict(obj: Any, source: str = "checkpoint") -> tuple[dict[str, np.ndarray],
                                                                      str | None]:
    """Find the tensor ``state_dict`` in a loaded checkpoint object.

    Accepts a bare ``{name: tensor}`` dict, or a dict that wraps one under a
    common key (``state_dict``, ``model_state_dict``, ``model``, ``net``,
    ``network``, ``weights``) next to bookkeeping such as ``epoch``. Returns the
    dict and the wrapper key (``None`` for a bare state_dict).
    """
    if _is_state_dict(obj):
        return dict(obj), None
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                return dict(obj[key]), key
        found = sorted(str(k) for k in obj)[:8]
        raise CheckpointError(
            f"{source}: no state_dict found: the top-level dict has keys {found} and none of "
            f"them ({', '.join(_WRAPPER_KEYS)}) holds a dict of tensors"
        )
    what = "a single tensor" if isinstance(obj, np.ndarray) else f"a {type(obj).__name__}"
    raise CheckpointError(
        f"{source}: the checkpoint holds {what}, not a state_dict "
        "(a dict of tensors); save the weights with torch.save(model.state_dict(), path)"
    )


def load_checkpoint(path: PathLike) -> Checkpoint:
    """Read a PyTorch ``.pth`` checkpoint (zip or legacy format) without PyTorch.

    Raises :class:`FileNotFoundError` when the file is missing and
    :class:`~pipdetect.errors.CheckpointError` when it is not a tensor checkpoint,
    is truncated or corrupt, or its pickle asks for anything beyond tensors and
    plain containers (nothing from the file is ever executed).
    """
    path = Path(path)
    obj, fmt, dtypes = _read(path)
    state, wrapper = extract_state_dict(obj, str(path))
    return Checkpoint(state_dict=state, format=fmt, wrapper_key=wrapper,
                      dtypes=tuple(sorted(dtypes)))


def load_state_dict(path: PathLike) -> dict[str, np.ndarray]:
    """Just the ``{name: array}`` dict of :func:`load_checkpoint`."""
    return load_checkpoint(path).state_dict
