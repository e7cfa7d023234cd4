"""int8 quantisation (pipdetect.convert.quantize) on small hand-built models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelfactory import make_spec
from pipdetect import LandmarkDetector
from pipdetect.convert.quantize import calibration_batch, quantize_model
from pipdetect.errors import ModelFormatError, NoFaceError
from pipdetect.model import INPUT_NAME, OUTPUT_NAMES, load_model


def _trunk_model(path: Path, meanface: np.ndarray, seed: int = 0) -> Path:
    """Pool to the 8x8 grid, a 3x3 conv trunk with ReLU, then five random 1x1 heads."""
    rng = np.random.default_rng(seed)
    spec = make_spec(meanface)
    L, K = spec.num_landmarks, spec.num_nb
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (16, 3, 3, 3)).astype(np.float32), "t_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "t_b"),
    ]
    nodes = [
        helper.make_node("AveragePool", [INPUT_NAME], ["pool"], kernel_shape=[32, 32],
                         strides=[32, 32]),
        helper.make_node("Conv", ["pool", "t_w", "t_b"], ["t"], pads=[1, 1, 1, 1],
                         name="trunk"),
        helper.make_node("Relu", ["t"], ["feat"], name="trunk_relu"),
    ]
    outputs = []
    for head, c in zip(OUTPUT_NAMES, (L, L, L, L * K, L * K), strict=True):
        inits += [
            numpy_helper.from_array(rng.normal(0, 0.3, (c, 16, 1, 1)).astype(np.float32),
                                    f"{head}_w"),
            numpy_helper.from_array(rng.normal(0, 0.1, c).astype(np.float32), f"{head}_b"),
        ]
        nodes.append(helper.make_node("Conv", ["feat", f"{head}_w", f"{head}_b"], [head],
                                      name=f"{head}_layer"))
        outputs.append(helper.make_tensor_value_info(head, TensorProto.FLOAT, ["b", c, 8, 8]))
    graph = helper.make_graph(
        nodes, "trunk",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["b", 3, 256, 256])],
        outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in spec.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory: pytest.TempPathFactory, wflw_meanface: np.ndarray) -> Path:
    return _trunk_model(tmp_path_factory.mktemp("q") / "fp32.onnx", wflw_meanface)


@pytest.fixture(scope="module")
def int8_model(fp32_model: Path, astronaut: np.ndarray) -> Path:
    out = fp32_model.with_name("int8.onnx")
    quantize_model(fp32_model, out, [astronaut, astronaut[:, ::-1]])
    return out


def test_result_is_a_pipdetect_model_with_the_quantisation_recorded(fp32_model, int8_model):
    fp32, int8 = load_model(fp32_model).spec, load_model(int8_model).spec
    assert int8.name == fp32.name + "-int8"
    q = int8.provenance["quantization"]
    assert q["type"] == "int8" and q["heads"] == "fp32" and q["calibration_crops"] == 4
    np.testing.assert_array_equal(int8.meanface, fp32.meanface)
    assert int8.crop_policy == fp32.crop_policy


def test_trunk_is_quantised_and_heads_stay_float(int8_model):
    graph = onnx.load(str(int8_model)).graph
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    produced_by = {o: n for n in graph.node for o in n.output}
    trunk = next(n for n in graph.node if n.name == "trunk")
    assert produced_by[trunk.input[1]].op_type == "DequantizeLinear"  # int8 weights
    float_inits = {i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT}
    for head in OUTPUT_NAMES:
        conv = produced_by[head]
        assert conv.op_type == "Conv" and conv.input[1] in float_inits


def test_outputs_stay_close_to_fp32(fp32_model, int8_model, astronaut):
    batch = calibration_batch(fp32_model, [astronaut])
    a = load_model(fp32_model).run(batch)
    b = load_model(int8_model).run(batch)
    for fa, fb in zip(a, b, strict=True):
        spread = float(fa.max() - fa.min())
        assert np.abs(fa - fb).max() < 0.05 * spread


def test_refuses_a_winograd_model(fp32_model, tmp_path, astronaut):
    """A file an older converter wrote in Winograd form (provenance records it) is
    refused with the way out: convert the checkpoint again (plain convolutions)."""
    spec = load_model(fp32_model).spec
    model = onnx.load(str(fp32_model))
    del model.metadata_props[:]
    old = dataclasses.replace(spec, provenance={
        **spec.provenance, "convolutions": {"winograd": {"F(4x4,3x3)": 1}}})
    for key, value in old.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(tmp_path / "wino.onnx"))
    with pytest.raises(ValueError, match=r"Winograd.*convert the checkpoint again"):
        quantize_model(tmp_path / "wino.onnx", tmp_path / "w8.onnx", [astronaut])


def test_all_int8_heads_option(fp32_model, tmp_path, astronaut):
    out = quantize_model(fp32_model, tmp_path / "all.onnx", [astronaut], keep_heads_fp32=False)
    assert out.provenance["quantization"]["heads"] == "int8"
    graph = onnx.load(str(tmp_path / "all.onnx")).graph
    produced_by = {o: n for n in graph.node for o in n.output}
    conv = produced_by[OUTPUT_NAMES[0]]
    if conv.op_type == "DequantizeLinear":  # output quantised too
        conv = produced_by[produced_by[conv.input[0]].input[0]]
    assert produced_by[conv.input[1]].op_type == "DequantizeLinear"
    LandmarkDetector(tmp_path / "all.onnx")  # loads


def test_calibration_batch_folder_mirror_and_limit(fp32_model, tmp_path, astronaut):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.png"), astronaut)
    (folder / "notes.txt").write_text("not an image")
    batch = calibration_batch(fp32_model, [folder])
    assert batch.shape == (6, 3, 256, 256) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[3], batch[0][:, :, ::-1])  # mirror of the first crop
    assert len(calibration_batch(fp32_model, [folder], max_faces=2, mirror=False)) == 2


def test_no_face_in_calibration_photos(fp32_model, tmp_path):
    with pytest.raises(NoFaceError, match="calibration"):
        quantize_model(fp32_model, tmp_path / "x.onnx", [np.zeros((200, 200, 3), np.uint8)])
    assert not (tmp_path / "x.onnx").exists()


def test_refuses_bad_inputs(fp32_model, int8_model, tmp_path, astronaut):
    with pytest.raises(ValueError, match="input model itself"):
        quantize_model(fp32_model, fp32_model, [astronaut])
    with pytest.raises(ValueError, match="already quantised"):
        quantize_model(int8_model, tmp_path / "again.onnx", [astronaut])
    with pytest.raises(FileNotFoundError, match="output folder"):
        quantize_model(fp32_model, tmp_path / "missing" / "x.onnx", [astronaut])
    not_a_model = tmp_path / "bad.onnx"
    not_a_model.write_bytes(b"nope")
    with pytest.raises(ModelFormatError):
        quantize_model(not_a_model, tmp_path / "y.onnx", [astronaut])
    with pytest.raises(ValueError, match="max_faces"):
        calibration_batch(fp32_model, [astronaut], max_faces=0)


# ------------------------------------------------------------- pipdetect convert --quantize
def test_cli_quantize_writes_both_models(monkeypatch, tmp_path, fp32_model, capsys):
    import pipdetect.convert as convert
    from pipdetect.convert.cli import main

    def fake_convert(checkpoint, output, **kwargs):  # the conversion itself: test_convert.py
        Path(output).write_bytes(fp32_model.read_bytes())
        return load_model(output).spec

    monkeypatch.setattr(convert, "convert_checkpoint", fake_convert)
    from conftest import EXAMPLE_IMAGE

    out = tmp_path / "r18.onnx"
    code = main(["epoch59.pth", "--backbone", "resnet18", "--dataset", "WFLW", "-o", str(out),
                 "--quantize", "int8", "--calibration", str(EXAMPLE_IMAGE)])
    assert code == 0, capsys.readouterr().err
    spec = load_model(tmp_path / "r18-int8.onnx").spec
    assert spec.provenance["quantization"]["calibration_crops"] == 2
    assert "r18-int8.onnx" in capsys.readouterr().out


def test_cli_quantize_needs_calibration_photos(monkeypatch, tmp_path, capsys):
    import pipdetect.convert as convert
    from pipdetect.convert.cli import main

    def must_not_run(*args, **kwargs):
        raise AssertionError("converted before checking the arguments")

    monkeypatch.setattr(convert, "convert_checkpoint", must_not_run)
    code = main(["epoch59.pth", "--backbone", "resnet18", "--dataset", "WFLW",
                 "-o", str(tmp_path / "m.onnx"), "--quantize", "int8"])
    assert code == 2
    assert "--calibration" in capsys.readouterr().err
