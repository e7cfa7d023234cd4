"""Winograd form of the 3x3 convolutions: the same function with fewer multiplications.

ResNet's 3x3, stride-1 convolutions are ~80 % of PIP-Net's compute, and onnxruntime
already runs them at close to the CPU's fp32 peak (``benchmarks/README.md``), so
the only way to make them faster in fp32 is to do less arithmetic. Winograd's
minimal filtering algorithm F(m x m, 3 x 3) computes an m x m output tile from an
(m + 2) x (m + 2) input tile with (m + 2)^2 multiplications per channel pair
instead of 9 m^2: 2.25x fewer for m = 2, 4x fewer for m = 4 (Lavin & Gray, 2016).

:func:`to_winograd` rewrites each eligible ``Conv`` (3x3, stride 1, padding 1,
no dilation, one group, weights and bias stored as initializers, static spatial
size divisible by the tile) into plain ONNX operators that onnxruntime runs
with its fast kernels::

    x (N, C, H, W)
    -> Reshape (N*C, 1, H, W)
    -> Conv with the (m+2)^2 fixed kernels B^T . B, stride m, padding 1
                                          # input transform: (N*C, (m+2)^2, H/m, W/m)
    -> Reshape (N, C, (m+2)^2, T) -> Transpose (N, (m+2)^2, C, T)   # T = tiles
    -> MatMul with U = G w G^T, (m+2)^2 x (K, C)   # the products: (N, (m+2)^2, K, T)
    -> Reshape -> MatMul with A^T . A             # output transform: (N, m^2, K*T)
    -> Reshape (N, m^2*K, H/m, W/m) -> DepthToSpace(m, DCR) -> (N, K, H, W)
    -> Add bias

Cost and choice of tiles (measured on 2 Zen 4 cores, onnxruntime 1.32, batch 1 /
16, one convolution alone; ``benchmarks/README.md`` has the whole-network numbers):

* F(4x4, 3x3) where the weights' transform U (36 K C floats) stays small: 1.7x /
  1.3x faster at 128 channels on 32x32, 1.7x / 1.9x at 256 channels on 16x16.
* F(2x2, 3x3) at 512 channels (8x8): 1.25x / 1.4x. There F(4, 3) is 0.6x: its
  38 MB U no longer fits in cache and the products become memory-bound.
* Direct on maps larger than 32x32 pixels (ResNet's first stage, 64x64):
  the transformed tiles outgrow the cache (F(4, 3) 0.77x at batch 16).

The rewritten graph stores U instead of w, so the file grows (ResNet-18: 49 ->
98 MB). Peak memory of a process running ResNet-18 stays at ~224 MB (onnxruntime
repacks direct weights too); ResNet-101's grows from ~490 to ~560-620 MB. Folding
U from w at load time instead (constant folding in onnxruntime) keeps the file
small but peaked at 530 MB while loading ResNet-18, so U is stored. Whole
ResNet-18 network: 1.14-1.18x faster at batch 1, 1.11-1.21x at batch 16.
Accuracy: float32 Winograd with the points 0, +-1, +-2 differs from the direct
convolution by ~1e-5 of a layer's output scale; on a whole ResNet-18 PIP-Net the
output maps differ by ~4e-6 (absolute, maps of magnitude ~2), far below what
moves a decoded landmark.

:func:`to_direct` undoes the rewrite (w = G+ U G+^T, exact up to float32
rounding): int8 quantisation starts from the direct form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import onnx

__all__ = ["choose_tile", "to_direct", "to_winograd"]

_SUFFIX = ".winograd"
"""Initializers of a rewritten convolution are named ``<conv><_SUFFIX>.<part>``."""

_MAX_DIRECT_PIXELS = 32 * 32
"""Feature maps with more pixels than this stay direct (see the module docstring)."""
_MAX_F4_PRODUCT = 256 * 256
"""F(4, 3) only while in_channels * out_channels is at most this (U <= 9.4 MB)."""


def _matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``B^T`` ((m+2) x (m+2)), ``G`` ((m+2) x 3), ``A^T`` (m x (m+2)) of F(m x m, 3 x 3),
    interpolation points 0, +-1 (and +-2 for m = 4), float64."""
    if m == 2:
        bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
        g = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
        at = [[1, 1, 1, 0], [0, 1, -1, -1]]
    elif m == 4:
        bt = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
              [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
        g = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
             [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]
        at = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
              [0, 1, -1, 8, -8, 1]]
    else:  # pragma: no cover - internal misuse
        raise ValueError(f"no Winograd matrices for tile {m}")
    return (np.array(bt, dtype=np.float64), np.array(g, dtype=np.float64),
            np.array(at, dtype=np.float64))


def choose_tile(in_channels: int, out_channels: int, height: int, width: int) -> int | None:
    """Output tile size m (4 or 2) of the Winograd form for a 3x3 convolution, or ``None``
    to keep it direct. Sizes are the convolution's input (= output) feature map, pixels."""
    if height * width > _MAX_DIRECT_PIXELS:
        return None
    tiles = (4, 2) if in_channels * out_channels <= _MAX_F4_PRODUCT else (2,)
    for m in tiles:
        if height % m == 0 and width % m == 0:
            return m
    return None


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _eligible(node: Any, initializers: dict[str, Any]) -> bool:
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
        return False
    if len(node.input) < 2 or node.input[1] not in initializers:
        return False
    if len(node.input) > 2 and node.input[2] and node.input[2] not in initializers:
        return False
    attrs = _attributes(node)
    return (list(attrs.get("kernel_shape", [3, 3])) == [3, 3]
            and list(attrs.get("strides", [1, 1])) == [1, 1]
            and list(attrs.get("dilations", [1, 1])) == [1, 1]
            and list(attrs.get("pads", [0, 0, 0, 0])) == [1, 1, 1, 1]
            and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
            and int(attrs.get("group", 1)) == 1
            and tuple(initializers[node.input[1]].dims)[2:] == (3, 3))


def _spatial_sizes(model: Any) -> dict[str, tuple[int, int, int]]:
    """(channels, height, width) of every 4-D tensor whose sizes are static, batch aside."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    out: dict[str, tuple[int, int, int]] = {}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[1:]):
            out[info.name] = (dims[1].dim_value, dims[2].dim_value, dims[3].dim_value)
    return out


def to_winograd(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """A copy of ``model`` with its eligible 3x3 convolutions in Winograd form.

    Returns the new model and how many convolutions got each tile,
    e.g. ``{"F(4x4,3x3)": 6, "F(2x2,3x3)": 3, "direct 3x3": 4}``. Convolutions are
    eligible as described in the module docstring; others are left as they are.
    """
    import onnx
    from onnx import helper, numpy_helper

    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    initializers = {t.name: t for t in graph.initializer}
    sizes = _spatial_sizes(result)
    counts = {"F(4x4,3x3)": 0, "F(2x2,3x3)": 0, "direct 3x3": 0}
    nodes: list[Any] = []
    new_inits: list[Any] = []
    replaced: set[str] = set()
    for node in graph.node:
        if not _eligible(node, initializers) or node.input[0] not in sizes:
            if node.op_type == "Conv" and _attributes(node).get("kernel_shape") == [3, 3]:
                counts["direct 3x3"] += 1
            nodes.append(node)
            continue
        channels, height, width = sizes[node.input[0]]
        w = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float64)
        k = w.shape[0]
        m = choose_tile(channels, k, height, width)
        if m is None or w.shape[1] != channels:
            counts["direct 3x3"] += 1
            nodes.append(node)
            continue
        counts[f"F({m}x{m},3x3)"] += 1
        bias = (numpy_helper.to_array(initializers[node.input[2]])
                if len(node.input) > 2 and node.input[2] else np.zeros(k))
        replaced.update(node.input[1:])
        name = node.name or node.output[0]
        a = m + 2
        tiles_h, tiles_w = height // m, width // m
        bt, g, at = _matrices(m)
        parts = {
            "input_transform": np.einsum("ip,jq->ijpq", bt, bt).reshape(a * a, 1, a, a),
            "U": np.einsum("ip,kcpq,jq->ijkc", g, w, g).reshape(a * a, k, channels),
            "output_transform": np.einsum("ip,jq->ijpq", at, at).reshape(m * m, a * a),
            "bias": np.asarray(bias, dtype=np.float64).reshape(k, 1, 1),
        }
        shapes = {
            "tiles_in": [-1, 1, height, width],
            "tiles": [-1, channels, a * a, tiles_h * tiles_w],
            "products": [-1, a * a, k * tiles_h * tiles_w],
            "blocks": [-1, m * m * k, tiles_h, tiles_w],
        }
        p = f"{name}{_SUFFIX}."
        new_inits += [numpy_helper.from_array(v.astype(np.float32), p + key)
                      for key, v in parts.items()]
        new_inits += [numpy_helper.from_array(np.array(v, dtype=np.int64), p + key)
                      for key, v in shapes.items()]
        step = [f"{name}/winograd/{i}" for i in range(10)]
        t = [f"{p}t{i}" for i in range(9)]
        nodes += [
            helper.make_node("Reshape", [node.input[0], p + "tiles_in"], [t[0]], name=step[0]),
            helper.make_node("Conv", [t[0], p + "input_transform"], [t[1]], name=step[1],
                             strides=[m, m], pads=[1, 1, 1, 1], kernel_shape=[a, a]),
            helper.make_node("Reshape", [t[1], p + "tiles"], [t[2]], name=step[2]),
            helper.make_node("Transpose", [t[2]], [t[3]], name=step[3], perm=[0, 2, 1, 3]),
            helper.make_node("MatMul", [p + "U", t[3]], [t[4]], name=step[4]),
            helper.make_node("Reshape", [t[4], p + "products"], [t[5]], name=step[5]),
            helper.make_node("MatMul", [p + "output_transform", t[5]], [t[6]], name=step[6]),
            helper.make_node("Reshape", [t[6], p + "blocks"], [t[7]], name=step[7]),
            helper.make_node("DepthToSpace", [t[7]], [t[8]], name=step[8],
                             blocksize=m, mode="DCR"),
            helper.make_node("Add", [t[8], p + "bias"], [node.output[0]], name=step[9]),
        ]
    still_used = {i for n in nodes for i in n.input}
    keep = [t for t in graph.initializer if t.name not in replaced or t.name in still_used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(keep + new_inits)
    onnx.checker.check_model(result)
    return result, counts


def _free_name(name: str, taken: dict[str, Any]) -> str:
    out, i = name, 1
    while out in taken:
        out, i = f"{name}.{i}", i + 1
    return out


def to_direct(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with every convolution that :func:`to_winograd` rewrote back
    in direct form (weights ``w = G+ U G+^T``, float64, then float32)."""
    import onnx
    from onnx import helper, numpy_helper

    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    initializers = {t.name: t for t in graph.initializer}
    groups: dict[str, list[Any]] = {}
    order: list[Any] = []
    for node in graph.node:
        name, sep, _ = node.name.partition("/winograd/")
        if sep and f"{name}{_SUFFIX}.U" in initializers:
            if name not in groups:
                groups[name] = []
                order.append(name)
            groups[name].append(node)
        else:
            order.append(node)
    nodes: list[Any] = []
    dropped: set[str] = set()
    new_inits: list[Any] = []
    for item in order:
        if not isinstance(item, str):
            nodes.append(item)
            continue
        steps = groups[item]
        p = f"{item}{_SUFFIX}."
        u = numpy_helper.to_array(initializers[p + "U"]).astype(np.float64)
        a2, k, channels = u.shape
        m = {16: 2, 36: 4}[a2]
        _, g, _ = _matrices(m)
        g_pinv = np.linalg.pinv(g)
        u = u.reshape(m + 2, m + 2, k, channels)
        w = np.einsum("pi,ijkc,qj->kcpq", g_pinv, u, g_pinv).astype(np.float32)
        bias = numpy_helper.to_array(initializers[p + "bias"]).reshape(k).astype(np.float32)
        w_name, b_name = _free_name(f"{item}.weight", initializers), _free_name(
            f"{item}.bias", initializers)
        new_inits += [numpy_helper.from_array(w, w_name), numpy_helper.from_array(bias, b_name)]
        dropped.update(t.name for t in graph.initializer if t.name.startswith(p))
        nodes.append(helper.make_node(
            "Conv", [steps[0].input[0], w_name, b_name],
            [steps[-1].output[0]], name=item, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
            strides=[1, 1]))
    keep = [t for t in graph.initializer if t.name not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(keep + new_inits)
    onnx.checker.check_model(result)
    return result
