"""Tests of pipdetect.convert: checkpoint -> ONNX, parity with a PyTorch reference, the CLI.

Parity (docs/design.md §11, kind 1): random weights *and* random BatchNorm
statistics in the PyTorch reference of PIP-Net (tests/torch_reference.py),
saved with the real ``torch.save`` in zip and legacy formats, with and without
the ``module.`` prefix, converted, run with onnxruntime, compared map by map
(max abs difference / max abs value < 1e-4) and after decoding (< 1e-3 px on
a 256-px crop). The deep backbones run at a 64-px input to keep the tests fast
(the architecture does not depend on the input size); ResNet-18 runs at 256.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import load as onnx_load

from pipdetect.cli import main as pipdetect_main
from pipdetect.convert import convert_checkpoint
from pipdetect.convert.cli import main as convert_main
from pipdetect.convert.graph import HEAD_PREFIX
from pipdetect.crop import preset_crop_policy
from pipdetect.decode import PIPDecoder
from pipdetect.errors import CheckpointError
from pipdetect.model import OUTPUT_NAMES, ModelSpec, load_model
from pipdetect.presets import get_preset, load_meanface
from reference_decode import at_selected_cells

CROP_PX = 256.0


@pytest.fixture(scope="module")
def ref() -> Any:
    """tests/torch_reference.py, once PyTorch is known to be there."""
    torch = pytest.importorskip("torch", reason="parity tests need PyTorch (pip install torch)")
    torch.set_num_threads(2)
    import torch_reference

    return torch_reference


def _save(ref: Any, state: dict[str, Any], path: Path, *, legacy: bool = False,
          prefix: bool = False) -> Path:
    import torch

    if prefix:
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


def _meanface_file(path: Path, num_landmarks: int, seed: int = 0) -> Path:
    points = np.random.default_rng(seed).uniform(0.1, 0.9, (num_landmarks, 2))
    path.write_text(" ".join(f"{v:.6f}" for v in points.ravel()))
    return path


def _assert_maps_close(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    """The converted model's outputs against the reference network's maps; its neighbour
    outputs against those maps read at the cells the model's own ``cls`` selects."""
    for name, g, e in zip(OUTPUT_NAMES, got, expected, strict=True):
        if name in ("nb_x", "nb_y"):
            assert g.ndim == 2, f"{name}: a converted model gives it at the selected cells"
            e = at_selected_cells(got[0], e)
        assert g.shape == e.shape, name
        scale = float(np.abs(e).max())
        assert scale > 0, name
        rel = float(np.abs(g - e).max()) / scale
        assert rel < 1e-4, f"{name}: max abs diff {rel:.2e} of the map's scale {scale:.3g}"


def _assert_landmarks_close(spec: ModelSpec, got: list[np.ndarray],
                            expected: list[np.ndarray]) -> None:
    decode = PIPDecoder(spec.meanface, spec.num_nb)
    points_got, _ = decode(*got)
    points_exp, _ = decode(*expected)
    diff_px = np.abs(points_got - points_exp).max() * CROP_PX
    assert diff_px < 1e-3, f"decoded landmarks differ by {diff_px:.2e} px"


# --- parity -----------------------------------------------------------------------------------

PARITY_CASES = [
    # backbone, input size, landmarks, num_nb, dataset preset (None: custom mean face)
    ("resnet18", 256, 98, 10, "WFLW"),
    ("resnet50", 64, 12, 4, None),
    ("resnet101", 64, 12, 4, None),
    ("mobilenet_v2", 64, 12, 4, None),
]


@pytest.mark.torch
@pytest.mark.parametrize("backbone, size, L, K, dataset", PARITY_CASES,
                         ids=[c[0] for c in PARITY_CASES])
def test_parity_zip_legacy_with_and_without_module_prefix(
        ref: Any, tmp_path: Path, backbone: str, size: int, L: int, K: int,
        dataset: str | None) -> None:
    net = ref.make_pipnet(backbone, L, K, seed=1)
    state = net.state_dict()
    image = np.random.default_rng(2).standard_normal((2, 3, size, size)).astype(np.float32)
    expected = ref.run(net, image)
    source: dict[str, Any] = ({"dataset": dataset} if dataset else
                              {"meanface": _meanface_file(tmp_path / "mf.txt", L)})
    # Every file format on ResNet-18; each larger backbone once (the reader does not
    # depend on the backbone, and the big ones dominate the suite's time).
    formats = ([(False, False), (False, True), (True, False), (True, True)]
               if backbone == "resnet18" else [(False, False)])
    for legacy, prefix in formats:
        ckpt = _save(ref, state, tmp_path / "epoch59.pth", legacy=legacy, prefix=prefix)
        out = tmp_path / "model.onnx"
        spec = convert_checkpoint(ckpt, out, backbone=backbone, input_size=size, **source)
        assert spec.provenance["checkpoint_format"] == ("legacy" if legacy else "zip")
        assert spec.provenance["module_prefix_stripped"] is prefix
        model = load_model(out, threads=2)
        assert (model.spec.num_landmarks, model.spec.num_nb) == (L, K)
        got = model.run(image)
        _assert_maps_close(got, expected)
        _assert_landmarks_close(model.spec, got, expected)
        # dynamic batch: one image alone gives the same maps
        single = model.run(image[1:])
        _assert_maps_close(single, [e[1:] for e in expected])


@pytest.mark.torch
@pytest.mark.parametrize("backbone, stride, size", [
    ("resnet18", 16, 64), ("resnet18", 64, 128), ("resnet18", 128, 256), ("resnet50", 64, 128),
])
def test_parity_other_strides(ref: Any, tmp_path: Path, backbone: str, stride: int,
                              size: int) -> None:
    L, K = 10, 3
    net = ref.make_pipnet(backbone, L, K, net_stride=stride, seed=3)
    ckpt = _save(ref, net.state_dict(), tmp_path / "s.pth")
    spec = convert_checkpoint(ckpt, tmp_path / "s.onnx", backbone=backbone, stride=stride,
                              input_size=size, meanface=_meanface_file(tmp_path / "m.txt", L))
    assert spec.stride == stride and spec.map_size == (size // stride, size // stride)
    image = np.random.default_rng(4).standard_normal((1, 3, size, size)).astype(np.float32)
    expected = ref.run(net, image)
    got = load_model(tmp_path / "s.onnx", threads=2).run(image)
    _assert_maps_close(got, expected)
    _assert_landmarks_close(spec, got, expected)


@pytest.mark.torch
def test_half_precision_and_wrapped_checkpoint(ref: Any, tmp_path: Path) -> None:
    import torch

    L, K = 68, 10
    net = ref.make_pipnet("resnet18", L, K, seed=5).half()
    state = net.state_dict()
    ckpt = tmp_path / "half.pth"
    torch.save({"epoch": 59, "state_dict": state}, ckpt)
    spec = convert_checkpoint(ckpt, tmp_path / "h.onnx", backbone="resnet18", dataset="300W",
                              input_size=64)
    assert spec.provenance["state_dict_key"] == "state_dict"
    assert "float16" in spec.provenance["checkpoint_dtypes"]
    net = net.float()  # the same (half-representable) weights in float32
    image = np.random.default_rng(6).standard_normal((1, 3, 64, 64)).astype(np.float32)
    got = load_model(tmp_path / "h.onnx", threads=2).run(image)
    expected = ref.run(net, image)
    _assert_maps_close(got, expected)
    _assert_landmarks_close(spec, got, expected)


# --- metadata -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def r18_68(ref: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A ResNet-18 PIP-Net with 68 landmarks and num_nb 10 (300W-shaped), saved once."""
    state = ref.make_pipnet("resnet18", 68, 10, seed=7).state_dict()
    path = _save(ref, state, tmp_path_factory.mktemp("ckpt") / "pip_32_16_60_r18.pth")
    return path, state


@pytest.mark.torch
def test_metadata_of_an_official_preset(r18_68: tuple[Path, dict[str, Any]],
                                        tmp_path: Path) -> None:
    ckpt, _ = r18_68
    out = tmp_path / "m.onnx"
    spec = convert_checkpoint(ckpt, out, backbone="resnet18", dataset="300w")
    preset = get_preset("300W")
    loaded = load_model(out).spec
    assert loaded.to_dict() == spec.to_dict()
    assert spec.name == "pipnet-r18-300w"
    assert (spec.dataset, spec.backbone, spec.scheme) == ("300W", "resnet18", preset.scheme)
    assert (spec.input_size, spec.stride) == ((256, 256), 32)
    np.testing.assert_array_equal(spec.meanface, load_meanface("300W"))
    assert spec.crop_policy == preset_crop_policy("300W").to_dict()
    assert spec.accuracy["metric"] == "NME"
    assert spec.accuracy["value"] == preset.nme["resnet18"]
    assert spec.accuracy["normalisation"] == preset.nme_normalisation
    assert "research use only" in spec.license.lower()
    assert "MIT" in spec.license
    prov = spec.provenance
    assert prov["source_file"] == ckpt.name
    assert prov["source_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert prov["source_bytes"] == ckpt.stat().st_size
    assert prov["module_prefix_stripped"] is False
    assert prov["converter_version"] and prov["converted_at"].endswith("Z")


@pytest.mark.torch
def test_metadata_of_a_custom_model(ref: Any, tmp_path: Path) -> None:
    L = 20
    ckpt = _save(ref, ref.make_pipnet("mobilenet_v2", L, 5, seed=8).state_dict(),
                 tmp_path / "my_finetune.pth")
    mf = _meanface_file(tmp_path / "meanface.txt", L, seed=9)
    out = tmp_path / "mine.onnx"
    spec = convert_checkpoint(ckpt, out, backbone="mobilenetv2", meanface=mf, num_nb=5,
                              crop_policy="WFLW")
    assert (spec.name, spec.dataset, spec.scheme, spec.accuracy) == ("mine", None, "custom", {})
    assert spec.backbone == "mobilenet_v2"
    assert spec.license.startswith("unknown")
    np.testing.assert_allclose(spec.meanface, load_meanface(mf))
    assert spec.crop_policy == preset_crop_policy("WFLW").to_dict()
    assert load_model(out).spec.name == "mine"


@pytest.mark.torch
def test_source_date_epoch_makes_output_reproducible(r18_68: tuple[Path, dict[str, Any]],
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    ckpt, _ = r18_68
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    convert_checkpoint(ckpt, a, backbone="resnet18", dataset="300W", input_size=64)
    convert_checkpoint(ckpt, b, backbone="resnet18", dataset="300W", input_size=64)
    assert a.read_bytes() == b.read_bytes()
    assert load_model(a).spec.provenance["converted_at"] == "2023-11-14T22:13:20Z"


@pytest.mark.torch
def test_file_stores_plain_convolutions_at_4_bytes_per_parameter(
        r18_68: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """A converted file is as small as its weights: every convolution a plain ``Conv``
    (no Winograd MatMul/DepthToSpace form, which doubled ResNet-18's file to 98 MB), and
    the file within 1 % of 4 bytes per fp32 parameter of the BatchNorm-folded network
    (each convolution's weights plus one bias per output channel), metadata included."""
    ckpt, state = r18_68
    out = tmp_path / "r18.onnx"
    spec = convert_checkpoint(ckpt, out, backbone="resnet18", dataset="300W")
    assert spec.provenance["convolutions"] == "direct"
    model = onnx_load(out)
    ops = {n.op_type for n in model.graph.node if not n.name.startswith(HEAD_PREFIX)}
    assert "Conv" in ops and not ops & {"MatMul", "DepthToSpace", "SpaceToDepth", "Einsum"}
    # the neighbour heads at the selected cells: one MatMul each, their 1x1 weights as stored
    heads = [n for n in model.graph.node if n.name.startswith(HEAD_PREFIX)]
    assert sorted(n.name for n in heads if n.op_type == "MatMul") == [
        f"{HEAD_PREFIX}nb_x/product", f"{HEAD_PREFIX}nb_y/product"]
    assert {i.data_type for i in model.graph.initializer} <= {1, 7}  # FLOAT (and INT64 shapes)
    floats = sum(int(np.prod(i.dims)) for i in model.graph.initializer if i.data_type == 1)
    convs = [v for v in state.values() if v.dim() == 4]  # BatchNorm folded: one bias each
    assert floats == sum(int(w.numel()) + int(w.shape[0]) for w in convs)
    size = out.stat().st_size
    assert 4 * floats <= size <= 1.01 * 4 * floats, (size, floats)


# --- checkpoints that do not match ---------------------------------------------------------------

@pytest.mark.torch
def test_wrong_backbone_is_named(ref: Any, r18_68: tuple[Path, dict[str, Any]],
                                 tmp_path: Path) -> None:
    ckpt, _ = r18_68
    with pytest.raises(CheckpointError, match=r"from resnet18, not resnet50.*--backbone resnet18"):
        convert_checkpoint(ckpt, tmp_path / "x.onnx", backbone="resnet50", dataset="300W")
    r50 = _save(ref, ref.make_pipnet("resnet50", 68, 10).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(CheckpointError, match=r"from resnet50, not resnet18"):
        convert_checkpoint(r50, tmp_path / "x.onnx", backbone="resnet18", dataset="300W")
    with pytest.raises(CheckpointError, match=r"from resnet50, not resnet101"):
        convert_checkpoint(r50, tmp_path / "x.onnx", backbone="resnet101", dataset="300W")
    with pytest.raises(CheckpointError, match=r"from resnet50, not mobilenet_v2"):
        convert_checkpoint(r50, tmp_path / "x.onnx", backbone="mobilenet_v2", dataset="300W")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.torch
def test_landmark_count_and_num_nb_mismatches(r18_68: tuple[Path, dict[str, Any]],
                                              tmp_path: Path) -> None:
    ckpt, _ = r18_68
    out = tmp_path / "x.onnx"
    with pytest.raises(CheckpointError, match=r"68 landmarks.*WFLW has 98.*--dataset 300W"):
        convert_checkpoint(ckpt, out, backbone="resnet18", dataset="WFLW")
    with pytest.raises(CheckpointError, match=r"num_nb 10 .*not 5"):
        convert_checkpoint(ckpt, out, backbone="resnet18", dataset="300W", num_nb=5)
    mf = _meanface_file(tmp_path / "mf.txt", 29)
    with pytest.raises(CheckpointError, match=r"68 landmarks.*mean face .*has 29"):
        convert_checkpoint(ckpt, out, backbone="resnet18", meanface=mf)
    assert not out.exists()


@pytest.mark.torch
@pytest.mark.parametrize("edit, message", [
    ("drop", r"1 missing: layer3\.1\.bn2\.running_var"),
    ("extra", r"1 unused: fc\.weight"),
    ("shape", r"wrong shape: layer2\.0\.conv1\.weight \(128, 64, 1, 1\) "
              r"\(expected \(128, 64, 3, 3\)\)"),
    ("int", r"not floating point: x_layer\.bias \(int64\)"),
    ("no_heads", r"no PIP-Net heads"),
])
def test_every_weight_is_checked(ref: Any, r18_68: tuple[Path, dict[str, Any]], tmp_path: Path,
                                 edit: str, message: str) -> None:
    import torch

    _, state = r18_68
    state = dict(state)
    if edit == "drop":
        del state["layer3.1.bn2.running_var"]
    elif edit == "extra":
        state["fc.weight"] = torch.zeros(1000, 512)
    elif edit == "shape":
        state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    elif edit == "int":
        state["x_layer.bias"] = torch.zeros(68, dtype=torch.int64)
    else:
        del state["cls_layer.weight"]
    ckpt = _save(ref, state, tmp_path / "e.pth")
    with pytest.raises(CheckpointError, match=message):
        convert_checkpoint(ckpt, tmp_path / "e.onnx", backbone="resnet18", dataset="300W")


@pytest.mark.torch
def test_stride_mismatch_is_explained(ref: Any, tmp_path: Path) -> None:
    ckpt = _save(ref, ref.make_pipnet("resnet18", 68, 10, net_stride=64).state_dict(),
                 tmp_path / "s64.pth")
    with pytest.raises(CheckpointError, match=r"net_stride 64, not 32 \(pass --stride 64\)"):
        convert_checkpoint(ckpt, tmp_path / "x.onnx", backbone="resnet18", dataset="300W")


@pytest.mark.torch
def test_truncated_checkpoint(r18_68: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    ckpt, _ = r18_68
    cut = tmp_path / "cut.pth"
    cut.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        convert_checkpoint(cut, tmp_path / "x.onnx", backbone="resnet18", dataset="300W")


@pytest.mark.torch
def test_overwrites_output_atomically_and_refuses_to_overwrite_input(
        r18_68: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    ckpt, _ = r18_68
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    convert_checkpoint(ckpt, out, backbone="resnet18", dataset="300W", input_size=64)
    assert load_model(out).spec.input_size == (64, 64)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    with pytest.raises(ValueError, match="is the checkpoint itself"):
        convert_checkpoint(ckpt, ckpt, backbone="resnet18", dataset="300W")


def _failing_save(calls: list[str], error: BaseException) -> Any:
    """An ``onnx.save_model`` that writes the first 1000 bytes, then fails (disk full, Ctrl-C)."""
    def save(model: Any, path: str, *args: Any, **kwargs: Any) -> None:
        calls.append(path)
        Path(path).write_bytes(model.SerializeToString()[:1000])
        raise error

    return save


@pytest.mark.torch
@pytest.mark.parametrize("error, status", [(OSError(28, "No space left on device"), 2),
                                           (KeyboardInterrupt(), 130)], ids=["disk", "ctrl-c"])
def test_a_conversion_that_fails_midway_leaves_the_old_file_and_no_temporary_one(
        r18_68: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, error: BaseException, status: int) -> None:
    import onnx

    ckpt, _ = r18_68
    before = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    old, new = tmp_path / "old.onnx", tmp_path / "new.onnx"
    old.write_bytes(b"the previous, good model")
    calls: list[str] = []
    monkeypatch.setattr(onnx, "save_model", _failing_save(calls, error))
    for out in (old, new):
        assert convert_main([str(ckpt), "--backbone", "resnet18", "--dataset", "300W",
                             "--input-size", "64", "-o", str(out)]) == status
        err = capsys.readouterr().err
        assert ("No space left" if status == 2 else "interrupted") in err
        assert "Traceback" not in err
    assert len(calls) == 2 and all(Path(c).parent == tmp_path for c in calls)  # beside it
    assert old.read_bytes() == b"the previous, good model"
    assert sorted(tmp_path.iterdir()) == [old]  # no new file, no temporary file
    with pytest.raises(type(error)):  # the library alike
        convert_checkpoint(ckpt, old, backbone="resnet18", dataset="300W", input_size=64)
    assert sorted(tmp_path.iterdir()) == [old] and old.read_bytes().startswith(b"the previous")
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before


def test_no_output_may_be_an_input(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused before any work: the checkpoint, a link to it, a file the conversion reads,
    and the int8 copy's name; also a folder or a missing folder as -o."""
    import pipdetect.convert as convert

    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("converted before checking the outputs")

    monkeypatch.setattr(convert, "convert_checkpoint", must_not_run)
    ckpt = tmp_path / "m-int8.pth"
    ckpt.write_bytes(b"a checkpoint")
    (tmp_path / "hard.onnx").hardlink_to(ckpt)
    (tmp_path / "sym.onnx").symlink_to(ckpt)
    info = tmp_path / "info.json"
    info.write_text("{}")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"a photo")
    base = [str(ckpt), "--backbone", "resnet18", "--dataset", "WFLW"]
    quantize = ["--quantize", "int8", "--calibration", str(photos)]
    cases = [
        ([*base, "-o", str(ckpt)], f"the output {ckpt} is the input {ckpt}"),
        ([*base, "-o", str(tmp_path / "hard.onnx")], "hard.onnx links to the input"),
        ([*base, "-o", str(tmp_path / "sym.onnx")], "sym.onnx links to the input"),
        ([*base, "--info", str(info), "-o", str(info)], f"is the input {info}"),
        ([*base, "-o", str(tmp_path / "m.pth"), *quantize],  # its int8 copy: m-int8.pth
         f"the output {ckpt} is the input {ckpt}"),
        ([*base, "-o", str(photos / "a.jpg"), *quantize], "is the input"),
        ([*base, "-o", str(tmp_path)], "is a folder"),
        ([*base, "-o", str(tmp_path / "no" / "m.onnx")], "output folder does not exist"),
    ]
    files = sorted(p for p in tmp_path.rglob("*"))
    for argv, message in cases:
        assert convert_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err, err
        assert "refusing to overwrite an input" in err or "folder" in err
    assert ckpt.read_bytes() == b"a checkpoint" and sorted(tmp_path.rglob("*")) == files
    monkeypatch.undo()
    with pytest.raises(ValueError, match="is the checkpoint itself"):  # the library: links too
        convert_checkpoint(ckpt, tmp_path / "hard.onnx", backbone="resnet18", dataset="WFLW")


# --- argument errors (no torch needed) -------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    ({"dataset": "WFLX"}, ValueError, r"unknown dataset preset 'WFLX'.*WFLW"),
    ({}, ValueError, "neither"),
    ({"dataset": "WFLW", "meanface": "mf.txt"}, ValueError, "both"),
    ({"dataset": "WFLW", "backbone": "vgg16"}, ValueError, r"unknown backbone 'vgg16'"),
    ({"dataset": "WFLW", "input_size": 250}, ValueError, r"multiple of the stride 32"),
    ({"dataset": "WFLW", "backbone": "mobilenet_v2", "stride": 64}, ValueError,
     r"no net_stride 64"),
    ({"dataset": "WFLW", "crop_policy": "nope"}, ValueError, r"crop policy"),
    ({"dataset": "WFLW"}, FileNotFoundError, "checkpoint not found"),
])
def test_argument_errors(tmp_path: Path, kwargs: dict[str, Any], error: type,
                         message: str) -> None:
    kwargs = {"backbone": "resnet18", **kwargs}
    with pytest.raises(error, match=message):
        convert_checkpoint(tmp_path / "missing.pth", tmp_path / "o.onnx", **kwargs)


def test_missing_onnx_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    with pytest.raises(ImportError, match=r"pip install '\.\[convert\]'"):
        convert_checkpoint(tmp_path / "a.pth", tmp_path / "a.onnx", backbone="resnet18",
                           dataset="WFLW")
    assert convert_main([str(tmp_path / "a.pth"), "--backbone", "resnet18", "--dataset", "WFLW",
                         "-o", str(tmp_path / "a.onnx")]) == 2
    assert "pip install '.[convert]'" in capsys.readouterr().err


def test_import_pipdetect_does_not_import_onnx() -> None:
    code = "import sys, pipdetect, pipdetect.model; print('onnx' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


# --- command line -------------------------------------------------------------------------------

def test_cli_help_is_complete(capsys: pytest.CaptureFixture[str]) -> None:
    assert convert_main(["--help"]) == 0
    text = capsys.readouterr().out
    for needle in ("--backbone", "--dataset", "--meanface", "--num-nb", "--name", "--stride",
                   "--input-size", "--crop-policy", "-o", "resnet18", "resnet50", "resnet101",
                   "mobilenet_v2", "WFLW", "300W-CelebA", "300W-COFW-WFLW", "LaPa",
                   "pip install '.[convert]'", "research use only"):
        assert needle in text, needle
    # the examples keep their line breaks (continued commands stay on their own lines)
    assert "-o r18.onnx \\\n      --quantize int8 --calibration photos/" in text
    assert "--info info.json \\\n      --name pipnet-lite0-300w" in text


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required"),
    (["x.pth", "--backbone", "resnet18"], "one of the arguments --dataset --meanface"),
    (["x.pth", "--backbone", "resnet18", "--dataset", "WFLW", "--meanface", "m.txt"],
     "not allowed with"),
    (["x.pth", "--backbone", "resnet18", "--dataset", "nope"], "unknown dataset preset 'nope'"),
    (["missing.pth", "--backbone", "resnet18", "--dataset", "wflw"], "checkpoint not found"),
    (["x.pth", "--backbone", "resnet18", "--dataset", "WFLW", "--stride", "x"], "invalid int"),
])
def test_cli_errors_exit_2_without_traceback(argv: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert convert_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_cli_process_error_has_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipdetect", "convert", str(tmp_path / "none.pth"),
         "--backbone", "resnet18", "--dataset", "WFLW", "-o", str(tmp_path / "o.onnx")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "pipdetect convert: error: checkpoint not found" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.torch
def test_cli_converts_through_the_main_entry_point(r18_68: tuple[Path, dict[str, Any]],
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt, _ = r18_68
    out = tmp_path / "pipnet.onnx"
    assert pipdetect_main(["convert", str(ckpt), "--backbone", "R18", "--dataset", "300w",
                           "--input-size", "64", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "68 landmarks" in text and "research use only" in text
    spec = load_model(out).spec
    assert (spec.name, spec.input_size) == ("pipnet-r18-300w", (64, 64))
    # default output name, custom mean face, explicit name and crop policy
    monkeypatch.chdir(tmp_path)
    mf = _meanface_file(tmp_path / "mf.txt", 68)
    assert convert_main([str(ckpt), "--backbone", "resnet18", "--meanface", str(mf),
                         "--num-nb", "10", "--name", "my-model", "--input-size", "64",
                         "--crop-policy", "wflw"]) == 0
    spec = load_model(tmp_path / "my-model.onnx").spec
    assert (spec.name, spec.scheme, spec.dataset) == ("my-model", "custom", None)
    assert spec.crop_policy == preset_crop_policy("WFLW").to_dict()
    # without --name a custom model is named after the -o file (not its temporary file)
    assert convert_main([str(ckpt), "--backbone", "resnet18", "--meanface", "300W",
                         "--input-size", "64", "-o", str(tmp_path / "mine.onnx")]) == 0
    assert load_model(tmp_path / "mine.onnx").spec.name == "mine"
    # a mismatch through the CLI: exit 2, the reason on stderr
    capsys.readouterr()
    assert convert_main([str(ckpt), "--backbone", "resnet50", "--dataset", "300W"]) == 2
    err = capsys.readouterr().err
    assert "not resnet50" in err and "Traceback" not in err
