"""Build pipdetect's ONNX graph from a PIP-Net architecture and its NumPy weights.

BatchNorm is folded into the preceding convolution in float64, then stored as
float32: ``w' = w * g / sqrt(v + eps)`` (per output channel) and
``b' = (b - m) * g / sqrt(v + eps) + beta``. The graph uses opset 17 and the
IR version 8 that goes with it, so older onnxruntime releases load it too.
Input ``image`` is ``(batch, 3, H, W)``. Outputs ``cls``, ``x`` and ``y`` are
``(batch, L, H / stride, W / stride)`` maps; ``nb_x`` and ``nb_y`` are ``(batch, L*K)``:
the neighbour heads are evaluated only at each landmark's selected cell (the first
maximum of its ``cls`` map, row-major, as the decoder picks it), since the decoder
reads them nowhere else (docs/design.md, "Neighbour heads at the selected cell").
Their weights are stored as the reference's 1x1 convolutions; the graph gathers the
head's input features at the selected cells (``ArgMax``, ``GatherElements``) and
multiplies them by those weights (``MatMul``): the same numbers as the full maps read
at those cells, to float rounding, without computing the L*K-channel maps everywhere
else (for EfficientNet-Lite0 they are most of the heads' work). All batch axes share
the symbolic ``batch`` dimension.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..model import INPUT_NAME, OUTPUT_NAMES
from .arch import Add, Architecture, Conv, MaxPool

if TYPE_CHECKING:  # pragma: no cover
    import onnx

__all__ = ["HEAD_PREFIX", "OPSET", "build_graph", "fold_batchnorm", "heads_at_selected_cells",
           "require_onnx"]

OPSET = 17
IR_VERSION = 8
BATCH_DIM = "batch"
HEAD_PREFIX = "pip_heads/"
"""Name prefix of the nodes that evaluate the neighbour heads at the selected cells."""
GATHERED = ("nb_x", "nb_y")
"""Outputs evaluated only at each landmark's selected cell: ``(batch, L*K)``."""


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
    gathered: list[Conv] = []
    for layer in arch.layers:
        if isinstance(layer, Conv):
            w, b = fold_batchnorm(layer, state)
            wname, bname = f"{layer.name}.weight", f"{layer.name}.bias"
            inits += [numpy_helper.from_array(w, wname), numpy_helper.from_array(b, bname)]
            if layer.output in GATHERED:
                gathered.append(layer)
                continue
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
    head_nodes, head_inits = _heads_at_selected_cells(gathered, L, K)
    nodes += head_nodes
    inits += head_inits
    channels = {"cls": L, "x": L, "y": L, "nb_x": L * K, "nb_y": L * K}
    graph = helper.make_graph(
        nodes,
        f"pipnet_{arch.backbone}_stride{arch.stride}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                       [BATCH_DIM, 3, height, width])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, _output_dims(
            channels[name], None if name in GATHERED else (mh, mw)))
         for name in OUTPUT_NAMES],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="pipdetect", doc_string=doc)
    model.ir_version = IR_VERSION
    helper.set_model_props(model, dict(metadata))
    onnx.checker.check_model(model)
    return model


def _output_dims(channels: int, map_size: tuple[int, int] | None) -> list[str | int]:
    """An output's declared shape: (batch, channels[, h, w])."""
    return [BATCH_DIM, channels, *(map_size or ())]


def _heads_at_selected_cells(heads: list[Conv], L: int, K: int) -> tuple[list[Any], list[Any]]:
    """:func:`heads_at_selected_cells` for the architecture's neighbour heads, checked to be
    the 1x1 convolutions on one feature map that the reference network has."""
    if sorted(h.output for h in heads) != sorted(GATHERED):
        raise ValueError(f"expected the heads {GATHERED}, got {[h.output for h in heads]}")
    for h in heads:
        if (h.kernel, h.stride, h.pad, h.pads, h.groups, h.transpose, h.act) \
                != (1, 1, 0, None, 1, False, None) \
                or h.out_channels != L * K or h.input != heads[0].input:
            raise ValueError(f"{h.name}: a neighbour head must be a 1x1 convolution with "
                             f"{L * K} outputs on the same features as the others")
    return heads_at_selected_cells(
        heads[0].input, heads[0].in_channels,
        {h.output: (f"{h.name}.weight", f"{h.name}.bias") for h in heads}, L, K)


def heads_at_selected_cells(features: str, channels: int, heads: Mapping[str, tuple[str, str]],
                            L: int, K: int) -> tuple[list[Any], list[Any]]:
    """ONNX nodes and constants that evaluate 1x1 neighbour heads at each landmark's
    selected cell only.

    ``features``: the heads' input, (batch, ``channels``, h, w). ``heads``: output name
    (``nb_x``, ``nb_y``) -> names of the head's (L*K, channels, 1, 1) weight and (L*K,)
    bias initializers, which stay as the reference stores them. Each output is
    (batch, L*K), channel ``i*K + k`` read at landmark ``i``'s cell.

    The cell is ``ArgMax`` of the ``cls`` output flattened row-major, whose first maximum
    (ONNX's ``select_last_index=0``) is the one the decoder selects. The features at
    that cell, (L, batch, channels), are multiplied by the weights turned to
    (L, channels, K) (constants that onnxruntime folds when it loads the model).
    """
    from onnx import helper, numpy_helper

    p = HEAD_PREFIX

    def const(name: str, values: list[int]) -> Any:
        return numpy_helper.from_array(np.array(values, dtype=np.int64), p + name)

    inits = [const("cls_shape", [0, L, -1]), const("feature_shape", [0, channels, -1]),
             const("index_shape", [1, 1, channels]), const("weight_shape", [L, K, channels]),
             const("bias_shape", [L, 1, K]), const("out_shape", [0, L * K])]
    n = helper.make_node
    nodes = [
        n("Reshape", ["cls", p + "cls_shape"], [p + "cls_flat"], name=p + "cls_flat"),
        n("ArgMax", [p + "cls_flat"], [p + "cell"], name=p + "cell", axis=2, keepdims=1,
          select_last_index=0),
        n("Reshape", [features, p + "feature_shape"], [p + "features"], name=p + "features"),
        n("Transpose", [p + "features"], [p + "features_t"], name=p + "features_t",
          perm=[0, 2, 1]),
        n("Expand", [p + "cell", p + "index_shape"], [p + "index"], name=p + "index"),
        n("GatherElements", [p + "features_t", p + "index"], [p + "picked"],
          name=p + "picked", axis=1),
        n("Transpose", [p + "picked"], [p + "picked_t"], name=p + "picked_t", perm=[1, 0, 2]),
    ]
    for output, (weight, bias) in heads.items():
        q = f"{p}{output}/"
        nodes += [
            n("Reshape", [weight, p + "weight_shape"], [q + "w3"], name=q + "w3"),
            n("Transpose", [q + "w3"], [q + "w"], name=q + "w", perm=[0, 2, 1]),
            n("MatMul", [p + "picked_t", q + "w"], [q + "product"], name=q + "product"),
            n("Reshape", [bias, p + "bias_shape"], [q + "b"], name=q + "b"),
            n("Add", [q + "product", q + "b"], [q + "sum"], name=q + "sum"),
            n("Transpose", [q + "sum"], [q + "sum_t"], name=q + "sum_t", perm=[1, 0, 2]),
            n("Reshape", [q + "sum_t", p + "out_shape"], [output], name=q + "out"),
        ]
    return nodes, inits
