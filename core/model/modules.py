"""Building blocks of the space-time memory network: value encoders, memory read, decoder, soft aggregation.

Two value encoders and two decoder block kinds: the first student's (`ValueEncoder` with its own MobileNetV2
trunk; dense 3×3 refinements) and the fast student's (`LightValueEncoder`, which re-uses the key encoder's
stride-16 features instead of a second trunk; depthwise-separable refinements).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from core.model.backbones import MobileNetV2, conv_bn_act


class ValueEncoder(nn.Module):
    """Encodes (frame, object mask, other objects' mask) into value features at stride 16.

    A half-width MobileNetV2 trunk on the 5-channel input, fused with the key encoder's stride-16 features.
    """

    def __init__(self, key_feature_channels: int, value_dim: int):
        super().__init__()
        self.trunk = MobileNetV2(in_channels=5, width=0.5)
        self.fuse = nn.Sequential(
            nn.Conv2d(self.trunk.channels[2] + key_feature_channels, value_dim, 3, padding=1, bias=False),
            nn.BatchNorm2d(value_dim), nn.ReLU(inplace=True),
            nn.Conv2d(value_dim, value_dim, 3, padding=1),
        )

    def forward(self, image: torch.Tensor, f16: torch.Tensor, masks: torch.Tensor,
                outside: torch.Tensor | None = None) -> torch.Tensor:
        """image (B, 3, H, W), f16 (B, C16, h, w), masks (B, K, H, W) probabilities, outside (B, 1, H, W)
        probability of objects not in `masks` → values (B, K, Cv, h, w)."""
        g16 = self.trunk.forward_features(object_inputs(image, masks, outside))[2]
        return fuse_per_object(self.fuse, g16, f16, masks.shape[1])


class LightValueEncoder(nn.Module):
    """Encodes (frame, object mask, other objects' mask) into value features at stride 16 without a trunk of its
    own: the 5-channel input is average-pooled to stride 4, two strided 3×3 convolutions take it to stride 16,
    and it is fused with the key encoder's stride-16 features (which already describe the frame)."""

    def __init__(self, key_feature_channels: int, value_dim: int, mask_channels: int = 64):
        super().__init__()
        self.down = nn.Sequential(conv_bn_act(5, 32, stride=2), conv_bn_act(32, mask_channels, stride=2))
        self.fuse = nn.Sequential(
            nn.Conv2d(mask_channels + key_feature_channels, value_dim, 1, bias=False),
            nn.BatchNorm2d(value_dim), nn.ReLU(inplace=True),
            separable_conv(value_dim, value_dim, activation=False),
        )

    def forward(self, image: torch.Tensor, f16: torch.Tensor, masks: torch.Tensor,
                outside: torch.Tensor | None = None) -> torch.Tensor:
        """As `ValueEncoder.forward`: image (B, 3, H, W), f16 (B, C16, h, w), masks (B, K, H, W), outside
        (B, 1, H, W) → values (B, K, Cv, h, w)."""
        g16 = self.down(F.avg_pool2d(object_inputs(image, masks, outside), 4))
        return fuse_per_object(self.fuse, g16, f16, masks.shape[1])


def object_inputs(image: torch.Tensor, masks: torch.Tensor, outside: torch.Tensor | None) -> torch.Tensor:
    """A value encoder's input per object, (B*K, 5, H, W): the frame, the object's mask, and the probability of
    any other object (the other masks plus `outside`, objects encoded elsewhere)."""
    k = masks.shape[1]
    others = masks.sum(dim=1, keepdim=True) - masks  # (B, K, H, W)
    if outside is not None:
        others = others + outside
    return torch.cat([
        image.unsqueeze(1).expand(-1, k, -1, -1, -1),
        masks.unsqueeze(2), others.unsqueeze(2),
    ], dim=2).flatten(0, 1)


def fuse_per_object(fuse: nn.Module, g16: torch.Tensor, f16: torch.Tensor, k: int) -> torch.Tensor:
    """`fuse` applied to each object's features g16 (B*K, C, h, w) next to the frame's key features f16
    (B, C16, h, w) → values (B, K, Cv, h, w)."""
    values = fuse(torch.cat([g16, per_object(f16, k)], dim=1))
    return values.view(-1, k, *values.shape[1:])


def per_object(features: torch.Tensor, k: int) -> torch.Tensor:
    """A frame's features (B, C, h, w) repeated for each of its K objects → (B*K, C, h, w), objects inner."""
    return features.unsqueeze(1).expand(-1, k, -1, -1, -1).flatten(0, 1)


def separable_conv(c_in: int, c_out: int, activation: bool = True) -> nn.Sequential:
    """Depthwise 3×3 → BN → ReLU → pointwise 1×1 (→ BN → ReLU unless `activation` is False: then a biased 1×1)."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False), nn.BatchNorm2d(c_in), nn.ReLU(inplace=True),
    ]
    if activation:
        layers += [nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    else:
        layers.append(nn.Conv2d(c_in, c_out, 1))
    return nn.Sequential(*layers)


def near_best_softmax(affinity: torch.Tensor, margin: float) -> torch.Tensor:
    """Softmax over dim 1 of the entries within `margin` of each column's largest, zero elsewhere: each query
    pixel reads only the memory pixels that match it almost as well as its best match (a cheap stand-in for
    STCN's top-k read: one max instead of a sort)."""
    best = affinity.amax(dim=1, keepdim=True)
    return affinity.masked_fill(affinity < best - margin, float("-inf")).softmax(dim=1)


def read_memory(query_key: torch.Tensor, memory_key: torch.Tensor, memory_sq: torch.Tensor,
                memory_value: torch.Tensor, margin: float | None = None) -> torch.Tensor:
    """Negative squared L2 affinity, softmax over memory pixels (only those within `margin` of each query
    pixel's best match, when given), weighted sum of memory values.

    query_key (B, Ck, h, w); memory_key (B, Ck, N); memory_sq (B, N, 1) = ‖memory_key‖²;
    memory_value (B, K, Cv, N) → readout (B, K, Cv, h, w).
    """
    b, ck, h, w = query_key.shape
    q = query_key.flatten(2)  # (B, Ck, HW)
    # -‖k − q‖² up to a term constant over memory pixels (which the softmax ignores).
    affinity = (2 * memory_key.transpose(1, 2) @ q - memory_sq) / math.sqrt(ck)  # (B, N, HW)
    weights = affinity.softmax(dim=1) if margin is None else near_best_softmax(affinity, margin)
    k, cv = memory_value.shape[1:3]
    readout = memory_value.flatten(1, 2) @ weights  # (B, K*Cv, HW)
    return readout.view(b, k, cv, h, w)


DECODER_BLOCKS = ("dense", "separable")


def refinement(c_in: int, c_out: int, blocks: str) -> nn.Sequential:
    """Two 3×3 convolutions c_in → c_out → c_out, each with BN and ReLU: dense or depthwise-separable."""
    if blocks == "separable":
        return nn.Sequential(separable_conv(c_in, c_out), separable_conv(c_out, c_out))
    if blocks != "dense":
        raise ValueError(f"unknown decoder blocks {blocks!r}: use one of {', '.join(DECODER_BLOCKS)}")
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UpBlock(nn.Module):
    """×2 bilinear upsampling, a projected skip connection added, then two 3×3 refinements."""

    def __init__(self, skip_channels: int, c_in: int, c_out: int, blocks: str = "dense"):
        super().__init__()
        self.skip = nn.Conv2d(skip_channels, c_in, 1)
        self.refine = refinement(c_in, c_out, blocks)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x (N, C_in, h, w), skip (N, C_skip, 2h, 2w) → (N, C_out, 2h, 2w)."""
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.refine(x + self.skip(skip))


class Decoder(nn.Module):
    """Memory readout + query features → one logit per object at stride 4 (and the features before it)."""

    def __init__(self, feature_channels: tuple[int, int, int], value_dim: int, widths: tuple[int, int, int],
                 blocks: str = "dense"):
        super().__init__()
        c4, c8, c16 = feature_channels
        d16, d8, d4 = widths
        if blocks == "separable":  # 1×1 fusion, then one separable 3×3
            self.compress = nn.Sequential(
                nn.Conv2d(value_dim + c16, d16, 1, bias=False), nn.BatchNorm2d(d16), nn.ReLU(inplace=True),
                separable_conv(d16, d16),
            )
        else:
            self.compress = nn.Sequential(
                nn.Conv2d(value_dim + c16, d16, 3, padding=1, bias=False), nn.BatchNorm2d(d16),
                nn.ReLU(inplace=True),
            )
        self.up8 = UpBlock(c8, d16, d8, blocks)
        self.up4 = UpBlock(c4, d8, d4, blocks)
        self.head = nn.Conv2d(d4, 1, 1)

    def forward(self, feats: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                readout: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats: strides 4/8/16 (B, C, ·, ·); readout (B, K, Cv, h, w) →
        logits (B, K, H/4, W/4) and representation features (B, K, D4, H/4, W/4)."""
        f4, f8, f16 = feats
        b, k = readout.shape[:2]
        x = self.compress(torch.cat([readout.flatten(0, 1), per_object(f16, k)], dim=1))
        x = self.up8(x, per_object(f8, k))
        x = self.up4(x, per_object(f4, k))
        logits = self.head(x)
        return logits.view(b, k, *logits.shape[-2:]), x.view(b, k, *x.shape[1:])


def aggregate(logits: torch.Tensor) -> torch.Tensor:
    """Soft aggregation of independent object logits (B, K, H, W) → probabilities (B, 1 + K, H, W).

    Background = Π(1 − p_k); the K + 1 probabilities are turned into log-odds and renormalised by softmax.
    """
    probs = torch.sigmoid(logits)
    background = torch.prod(1 - probs, dim=1, keepdim=True)
    merged = torch.cat([background, probs], dim=1).clamp(1e-7, 1 - 1e-7)
    return torch.softmax(torch.log(merged / (1 - merged)), dim=1)
