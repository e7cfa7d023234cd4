"""pipdetect.convert.winograd: the Winograd form computes the same convolution, and undoes.

Single-convolution graphs with random shapes and weights (hypothesis), run by
onnxruntime in both forms and compared with each other and with a NumPy direct
convolution; graphs that must not be rewritten are checked to come back unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from pipdetect.convert.winograd import choose_tile, to_direct, to_winograd


def _conv_model(w: np.ndarray, b: np.ndarray | None, height: int, width: int,
                **attrs: Any) -> onnx.ModelProto:
    """x (batch, C, H, W) -> Conv(w, b, **attrs) -> Relu -> y."""
    attrs.setdefault("pads", [1, 1, 1, 1])
    inputs = ["x", "w"] + (["b"] if b is not None else [])
    inits = [numpy_helper.from_array(w, "w")]
    if b is not None:
        inits.append(numpy_helper.from_array(b, "b"))
    nodes = [helper.make_node("Conv", inputs, ["c"], name="conv", **attrs),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    cin = w.shape[1] * int(attrs.get("group", 1))
    graph = helper.make_graph(
        nodes, "one-conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", cin, height, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", w.shape[0], None, None])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _numpy_conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Direct 3x3 convolution, stride 1, zero padding 1, float64, then ReLU."""
    n, _, h, wd = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("nchw,kc->nkhw", xp[:, :, dy:dy + h, dx:dx + wd], w[:, :, dy, dx])
    return np.maximum(out + b.reshape(1, -1, 1, 1), 0.0)


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


@settings(max_examples=25, deadline=None)
@given(cin=st.integers(1, 24), cout=st.integers(1, 24),
       height=st.sampled_from([2, 4, 6, 8, 12, 16, 32]),
       width=st.sampled_from([2, 4, 6, 8, 12, 16, 32]),
       batch=st.integers(1, 3), with_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_same_convolution_as_direct(cin: int, cout: int, height: int, width: int, batch: int,
                                    with_bias: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1 / np.sqrt(9 * cin), (cout, cin, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, cout).astype(np.float32)
    x = rng.normal(0, 1, (batch, cin, height, width)).astype(np.float32)
    model = _conv_model(w, b if with_bias else None, height, width)
    rewritten, counts = to_winograd(model)
    tile = choose_tile(cin, cout, height, width)
    assert tile is not None  # every sampled size is <= 32x32 and even
    assert counts == {"F(4x4,3x3)": int(tile == 4), "F(2x2,3x3)": int(tile == 2),
                      "direct 3x3": 0}
    assert "Conv" in _ops(rewritten) and "MatMul" in _ops(rewritten)
    expected = _numpy_conv3x3(x, w, b if with_bias else np.zeros(cout))
    got = _run(rewritten, x)
    scale = max(float(np.abs(expected).max()), 1e-3)
    assert got.shape == expected.shape
    assert float(np.abs(got - expected).max()) / scale < 1e-4
    np.testing.assert_allclose(_run(model, x), got, atol=1e-4 * scale, rtol=0)


@settings(max_examples=10, deadline=None)
@given(cin=st.integers(1, 16), cout=st.integers(1, 16), tile_size=st.sampled_from([2, 4]),
       seed=st.integers(0, 2**16))
def test_to_direct_restores_the_weights(cin: int, cout: int, tile_size: int,
                                        seed: int) -> None:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1, (cout, cin, 3, 3)).astype(np.float32)
    b = rng.normal(0, 1, cout).astype(np.float32)
    side = 6 if tile_size == 2 else 8  # 6 is not a multiple of 4: F(2x2, 3x3)
    model = _conv_model(w, b, side, side)
    rewritten, counts = to_winograd(model)
    assert counts[f"F({tile_size}x{tile_size},3x3)"] == 1
    back = to_direct(rewritten)
    assert _ops(back) == ["Conv", "Relu"]
    inits = {t.name: numpy_helper.to_array(t) for t in back.graph.initializer}
    conv = back.graph.node[0]
    np.testing.assert_allclose(inits[conv.input[1]], w, atol=1e-5 * np.abs(w).max())
    np.testing.assert_allclose(inits[conv.input[2]], b, rtol=1e-6)
    assert conv.input[0] == "x" and conv.output[0] == "c"
    x = rng.normal(0, 1, (2, cin, side, side)).astype(np.float32)
    np.testing.assert_allclose(_run(back, x), _run(model, x), atol=1e-4, rtol=1e-4)


def test_to_direct_leaves_a_direct_model_alone() -> None:
    w = np.ones((2, 2, 3, 3), np.float32)
    model = _conv_model(w, None, 64, 64)  # 64x64 stays direct
    rewritten, counts = to_winograd(model)
    assert counts == {"F(4x4,3x3)": 0, "F(2x2,3x3)": 0, "direct 3x3": 1}
    assert rewritten.SerializeToString() == model.SerializeToString()
    assert to_direct(model).SerializeToString() == model.SerializeToString()


@pytest.mark.parametrize("attrs, shape", [
    ({"strides": [2, 2]}, (4, 4, 3, 3)),
    ({"group": 2}, (4, 2, 3, 3)),
    ({"dilations": [2, 2], "pads": [2, 2, 2, 2]}, (4, 4, 3, 3)),
    ({"pads": [0, 0, 0, 0]}, (4, 4, 3, 3)),
    ({"pads": [0, 0, 0, 0]}, (4, 4, 1, 1)),
    ({"pads": [2, 2, 2, 2]}, (4, 4, 5, 5)),
], ids=["stride2", "grouped", "dilated", "no-padding", "1x1", "5x5"])
def test_other_convolutions_are_not_rewritten(attrs: dict[str, Any],
                                              shape: tuple[int, ...]) -> None:
    w = np.random.default_rng(0).normal(0, 1, shape).astype(np.float32)
    model = _conv_model(w, None, 16, 16, **attrs)
    rewritten, counts = to_winograd(model)
    assert counts["F(4x4,3x3)"] == counts["F(2x2,3x3)"] == 0
    assert _ops(rewritten) == ["Conv", "Relu"]


def test_weights_fed_at_run_time_are_not_rewritten() -> None:
    model = _conv_model(np.ones((2, 2, 3, 3), np.float32), None, 8, 8)
    del model.graph.initializer[:]
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT,
                                                           [2, 2, 3, 3]))
    rewritten, counts = to_winograd(model)
    assert counts["F(4x4,3x3)"] == 0 and _ops(rewritten) == ["Conv", "Relu"]


@pytest.mark.parametrize("cin, cout, height, width, tile", [
    (64, 64, 64, 64, None),     # ResNet stage 1: too large a map
    (128, 128, 32, 32, 4),      # stage 2
    (256, 256, 16, 16, 4),      # stage 3
    (512, 512, 8, 8, 2),        # stage 4: F(4, 3)'s transformed weights are too large
    (64, 64, 6, 6, 2),          # 6 is not a multiple of 4
    (64, 64, 5, 5, None),       # odd: no tile fits
    (3, 16, 8, 8, 4),
])
def test_choose_tile(cin: int, cout: int, height: int, width: int, tile: int | None) -> None:
    assert choose_tile(cin, cout, height, width) == tile


def test_batch_of_zero_and_dynamic_batch() -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.3, (8, 4, 3, 3)).astype(np.float32)
    rewritten, _ = to_winograd(_conv_model(w, None, 8, 8))
    for batch in (0, 1, 5):
        x = rng.normal(0, 1, (batch, 4, 8, 8)).astype(np.float32)
        assert _run(rewritten, x).shape == (batch, 8, 8, 8)
