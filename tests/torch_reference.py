"""PIP-Net in plain PyTorch, for the converter's parity tests (test-only; needs torch).

Written from the architecture description (reference ``lib/networks.py``:
torchvision backbones + five 1x1 heads) without torchvision, which the test
machines do not have: the ResNet basic / bottleneck blocks and the MobileNetV2
inverted residuals are defined here with torchvision's module names, so
``state_dict()`` has exactly the keys of the official checkpoints
(``conv1.weight``, ``layer1.0.bn1.running_mean``, ``features.1.conv.0.0.weight``,
``cls_layer.bias`` ...).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

RESNET_LAYOUT = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _resnet_layers(kind: str, counts: tuple[int, ...]) -> tuple[list[nn.Sequential], int]:
    block = BasicBlock if kind == "basic" else Bottleneck
    inplanes = 64
    layers = []
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts, strict=True)):
        stride = 1 if i == 0 else 2
        downsample = None
        if stride != 1 or inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        blocks = [block(inplanes, planes, stride, downsample)]
        inplanes = planes * block.expansion
        blocks += [block(inplanes, planes) for _ in range(1, n)]
        layers.append(nn.Sequential(*blocks))
    return layers, inplanes


class PipResNet(nn.Module):
    """Pip_resnet18/50/101: ResNet trunk, optional stride layers, five 1x1 heads."""

    def __init__(self, backbone: str, num_lms: int, num_nb: int, net_stride: int = 32) -> None:
        super().__init__()
        kind, counts = RESNET_LAYOUT[backbone]
        self.net_stride = net_stride
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, channels = _resnet_layers(kind, counts)
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        if net_stride in (64, 128):
            self.layer5 = nn.Conv2d(channels, 512, 3, 2, 1)
            self.bn5 = nn.BatchNorm2d(512)
            channels = 512
        if net_stride == 128:
            self.layer6 = nn.Conv2d(512, 512, 3, 2, 1)
            self.bn6 = nn.BatchNorm2d(512)
        if net_stride == 16:
            self.deconv1 = nn.ConvTranspose2d(channels, 512, 4, 2, 1, bias=False)
            self.bn_deconv1 = nn.BatchNorm2d(512)
            channels = 512
        _add_heads(self, channels, num_lms, num_nb)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if self.net_stride in (64, 128):
            x = F.relu(self.bn5(self.layer5(x)))
        if self.net_stride == 128:
            x = F.relu(self.bn6(self.layer6(x)))
        if self.net_stride == 16:
            x = F.relu(self.bn_deconv1(self.deconv1(x)))
        return _heads(self, x)


class ConvBNReLU6(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class PipMobileNetV2(nn.Module):
    """Pip_mbnetv2: MobileNetV2 ``features`` (width 1.0), five 1x1 heads, stride 32."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_lms: int, num_nb: int) -> None:
        super().__init__()
        features: list[nn.Module] = [ConvBNReLU6(3, 32, stride=2)]
        inp = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                features.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        features.append(ConvBNReLU6(inp, 1280, kernel=1))
        self.features = nn.Sequential(*features)
        _add_heads(self, 1280, num_lms, num_nb)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _heads(self, self.features(x))


def _add_heads(net: nn.Module, channels: int, num_lms: int, num_nb: int) -> None:
    net.cls_layer = nn.Conv2d(channels, num_lms, 1)
    net.x_layer = nn.Conv2d(channels, num_lms, 1)
    net.y_layer = nn.Conv2d(channels, num_lms, 1)
    net.nb_x_layer = nn.Conv2d(channels, num_nb * num_lms, 1)
    net.nb_y_layer = nn.Conv2d(channels, num_nb * num_lms, 1)


def _heads(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (net.cls_layer(x), net.x_layer(x), net.y_layer(x), net.nb_x_layer(x),
            net.nb_y_layer(x))


def make_pipnet(backbone: str, num_lms: int, num_nb: int, net_stride: int = 32,
                seed: int = 0) -> nn.Module:
    """A PIP-Net with random weights *and* random BatchNorm statistics, in eval mode.

    Convolutions get He-normal weights and BatchNorm random affine parameters
    and running statistics, scaled so activations stay O(1) through 100 layers
    (every folded BatchNorm changes the output, so folding is really tested).
    Heads get small random biases.
    """
    torch.manual_seed(seed)
    if backbone == "mobilenet_v2":
        if net_stride != 32:
            raise ValueError("the reference MobileNetV2 PIP-Net has stride 32 only")
        net: nn.Module = PipMobileNetV2(num_lms, num_nb)
    else:
        net = PipResNet(backbone, num_lms, num_nb, net_stride)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = module.weight[0].numel() if isinstance(module, nn.Conv2d) else \
                    module.weight.shape[0] * module.weight[0, 0].numel() / 4
                module.weight.normal_(0.0, float(np.sqrt(2.0 / fan_in)), generator=gen)
                if module.bias is not None:
                    module.bias.uniform_(-0.1, 0.1, generator=gen)
            elif isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(torch.empty(c).uniform_(0.3, 0.9, generator=gen))
                module.bias.copy_(torch.empty(c).normal_(0.0, 0.1, generator=gen))
                module.running_mean.copy_(torch.empty(c).normal_(0.0, 0.2, generator=gen))
                module.running_var.copy_(torch.empty(c).uniform_(0.5, 2.0, generator=gen))
                module.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,),
                                                                   generator=gen)))
    return net.eval()


def run(net: nn.Module, image: np.ndarray) -> list[np.ndarray]:
    """The five output maps for a (B, 3, H, W) float32 batch, as NumPy arrays."""
    with torch.no_grad():
        return [t.numpy() for t in net(torch.from_numpy(image))]
