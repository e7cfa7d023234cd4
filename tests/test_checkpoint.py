"""Tests of pipdetect.convert.checkpoint: reading torch.save files safely, without torch.

Files are written by the real ``torch.save`` where torch is installed (tests
marked ``torch``); the hostile and damaged files are crafted by hand.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipdetect.convert import checkpoint as ckpt_mod
from pipdetect.convert.checkpoint import extract_state_dict, load_checkpoint
from pipdetect.errors import CheckpointError, PipdetectError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _torch() -> Any:
    return pytest.importorskip("torch", reason="needs PyTorch to write real checkpoints")


class _Payload:
    """Pickles into a call of ``func(*args)``: what a malicious checkpoint contains."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _zip_checkpoint(path: Path, pickled: bytes, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickled)
        z.writestr("archive/version", b"3\n")
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


def _legacy_checkpoint(path: Path, pickled: bytes, tail: bytes = b"") -> Path:
    head = b"".join(pickle.dumps(v, protocol=2) for v in (
        LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}))
    path.write_bytes(head + pickled + tail)
    return path


def _exec_payload(marker: Path) -> _Payload:
    return _Payload(exec, f"open({str(marker)!r}, 'w').close()")


# --- hostile files: nothing may run -------------------------------------------------------

@pytest.mark.parametrize("layout", ["zip", "legacy"])
@pytest.mark.parametrize("nested", [False, True])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path: Path, layout: str,
                                                      nested: bool) -> None:
    marker = tmp_path / "pwned"
    payload = _exec_payload(marker)
    obj = {"conv1.weight": payload} if nested else payload
    pickled = pickle.dumps(obj, protocol=2)
    path = tmp_path / "evil.pth"
    if layout == "zip":
        _zip_checkpoint(path, pickled)
    else:
        _legacy_checkpoint(path, pickled)
    with pytest.raises(CheckpointError, match=r"refuse.*run code") as info:
        load_checkpoint(path)
    assert ".exec`" in str(info.value)  # `__builtin__.exec` in protocol 2
    assert not marker.exists()
    # the payload is real: an ordinary unpickler would have run it
    pickle.loads(pickled)
    assert marker.exists()


@pytest.mark.parametrize("func", ["os.system", "subprocess.Popen", "builtins.eval",
                                  "torch.load", "numpy.load", "torch.nn.Module"])
def test_every_other_global_is_refused(tmp_path: Path, func: str) -> None:
    module, name = func.rsplit(".", 1)
    pickled = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x04\x00\x00\x00echo\x85R."
    with pytest.raises(CheckpointError, match=func.replace(".", r"\.")):
        load_checkpoint(_zip_checkpoint(tmp_path / "evil.pth", pickled))


def test_build_cannot_modify_the_loaders_functions(tmp_path: Path) -> None:
    # GLOBAL an allowed function, then BUILD a state onto it (would set its __defaults__)
    pickled = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n"
               b"N}X\x0c\x00\x00\x00__defaults__)s\x86b.")
    before = ckpt_mod._rebuild_tensor_v2.__defaults__
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(_zip_checkpoint(tmp_path / "evil.pth", pickled))
    assert ckpt_mod._rebuild_tensor_v2.__defaults__ == before


def test_torchscript_archive_is_explained(tmp_path: Path) -> None:
    path = _zip_checkpoint(tmp_path / "s.pt", pickle.dumps({}, protocol=2),
                           {"archive/code/__torch__.py": b"", "archive/constants.pkl": b""})
    with pytest.raises(CheckpointError, match="TorchScript"):
        load_checkpoint(path)


# --- damaged or foreign files --------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pth")


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"hello, this is not a checkpoint", "not a PyTorch checkpoint"),
    (b"PK\x03\x04" + b"\x00" * 40, "truncated or corrupt"),
    (pickle.dumps({"a": 1}, protocol=2), "not a PyTorch checkpoint"),
])
def test_foreign_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert isinstance(info.value, (PipdetectError, ValueError))


def test_zip_without_tensors_is_not_a_state_dict(tmp_path: Path) -> None:
    path = _zip_checkpoint(tmp_path / "x.pth", pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(CheckpointError, match="holds a list, not a state_dict"):
        load_checkpoint(path)


def test_storage_reference_outside_its_storage(tmp_path: Path) -> None:
    # a tensor of 10 floats over a 4-float storage
    pickled = (b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n"
               b"((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000"
               b"X\x03\x00\x00\x00cpuK\x04tQK\x00K\n\x85K\x01\x85\x89NtRs.")
    path = _zip_checkpoint(tmp_path / "x.pth", pickled,
                           {"archive/data/0": np.arange(4, dtype="<f4").tobytes()})
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    # the same record with a short storage file
    path = _zip_checkpoint(tmp_path / "y.pth", pickled.replace(b"K\n\x85", b"K\x04\x85"),
                           {"archive/data/0": b"\x00" * 10})
    with pytest.raises(CheckpointError, match="holds 10 bytes, expected 16"):
        load_checkpoint(path)
    path = _zip_checkpoint(tmp_path / "z.pth", pickled.replace(b"K\n\x85", b"K\x04\x85"),
                           {"archive/data/0": np.arange(4, dtype="<f4").tobytes()})
    assert load_checkpoint(path).state_dict["w"].tolist() == [0, 1, 2, 3]


# --- real torch.save files -----------------------------------------------------------------

def _save(torch: Any, obj: Any, path: Path, legacy: bool) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.torch
@pytest.mark.parametrize("legacy", [False, True])
def test_module_state_dict_round_trip(tmp_path: Path, legacy: bool) -> None:
    torch = _torch()
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                              torch.nn.Conv2d(4, 2, 1, bias=False))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    state = net.state_dict()
    ck = load_checkpoint(_save(torch, state, tmp_path / "m.pth", legacy))
    assert ck.format == ("legacy" if legacy else "zip")
    assert ck.wrapper_key is None
    assert list(ck.state_dict) == list(state)
    for key, tensor in state.items():
        got = ck.state_dict[key]
        assert got.dtype == tensor.numpy().dtype and got.shape == tuple(tensor.shape)
        np.testing.assert_array_equal(got, tensor.numpy())
    assert ck.state_dict["1.num_batches_tracked"].dtype == np.int64
    assert ck.dtypes == ("float32", "int64")


_DTYPES = ["float32", "float16", "float64", "bfloat16", "int64", "int32", "uint8", "bool"]


@pytest.mark.torch
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dtype=st.sampled_from(_DTYPES),
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    legacy=st.booleans(),
    data=st.data(),
)
def test_views_strides_and_dtypes(tmp_path: Path, dtype: str, shape: list[int], legacy: bool,
                                  data: st.DataObject) -> None:
    torch = _torch()
    base = (torch.randn(*shape, dtype=torch.float64) * 100).to(getattr(torch, dtype))
    perm = data.draw(st.permutations(range(len(shape))))
    view = base.permute(*perm)
    axis = data.draw(st.integers(0, len(shape) - 1))
    start = data.draw(st.integers(0, view.shape[axis] - 1))
    step = data.draw(st.integers(1, 3))
    view = view.narrow(axis, start, view.shape[axis] - start)[(slice(None),) * axis
                                                             + (slice(None, None, step),)]
    path = _save(torch, {"view": view, "scalar": base.flatten()[-1]}, tmp_path / "v.pth", legacy)
    state = load_checkpoint(path).state_dict
    scalar = base.flatten()[-1]
    if dtype == "bfloat16":  # widened on load: NumPy has no bfloat16
        view, scalar = view.float(), scalar.float()
    np.testing.assert_array_equal(state["view"], view.numpy())
    assert state["view"].dtype == view.numpy().dtype
    assert state["view"].flags.c_contiguous
    assert state["scalar"].shape == ()
    assert state["scalar"].dtype == scalar.numpy().dtype
    assert state["scalar"] == scalar.numpy()


@pytest.mark.torch
@pytest.mark.parametrize("legacy", [False, True])
def test_wrapped_and_prefixed_state_dicts(tmp_path: Path, legacy: bool) -> None:
    torch = _torch()
    inner = {"module.conv.weight": torch.ones(2, 2), "module.conv.bias": torch.zeros(2)}
    obj = {"epoch": 59, "optimizer": {"lr": 1e-4}, "state_dict": inner}
    ck = load_checkpoint(_save(torch, obj, tmp_path / "w.pth", legacy))
    assert ck.wrapper_key == "state_dict"
    assert sorted(ck.state_dict) == sorted(inner)  # the prefix is the converter's business


@pytest.mark.torch
@pytest.mark.parametrize("legacy", [False, True])
def test_parameters_are_read_as_arrays(tmp_path: Path, legacy: bool) -> None:
    torch = _torch()
    obj = {"w": torch.nn.Parameter(torch.arange(3.0))}
    state = load_checkpoint(_save(torch, obj, tmp_path / "p.pth", legacy)).state_dict
    assert state["w"].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.torch
@pytest.mark.parametrize("legacy", [False, True])
def test_pickled_module_is_refused(tmp_path: Path, legacy: bool) -> None:
    torch = _torch()
    path = _save(torch, torch.nn.Linear(2, 2), tmp_path / "m.pth", legacy)
    with pytest.raises(CheckpointError, match=r"torch\.nn\.modules\.linear\.Linear"):
        load_checkpoint(path)


@pytest.mark.torch
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_truncated_files(tmp_path: Path, legacy: bool, keep: float) -> None:
    torch = _torch()
    torch.manual_seed(0)
    path = _save(torch, {"a": torch.randn(64, 64), "b": torch.randn(100)}, tmp_path / "t.pth",
                 legacy)
    data = path.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(cut)


@pytest.mark.torch
def test_legacy_storage_count_mismatch(tmp_path: Path) -> None:
    torch = _torch()
    path = _save(torch, {"a": torch.arange(4.0)}, tmp_path / "l.pth", legacy=True)
    data = bytearray(path.read_bytes())
    tail = struct.pack("<q", 4) + np.arange(4, dtype="<f4").tobytes()
    assert data.endswith(tail)
    data[-len(tail):-len(tail) + 8] = struct.pack("<q", 5)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="records 5 elements"):
        load_checkpoint(path)


# --- extract_state_dict ---------------------------------------------------------------------

def test_extract_state_dict_variants() -> None:
    arr = np.zeros(2, np.float32)
    assert extract_state_dict({"a": arr}) == ({"a": arr}, None)
    assert extract_state_dict({"model": {"a": arr}, "epoch": 3})[1] == "model"
    with pytest.raises(CheckpointError, match="no state_dict found"):
        extract_state_dict({"epoch": 3, "optimizer": {"lr": 0.1}})
    with pytest.raises(CheckpointError, match="a single tensor"):
        extract_state_dict(arr)
    with pytest.raises(CheckpointError, match="holds a str"):
        extract_state_dict("x")


def test_header_pickles_cannot_reference_storages(tmp_path: Path) -> None:
    buf = io.BytesIO()
    buf.write(b"\x80\x02X\x01\x00\x00\x00xQ.")  # BINPERSID in the magic-number slot
    path = tmp_path / "h.pth"
    path.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


# --- memory bombs (issue 20): refused within seconds, before the memory is spent -----------

from hostilefiles import shared_nest, tensor_pickle, zip_checkpoint  # noqa: E402

FOUR_FLOATS = {"archive/data/0": np.arange(4, dtype="<f4").tobytes()}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_shared_references_are_not_expanded(tmp_path: Path, layout: str) -> None:
    """A few hundred bytes whose lists share (and hold) themselves: 2^45 leaves if expanded."""
    pickled = shared_nest(45)
    assert len(pickled) < 500
    path = tmp_path / "nest.pth"
    if layout == "zip":
        _zip_checkpoint(path, pickled)
    else:
        _legacy_checkpoint(path, pickled, tail=pickle.dumps([], protocol=2))
    with pytest.raises(CheckpointError, match=r"not a state_dict|no state_dict"):
        load_checkpoint(path)


def test_shared_tensors_stay_shared(tmp_path: Path) -> None:
    """Memoising keeps a tensor referenced twice as one array, and a self-holding list
    comes back holding itself (nothing is lost by not expanding)."""
    a = []
    a.append(a)
    obj = ckpt_mod._materialise({"x": a, "y": (a, a)}, ckpt_mod._Budget(0, "t"))
    assert obj["x"][0] is obj["x"] and obj["y"][0] is obj["x"]


@pytest.mark.timeout(10)
def test_stride_0_tensors_cannot_exceed_what_the_file_holds(tmp_path: Path) -> None:
    """Each tensor views 4 floats with stride 0 as 16000^2 (1 GiB): under the per-tensor cap,
    but all of them together are bounded by the file's size."""
    big = ((16_000, 16_000), (0, 0), "0", 4)
    path = zip_checkpoint(tmp_path / "s0.pth", tensor_pickle({f"w{i}": big for i in range(3)}),
                          FOUR_FLOATS)
    with pytest.raises(CheckpointError, match=r"tensor of shape \(16000, 16000\) would take "
                                              r"1,024,000,000 bytes"):
        load_checkpoint(path)
    small = ((64, 64), (0, 0), "0", 4)  # 16 kB each: fine
    path = zip_checkpoint(tmp_path / "ok.pth", tensor_pickle({"a": small, "b": small}),
                          FOUR_FLOATS)
    assert load_checkpoint(path).state_dict["b"].shape == (64, 64)


@pytest.mark.timeout(10)
def test_zip_members_are_not_inflated_beyond_what_is_needed(tmp_path: Path) -> None:
    """A 256 MiB storage of zeros deflated to a quarter MiB: refused before inflating."""
    numel = 64 * 1024**2
    pickled = tensor_pickle({"w": ((numel,), (1,), "0", numel)})
    path = zip_checkpoint(tmp_path / "bomb.pth", pickled, deflated={"archive/data/0": 4 * numel})
    assert path.stat().st_size < 2 * 1024**2
    with pytest.raises(CheckpointError, match="zip member archive/data/0 would take"):
        load_checkpoint(path)
    # the pickle member too
    with zipfile.ZipFile(tmp_path / "pkl.pth", "w") as z:
        info = zipfile.ZipInfo("archive/data.pkl")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as f:
            for _ in range(256):
                f.write(b"\0" * (1 << 20))
    with pytest.raises(CheckpointError, match=r"data\.pkl would take"):
        load_checkpoint(tmp_path / "pkl.pth")


@pytest.mark.timeout(10)
def test_legacy_storages_larger_than_the_file_are_refused_unread(tmp_path: Path) -> None:
    numel = 2**31 - 1
    pickled = tensor_pickle({"w": ((numel,), (1,), "0", numel)})
    tail = pickle.dumps(["0"], protocol=2) + struct.pack("<q", numel) + b"\0" * 64
    path = _legacy_checkpoint(tmp_path / "legacy.pth", pickled, tail=tail)
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


dims = st.integers(0, 2**31 - 1) | st.integers(0, 70)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tensors=st.dictionaries(
    st.text("abcw.", min_size=1, max_size=6),
    st.tuples(st.lists(dims, max_size=4), st.lists(dims, max_size=4), st.sampled_from("01"),
              st.integers(0, 2**31 - 1)),
    min_size=1, max_size=4))
def test_random_tensor_records_give_arrays_or_a_checkpoint_error(tmp_path: Path,
                                                                 tensors: dict) -> None:
    """Any sizes, strides and storage sizes over two small storages: the right arrays or a
    CheckpointError, never another exception, never more memory than the file allows."""
    records = {name: (tuple(size), tuple(stride), key, numel)
               for name, (size, stride, key, numel) in tensors.items()}
    storages = {"archive/data/0": np.arange(16, dtype="<f4").tobytes(),
                "archive/data/1": np.arange(100, dtype="<f4").tobytes()}
    path = zip_checkpoint(tmp_path / "fuzz.pth", tensor_pickle(records), storages)
    try:
        state = load_checkpoint(path).state_dict
    except CheckpointError:
        return
    lengths = {"0": 16, "1": 100}
    first: dict[str, int] = {}  # a storage is read once, with the size its first record gives
    for name, (size, stride, key, numel) in records.items():
        got = state[name]
        assert got.shape == size and got.dtype == np.float32
        flat = np.arange(lengths[key], dtype=np.float32)[: first.setdefault(key, numel)]
        if got.size:  # the loader checked the bounds: the same view, by NumPy
            want = np.lib.stride_tricks.as_strided(flat, size, [4 * s for s in stride])
            np.testing.assert_array_equal(got, want)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1,
                      max_size=4), layout=st.sampled_from(["zip", "legacy"]))
def test_damaged_pickles_give_a_state_dict_or_a_checkpoint_error(tmp_path: Path, flips: list,
                                                                  layout: str) -> None:
    pickled = bytearray(tensor_pickle({"a.w": ((4, 4), (4, 1), "0", 16),
                                       "b": ((16,), (1,), "0", 16)}))
    for at, value in flips:
        pickled[at % len(pickled)] = value
    path = tmp_path / "damaged.pth"
    if layout == "zip":
        zip_checkpoint(path, bytes(pickled), FOUR_FLOATS | {
            "archive/data/0": np.arange(16, dtype="<f4").tobytes()})
    else:
        tail = pickle.dumps(["0"], protocol=2) + struct.pack("<q", 16)
        _legacy_checkpoint(path, bytes(pickled),
                           tail=tail + np.arange(16, dtype="<f4").tobytes())
    try:
        state = load_checkpoint(path).state_dict
    except CheckpointError:
        return
    assert all(isinstance(v, np.ndarray) for v in state.values())
