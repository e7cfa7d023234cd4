"""The PIP-Net networks as plain data: layers, state_dict keys and expected shapes.

Mirrors the reference implementation (``lib/networks.py`` of the PIP-Net
repository, Jin et al. 2021), whose checkpoints use torchvision's key names:

* ``Pip_resnet18/50/101``: torchvision ResNet ``conv1``/``bn1``/ReLU/``maxpool``/
  ``layer1``-``layer4`` (no ``fc``), then by ``net_stride``:
  32: nothing; 64: ``layer5`` (3x3 conv, stride 2, with bias, 512 channels) +
  ``bn5`` + ReLU; 128: that and ``layer6``/``bn6`` likewise; 16 (ResNet-18 only):
  ``deconv1`` (4x4 transposed conv, stride 2, no bias) + ``bn_deconv1`` + ReLU.
* ``Pip_mbnetv2``: torchvision MobileNetV2 ``features`` (width 1.0, ReLU6), stride 32.
* ``efficientnet_lite0`` (pipdetect's own default model, ``training/nets.py``; not
  in the reference): EfficientNet-Lite0 with the key names of
  ``efficientnet-lite-pytorch`` (``_conv_stem``/``_bn0``, ``_blocks.N`` with
  ``_expand_conv``/``_bn0``, ``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``,
  then ``_conv_head``/``_bn1``; no ``_fc``), ReLU6, TensorFlow "SAME" padding
  (one pixel more after than before for stride 2), BatchNorm ``eps = 1e-3``;
  stride 32.
* Five 1x1 convolution heads with bias on the last feature map, no activation
  (the reference defines a sigmoid but never applies it): ``cls_layer``,
  ``x_layer``, ``y_layer`` (L channels), ``nb_x_layer``, ``nb_y_layer`` (L*K).

BatchNorm layers use torchvision's ``eps = 1e-5`` unless a layer says otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import CheckpointError
from ..model import INPUT_NAME

__all__ = [
    "BACKBONES",
    "BN_EPS",
    "Add",
    "Architecture",
    "Conv",
    "MaxPool",
    "build_architecture",
    "check_state_dict",
    "detect_backbone",
    "infer_heads",
    "normalise_backbone",
]

BACKBONES = ("resnet18", "resnet50", "resnet101", "mobilenet_v2", "efficientnet_lite0")
SHORT_NAMES = {"resnet18": "r18", "resnet50": "r50", "resnet101": "r101", "mobilenet_v2": "mbv2",
               "efficientnet_lite0": "lite0"}
STRIDES = {
    "resnet18": (16, 32, 64, 128),
    "resnet50": (32, 64, 128),
    "resnet101": (32, 64, 128),
    "mobilenet_v2": (32,),
    "efficientnet_lite0": (32,),
}
BN_EPS = 1e-5
LITE_BN_EPS = 1e-3
"""BatchNorm epsilon of EfficientNet-Lite (TensorFlow's default, kept by the PyTorch port)."""
HEADS = (("cls_layer", "cls"), ("x_layer", "x"), ("y_layer", "y"),
         ("nb_x_layer", "nb_x"), ("nb_y_layer", "nb_y"))
BOOKKEEPING_SUFFIX = ".num_batches_tracked"

_RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
# torchvision mobilenet_v2 inverted residual settings: expansion t, channels c, repeats n, stride s
_MBV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                  (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# EfficientNet-Lite0 stages: repeats, kernel, stride, expansion, output channels
_LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                 (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
_ALIASES = {
    "r18": "resnet18", "resnet-18": "resnet18", "resnet_18": "resnet18",
    "r50": "resnet50", "resnet-50": "resnet50", "resnet_50": "resnet50",
    "r101": "resnet101", "resnet-101": "resnet101", "resnet_101": "resnet101",
    "mobilenetv2": "mobilenet_v2", "mobilenet-v2": "mobilenet_v2", "mbv2": "mobilenet_v2",
    "mbnetv2": "mobilenet_v2",
    "lite0": "efficientnet_lite0", "efficientnet-lite0": "efficientnet_lite0",
    "efficientnetlite0": "efficientnet_lite0",
}


@dataclass(frozen=True)
class Conv:
    """A convolution (optionally transposed) with optional folded BatchNorm and activation."""

    name: str
    """state_dict prefix of the convolution (``layer1.0.conv1``)."""
    input: str
    output: str
    out_channels: int
    in_channels: int
    kernel: int
    stride: int = 1
    pad: int = 0
    """Zero padding on every side; see ``pads`` for uneven padding."""
    groups: int = 1
    bias: bool = False
    """Whether the checkpoint holds ``<name>.bias``."""
    bn: str | None = None
    """state_dict prefix of the BatchNorm2d that follows, if any."""
    act: str | None = None
    """``"relu"``, ``"relu6"`` or ``None``."""
    transpose: bool = False
    pads: tuple[int, int, int, int] | None = None
    """ONNX ``pads`` (top, left, bottom, right) when they differ; ``None``: ``pad`` everywhere."""
    bn_eps: float = BN_EPS

    @property
    def onnx_pads(self) -> list[int]:
        """The ONNX ``pads`` attribute: (top, left, bottom, right)."""
        return list(self.pads) if self.pads is not None else [self.pad] * 4

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        k = self.kernel
        if self.transpose:
            return (self.in_channels, self.out_channels // self.groups, k, k)
        return (self.out_channels, self.in_channels // self.groups, k, k)

    def params(self) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {f"{self.name}.weight": self.weight_shape}
        if self.bias:
            out[f"{self.name}.bias"] = (self.out_channels,)
        if self.bn is not None:
            for suffix in ("weight", "bias", "running_mean", "running_var"):
                out[f"{self.bn}.{suffix}"] = (self.out_channels,)
        return out


@dataclass(frozen=True)
class MaxPool:
    """3x3 max pooling, stride 2, padding 1 (torchvision ResNet's ``maxpool``)."""

    input: str
    output: str


@dataclass(frozen=True)
class Add:
    """Residual sum, optionally followed by ReLU."""

    a: str
    b: str
    output: str
    relu: bool


Layer = Conv | MaxPool | Add


@dataclass(frozen=True)
class Architecture:
    """One PIP-Net: backbone, stride, head sizes and the ordered layers."""

    backbone: str
    stride: int
    num_landmarks: int
    num_nb: int
    layers: tuple[Layer, ...]

    def expected(self) -> dict[str, tuple[int, ...]]:
        """Every state_dict key the network uses, with its shape (bookkeeping excluded)."""
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in self.layers:
            if isinstance(layer, Conv):
                shapes.update(layer.params())
        return shapes


def normalise_backbone(name: str) -> str:
    """Canonical backbone name (``resnet18`` ...) of a user-given one (``R18``, ``mobilenetv2``)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in BACKBONES:
        raise ValueError(
            f"unknown backbone {name!r}; PIP-Net checkpoints use one of {', '.join(BACKBONES)}"
        )
    return key


def build_architecture(backbone: str, stride: int, num_landmarks: int, num_nb: int) -> Architecture:
    """The layers of a PIP-Net with this backbone, stride and head sizes."""
    backbone = normalise_backbone(backbone)
    if stride not in STRIDES[backbone]:
        raise ValueError(
            f"the reference PIP-Net {backbone} has no net_stride {stride}; it supports "
            f"{', '.join(map(str, STRIDES[backbone]))}"
        )
    layers: list[Layer]
    if backbone == "mobilenet_v2":
        layers, x, channels = _mobilenet_v2()
    elif backbone == "efficientnet_lite0":
        layers, x, channels = _efficientnet_lite0()
    else:
        layers, x, channels = _resnet(backbone)
        if stride in (64, 128):
            layers.append(Conv("layer5", x, "layer5", 512, channels, 3, 2, 1, bias=True,
                               bn="bn5", act="relu"))
            x, channels = "layer5", 512
        if stride == 128:
            layers.append(Conv("layer6", x, "layer6", 512, 512, 3, 2, 1, bias=True,
                               bn="bn6", act="relu"))
            x = "layer6"
        if stride == 16:
            layers.append(Conv("deconv1", x, "deconv1", 512, channels, 4, 2, 1,
                               bn="bn_deconv1", act="relu", transpose=True))
            x, channels = "deconv1", 512
    L, K = num_landmarks, num_nb
    for key, output in HEADS:
        out_ch = L * K if output.startswith("nb_") else L
        layers.append(Conv(key, x, output, out_ch, channels, 1, bias=True))
    return Architecture(backbone, stride, L, K, tuple(layers))


def _resnet(backbone: str) -> tuple[list[Layer], str, int]:
    kind, counts = _RESNETS[backbone]
    layers: list[Layer] = [
        Conv("conv1", INPUT_NAME, "conv1", 64, 3, 7, 2, 3, bn="bn1", act="relu"),
        MaxPool("conv1", "maxpool"),
    ]
    x, inplanes = "maxpool", 64
    for li, (planes, blocks) in enumerate(zip((64, 128, 256, 512), counts, strict=True), start=1):
        for b in range(blocks):
            s = (1 if li == 1 else 2) if b == 0 else 1
            p = f"layer{li}.{b}"
            if kind == "basic":
                out = planes
                layers.append(Conv(f"{p}.conv1", x, f"{p}.conv1", planes, inplanes, 3, s, 1,
                                   bn=f"{p}.bn1", act="relu"))
                layers.append(Conv(f"{p}.conv2", f"{p}.conv1", f"{p}.conv2", planes, planes, 3,
                                   1, 1, bn=f"{p}.bn2"))
                last = f"{p}.conv2"
            else:  # torchvision Bottleneck (v1.5: the stride sits on the 3x3 conv)
                out = planes * 4
                layers.append(Conv(f"{p}.conv1", x, f"{p}.conv1", planes, inplanes, 1,
                                   bn=f"{p}.bn1", act="relu"))
                layers.append(Conv(f"{p}.conv2", f"{p}.conv1", f"{p}.conv2", planes, planes, 3,
                                   s, 1, bn=f"{p}.bn2", act="relu"))
                layers.append(Conv(f"{p}.conv3", f"{p}.conv2", f"{p}.conv3", out, planes, 1,
                                   bn=f"{p}.bn3"))
                last = f"{p}.conv3"
            shortcut = x
            if s != 1 or inplanes != out:
                layers.append(Conv(f"{p}.downsample.0", x, f"{p}.downsample", out, inplanes, 1,
                                   s, bn=f"{p}.downsample.1"))
                shortcut = f"{p}.downsample"
            layers.append(Add(last, shortcut, p, relu=True))
            x, inplanes = p, out
    return layers, x, inplanes


def _mobilenet_v2() -> tuple[list[Layer], str, int]:
    layers: list[Layer] = [
        Conv("features.0.0", INPUT_NAME, "features.0", 32, 3, 3, 2, 1, bn="features.0.1",
             act="relu6"),
    ]
    x, inp, idx = "features.0", 32, 1
    for t, c, n, s in _MBV2_SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = round(inp * t)
            p = f"features.{idx}.conv"
            cur, j = x, 0
            if t != 1:
                layers.append(Conv(f"{p}.0.0", cur, f"{p}.0", hidden, inp, 1, bn=f"{p}.0.1",
                                   act="relu6"))
                cur, j = f"{p}.0", 1
            layers.append(Conv(f"{p}.{j}.0", cur, f"{p}.{j}", hidden, hidden, 3, stride, 1,
                               groups=hidden, bn=f"{p}.{j}.1", act="relu6"))
            layers.append(Conv(f"{p}.{j + 1}", f"{p}.{j}", f"{p}.{j + 1}", c, hidden, 1,
                               bn=f"{p}.{j + 2}"))
            out = f"{p}.{j + 1}"
            if stride == 1 and inp == c:
                layers.append(Add(out, x, f"features.{idx}", relu=False))
                out = f"features.{idx}"
            x, inp, idx = out, c, idx + 1
    layers.append(Conv(f"features.{idx}.0", x, f"features.{idx}", 1280, inp, 1,
                       bn=f"features.{idx}.1", act="relu6"))
    return layers, f"features.{idx}", 1280


def _same_pads(kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow "SAME" padding for an even input size: the odd pixel goes after."""
    total = max(kernel - stride, 0)
    before, after = total // 2, total - total // 2
    return (before, before, after, after)


def _efficientnet_lite0() -> tuple[list[Layer], str, int]:
    eps = LITE_BN_EPS

    def conv(name: str, src: str, cout: int, cin: int, k: int, s: int = 1, groups: int = 1,
             bn: str = "", act: str | None = "relu6") -> Conv:
        return Conv(name, src, name, cout, cin, k, s, groups=groups, bn=bn, act=act,
                    pads=_same_pads(k, s), bn_eps=eps)

    layers: list[Layer] = [conv("_conv_stem", INPUT_NAME, 32, 3, 3, 2, bn="_bn0")]
    x, cin, index = "_conv_stem", 32, 0
    for repeats, k, stride, expand, cout in _LITE0_STAGES:
        for r in range(repeats):
            s = stride if r == 0 else 1
            p = f"_blocks.{index}"
            hidden = cin * expand
            cur = x
            if expand != 1:
                layers.append(conv(f"{p}._expand_conv", cur, hidden, cin, 1, bn=f"{p}._bn0"))
                cur = f"{p}._expand_conv"
            layers.append(conv(f"{p}._depthwise_conv", cur, hidden, hidden, k, s, groups=hidden,
                               bn=f"{p}._bn1"))
            layers.append(conv(f"{p}._project_conv", f"{p}._depthwise_conv", cout, hidden, 1,
                               bn=f"{p}._bn2", act=None))
            out = f"{p}._project_conv"
            if s == 1 and cin == cout:
                layers.append(Add(out, x, p, relu=False))
                out = p
            x, cin, index = out, cout, index + 1
    layers.append(conv("_conv_head", x, 1280, cin, 1, bn="_bn1"))
    return layers, "_conv_head", 1280


def infer_heads(state: Mapping[str, np.ndarray], source: str = "checkpoint") -> tuple[int, int]:
    """(num_landmarks, num_nb) read from the shapes of ``cls_layer`` and ``nb_x_layer``."""
    missing = [k for k in ("cls_layer.weight", "nb_x_layer.weight") if k not in state]
    if missing:
        sample = ", ".join(list(state)[:4])
        raise CheckpointError(
            f"{source}: no PIP-Net heads ({' and '.join(missing)} missing; keys start with "
            f"{sample} ...); expected a PIP-Net state_dict with cls_layer, x_layer, y_layer, "
            "nb_x_layer and nb_y_layer"
        )
    cls_w, nb_w = state["cls_layer.weight"], state["nb_x_layer.weight"]
    if cls_w.ndim != 4 or nb_w.ndim != 4:
        raise CheckpointError(
            f"{source}: cls_layer.weight {cls_w.shape} / nb_x_layer.weight {nb_w.shape} are not "
            "convolution weights"
        )
    L, LK = int(cls_w.shape[0]), int(nb_w.shape[0])
    if L < 2 or LK % L:
        raise CheckpointError(
            f"{source}: nb_x_layer has {LK} output channels, not a multiple of the {L} "
            "landmarks of cls_layer"
        )
    return L, LK // L


def detect_backbone(keys: Iterable[str]) -> str | None:
    """Best guess of the backbone a state_dict was saved from (for error messages)."""
    keys = set(keys)
    if "_conv_stem.weight" in keys:
        n = len({k.split(".")[1] for k in keys if k.startswith("_blocks.")})
        return "efficientnet_lite0" if n == 16 else f"an EfficientNet with {n} blocks"
    if "features.0.0.weight" in keys:
        return "mobilenet_v2" if "features.18.0.weight" in keys else "a MobileNet variant"
    blocks = []
    for li in range(1, 5):
        pattern = re.compile(rf"^layer{li}\.(\d+)\.conv1\.weight$")
        ids = [int(m.group(1)) for k in keys if (m := pattern.match(k))]
        blocks.append(max(ids) + 1 if ids else 0)
    if not blocks[0]:
        return None
    kind = "bottleneck" if "layer1.0.conv3.weight" in keys else "basic"
    for name, (k, counts) in _RESNETS.items():
        if k == kind and tuple(blocks) == counts:
            return name
    return f"a ResNet with {kind} blocks {'/'.join(map(str, blocks))}"


def detect_stride(keys: Iterable[str]) -> int:
    """The reference ``net_stride`` implied by the extra layers present in a state_dict."""
    keys = set(keys)
    if "deconv1.weight" in keys:
        return 16
    if "layer6.weight" in keys:
        return 128
    if "layer5.weight" in keys:
        return 64
    return 32


def check_state_dict(arch: Architecture, state: Mapping[str, np.ndarray],
                     source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``state`` has exactly the keys and shapes of ``arch``.

    ``*.num_batches_tracked`` entries (BatchNorm bookkeeping) are ignored;
    every other entry must be used, and every used entry must be present with
    the right shape and a floating-point dtype.
    """
    expected = arch.expected()
    keys = [k for k in state if not k.endswith(BOOKKEEPING_SUFFIX)]
    missing = [k for k in expected if k not in state]
    unused = [k for k in keys if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {expected[k]})"
        for k in keys if k in expected and tuple(state[k].shape) != expected[k]
    ]
    not_float = [f"{k} ({state[k].dtype})" for k in keys
                 if k in expected and state[k].dtype.kind != "f"]
    if not (missing or unused or wrong or not_float):
        return
    problems = []
    actual = detect_backbone(state)
    if actual is not None and actual != arch.backbone:
        problems.append(
            f"the weights are from {actual}, not {arch.backbone} (pass --backbone {actual})"
            if actual in BACKBONES else
            f"the weights are from {actual}, not {arch.backbone}"
        )
    stride = detect_stride(state)
    if stride != arch.stride and actual in (arch.backbone, None):
        problems.append(f"the extra layers present mean net_stride {stride}, not {arch.stride} "
                        f"(pass --stride {stride})")
    for label, items in (("missing", missing), ("unused", unused),
                         ("wrong shape", wrong), ("not floating point", not_float)):
        if items:
            shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
            problems.append(f"{len(items)} {label}: {shown}")
    raise CheckpointError(
        f"{source} does not match PIP-Net {arch.backbone} (stride {arch.stride}, "
        f"{arch.num_landmarks} landmarks, num_nb {arch.num_nb}): " + "; ".join(problems)
    )
