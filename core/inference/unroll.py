"""Unrolling a batch of clips through the student's memory: what training and first-frame adaptation share.

The first frame's mask is encoded into memory, then each later frame is segmented from it and its soft
prediction written back (first + previous frame, or every frame for the infinite-memory teacher), as the
tracker does at stride 4.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from core.inference.memory import make_memory
from core.model.network import VOSNetwork


class Prediction(NamedTuple):
    """One predicted frame of a clip: logits (B, 1, S, S) and decoder features (B, D, S/4, S/4)."""

    logits: torch.Tensor
    features: torch.Tensor


def unroll(network: VOSNetwork, frames: torch.Tensor, first_mask: torch.Tensor, memory: str) -> list[Prediction]:
    """Segment frames 1 … T−1 of clips (B, T, 3, S, S) in [0, 1] from the first frame's mask (B, 1, S, S)."""
    b, t = frames.shape[:2]
    images = network.normalise(frames.flatten(0, 1))
    feats = network.encode_key(images)
    per_frame = [type(feats)(*(x.view(b, t, *x.shape[1:])[:, i] for x in feats)) for i in range(t)]
    images = images.view(b, t, *images.shape[1:])
    mem = make_memory(memory, every=1)
    mem.add(per_frame[0].key, network.encode_value(images[:, 0], per_frame[0], first_mask), 0)
    out = []
    size = frames.shape[-2:]
    for i in range(1, t):
        logits, features = network.segment(per_frame[i], *mem.tensors())  # (B, 1, S/4, S/4)
        out.append(Prediction(network.upsample(logits, size), features[:, 0]))
        if i < t - 1:  # as the tracker does: aggregate at stride 4, then upsample the probabilities
            probs = network.upsample(network.aggregate(logits)[:, 1:], size)
            mem.add(per_frame[i].key, network.encode_value(images[:, i], per_frame[i], probs), i)
    return out
