"""Atrous spatial pyramid pooling on the stride-16 features, with depthwise-separable branches."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ASPP(nn.Module):
    """Parallel dilated depthwise-separable 3×3 branches + image pooling, fused by a 1×1 convolution."""

    def __init__(self, c_in: int, c_out: int, rates: tuple[int, ...] = (2, 4, 6)):
        super().__init__()
        self.point = _pointwise(c_in, c_out)
        self.atrous = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c_in, c_in, 3, padding=r, dilation=r, groups=c_in, bias=False),
                nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), _pointwise(c_in, c_out),
            )
            for r in rates
        )
        self.pool = _pointwise(c_in, c_out)
        self.fuse = _pointwise(c_out * (len(rates) + 2), c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) → (B, C_out, H, W)."""
        pooled = self.pool(x.mean(dim=(2, 3), keepdim=True))
        branches = [self.point(x), *(branch(x) for branch in self.atrous)]
        branches.append(F.interpolate(pooled, size=x.shape[-2:], mode="nearest"))
        return self.fuse(torch.cat(branches, dim=1))


def _pointwise(c_in: int, c_out: int) -> nn.Sequential:
    """1×1 convolution → batch norm → ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))
