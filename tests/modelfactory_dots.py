"""An image-aware stand-in model (docs/design.md §11, kind 3): it finds coloured dots.

Landmark ``i`` is a dot of colour ``DOT_COLORS[i]``. The ONNX graph, built from
plain ops, undoes the input normalisation, scores every pixel by how close it is
to each landmark's colour (``relu(1 - |rgb - colour|^2 / tau)``), and then:

* ``cls``: the colour mass of each score-map cell, squashed to [0, 1)
  (``m / (m + m0)``: a whole dot in one cell scores about 0.8, no dot 0);
* ``x``, ``y``: the weighted centroid of the colour over the whole crop, as an offset
  from each cell's top-left corner (in cell units), so decoding returns the dot's
  centre whichever cell wins;
* ``nb_x``, ``nb_y``: the same centroids of each landmark's neighbours, read at
  the landmark's cell, so the reference merge leaves the answer unchanged.

A frame with dots drawn at known positions therefore has known landmarks, and
moving the dots makes a video whose truth is known in every frame.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelfactory import make_spec, reference_neighbours
from pipdetect.model import INPUT_NAME, ModelSpec

DOT_COLORS = np.array(
    [(0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255), (128, 0, 255)],
    dtype=np.float64,
)
"""RGB colours of the landmarks (none occurs in ``examples/astronaut.jpg``)."""

DOT_MEANFACE = np.array(
    [(0.30, 0.30), (0.70, 0.30), (0.50, 0.48), (0.36, 0.64), (0.64, 0.64), (0.50, 0.78)]
)
"""Where the dots sit in the model's crop (normalised): eyes, nose, mouth corners, chin.
Kept 20 % away from the crop's edges, so a face may move a fifth of its size between
two frames without a dot leaving the crop it is followed in."""


def dots_spec(**extra) -> ModelSpec:
    extra.setdefault("name", "dots")
    extra.setdefault("input_size", (128, 128))
    extra.setdefault("stride", 16)
    return make_spec(DOT_MEANFACE, num_nb=2, **extra)


def dots_model(path: Path, spec: ModelSpec | None = None, *, tau: float = 0.1) -> Path:
    """Write the dot-finding model for ``spec`` (default :func:`dots_spec`)."""
    spec = spec or dots_spec()
    L, K = spec.num_landmarks, spec.num_nb
    colors = DOT_COLORS[:L] / 255.0
    h, w = spec.input_size
    s = spec.stride
    mh, mw = spec.map_size
    mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1)
    if spec.channel_order == "BGR":
        colors = colors[:, ::-1]
    gx = ((np.arange(w) + 0.5) / s).astype(np.float32).reshape(1, 1, 1, w)
    gy = ((np.arange(h) + 0.5) / s).astype(np.float32).reshape(1, 1, h, 1)
    col = np.arange(mw, dtype=np.float32).reshape(1, 1, 1, mw)
    row = np.arange(mh, dtype=np.float32).reshape(1, 1, mh, 1)
    nb = reference_neighbours(spec.meanface, K).reshape(-1).astype(np.int64)
    m0 = np.float32(0.03)  # cell fraction covered: a 3-pixel dot in a 16-pixel cell is ~0.11

    consts = {
        "std": std, "mean": mean,
        "cw": (2.0 * colors).astype(np.float32).reshape(L, 3, 1, 1),
        "cb": (-np.sum(colors**2, axis=1)).astype(np.float32),
        "neg_inv_tau": np.float32(-1.0 / tau), "one": np.float32(1.0),
        "gx": gx, "gy": gy, "col": col, "row": row, "eps": np.float32(1e-6),
        "m0": m0, "axes23": np.array([2, 3], np.int64), "axes1": np.array([1], np.int64),
        "nb": nb,
    }
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    n = helper.make_node
    nodes = [
        n("Mul", [INPUT_NAME, "std"], ["xs"]),
        n("Add", ["xs", "mean"], ["rgb"]),  # back to [0, 1] in the model's channel order
        n("Mul", ["rgb", "rgb"], ["sq"]),
        n("ReduceSum", ["sq", "axes1"], ["sqsum"], keepdims=1),  # (B, 1, H, W)
        n("Conv", ["rgb", "cw", "cb"], ["dot"]),  # 2 c.x - |c|^2, (B, L, H, W)
        n("Sub", ["sqsum", "dot"], ["dist"]),  # |x - c|^2
        n("Mul", ["dist", "neg_inv_tau"], ["nd"]),
        n("Add", ["nd", "one"], ["pre"]),
        n("Relu", ["pre"], ["match"]),
        # cls: colour mass per cell, squashed
        n("AveragePool", ["match"], ["mass"], kernel_shape=[s, s], strides=[s, s]),
        n("Add", ["mass", "m0"], ["mass_m0"]),
        n("Div", ["mass", "mass_m0"], ["cls"]),
        # global weighted centroid per landmark, in cell units
        n("ReduceSum", ["match", "axes23"], ["total"], keepdims=1),  # (B, L, 1, 1)
        n("Add", ["total", "eps"], ["total_eps"]),
        n("Mul", ["match", "gx"], ["mx"]),
        n("Mul", ["match", "gy"], ["my"]),
        n("ReduceSum", ["mx", "axes23"], ["sx"], keepdims=1),
        n("ReduceSum", ["my", "axes23"], ["sy"], keepdims=1),
        n("Div", ["sx", "total_eps"], ["cx"]),
        n("Div", ["sy", "total_eps"], ["cy"]),
        n("Sub", ["cx", "col"], ["x_row"]),  # (B, L, 1, mw)
        n("Sub", ["cy", "row"], ["y_col"]),  # (B, L, mh, 1)
        n("Add", ["x_row", "zero_map"], ["x"]),
        n("Add", ["y_col", "zero_map"], ["y"]),
        n("Gather", ["x", "nb"], ["nb_x"], axis=1),
        n("Gather", ["y", "nb"], ["nb_y"], axis=1),
    ]
    inits.append(numpy_helper.from_array(np.zeros((1, 1, mh, mw), np.float32), "zero_map"))
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", c, mh, mw])
        for name, c in (("cls", L), ("x", L), ("y", L), ("nb_x", L * K), ("nb_y", L * K))
    ]
    graph = helper.make_graph(
        nodes, "pipdetect_dots",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, h, w])],
        outputs, initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in spec.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


def draw_dots(frame: np.ndarray, points: np.ndarray, radius: float) -> np.ndarray:
    """Draw landmark ``i`` of ``points`` (L, 2 image pixels) as a dot of DOT_COLORS[i], in place.

    Sub-pixel centres (drawn with 4 fractional bits) so positions are exact to 1/16 px.
    """
    shift = 4
    for (x, y), rgb in zip(points, DOT_COLORS, strict=False):
        centre = (round(x * 16), round(y * 16))
        bgr = tuple(int(v) for v in rgb[::-1])
        cv2.circle(frame, centre, round(radius * 16), bgr, -1, cv2.LINE_AA, shift)
    return frame


def dots_face(crop: tuple[float, float, float, float]) -> np.ndarray:
    """True landmark positions (L, 2) of a dot face whose training crop is ``crop``."""
    x1, y1, x2, y2 = crop[:4]
    return np.stack(
        [x1 + DOT_MEANFACE[:, 0] * (x2 - x1), y1 + DOT_MEANFACE[:, 1] * (y2 - y1)], axis=1
    )


CANVAS = (480, 640)
"""Frame size (height, width) of :func:`render`."""
DOT_RADIUS = 4.0
"""Dot radius in photo pixels (scaled with the photo)."""


def render(base: tuple[np.ndarray, np.ndarray], scale: float, ox: float, oy: float, *,
           dots: bool = True, noise: np.ndarray | None = None,
           canvas: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One frame: ``base = (photo, true dot positions on it)``, the photo scaled by
    ``scale`` and moved by ``(ox, oy)`` pixels on a grey :data:`CANVAS` (or on
    ``canvas``), the dots drawn where they now are (plus ``noise``, (L, 2) px).
    Returns ``(frame, truth)`` with ``truth`` the (L, 2) dot centres in the frame."""
    photo, truth0 = base
    m = np.array([[scale, 0.0, ox], [0.0, scale, oy]])
    frame = np.full((*CANVAS, 3), 90, np.uint8) if canvas is None else canvas
    cv2.warpAffine(photo, m, (frame.shape[1], frame.shape[0]), dst=frame,
                   borderMode=cv2.BORDER_TRANSPARENT)
    truth = truth0 * scale + [ox, oy]
    if noise is not None:
        truth = truth + noise
    if dots:
        draw_dots(frame, truth, DOT_RADIUS * scale)
    return frame, truth


def write_clip(writer, base: tuple[np.ndarray, np.ndarray], frames: int,
               scale: tuple[float, float], shift: tuple[float, float, float, float],
               ) -> list[np.ndarray]:
    """Write ``frames`` frames of :func:`render` to an open video ``writer`` (anything
    with ``write(frame)`` and ``release()``), frame ``t`` at scale ``scale[0] + scale[1] t``
    moved by ``(shift[0] + shift[1] t, shift[2] + shift[3] t)``; releases the writer and
    returns each frame's truth."""
    truths = []
    for t in range(frames):
        frame, truth = render(base, scale[0] + scale[1] * t, shift[0] + shift[1] * t,
                              shift[2] + shift[3] * t)
        writer.write(frame)
        truths.append(truth)
    writer.release()
    return truths

