"""Build pipdetect's ONNX graph from a PIP-Net architecture and its NumPy weights.

BatchNorm is folded into the preceding convolution in float64, then stored as
float32: ``w' = w * g / sqrt(v + eps)`` (per output channel) and
``b' = (b - m) * g / sqrt(v + eps) + beta``. The graph uses opset 17 and the
IR version 8 that goes with it, so older onnxruntime releases load it too.
Input ``image`` is ``(batch, 3, H, W)``; the five outputs are
``(batch, C, H / stride, W / stride)`` with the same symbolic ``batch`` axis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..model import INPUT_NAME, OUTPUT_NAMES
from .arch import Add, Architecture, Conv, MaxPool

if TYPE_CHECKING:  # pragma: no cover
    import onnx

__all__ = ["OPSET", "build_graph", "fold_batchnorm", "require_onnx"]

OPSET = 17
IR_VERSION = 8
BATCH_DIM = "batch"


def require_onnx() -> Any:
    """Import :mod:`onnx`, or explain how to install it."""
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "converting checkpoints needs the `onnx` package, which pipdetect installs only "
            "with its converter extra: pip install onnx, or in the pipdetect checkout: "
            "pip install '.[convert]'"
        ) from None
    return onnx


def fold_batchnorm(conv: Conv, state: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Folded (weight, bias) of ``conv`` as float32, BatchNorm included when it has one."""
    w = np.asarray(state[f"{conv.name}.weight"], dtype=np.float64)
    if conv.bias:
        b = np.asarray(state[f"{conv.name}.bias"], dtype=np.float64)
    else:
        b = np.zeros(conv.out_channels, dtype=np.float64)
    if conv.bn is not None:
        gamma = np.asarray(state[f"{conv.bn}.weight"], dtype=np.float64)
        beta = np.asarray(state[f"{conv.bn}.bias"], dtype=np.float64)
        mean = np.asarray(state[f"{conv.bn}.running_mean"], dtype=np.float64)
        var = np.asarray(state[f"{conv.bn}.running_var"], dtype=np.float64)
        scale = gamma / np.sqrt(var + conv.bn_eps)
        if conv.transpose:  # (in, out/groups, k, k): output channels on axis 1
            w = w * scale.reshape(1, -1, 1, 1)
        else:
            w = w * scale.reshape(-1, 1, 1, 1)
        b = (b - mean) * scale + beta
    return w.astype(np.float32), b.astype(np.float32)


def build_graph(
    arch: Architecture,
    state: Mapping[str, np.ndarray],
    input_size: tuple[int, int],
    metadata: Mapping[str, str],
    *,
    doc: str = "",
) -> onnx.ModelProto:
    """The ONNX model of ``arch`` with the (already checked) weights of ``state``."""
    onnx = require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    nodes = []
    inits = []
    need_relu6 = False
    for layer in arch.layers:
        if isinstance(layer, Conv):
            w, b = fold_batchnorm(layer, state)
            wname, bname = f"{layer.name}.weight", f"{layer.name}.bias"
            inits += [numpy_helper.from_array(w, wname), numpy_helper.from_array(b, bname)]
            out = layer.output if layer.act is None else f"{layer.output}.pre_act"
            nodes.append(helper.make_node(
                "ConvTranspose" if layer.transpose else "Conv",
                [layer.input, wname, bname], [out], name=layer.name,
                kernel_shape=[layer.kernel, layer.kernel], strides=[layer.stride, layer.stride],
                pads=layer.onnx_pads, group=layer.groups,
            ))
            if layer.act == "relu":
                nodes.append(helper.make_node("Relu", [out], [layer.output],
                                              name=f"{layer.name}.relu"))
            elif layer.act == "relu6":
                need_relu6 = True
                nodes.append(helper.make_node("Clip", [out, "relu6.min", "relu6.max"],
                                              [layer.output], name=f"{layer.name}.relu6"))
        elif isinstance(layer, MaxPool):
            nodes.append(helper.make_node("MaxPool", [layer.input], [layer.output], name="maxpool",
                                          kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
        elif isinstance(layer, Add):
            out = f"{layer.output}.sum" if layer.relu else layer.output
            nodes.append(helper.make_node("Add", [layer.a, layer.b], [out],
                                          name=f"{layer.output}.add"))
            if layer.relu:
                nodes.append(helper.make_node("Relu", [out], [layer.output],
                                              name=f"{layer.output}.relu"))
        else:  # pragma: no cover - Layer is a closed union
            raise TypeError(f"unknown layer {layer!r}")
    if need_relu6:
        inits += [numpy_helper.from_array(np.array(0.0, np.float32), "relu6.min"),
                  numpy_helper.from_array(np.array(6.0, np.float32), "relu6.max")]

    height, width = input_size
    mh, mw = height // arch.stride, width // arch.stride
    L, K = arch.num_landmarks, arch.num_nb
    channels = {"cls": L, "x": L, "y": L, "nb_x": L * K, "nb_y": L * K}
    graph = helper.make_graph(
        nodes,
        f"pipnet_{arch.backbone}_stride{arch.stride}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                       [BATCH_DIM, 3, height, width])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH_DIM, channels[name], mh, mw])
         for name in OUTPUT_NAMES],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="pipdetect", doc_string=doc)
    model.ir_version = IR_VERSION
    helper.set_model_props(model, dict(metadata))
    onnx.checker.check_model(model)
    return model
