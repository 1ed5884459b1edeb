"""Training data from a DAVIS folder: the sequence names, and every frame and mask of some sequences loaded once,
resized, into a `core.clips.sampler.FrameStore` (moved to the GPU when training there).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from core.clips.sampler import FrameStore, object_geometry
from core.io.davis import FRAMES, MASKS, frame_paths, mask_path, sequence_names
from core.io.masks import read_mask


def davis_sequences(root: str | Path, exclude: tuple[str, ...] = ()) -> list[str]:
    """Sequence names under `root/JPEGImages/480p`, minus `exclude`."""
    images = Path(root) / FRAMES
    if not images.is_dir():
        raise SystemExit(f"{images}: not found; pass --data with a DAVIS root ({FRAMES}, {MASKS})")
    return [name for name in sequence_names(root) if name not in exclude]


def load_frames(root: str | Path, names: list[str], short_side: int) -> FrameStore:
    """Read the sequences' JPEG frames and PNG masks, resized so the short side is `short_side`."""
    frames, masks, starts, lengths = [], [], [], []
    for name in names:
        paths = frame_paths(root, name)
        starts.append(len(frames))
        lengths.append(len(paths))
        for path in paths:
            image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            mask = read_mask(mask_path(root, name, path)) > 0
            h, w = image.shape[:2]
            scale = short_side / min(h, w)
            size = (round(w * scale), round(h * scale))
            frames.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
            masks.append(cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST))
    stacked = np.stack(masks)
    centres, extents = object_geometry(stacked)
    return FrameStore(
        torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(stacked).unsqueeze(1).contiguous(),
        torch.tensor(starts), torch.tensor(lengths), centres, extents, list(names),
    )
