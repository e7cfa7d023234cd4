"""Convert PIP-Net PyTorch checkpoints into pipdetect's ONNX format, without PyTorch.

>>> from pipdetect.convert import convert_checkpoint
>>> spec = convert_checkpoint("epoch59.pth", "pipnet-r18-wflw.onnx",
...                           backbone="resnet18", dataset="WFLW")

The checkpoint is read by a restricted unpickler that only rebuilds tensors
(:mod:`pipdetect.convert.checkpoint`), every weight is checked against the
reference architecture (:mod:`pipdetect.convert.arch`), BatchNorm is folded and
the graph written with ``onnx`` (:mod:`pipdetect.convert.graph`), which comes
with ``pip install '.[convert]'`` in the pipdetect checkout (or ``pip install onnx``).
Command line: ``pipdetect convert``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..crop import CropPolicy, preset_crop_policy
from ..errors import CheckpointError
from ..model import ModelSpec
from ..presets import PRESETS, Preset, get_preset, load_meanface
from ..results import replacing
from .arch import (
    SHORT_NAMES,
    STRIDES,
    build_architecture,
    check_state_dict,
    infer_heads,
    normalise_backbone,
)
from .checkpoint import Checkpoint, load_checkpoint

__all__ = ["CONVERTER_VERSION", "convert_checkpoint", "load_checkpoint"]

CONVERTER_VERSION = "1"
"""Bumped whenever the converter's output for the same checkpoint changes."""
REFERENCE_URL = "https://github.com/jhb86253817/PIPNet"

_DATASET_TERMS = {
    "WFLW": "WFLW (faces from WIDER FACE)",
    "300W": "300W (iBUG)",
    "COFW": "COFW",
    "AFLW": "AFLW",
    "LaPa": "LaPa",
    "300W-CelebA": "300W (iBUG) with unlabelled CelebA images",
    "300W-COFW-WFLW": "300W (iBUG), COFW and WFLW",
}

PathLike = Union[str, "os.PathLike[str]"]


def license_note(preset: Preset | None) -> str:
    """The licence statement stored with a converted model."""
    if preset is None:
        return ("unknown: converted from a custom checkpoint; the licence of the weights is "
                "whatever their author chose, and it inherits the terms of the training data")
    data = _DATASET_TERMS.get(preset.name, preset.name)
    return (
        "Research use only (non-commercial). The PIP-Net code (Jin et al. 2021, "
        f"{REFERENCE_URL}) is MIT-licensed, but these official weights were trained on {data}, "
        "a dataset released for non-commercial research only; the weights carry the same "
        "restriction. Check the dataset terms before any other use."
    )


def _accuracy(preset: Preset | None, backbone: str, stride: int) -> dict[str, Any]:
    if preset is None or stride != 32 or backbone not in preset.nme:
        return {}
    return {
        "metric": "NME",
        "value": preset.nme[backbone],
        "unit": "%",
        "normalisation": preset.nme_normalisation,
        "test_set": preset.name,
        "source": "published for the official checkpoint (Jin et al. 2021, PIP-Net paper); "
                  "not measured by pipdetect",
    }


def _input_size(value: int | tuple[int, int] | list[int], stride: int) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        h = w = int(value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        h, w = (int(v) for v in value)
    else:
        raise ValueError(f"input_size must be an integer or (height, width), got {value!r}")
    if h <= 0 or w <= 0 or h % stride or w % stride:
        raise ValueError(
            f"input size {h}x{w} must be a positive multiple of the stride {stride} "
            "(the training input size of the official models is 256)"
        )
    return h, w


def _read_json(path: PathLike, what: str) -> Any:
    import json

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{what} file not found: {file}")
    try:
        return json.loads(file.read_text())
    except ValueError as exc:
        raise ValueError(f"{what} file {file} is not JSON: {exc}") from None


def _crop_policy(crop_policy: Any, preset: Preset | None) -> dict[str, Any]:
    if isinstance(crop_policy, CropPolicy):
        return crop_policy.to_dict()
    if isinstance(crop_policy, (str, os.PathLike)) and str(crop_policy).endswith(".json"):
        crop_policy = _read_json(crop_policy, "crop policy")
    if isinstance(crop_policy, dict):
        return CropPolicy.from_dict(crop_policy).to_dict()
    key = crop_policy if crop_policy is not None else (preset.name if preset else None)
    try:
        return preset_crop_policy(key).to_dict()
    except KeyError as exc:
        raise ValueError(f"crop policy: {exc.args[0] if exc.args else exc}") from None


INFO_KEYS = ("dataset", "license", "accuracy", "training")
"""What ``info=`` may say about a model trained outside the official releases."""


def _check_info(info: Any) -> dict[str, Any]:
    if info is None:
        return {}
    if isinstance(info, (str, os.PathLike)):
        info = _read_json(info, "model info")
    if not isinstance(info, dict):
        raise ValueError("model info must be a JSON object with keys " + ", ".join(INFO_KEYS))
    unknown = sorted(set(info) - set(INFO_KEYS))
    if unknown:
        raise ValueError(f"model info has unknown keys {unknown}; allowed: {', '.join(INFO_KEYS)}")
    for key in ("dataset", "license"):
        if key in info and not (isinstance(info[key], str) and info[key].strip()):
            raise ValueError(f"model info {key!r} must be a non-empty string")
    for key in ("accuracy", "training"):
        if key in info and not isinstance(info[key], dict):
            raise ValueError(f"model info {key!r} must be a JSON object")
    return dict(info)


def _strip_module_prefix(state: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], bool]:
    """Drop the ``module.`` prefix ``torch.nn.DataParallel`` adds, when every key has it."""
    prefix = "module."
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}, True
    return state, False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (_dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch and epoch.isdigit()
            else _dt.datetime.now(_dt.timezone.utc))
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _check_counts(L: int, K: int, preset: Preset | None, meanface: np.ndarray,
                  meanface_source: str, num_nb: int | None, source: str) -> None:
    if preset is not None and preset.num_landmarks != L:
        same = [p.name for p in PRESETS.values() if p.num_landmarks == L]
        hint = (f"use --dataset {' or '.join(same)}" if same else
                "pass the mean face it was trained with (--meanface)")
        raise CheckpointError(
            f"{source} predicts {L} landmarks (cls_layer has {L} output channels) but dataset "
            f"{preset.name} has {preset.num_landmarks}: {hint}"
        )
    if len(meanface) != L:
        raise CheckpointError(
            f"{source} predicts {L} landmarks (cls_layer has {L} output channels) but the mean "
            f"face {meanface_source} has {len(meanface)}; use the mean face the model was "
            "trained with"
        )
    if num_nb is not None and num_nb != K:
        raise CheckpointError(
            f"{source} was trained with num_nb {K} (nb_x_layer has {L}x{K} output channels), "
            f"not {num_nb}; drop --num-nb or pass {K}"
        )
    if not 1 <= K < L:
        raise CheckpointError(f"{source}: num_nb {K} must be between 1 and {L - 1}")


def convert_checkpoint(
    checkpoint: PathLike,
    output: PathLike,
    *,
    backbone: str,
    dataset: str | None = None,
    meanface: PathLike | None = None,
    num_nb: int | None = None,
    name: str | None = None,
    stride: int = 32,
    input_size: int | tuple[int, int] = 256,
    crop_policy: str | PathLike | dict[str, Any] | CropPolicy | None = None,
    scheme: str | None = None,
    info: PathLike | dict[str, Any] | None = None,
) -> ModelSpec:
    """Convert a PIP-Net ``state_dict`` checkpoint into a pipdetect ONNX model.

    Parameters
    ----------
    checkpoint:
        ``.pth`` file written by ``torch.save`` (zip or legacy format), holding the
        ``state_dict`` (optionally under ``"state_dict"`` or similar, optionally with
        the ``module.`` prefix of ``DataParallel``). Never executed: see
        :mod:`pipdetect.convert.checkpoint`.
    output:
        Path of the ONNX file to write, in an existing folder. Written to a temporary
        file beside it and renamed over it only once complete
        (:func:`pipdetect.results.replacing`): a failed or interrupted conversion
        leaves an existing file as it was and no temporary file behind. Refused if it
        is the checkpoint, or a link to it.
    backbone:
        ``resnet18``, ``resnet50``, ``resnet101`` or ``mobilenet_v2``.
    dataset:
        Preset of an official training set (``WFLW``, ``300W``, ``COFW``, ``AFLW``,
        ``LaPa``, ``300W-CelebA``, ``300W-COFW-WFLW``; case-insensitive): mean face,
        landmark scheme, published accuracy and licence note come from it.
    meanface:
        Instead of ``dataset``: the training mean face of a custom model, a file
        (``x1 y1 x2 y2 ...`` normalised to the crop) or a preset name (``"300W"``)
        whose mean face it was trained with.
    num_nb:
        Expected number of neighbours; read from the checkpoint, so it is only checked.
    name:
        Model name (default ``pipnet-r18-wflw`` style, or the output file's stem).
    stride:
        The network's ``net_stride`` in pixels (32 for every official model).
    input_size:
        Network input in pixels, an integer or (height, width); 256 for the official models.
    crop_policy:
        Preset name whose crop policy to store (default: the dataset's; 300W's for
        a custom mean face), a ``.json`` file holding one (as ``training/train.py``
        writes), or a :class:`~pipdetect.crop.CropPolicy` / its dict.
    scheme:
        Landmark scheme of a custom model (``"300w68"`` ...; see
        :mod:`pipdetect.schemes`); default ``"custom"``, or the dataset's.
    info:
        For a model you trained: a dict, or a JSON file, with any of ``dataset``
        (free text naming the training data), ``license``, ``accuracy`` (measured
        figures) and ``training`` (how it was trained: command, commit, data;
        stored as ``provenance["training"]``). Replaces what a preset would say.

    Returns the :class:`~pipdetect.model.ModelSpec` written into the file.

    Raises :class:`~pipdetect.errors.CheckpointError` for unsafe, truncated or
    mismatching checkpoints, :class:`ValueError` for bad arguments,
    :class:`FileNotFoundError` for missing inputs and :class:`ImportError` when
    ``onnx`` is not installed.
    """
    from .graph import OPSET, build_graph, require_onnx

    onnx = require_onnx()
    backbone = normalise_backbone(backbone)
    if (dataset is None) == (meanface is None):
        raise ValueError(
            "give either a dataset preset (official weights) or a mean face file (custom "
            "training), not " + ("both" if dataset is not None else "neither")
        )
    preset: Preset | None = None
    if dataset is not None:
        try:
            preset = get_preset(dataset)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)):
        raise ValueError(f"stride must be an integer, got {stride!r}")
    stride = int(stride)
    if stride not in STRIDES[backbone]:
        raise ValueError(
            f"the reference PIP-Net {backbone} has no net_stride {stride}; it supports "
            f"{', '.join(map(str, STRIDES[backbone]))}"
        )
    size = _input_size(input_size, stride)
    policy = _crop_policy(crop_policy, preset)
    facts = _check_info(info)
    if scheme is not None:
        from ..schemes import get_scheme

        try:
            scheme = get_scheme(scheme).name
        except KeyError as exc:
            raise ValueError(exc.args[0] if exc.args else str(exc)) from None
    if preset is not None:
        mean_face = load_meanface(preset.name)
        mean_source = f"of {preset.name}"
    else:
        text = str(meanface)  # load_meanface tells a preset name from a file path
        try:
            mean_face = load_meanface(text)
        except (ValueError, KeyError) as exc:
            raise ValueError(exc.args[0] if exc.args else str(exc)) from None
        mean_source = text

    src = Path(checkpoint)
    out = Path(output)
    if out.exists() and src.exists() and os.path.samefile(out, src):  # links too
        raise ValueError(f"output {out} is the checkpoint itself; choose another file name")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {out.parent}")
    ckpt: Checkpoint = load_checkpoint(src)
    state, stripped = _strip_module_prefix(ckpt.state_dict)
    L, K = infer_heads(state, str(src))
    _check_counts(L, K, preset, mean_face, mean_source, num_nb, str(src))
    arch = build_architecture(backbone, stride, L, K)
    check_state_dict(arch, state, str(src))

    if name is None:
        if preset is not None:
            name = f"pipnet-{SHORT_NAMES[backbone]}-{preset.name.lower()}"
            if stride != 32:
                name += f"-s{stride}"
        else:
            name = out.stem
    spec = ModelSpec(
        name=name,
        num_landmarks=L,
        num_nb=K,
        meanface=mean_face,
        crop_policy=policy,
        scheme=scheme or (preset.scheme if preset is not None else "custom"),
        input_size=size,
        stride=stride,
        dataset=facts.get("dataset", preset.name if preset is not None else None),
        backbone=backbone,
        license=facts.get("license", license_note(preset)),
        accuracy=facts.get("accuracy", _accuracy(preset, backbone, stride)),
        provenance={
            **({"training": facts["training"]} if "training" in facts else {}),
            "source_file": src.name,
            "source_sha256": _sha256(src),
            "source_bytes": src.stat().st_size,
            "checkpoint_format": ckpt.format,
            "checkpoint_dtypes": list(ckpt.dtypes),
            "state_dict_key": ckpt.wrapper_key,
            "module_prefix_stripped": stripped,
            "converter": "pipdetect.convert",
            "converter_version": CONVERTER_VERSION,
            "pipdetect_version": _pipdetect_version(),
            "converted_at": _now(),
            "batchnorm_folded": True,
            "convolutions": "direct",
            "onnx_opset": OPSET,
            "reference": REFERENCE_URL,
        },
    )
    doc = (f"PIP-Net {backbone}, stride {stride}, {L} landmarks, num_nb {K}; converted by "
           f"pipdetect from {src.name}. Licence: {spec.license}")
    model = build_graph(arch, state, size, spec.to_metadata(), doc=doc)
    with replacing(out) as tmp:  # out is the old file or the whole new one, never cut
        onnx.save_model(model, str(tmp))
    return spec


def _pipdetect_version() -> str:
    from .._version import __version__

    return __version__

