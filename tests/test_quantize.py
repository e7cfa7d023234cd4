"""int8 quantisation (pipdetect.convert.quantize) on small hand-built models.

Two kinds of network: ``trunk`` (pool to the 8x8 grid, one 3x3 convolution on the
3 image channels) and ``deep`` (pool to 16x16, three ReLU convolutions, one with
stride 2, on 32 channels). Besides onnxruntime on this CPU, the tests run the int8
graph in NumPy (:func:`simulate`) with the two integer arithmetics onnxruntime's
x86 kernels use: exact 32-bit sums (VNNI, AMX; Arm64 too) and the AVX2 /
AVX-512-without-VNNI ``vpmaddubsw`` one, which adds each pair of uint8 x int8
products in saturating int16. So the failure of full 8-bit weights on CPUs without
VNNI shows on every CPU, and the 7-bit default is shown not to have it.
"""

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
from pipdetect._cpu import u8s8_saturates
from pipdetect.convert.quantize import calibration_batch, quantize_model
from pipdetect.errors import ModelFormatError, NoFaceError
from pipdetect.model import INPUT_NAME, OUTPUT_NAMES, load_model


def _trunk_model(path: Path, meanface: np.ndarray, seed: int = 0, kind: str = "trunk") -> Path:
    """``trunk``: pool to the 8x8 grid, a 3x3 conv with ReLU, then five random 1x1 heads.
    ``deep``: pool to 16x16, 3x3 conv 3->32, 3x3 conv 32->32 stride 2, 1x1 conv 32->32
    (ReLU after each, He-initialised), then the heads."""
    rng = np.random.default_rng(seed)
    spec = make_spec(meanface)
    L, K = spec.num_landmarks, spec.num_nb
    if kind == "trunk":
        pool, layers = 32, [("trunk", 16, 3, 3, 1, 0.5)]
    else:
        pool, layers = 16, [("conv1", 32, 3, 3, 1, None), ("conv2", 32, 32, 3, 2, None),
                            ("conv3", 32, 32, 1, 1, None)]
    inits = []
    nodes = [helper.make_node("AveragePool", [INPUT_NAME], ["pool"], kernel_shape=[pool, pool],
                              strides=[pool, pool])]
    x = "pool"
    for name, cout, cin, k, stride, sd in layers:
        sd = sd if sd is not None else float(np.sqrt(2.0 / (cin * k * k)))
        inits += [
            numpy_helper.from_array(rng.normal(0, sd, (cout, cin, k, k)).astype(np.float32),
                                    f"{name}_w"),
            numpy_helper.from_array(rng.normal(0, 0.1, cout).astype(np.float32), f"{name}_b"),
        ]
        nodes += [
            helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_c"],
                             pads=[k // 2] * 4, strides=[stride, stride], name=name),
            helper.make_node("Relu", [f"{name}_c"], [f"{name}_r"], name=f"{name}_relu"),
        ]
        x = f"{name}_r"
    cin = layers[-1][1]
    outputs = []
    for head, c in zip(OUTPUT_NAMES, (L, L, L, L * K, L * K), strict=True):
        inits += [
            numpy_helper.from_array(rng.normal(0, 0.3, (c, cin, 1, 1)).astype(np.float32),
                                    f"{head}_w"),
            numpy_helper.from_array(rng.normal(0, 0.1, c).astype(np.float32), f"{head}_b"),
        ]
        nodes.append(helper.make_node("Conv", [x, f"{head}_w", f"{head}_b"], [head],
                                      name=f"{head}_layer"))
        outputs.append(helper.make_tensor_value_info(head, TensorProto.FLOAT, ["b", c, 8, 8]))
    graph = helper.make_graph(
        nodes, kind,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["b", 3, 256, 256])],
        outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in spec.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


# ------------------------------------------------ the int8 graph in NumPy, two arithmetics
def _conv_int(q: np.ndarray, zp: int, w: np.ndarray, stride: int, pad: int,
              saturate: bool) -> np.ndarray:
    """Integer convolution of uint8 ``q`` (N, C, H, W; zero point ``zp``) by int8 ``w``
    (O, C, k, k) -> int64 (N, O, H', W'), as onnxruntime's x86 u8s8 kernels compute it:
    sum of q * w over channels and taps, minus zp * sum(w). ``saturate``: each pair of
    neighbouring input channels' products at a tap is first added and clipped to int16,
    as ``vpmaddubsw`` does on AVX2 / AVX-512 without VNNI (onnxruntime packs the
    weights so that a pair is two neighbouring input channels)."""
    n, c, h, wd = q.shape
    o, _, k, _ = w.shape
    if c % 2:  # an odd channel count is padded with a zero weight
        q = np.concatenate([q, np.full((n, 1, h, wd), zp, q.dtype)], axis=1)
        w = np.concatenate([w, np.zeros((o, 1, k, k), w.dtype)], axis=1)
        c += 1
    qp = np.pad(q.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)),
                constant_values=zp)
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    acc = np.zeros((n, o, ho, wo), np.int64)
    wi = w.astype(np.int64)
    for dy in range(k):
        for dx in range(k):
            patch = qp[:, :, dy:dy + stride * ho:stride, dx:dx + stride * wo:stride]
            prod = np.einsum("nchw,oc->nochw", patch, wi[:, :, dy, dx])
            pairs = prod[:, :, 0::2] + prod[:, :, 1::2]
            if saturate:
                pairs = np.clip(pairs, -32768, 32767)
            acc += pairs.sum(axis=2)
    return acc - zp * wi.sum(axis=(1, 2, 3))[None, :, None, None]


def simulate(path: Path, x: np.ndarray, *, saturate: bool) -> list[np.ndarray]:
    """Run a quantised pipdetect test model (QDQ graph) in NumPy: every Conv fed by two
    DequantizeLinear nodes (uint8 activation, int8 weights) in integer arithmetic (exact,
    or with ``saturate``: as on x86 CPUs without VNNI), everything else in float."""
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    ints: dict[str, tuple[np.ndarray, float, int]] = {}  # quantised tensors: q, scale, zp
    env: dict[str, np.ndarray] = {INPUT_NAME: x.astype(np.float64)}

    def get(name: str) -> np.ndarray:
        return env[name] if name in env else inits[name].astype(np.float64)

    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        op, ins = node.op_type, list(node.input)
        if op == "AveragePool":
            k = attrs["kernel_shape"][0]
            v = get(ins[0])
            n, c, h, w = v.shape
            out = v.reshape(n, c, h // k, k, w // k, k).mean(axis=(3, 5))
        elif op == "QuantizeLinear":
            scale, zp = float(get(ins[1])), inits[ins[2]]
            q = np.clip(np.rint(get(ins[0]) / scale) + int(zp), 0, 255).astype(np.uint8)
            ints[node.output[0]] = (q, scale, int(zp))
            out = (q.astype(np.float64) - int(zp)) * scale
        elif op == "DequantizeLinear":
            if ins[0] in ints:
                q, scale, zp = ints[ins[0]]
                ints[node.output[0]] = (q, scale, zp)
                out = (q.astype(np.float64) - zp) * scale
            else:  # a constant: weights (per channel) or bias
                q, scale = inits[ins[0]], get(ins[1])
                zp = inits[ins[2]].astype(np.float64) if len(ins) > 2 else 0.0
                axis = attrs.get("axis", 1) if q.ndim > 1 else 0
                shape = [1] * q.ndim
                shape[axis] = -1
                out = (q - np.reshape(zp, shape if np.ndim(zp) else ())) * np.reshape(
                    scale, shape if np.ndim(scale) else ())
        elif op == "Conv":
            stride, pad = attrs.get("strides", [1, 1])[0], attrs.get("pads", [0] * 4)[0]
            wnode = producer.get(ins[1])
            if ins[0] in ints and wnode is not None and wnode.op_type == "DequantizeLinear":
                q, sx, zp = ints[ins[0]]
                wq = inits[wnode.input[0]]
                sw = inits[wnode.input[1]].astype(np.float64)
                acc = _conv_int(q, zp, wq, stride, pad, saturate)
                out = acc * (sx * sw)[None, :, None, None]
            else:
                v, w = get(ins[0]), get(ins[1])
                assert w.shape[2] == 1, "float convolutions here are the 1x1 heads"
                out = np.einsum("nchw,oc->nohw", v[:, :, ::stride, ::stride], w[:, :, 0, 0])
            if len(ins) > 2:
                out = out + get(ins[2])[None, :, None, None]
        elif op == "Relu":
            out = np.maximum(get(ins[0]), 0)
        else:
            raise AssertionError(f"simulate() does not know {op}")
        env[node.output[0]] = out
    return [env[name].astype(np.float32) for name in OUTPUT_NAMES]


def _off(reference: list[np.ndarray], got: list[np.ndarray]) -> float:
    """Largest deviation of any output, as a fraction of that output's range."""
    return max(float(np.abs(a - b).max() / (a.max() - a.min()))
               for a, b in zip(reference, got, strict=True))


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory: pytest.TempPathFactory, wflw_meanface: np.ndarray) -> Path:
    return _trunk_model(tmp_path_factory.mktemp("q") / "fp32.onnx", wflw_meanface)


@pytest.fixture(scope="module")
def int8_model(fp32_model: Path, astronaut: np.ndarray) -> Path:
    out = fp32_model.with_name("int8.onnx")
    quantize_model(fp32_model, out, [astronaut, astronaut[:, ::-1]])
    return out


@pytest.fixture(scope="module")
def models(fp32_model: Path, int8_model: Path, astronaut: np.ndarray,
           wflw_meanface: np.ndarray) -> dict[tuple[str, bool], tuple[Path, Path]]:
    """(kind, reduce_range) -> (fp32 model, int8 model), both kinds, both weight ranges."""
    calib = [astronaut, astronaut[:, ::-1]]
    out = {("trunk", True): (fp32_model, int8_model)}
    deep = _trunk_model(fp32_model.with_name("deep.onnx"), wflw_meanface, kind="deep")
    for kind, fp32 in (("trunk", fp32_model), ("deep", deep)):
        for reduce_range in (True, False):
            if (kind, reduce_range) not in out:
                int8 = fp32.with_name(f"{kind}-{'7bit' if reduce_range else '8bit'}.onnx")
                quantize_model(fp32, int8, calib, reduce_range=reduce_range)
                out[kind, reduce_range] = (fp32, int8)
    return out


def _int8_weights(path: Path) -> list[np.ndarray]:
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    return [inits[n.input[0]] for n in graph.node if n.op_type == "DequantizeLinear"
            and n.input[0] in inits and inits[n.input[0]].dtype == np.int8]


def test_result_is_a_pipdetect_model_with_the_quantisation_recorded(fp32_model, int8_model):
    fp32, int8 = load_model(fp32_model).spec, load_model(int8_model).spec
    assert int8.name == fp32.name + "-int8"
    q = int8.provenance["quantization"]
    assert q["type"] == "int8" and q["heads"] == "fp32" and q["calibration_crops"] == 4
    assert q["reduce_range"] is True and q["weight_range"] == [-64, 64]
    assert "7-bit" in q["weights"] and q["accurate_on"].startswith("every CPU")
    np.testing.assert_array_equal(int8.meanface, fp32.meanface)
    assert int8.crop_policy == fp32.crop_policy


@pytest.mark.parametrize("kind", ["trunk", "deep"])
def test_weights_use_the_7_bit_range_by_default(models, kind):
    """Default: every int8 weight in [-64, 64], each output channel reaching the edge,
    so no pair of uint8 x int8 products exceeds 255 * 64 * 2 = 32640 (< 32767):
    onnxruntime's int16-saturating x86 kernels cannot clip. ``reduce_range=False``:
    the full [-127, 127], pairs up to 64770."""
    for reduce_range, edge in ((True, 64), (False, 127)):
        weights = _int8_weights(models[kind, reduce_range][1])
        assert len(weights) == (1 if kind == "trunk" else 3)
        for w in weights:
            per_channel = np.abs(w.astype(np.int32)).reshape(len(w), -1).max(axis=1)
            assert (per_channel == edge).all(), (reduce_range, per_channel)
        recorded = load_model(models[kind, reduce_range][1]).spec.provenance["quantization"]
        assert recorded["reduce_range"] is reduce_range
        assert recorded["weight_range"] == [-edge, edge]


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


@pytest.mark.parametrize("reduce_range", [
    pytest.param(True, id="7-bit"),
    pytest.param(False, id="8-bit", marks=pytest.mark.skipif(
        u8s8_saturates() is None,
        reason="CPU flags unknown here: cannot tell whether int8 kernels saturate")),
])
@pytest.mark.parametrize("kind", ["trunk", "deep"])
def test_outputs_stay_close_to_fp32(models, kind, reduce_range, astronaut):
    """onnxruntime on this CPU. 7-bit weights (default): within 5 % of each output's
    range on every CPU. Full 8-bit weights: within 5 % only where the int8 kernels do
    not saturate (VNNI, AMX, Arm); on an x86 CPU without VNNI this asserts the failure
    (measured on an AVX2-only EPYC: 15.6 % off against 1.1 % with 7-bit weights)."""
    fp32, int8 = models[kind, reduce_range]
    batch = calibration_batch(fp32, [astronaut])
    off = _off(load_model(fp32).run(batch), load_model(int8).run(batch))
    saturates = u8s8_saturates()
    if reduce_range or saturates is False:
        assert off < 0.05
    else:
        assert off > 0.05, "8-bit weights were expected to saturate on a CPU without VNNI"


@pytest.mark.parametrize("kind", ["trunk", "deep"])
def test_simulated_int8_arithmetic_matches_onnxruntime(models, kind, astronaut):
    """The NumPy model of the int8 graph (simulate) agrees with onnxruntime for the 7-bit
    model (whatever the CPU: there, exact and saturating arithmetic are one), to within
    one output quantisation step or so; so its saturating mode can stand for a CPU
    without VNNI in the next test."""
    fp32, int8 = models[kind, True]
    x = calibration_batch(fp32, [astronaut])
    exact = simulate(int8, x, saturate=False)
    for a, b in zip(exact, simulate(int8, x, saturate=True), strict=True):
        np.testing.assert_array_equal(a, b)
    assert _off(load_model(int8).run(x), exact) < 0.01


@pytest.mark.parametrize("kind", ["trunk", "deep"])
def test_8_bit_weights_fail_without_vnni_and_7_bit_do_not(models, kind, astronaut):
    """Both weight ranges, both arithmetics, on any CPU: with exact 32-bit sums (VNNI,
    AMX, Arm) both stay within 5 % of fp32; with AVX2's int16-saturating pair sums the
    8-bit model's outputs are more than 5 % of their range off (the failure an
    AVX2-only CPU shows), the 7-bit model's are not changed at all."""
    fp32 = models[kind, True][0]
    x = calibration_batch(fp32, [astronaut])
    reference = load_model(fp32).run(x)
    off = {(rr, sat): _off(reference, simulate(models[kind, rr][1], x, saturate=sat))
           for rr in (True, False) for sat in (True, False)}
    assert off[True, True] == off[True, False] < 0.05
    assert off[False, False] < 0.05
    assert off[False, True] > 0.05, off


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


def test_loading_8_bit_weights_warns_where_they_saturate(models, tmp_path, monkeypatch):
    """LandmarkDetector / load_model warn, saying what to do, when a full-range int8 file
    is loaded on an x86 CPU without VNNI; never for the 7-bit default, never elsewhere."""
    import shutil
    import warnings

    import pipdetect._cpu as cpu

    for n, (saturates, reduce_range, warns) in enumerate(
            [(True, False, True), (True, True, False), (False, False, False),
             (None, False, False)]):
        monkeypatch.setattr(cpu, "u8s8_saturates", lambda s=saturates: s)
        path = tmp_path / f"copy{n}.onnx"  # a new file: not a cached session
        shutil.copy(models["trunk", reduce_range][1], path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            LandmarkDetector(path)
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        if warns:
            assert len(messages) == 1 and "no VNNI" in messages[0], messages
            assert "Re-quantise" in messages[0] and "--quantize int8" in messages[0]
        else:
            assert not messages, messages


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


def test_first_convolutions_can_stay_fp32(models, tmp_path, astronaut):
    """keep_first_fp32=N: the first N convolutions from the input keep float weights and
    are recorded; the next one is quantised; a bad N is refused before any work."""
    fp32_model = models["deep", True][0]  # three convolutions before the heads
    spec = quantize_model(fp32_model, tmp_path / "first.onnx", [astronaut], keep_first_fp32=1)
    graph = onnx.load(str(tmp_path / "first.onnx")).graph
    produced_by = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    first, second = convs[0], convs[1]
    assert spec.provenance["quantization"]["fp32_first_convolutions"] == [first.name]
    assert first.input[1] not in produced_by  # a float initializer, used as it is
    assert produced_by[second.input[1]].op_type == "DequantizeLinear"
    plain = quantize_model(fp32_model, tmp_path / "plain.onnx", [astronaut])
    assert plain.provenance["quantization"]["fp32_first_convolutions"] == []
    for bad in (-1, 1.5, True, "2", 10_000):
        with pytest.raises(ValueError, match="keep_first_fp32"):
            quantize_model(fp32_model, tmp_path / "bad.onnx", [astronaut], keep_first_fp32=bad)
    assert not (tmp_path / "bad.onnx").exists()


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


@pytest.mark.parametrize("failing", ["save", "calibration"])
def test_cli_quantize_writes_both_models_or_neither(monkeypatch, tmp_path, fp32_model, capsys,
                                                   failing):
    """The int8 copy fails midway (its file cut, or no face to calibrate on): neither the fp32
    model nor the int8 one is replaced, and no temporary file is left."""
    import pipdetect.convert as convert
    from pipdetect.convert.cli import main

    written = []

    def fake_convert(checkpoint, output, **kwargs):  # the conversion itself: test_convert.py
        Path(output).write_bytes(fp32_model.read_bytes())
        written.append(Path(output))
        return load_model(output).spec

    def cut_save(model, path, *args, **kwargs):
        Path(path).write_bytes(model.SerializeToString()[:500])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(convert, "convert_checkpoint", fake_convert)
    calibration = tmp_path / "calibration.png"
    if failing == "save":
        monkeypatch.setattr(onnx, "save_model", cut_save)
        from conftest import EXAMPLE_IMAGE

        calibration.write_bytes(EXAMPLE_IMAGE.read_bytes())
    else:
        cv2.imwrite(str(calibration), np.zeros((200, 200, 3), np.uint8))
    out, out8 = tmp_path / "r18.onnx", tmp_path / "r18-int8.onnx"
    out.write_bytes(b"previous fp32")
    out8.write_bytes(b"previous int8")
    code = main(["epoch59.pth", "--backbone", "resnet18", "--dataset", "WFLW", "-o", str(out),
                 "--quantize", "int8", "--calibration", str(calibration)])
    err = capsys.readouterr().err
    assert code == 2 and ("No space left" if failing == "save" else "no face found") in err
    assert written and written[0].parent == tmp_path and written[0] != out  # done beside it
    assert (out.read_bytes(), out8.read_bytes()) == (b"previous fp32", b"previous int8")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "calibration.png", "r18-int8.onnx", "r18.onnx"]


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
