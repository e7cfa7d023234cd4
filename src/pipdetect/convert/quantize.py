"""int8 quantisation of a pipdetect model with onnxruntime's static quantisation.

>>> from pipdetect.convert.quantize import quantize_model
>>> spec = quantize_model("pipnet-r18-wflw.onnx", "pipnet-r18-wflw-int8.onnx",
...                       calibration=["photos/"])

What it does, and why (numbers in ``benchmarks/README.md``):

* **Static** quantisation, QDQ format: weights int8 per output channel,
  activations uint8 with ranges measured (min/max) on calibration faces. On
  CPUs with VNNI (AVX512-VNNI, AVX-VNNI) onnxruntime fuses this into
  ``QLinearConv`` and ResNet-18 runs about 2.5x faster than fp32. *Dynamic*
  quantisation (no calibration) turns convolutions into ``ConvInteger``, which
  onnxruntime runs slower than fp32 on CPU; it is not offered.
* **7-bit weights** (onnxruntime's ``reduce_range=True``: every weight in
  [-64, 64], per output channel), so the model is exact on every CPU. On x86
  CPUs *without* VNNI (AVX2-only ones, AMD Zen 1-3 among them, and AVX-512
  CPUs without VNNI) onnxruntime's uint8 x int8 kernels add each pair of
  products in saturating int16 (``vpmaddubsw``): with 8-bit weights a pair
  reaches 255 * 127 * 2 = 64770 and is clipped to 32767, and on an AVX2-only
  EPYC the test network's outputs came out 15.6 % of their range off, against
  1.1 % with 7-bit weights, whose pairs stay within 255 * 64 * 2 = 32640.
  VNNI, AMX and Arm64 (NEON) kernels accumulate in 32 bits and never
  saturate; there the 7-bit weights cost a little precision (numbers in
  ``benchmarks/README.md``) and no speed. The alternatives were worse for a
  file that must run anywhere: uint8 weights (U8U8 kernels) are slower on
  every x86 CPU, and onnxruntime's ``session.x64quantprecision`` option fixes
  only the sessions that set it. ``reduce_range=False`` is still available,
  for models that only run on VNNI or Arm CPUs; pipdetect warns when such a
  file is loaded on an x86 CPU without VNNI.
* The five 1x1 output heads stay fp32 (``keep_heads_fp32``): they are ~3 % of
  the compute, and quantising their outputs would round the score maps to 256
  levels, turning near-ties between cells into argmax flips (whole-cell jumps).
* ``keep_first_fp32=N`` also leaves the first N convolutions from the input in
  float, the layers int8 hurts most. For the bundled EfficientNet-Lite0 model,
  keeping 3 (the stem and the first block) took the int8 copy's LFPW cost from
  0.040 to about 0.01 NME points at the same speed (``training/release_int8.py``).
* Calibration data are the crops the detector itself feeds the network: faces
  found by the built-in detector in the calibration photos, cropped with the
  model's crop policy, plus their mirror images. Use photos like the ones the
  model will see (a few dozen faces are enough).

The result is a normal pipdetect model (float input and outputs, same metadata
with ``-int8`` appended to the name and the quantisation, its weight range
included, recorded under ``provenance["quantization"]``);
:class:`~pipdetect.LandmarkDetector` loads it unchanged. Needs ``onnx``
(``pip install '.[convert]'`` in the pipdetect checkout).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import NoFaceError
from ..image import ImageInput, load_image
from ..model import INPUT_NAME, OUTPUT_NAMES, ModelSpec, load_model
from ..results import replacing

__all__ = ["IMAGE_SUFFIXES", "calibration_batch", "quantize_model", "reference_preprocess"]

PathLike = Union[str, "os.PathLike[str]"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""Files taken from a calibration folder."""


def _expand(calibration: Iterable[ImageInput]) -> Iterator[ImageInput]:
    """Images and image files, folders expanded to their image files (sorted)."""
    if isinstance(calibration, (str, os.PathLike, np.ndarray)):
        calibration = [calibration]
    for item in calibration:
        if isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
            for path in sorted(Path(item).iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    yield path
        else:
            yield item


def calibration_batch(
    model: PathLike,
    calibration: Iterable[ImageInput],
    *,
    max_faces: int = 256,
    mirror: bool = True,
) -> np.ndarray:
    """The network inputs, (N, 3, H, W) float32, of the faces in the calibration photos.

    Each photo (a BGR array, an image file, or a folder of them) goes through the
    detector of ``model``: faces found by the built-in face detector, cropped with
    the model's crop policy and preprocessed exactly as at run time. ``mirror``
    adds each crop's left-right mirror image. At most ``max_faces`` faces are used
    (before mirroring). Raises :class:`~pipdetect.errors.NoFaceError` when no
    photo contains a detectable face.
    """
    from ..crop import warp_crops
    from ..detector import LandmarkDetector

    if isinstance(max_faces, bool) or not isinstance(max_faces, int) or max_faces < 1:
        raise ValueError(f"max_faces must be a positive integer, got {max_faces!r}")
    detector = LandmarkDetector(model, threads=None)
    spec = detector.spec
    crops = []
    count = 0
    for item in _expand(calibration):
        image = load_image(item)
        faces = detector.detect(image)
        if not faces:
            continue
        boxes = np.array([f.crop for f in faces[: max_faces - count]], dtype=np.float64)
        crops.append(warp_crops(image, boxes, spec.input_size))
        count += len(boxes)
        if count >= max_faces:
            break
    if not crops:
        raise NoFaceError(
            "no face found in any calibration photo; pass photos (or a folder of photos) "
            "with clearly visible faces, like the ones the model will see"
        )
    batch = np.concatenate(crops)
    if mirror:
        batch = np.concatenate([batch, batch[:, :, ::-1]])
    return reference_preprocess(batch, spec)


def reference_preprocess(crops: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """(N, H, W, 3) uint8 BGR -> (N, 3, H, W) float32 as the model expects (see model.py)."""
    x: np.ndarray = crops.astype(np.float32) / np.float32(255.0)
    if spec.channel_order == "RGB":
        x = x[..., ::-1]
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(0, 3, 1, 2), dtype=np.float32)


class _Reader:
    """onnxruntime CalibrationDataReader over a preprocessed batch, a few faces at a time."""

    def __init__(self, batch: np.ndarray, chunk: int = 8) -> None:
        self._chunks = [batch[i : i + chunk] for i in range(0, len(batch), chunk)]
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._chunks):
            return None
        self._next += 1
        return {INPUT_NAME: self._chunks[self._next - 1]}

    def rewind(self) -> None:
        self._next = 0


def quantize_model(
    model: PathLike,
    output: PathLike,
    calibration: Iterable[ImageInput],
    *,
    keep_heads_fp32: bool = True,
    reduce_range: bool = True,
    max_faces: int = 256,
    keep_first_fp32: int = 0,
) -> ModelSpec:
    """Write an int8 (static, QDQ) version of the fp32 pipdetect model ``model`` to ``output``.

    ``calibration``: photos with faces (BGR arrays, image files or folders; see
    :func:`calibration_batch`). ``keep_heads_fp32`` leaves the five output
    convolutions in float; ``keep_first_fp32`` the first that many convolutions from
    the input (in the order they run); ``reduce_range`` (default) quantises weights to 7 bits,
    [-64, 64], which makes the model exact on x86 CPUs without VNNI too (see the
    module's docstring); ``False`` uses the full 8 bits, accurate only on CPUs with
    VNNI, AMX or on Arm. Returns the spec stored in the new file. ``output`` (in an
    existing folder, not ``model`` itself) is replaced only by a whole file that
    loads (:func:`pipdetect.results.replacing`); on any failure it is left as it was.

    Raises :class:`~pipdetect.errors.ModelFormatError` if ``model`` is not a
    pipdetect model, :class:`ValueError` if it is already quantised or stores
    Winograd convolutions (an older converter's form: convert the checkpoint
    again), :class:`~pipdetect.errors.NoFaceError` if the calibration
    photos hold no face, :class:`ImportError` without ``onnx``.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .graph import HEAD_PREFIX, require_onnx

    onnx = require_onnx()
    src, out = Path(model), Path(output)
    if out.exists() and src.exists() and os.path.samefile(out, src):  # links too
        raise ValueError(f"output {out} is the input model itself; choose another file name")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {out.parent}")
    if isinstance(keep_first_fp32, bool) or not isinstance(keep_first_fp32, int) \
            or keep_first_fp32 < 0:
        raise ValueError(f"keep_first_fp32 must be a whole number >= 0, got {keep_first_fp32!r}")
    spec = load_model(src).spec
    if spec.provenance.get("quantization"):
        raise ValueError(f"{src} is already quantised; quantise the fp32 model instead")
    if isinstance(spec.provenance.get("convolutions"), dict):
        raise ValueError(
            f"{src} stores Winograd convolutions (written by an older pipdetect convert); "
            "convert the checkpoint again, which now writes plain convolutions, and quantise that"
        )
    batch = calibration_batch(src, calibration, max_faces=max_faces)

    # the output convolutions, and the nodes that evaluate the neighbour heads at the
    # selected cells (pipdetect.convert.graph), stay in float with keep_heads_fp32
    nodes = onnx.load(str(src)).graph.node  # in topological order, as ONNX requires
    heads = [n.name for n in nodes
             if set(n.output) & set(OUTPUT_NAMES) or n.name.startswith(HEAD_PREFIX)]
    first = [n.name for n in nodes if n.op_type == "Conv" and n.name not in heads]
    first = first[:keep_first_fp32]
    if len(first) < keep_first_fp32:
        raise ValueError(f"keep_first_fp32={keep_first_fp32}, but {src} has only {len(first)} "
                         "convolutions besides its output heads")
    with tempfile.TemporaryDirectory(prefix="pipdetect-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "int8.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            _Reader(batch),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=(heads if keep_heads_fp32 else []) + first,
        )
        result = onnx.load(str(quantized))

    new_spec = dataclasses.replace(
        spec,
        name=f"{spec.name}-int8",
        provenance={
            **spec.provenance,
            "quantization": {**_record(batch, keep_heads_fp32, reduce_range),
                             "fp32_first_convolutions": first},
        },
    )
    del result.metadata_props[:]
    for key, value in new_spec.to_metadata().items():
        result.metadata_props.add(key=key, value=value)
    with replacing(out) as tmp_out:  # out is the old file or the whole new one, never cut
        onnx.save_model(result, str(tmp_out))
        load_model(tmp_out)  # never leave behind a file pipdetect cannot load
    return new_spec


WEIGHT_RANGE = {True: (-64, 64), False: (-127, 127)}
"""int8 weight range by ``reduce_range`` (onnxruntime's symmetric per-channel ranges)."""


def _record(batch: np.ndarray, keep_heads_fp32: bool, reduce_range: bool) -> dict[str, Any]:
    import onnxruntime

    low, high = WEIGHT_RANGE[reduce_range]
    return {
        "type": "int8",
        "method": "onnxruntime static quantisation, QDQ, min/max calibration",
        "weights": "int8 per output channel" + (" (7-bit range)" if reduce_range else ""),
        "reduce_range": reduce_range,
        "weight_range": [low, high],
        "activations": "uint8 per tensor",
        "accurate_on": (
            "every CPU: x86 with or without VNNI (u8s8 pair sums <= 255*64*2 = 32640 fit "
            "int16), Arm64" if reduce_range else
            "x86 CPUs with VNNI or AMX, and Arm64; NOT x86 CPUs without VNNI (AVX2-only, "
            "AVX-512 without VNNI), whose u8s8 kernels saturate int16 pair sums"
        ),
        "heads": "fp32" if keep_heads_fp32 else "int8",
        "calibration_crops": len(batch),
        "onnxruntime_version": onnxruntime.__version__,
    }
