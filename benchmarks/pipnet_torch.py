"""PIP-Net in PyTorch eager mode, for the benchmark only (pipdetect never imports torch).

Written from docs/design.md (the network) and the layout of the authors' checkpoints:
a torchvision-style ResNet (``conv1``/``bn1``/``layer1``-``layer4``, no ``fc``,
``downsample.0``/``downsample.1``) at stride 32, then five 1x1 heads
``cls_layer``, ``x_layer``, ``y_layer`` (L channels), ``nb_x_layer``,
``nb_y_layer`` (L*K channels). Its ``state_dict`` has the authors' key names,
so ``torch.save(net.state_dict())`` is what ``pipdetect convert`` reads.

:func:`reference_decode` is the decoding of the authors' demo written in torch
(argmax per map, gather at the selected cell, cyclically padded reverse
neighbour lists, mean of own prediction and votes), so the PyTorch pipeline
costs what the authors' demo costs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

LAYERS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet101": ("bottleneck", (3, 4, 23, 3))}


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # torchvision v1.5
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, cout, stride) if (stride != 1 or cin != cout) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class PIPNet(nn.Module):
    """PIP-Net with a ResNet backbone at stride 32: (B, 3, 256, 256) -> five (B, C, 8, 8) maps."""

    def __init__(self, backbone: str, num_lms: int, num_nb: int = 10) -> None:
        super().__init__()
        kind, blocks = LAYERS[backbone]
        block = _Basic if kind == "basic" else _Bottleneck
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        widths = (64, 128, 256, 512)
        for index, (count, width) in enumerate(zip(blocks, widths, strict=True), start=1):
            layers = []
            for b in range(count):
                stride = 2 if (b == 0 and index > 1) else 1
                layers.append(block(cin, width, stride))
                cin = width * block.expansion
            setattr(self, f"layer{index}", nn.Sequential(*layers))
        self.cls_layer = nn.Conv2d(cin, num_lms, 1)
        self.x_layer = nn.Conv2d(cin, num_lms, 1)
        self.y_layer = nn.Conv2d(cin, num_lms, 1)
        self.nb_x_layer = nn.Conv2d(cin, num_lms * num_nb, 1)
        self.nb_y_layer = nn.Conv2d(cin, num_lms * num_nb, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return (self.cls_layer(x), self.x_layer(x), self.y_layer(x),
                self.nb_x_layer(x), self.nb_y_layer(x))


def random_pipnet(backbone: str, num_lms: int, num_nb: int = 10, seed: int = 0) -> PIPNet:
    """A PIP-Net with random weights and random BatchNorm statistics, in eval mode.

    Residual branches are damped (last BN scale ~0.2) so activations stay of
    order one through ResNet-101's 33 blocks: the outputs then look like a
    trained model's (finite, varied scores and offsets), which matters for the
    int8 drift measurement, not for speed.
    """
    torch.manual_seed(seed)
    net = PIPNet(backbone, num_lms, num_nb)
    with torch.no_grad():
        for name, module in net.named_modules():
            if isinstance(module, nn.BatchNorm2d):
                last_bn = ".bn2" if backbone == "resnet18" else ".bn3"
                low, high = (0.1, 0.3) if name.endswith(last_bn) else (0.5, 1.5)
                module.weight.uniform_(low, high)
                module.bias.uniform_(-0.1, 0.1)
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return net.eval()


class ReferenceDecoder:
    """The authors' demo decoding, in torch: maps -> (B, L, 2) normalised landmarks."""

    def __init__(self, meanface: np.ndarray, num_nb: int) -> None:
        mf = np.asarray(meanface, dtype=np.float64).reshape(-1, 2)
        num_lms = len(mf)
        nb = [np.argsort(np.sum((mf[i] - mf) ** 2, axis=1))[1 : 1 + num_nb] for i in range(num_lms)]
        rev: list[list[int]] = [[] for _ in range(num_lms)]
        for i in range(num_lms):
            for k in range(num_nb):
                rev[int(nb[i][k])].append(i * num_nb + k)
        max_len = max(len(r) for r in rev)
        index = []
        for r in rev:
            r = r or [-1]  # a landmark nobody votes for: handled by the mask below
            index.append([r[m % len(r)] for m in range(max_len)])
        self.index = torch.tensor(index, dtype=torch.long)  # (L, max_len), flat i*K+k
        self.voted = torch.tensor([bool(r) for r in rev])
        self.num_nb = num_nb

    def __call__(self, cls, x, y, nb_x, nb_y) -> tuple[torch.Tensor, torch.Tensor]:
        b, num_lms, h, w = cls.shape
        k = self.num_nb
        flat = cls.reshape(b, num_lms, h * w)
        score, cell = flat.max(dim=2)
        col, row = (cell % w).to(cls.dtype), (cell // w).to(cls.dtype)
        ids = cell[:, :, None]
        own_x = (col + x.reshape(b, num_lms, -1).gather(2, ids)[..., 0]) / w
        own_y = (row + y.reshape(b, num_lms, -1).gather(2, ids)[..., 0]) / h
        ids_nb = cell.repeat_interleave(k, dim=1)[:, :, None]
        vx = (col.repeat_interleave(k, dim=1)
              + nb_x.reshape(b, num_lms * k, -1).gather(2, ids_nb)[..., 0]) / w
        vy = (row.repeat_interleave(k, dim=1)
              + nb_y.reshape(b, num_lms * k, -1).gather(2, ids_nb)[..., 0]) / h
        idx = self.index.clamp(min=0)
        tx = torch.cat([own_x[:, :, None], vx[:, idx]], dim=2).mean(dim=2)
        ty = torch.cat([own_y[:, :, None], vy[:, idx]], dim=2).mean(dim=2)
        tx = torch.where(self.voted, tx, own_x)
        ty = torch.where(self.voted, ty, own_y)
        return torch.stack([tx, ty], dim=2), score
