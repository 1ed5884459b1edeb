"""The click-and-box annotation network, and its checkpoints.

`ClickNet`: the MobileNetV2 trunk (ImageNet-initialised for training) reads the image; the guidance maps
(click disks, box, previous mask; see `core.annotate.clicks`) enter through a small convolution added to the
trunk's stride-2 stem output (zero-initialised, so training starts from the plain ImageNet trunk) and again,
pooled, at the decoder's stride 4. An FPN-style decoder with a global-context term at stride 16 gives one logit
per pixel at stride 4, upsampled bilinearly to the input size. With `fine` channels (config), a small head adds a
correction drawn at stride 2 from the stem's features (edges the stride-4 grid cannot draw: rigging, spokes),
upsampled likewise; its last convolution is zero-initialised, so a network given the head starts as the one without
it.

Checkpoints are `torch.save`d dicts {"format": ANNOTATOR_FORMAT, "config", "state_dict", "meta"}; the shipped one
is listed with its sha256 in `core/weights/annotator.json`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from core.annotate.clicks import GUIDANCE_CHANNELS
from core.model.backbones import MobileNetV2
from core.model.network import IMAGE_MEAN, IMAGE_STD
from core.weights import WEIGHTS_DIR, load_verified, manifest_sha256, save_atomically, sha256

ANNOTATOR_FORMAT = "mobilevos-annotator/1"
ANNOTATOR_MANIFEST = WEIGHTS_DIR / "annotator.json"


@dataclass(frozen=True)
class AnnotatorConfig:
    """The network's shape and the scale it works at."""

    decoder: int = 64        # decoder channels
    guide: int = 16          # hidden channels of the guidance convolution
    click_radius: int = 5    # click disk radius in network pixels
    size: int = 288          # inference short side in pixels (the training scale is about 170–340)
    fine: int = 0            # channels of the stride-2 head that corrects the stride-4 logits (0: no such head)

    @staticmethod
    def from_dict(values: dict) -> "AnnotatorConfig":
        return AnnotatorConfig(**values)


def _conv_relu(c_in: int, c_out: int, kernel: int = 3) -> nn.Sequential:
    """Convolution → batch norm → ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class ClickNet(nn.Module):
    """(image (B, 3, H, W) RGB in [0, 1], guidance (B, GUIDANCE_CHANNELS, H, W)) → logits (B, 1, H, W).
    H and W are multiples of 16."""

    def __init__(self, config: AnnotatorConfig = AnnotatorConfig()):
        super().__init__()
        self.config = config
        self.trunk = MobileNetV2()
        c4, c8, c16 = self.trunk.channels
        stem = self.trunk.blocks[0][0].out_channels
        self.guide = nn.Sequential(nn.Conv2d(GUIDANCE_CHANNELS, config.guide, 3, 2, 1), nn.ReLU(inplace=True),
                                   nn.Conv2d(config.guide, stem, 3, 1, 1))
        nn.init.zeros_(self.guide[2].weight)
        nn.init.zeros_(self.guide[2].bias)
        d = config.decoder
        self.lateral16 = nn.Conv2d(c16, d, 1)
        self.context = nn.Conv2d(c16, d, 1)
        self.lateral8 = nn.Conv2d(c8, d, 1)
        self.lateral4 = nn.Conv2d(c4, d, 1)
        self.fuse16 = _conv_relu(d, d)
        self.fuse8 = _conv_relu(d, d)
        self.fuse4 = _conv_relu(d + GUIDANCE_CHANNELS, d // 2)
        self.head = nn.Conv2d(d // 2, 1, 1)
        self.fine = None if not config.fine else FineHead(stem + d // 2, config.fine)
        self.register_buffer("mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)

    def features(self, image: torch.Tensor, guidance: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The stem's output at stride 2 with the guidance added, and trunk features at strides 4, 8, 16."""
        stem = self.trunk.blocks[0]((image - self.mean) / self.std) + self.guide(guidance)  # (B, 32, H/2, W/2)
        x = stem
        taps: list[torch.Tensor] = []
        for i, block in enumerate(self.trunk.blocks[1:], start=1):
            x = block(x)
            if i in self.trunk.taps:
                taps.append(x)
        return stem, taps[0], taps[1], x

    def forward(self, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        stem, f4, f8, f16 = self.features(image, guidance)
        x = self.fuse16(F.relu(self.lateral16(f16) + self.context(f16.mean(dim=(2, 3), keepdim=True))))
        x = F.interpolate(x, size=f8.shape[-2:], mode="bilinear", align_corners=False) + self.lateral8(f8)
        x = self.fuse8(x)
        x = F.interpolate(x, size=f4.shape[-2:], mode="bilinear", align_corners=False) + self.lateral4(f4)
        pooled = F.avg_pool2d(guidance, 4)  # (B, G, H/4, W/4)
        decoded = self.fuse4(torch.cat([x, pooled], dim=1))  # (B, d/2, H/4, W/4)
        logits = self.head(decoded)  # (B, 1, H/4, W/4)
        answer = F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)
        if self.fine is None:
            return answer
        correction = self.fine(stem, decoded, logits, F.avg_pool2d(guidance, 2))  # (B, 1, H/2, W/2)
        return answer + F.interpolate(correction, size=image.shape[-2:], mode="bilinear", align_corners=False)


class FineHead(nn.Module):
    """A correction at stride 2 of the stride-4 logits, read from the stem's features, the decoder's features and
    those logits (both upsampled) and the guidance at stride 2. Its last convolution starts at zero."""

    def __init__(self, features: int, channels: int):
        super().__init__()
        self.squeeze = _conv_relu(features, channels, kernel=1)
        self.mix = nn.Sequential(_conv_relu(channels + 1 + GUIDANCE_CHANNELS, channels), _conv_relu(channels, channels))
        self.out = nn.Conv2d(channels, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, stem: torch.Tensor, decoded: torch.Tensor, logits: torch.Tensor,
                guidance: torch.Tensor) -> torch.Tensor:
        size = stem.shape[-2:]
        coarse = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        wide = F.interpolate(decoded, size=size, mode="bilinear", align_corners=False)
        squeezed = self.squeeze(torch.cat([stem, wide], dim=1))
        return self.out(self.mix(torch.cat([squeezed, coarse, guidance], dim=1)))


def save_annotator(network: ClickNet, path: str | os.PathLike, meta: dict, half: bool = False) -> str:
    """Atomically write `network` as an annotator checkpoint; returns its sha256."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in network.state_dict().items()}
    payload = {"format": ANNOTATOR_FORMAT, "config": asdict(network.config), "state_dict": state, "meta": meta}
    save_atomically(payload, path)
    return sha256(path)


def read_annotator_manifest() -> dict:
    """{"default": name, "checkpoints": {name: {"file", "sha256", provenance...}}} of the shipped annotator."""
    return json.loads(ANNOTATOR_MANIFEST.read_text())


def default_annotator_entry() -> dict:
    """The shipped annotator's manifest entry: file, sha256 and provenance."""
    manifest = read_annotator_manifest()
    return manifest["checkpoints"][manifest["default"]]


def default_annotator() -> Path:
    """Path of the shipped annotator checkpoint."""
    return WEIGHTS_DIR / default_annotator_entry()["file"]


def load_annotator_checkpoint(path: str | os.PathLike | None = None) -> dict:
    """Read and verify an annotator checkpoint (the shipped one when `path` is None); WeightsError otherwise."""
    path = Path(path).resolve() if path is not None else default_annotator()
    return load_verified(path, ANNOTATOR_FORMAT, manifest_sha256(path, ANNOTATOR_MANIFEST), ANNOTATOR_MANIFEST.name,
                         "MobileVOS annotator checkpoint",
                         "pass a file written by `python -m core.train.annotator` (the shipped one: "
                         "`git checkout -- core/weights`)")


def load_annotator(path: str | os.PathLike | None = None) -> ClickNet:
    """The annotation network of a checkpoint, in eval mode, float32, on the CPU."""
    return annotator_from_checkpoint(load_annotator_checkpoint(path))


def annotator_from_checkpoint(checkpoint: dict) -> ClickNet:
    """The annotation network of a checkpoint already read (`load_annotator_checkpoint`), in eval mode, float32."""
    network = ClickNet(AnnotatorConfig.from_dict(checkpoint["config"]))
    state = checkpoint["state_dict"]
    network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return network.eval()
