"""Small ONNX models in pipdetect's format, built by the tests (docs/design.md §11).

* :func:`known_answer_model`: every head weight is zero; the biases make every
  score tie (so the first cell wins) and the offsets spell out ``shape`` exactly,
  whatever the pixels. Decoding returns ``shape`` (normalised to the crop).
* :func:`random_model`: average pooling to the score grid followed by random
  1x1 convolutions: the output depends on the image, for parity and batching tests.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pipdetect.convert.graph import heads_at_selected_cells
from pipdetect.crop import CropPolicy
from pipdetect.model import INPUT_NAME, OUTPUT_NAMES, ModelSpec

IDENTITY_POLICY = CropPolicy().to_dict()


def reference_neighbours(meanface: np.ndarray, num_nb: int) -> np.ndarray:
    """Neighbour lists exactly as the reference computes them (docs/design.md §3, step 4)."""
    mf = np.asarray(meanface, dtype=np.float64).reshape(-1, 2)
    out = []
    for i in range(len(mf)):
        d = np.sum((mf - mf[i]) ** 2, axis=1)
        out.append(np.argsort(d)[1 : num_nb + 1])
    return np.array(out)


def make_spec(
    meanface: np.ndarray,
    num_nb: int = 10,
    *,
    name: str = "test-model",
    input_size: tuple[int, int] = (256, 256),
    stride: int = 32,
    crop_policy: dict[str, Any] | None = None,
    **extra: Any,
) -> ModelSpec:
    mf = np.asarray(meanface, dtype=np.float64).reshape(-1, 2)
    extra.setdefault("format_version", 1)  # full neighbour maps, as these stand-ins have
    return ModelSpec(
        name=name,
        num_landmarks=len(mf),
        num_nb=num_nb,
        meanface=mf,
        crop_policy=crop_policy if crop_policy is not None else IDENTITY_POLICY,
        input_size=input_size,
        stride=stride,
        **extra,
    )


def _graph(
    spec: ModelSpec,
    weights: dict[str, np.ndarray],
    biases: dict[str, np.ndarray],
    metadata: dict[str, str] | None = None,
    neighbours_at_cell: bool = False,
) -> onnx.ModelProto:
    h, w = spec.input_size
    s = spec.stride
    nodes = [
        helper.make_node("AveragePool", [INPUT_NAME], ["feat"], kernel_shape=[s, s], strides=[s, s])
    ]
    inits = []
    outputs = []
    mh, mw = spec.map_size
    for head in OUTPUT_NAMES:
        wt, bs = weights[head].astype(np.float32), biases[head].astype(np.float32)
        inits += [
            numpy_helper.from_array(wt, f"{head}_w"),
            numpy_helper.from_array(bs, f"{head}_b"),
        ]
        at_cell = neighbours_at_cell and head in ("nb_x", "nb_y")
        if not at_cell:
            nodes.append(helper.make_node("Conv", ["feat", f"{head}_w", f"{head}_b"], [head]))
        dims = ["batch", wt.shape[0]] + ([] if at_cell else [mh, mw])
        outputs.append(helper.make_tensor_value_info(head, TensorProto.FLOAT, dims))
    if neighbours_at_cell:  # as pipdetect convert writes them
        at, at_inits = heads_at_selected_cells(
            "feat", 3, {h: (f"{h}_w", f"{h}_b") for h in ("nb_x", "nb_y")},
            spec.num_landmarks, spec.num_nb)
        nodes += at
        inits += at_inits
    graph = helper.make_graph(
        nodes,
        "pipdetect_test",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, h, w])],
        outputs,
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if neighbours_at_cell:
        spec = dataclasses.replace(spec, format_version=2)
    meta = spec.to_metadata() if metadata is None else metadata
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return model


def known_answer_model(
    path: Path,
    shape: np.ndarray,
    spec: ModelSpec | None = None,
    *,
    score: float = 0.75,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a model whose decoded landmarks are ``shape`` (L, 2, normalised) for any image."""
    shape = np.asarray(shape, dtype=np.float64).reshape(-1, 2)
    spec = spec or make_spec(shape)
    L, K = spec.num_landmarks, spec.num_nb
    mh, mw = spec.map_size
    nb = reference_neighbours(spec.meanface, K)
    zeros = {
        head: np.zeros((c, 3, 1, 1))
        for head, c in zip(OUTPUT_NAMES, (L, L, L, L * K, L * K), strict=False)
    }
    biases = {
        "cls": np.full(L, score),
        "x": shape[:, 0] * mw,
        "y": shape[:, 1] * mh,
        "nb_x": shape[nb.reshape(-1), 0] * mw,
        "nb_y": shape[nb.reshape(-1), 1] * mh,
    }
    onnx.save(_graph(spec, zeros, biases, metadata), str(path))
    return Path(path)


def random_model(path: Path, spec: ModelSpec, seed: int = 0, scale: float = 1.0, *,
                 neighbours_at_cell: bool = False) -> Path:
    """Write a model with random 1x1 heads over average-pooled pixels (image-dependent).
    ``neighbours_at_cell``: the neighbour heads evaluated at the selected cells only, as
    ``pipdetect convert`` writes them (the same weights)."""
    rng = np.random.default_rng(seed)
    L, K = spec.num_landmarks, spec.num_nb
    weights, biases = {}, {}
    for head, c in zip(OUTPUT_NAMES, (L, L, L, L * K, L * K), strict=False):
        weights[head] = rng.normal(0, scale, (c, 3, 1, 1))
        biases[head] = rng.normal(0, 0.1, c)
    onnx.save(_graph(spec, weights, biases, neighbours_at_cell=neighbours_at_cell), str(path))
    return Path(path)


def metadata_without(spec: ModelSpec, *keys: str) -> dict[str, str]:
    """The spec's metadata with some JSON fields removed (for negative tests)."""
    data = spec.to_dict()
    for key in keys:
        data.pop(key, None)
    return {"pipdetect": json.dumps(data)}
