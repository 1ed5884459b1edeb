"""Key-encoder backbones written here (no torchvision): MobileNetV2 and ResNet18.

Each backbone is a plain `nn.Module` whose `forward_features(x)` returns the features at strides 4, 8 and 16
and whose `channels` attribute gives their channel counts. Layers past stride 16 are not built.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_act(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                act: bool = True) -> nn.Sequential:
    """Convolution → batch norm → ReLU6 (or no activation)."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expansion, 3×3 depthwise, 1×1 linear projection, residual when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_act(c_in, hidden, kernel=1))
        layers.append(conv_bn_act(hidden, hidden, stride=stride, groups=hidden))
        layers.append(conv_bn_act(hidden, c_out, kernel=1, act=False))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


# (expansion, channels, repeats, stride) of MobileNetV2 up to stride 16.
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))


class MobileNetV2(nn.Module):
    """MobileNetV2 trunk to stride 16. Strides 4/8/16 carry 24/32/96 channels at width 1.0."""

    def __init__(self, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        stem = _scaled(32, width)
        blocks: list[nn.Module] = [conv_bn_act(in_channels, stem, stride=2)]
        self.taps: list[int] = []  # indices of the blocks that end strides 4 and 8
        c_in, stride = stem, 2
        for expand, c, repeats, s in MOBILENET_V2_STAGES:
            c_out = _scaled(c, width)
            if s == 2 and stride in (4, 8):
                self.taps.append(len(blocks) - 1)
            for i in range(repeats):
                blocks.append(InvertedResidual(c_in, c_out, s if i == 0 else 1, expand))
                c_in = c_out
            stride *= s
        self.blocks = nn.ModuleList(blocks)
        self.channels = (_scaled(24, width), _scaled(32, width), c_in)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, H, W) → features at strides 4, 8, 16."""
        feats: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                feats.append(x)
        return feats[0], feats[1], x


def _scaled(channels: int, width: float) -> int:
    """Channel count scaled by `width`, rounded to a multiple of 8 (at least 8)."""
    return max(8, int(channels * width + 4) // 8 * 8)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 convolutions with an identity or 1×1 shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet18 trunk to stride 16 (layers 1–3). Strides 4/8/16 carry 64/128/256 channels."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        self.layer1 = nn.Sequential(BasicBlock(64, 64, 1), BasicBlock(64, 64, 1))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128, 1))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256, 1))
        self.channels = (64, 128, 256)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, H, W) → features at strides 4, 8, 16."""
        f4 = self.layer1(self.stem(x))
        f8 = self.layer2(f4)
        return f4, f8, self.layer3(f8)


def build_backbone(name: str, in_channels: int = 3, width: float = 1.0) -> MobileNetV2 | ResNet18:
    """A backbone by name: "mobilenetv2" or "resnet18"."""
    if name == "mobilenetv2":
        return MobileNetV2(in_channels, width)
    if name == "resnet18":
        return ResNet18(in_channels)
    raise ValueError(f"unknown backbone {name!r}: use 'mobilenetv2' or 'resnet18'")
