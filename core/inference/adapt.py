"""First-frame online adaptation: a few fine-tuning steps of a copy of the network on the annotated frame.

Clips are made from the one annotated frame by `core.clips.sampler.ClipSampler` (random affine per clip plus a
per-frame random walk, flips and colour jitter), unrolled through the student's first + previous memory and
trained with the segmentation loss — the same code as training, so adaptation sees what training saw.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from core.model.network import VOSNetwork, training_mode
from core.clips.sampler import ClipSampler, DataConfig, FrameStore, object_geometry
from core.model.losses import segmentation_loss
from core.inference.unroll import unroll


@dataclass(frozen=True)
class AdaptConfig:
    """How hard to adapt: steps, learning rate, clips per step, crop size, frames per clip."""

    steps: int = 10
    lr: float = 1e-4
    batch: int = 2
    crop: int = 192
    clip_frames: int = 3
    seed: int = 0


def single_frame_store(frame: np.ndarray, mask: np.ndarray, device: torch.device) -> FrameStore:
    """A one-sequence, one-frame store of an RGB frame (H, W, 3) and its labels (H, W) (all objects as one)."""
    binary = (mask > 0).astype(np.uint8)[None]
    centres, extents = object_geometry(binary)
    return FrameStore(
        torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].contiguous(),
        torch.from_numpy(binary)[None], torch.tensor([0]), torch.tensor([1]), centres, extents, ["annotated"],
    ).to(device)


def adapt(network: VOSNetwork, frame: np.ndarray, mask: np.ndarray, config: AdaptConfig) -> VOSNetwork:
    """A fine-tuned copy of `network` (eval mode) for the object(s) of `mask` on `frame`."""
    tuned = training_mode(copy.deepcopy(network), freeze_bn=True)  # a handful of clips would ruin the statistics
    device = next(tuned.parameters()).device
    crop = min(config.crop, *frame.shape[:2]) // 16 * 16
    data = DataConfig(crop=crop, clip_frames=config.clip_frames, max_gap_start=1, max_gap_end=1)
    sampler = ClipSampler(single_frame_store(frame, mask, device), data, config.seed)
    optimizer = torch.optim.Adam(tuned.parameters(), lr=config.lr)
    with torch.enable_grad():
        for _ in range(config.steps):
            frames, masks = sampler.sample(config.batch, 0.0)
            predictions = unroll(tuned, frames, masks[:, 0], "first_previous")
            loss = sum(segmentation_loss(p.logits.float(), masks[:, i + 1]) for i, p in enumerate(predictions))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return tuned.eval()
