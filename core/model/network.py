"""The space-time memory network (student or teacher) and `build_network`, its one constructor.

A frame is encoded once into a key (for matching) and multi-scale features (for decoding); masked frames are
encoded into values. Memory handling lives in `core.inference.memory`; this module is free of I/O and state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from core.model.aspp import ASPP
from core.model.backbones import build_backbone
from core.model.modules import Decoder, LightValueEncoder, ValueEncoder, aggregate, read_memory

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of a network: key-encoder backbone, ASPP, key/value widths, decoder widths."""

    backbone: str = "mobilenetv2"  # "mobilenetv2" or "resnet18"
    aspp: bool = True
    key_dim: int = 64
    value_dim: int = 128
    aspp_dim: int = 128
    decoder: tuple[int, int, int] = (128, 64, 32)  # channels at strides 16, 8, 4
    value_encoder: str = "trunk"   # "trunk" (its own half-width MobileNetV2) or "light" (re-uses key features)
    decoder_blocks: str = "dense"  # "dense" or "separable" 3×3 refinements
    # in eval mode each pixel reads only memory pixels whose affinity is within this of its best match (None: all)
    read_margin: float | None = 3.0

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "NetworkConfig":
        d = dict(d)
        d["decoder"] = tuple(d["decoder"])
        return NetworkConfig(**d)


class KeyFeatures(NamedTuple):
    """What the key encoder gives for one batch of frames."""

    key: torch.Tensor  # (B, Ck, h, w) at stride 16
    f4: torch.Tensor   # (B, C4, H/4, W/4)
    f8: torch.Tensor   # (B, C8, H/8, W/8)
    f16: torch.Tensor  # (B, C16, h, w)


class VOSNetwork(nn.Module):
    """Key encoder + key projection, value encoder, memory read and decoder. Frames' sides are multiples of 16."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone)
        c4, c8, c16 = self.backbone.channels
        self.aspp = ASPP(c16, config.aspp_dim) if config.aspp else None
        c16 = config.aspp_dim if config.aspp else c16
        self.key_proj = nn.Conv2d(c16, config.key_dim, 1)
        self.value_encoder = build_value_encoder(config.value_encoder, c16, config.value_dim)
        self.decoder = Decoder((c4, c8, c16), config.value_dim, config.decoder, config.decoder_blocks)
        self.register_buffer("mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] → normalised input."""
        return (image - self.mean) / self.std

    def encode_key(self, image: torch.Tensor) -> KeyFeatures:
        """Normalised image (B, 3, H, W) → key and features."""
        f4, f8, f16 = self.backbone.forward_features(image)
        if self.aspp is not None:
            f16 = self.aspp(f16)
        return KeyFeatures(self.key_proj(f16), f4, f8, f16)

    def encode_value(self, image: torch.Tensor, feats: KeyFeatures, masks: torch.Tensor,
                     outside: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised image (B, 3, H, W), its features, object probabilities (B, K, H, W) and the probability
        of objects encoded elsewhere (B, 1, H, W) → values (B, K, Cv, h, w)."""
        return self.value_encoder(image, feats.f16, masks, outside)

    def segment(self, feats: KeyFeatures, memory_key: torch.Tensor, memory_sq: torch.Tensor,
                memory_value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Read the memory and decode → logits (B, K, H/4, W/4) at the decoder's stride 4 and the
        representation features (B, K, D4, H/4, W/4). `upsample` takes logits or probabilities to full size."""
        margin = None if self.training else self.config.read_margin
        readout = read_memory(feats.key, memory_key, memory_sq, memory_value, margin)
        return self.decoder((feats.f4, feats.f8, feats.f16), readout)

    @staticmethod
    def aggregate(logits: torch.Tensor) -> torch.Tensor:
        """Object logits (B, K, h, w) → probabilities (B, 1 + K, h, w), background first."""
        return aggregate(logits)

    @staticmethod
    def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Bilinear resize of (B, C, h, w) logits or probabilities to `size` (H, W)."""
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def build_value_encoder(kind: str, key_feature_channels: int, value_dim: int) -> nn.Module:
    """The value encoder named `kind`: "trunk" (`ValueEncoder`) or "light" (`LightValueEncoder`)."""
    encoders = {"trunk": ValueEncoder, "light": LightValueEncoder}
    if kind not in encoders:
        raise ValueError(f"unknown value encoder {kind!r}: use one of {', '.join(encoders)}")
    return encoders[kind](key_feature_channels, value_dim)


def build_network(config: NetworkConfig | None = None) -> VOSNetwork:
    """The network for `config` (the default MobileNetV2 + ASPP student when None)."""
    return VOSNetwork(config or NetworkConfig())


def parameter_count(module: nn.Module) -> int:
    """Number of parameters of `module`."""
    return sum(p.numel() for p in module.parameters())


def training_mode(network: nn.Module, freeze_bn: bool) -> nn.Module:
    """Put `network` in training mode and return it; with `freeze_bn` its batch norms stay in eval mode,
    normalising with (and keeping) their running statistics, which small batches would overwrite with noisy
    ones (fine-tuning on a CPU, or on one annotated frame)."""
    network.train()
    if freeze_bn:
        for module in network.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    return network
