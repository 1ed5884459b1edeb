"""Training data from a DAVIS folder: the sequence names, and every frame and mask of some sequences loaded once,
resized, into a `core.clips.sampler.FrameStore` (moved to the GPU when training there). A folder in another layout,
and a frame or mask training cannot use, end the command with one line naming it and the fix (`BadInput`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from core.clips.sampler import FrameStore, object_geometry
from core.io.command import BadInput
from core.io.davis import FRAMES, MASKS, frame_paths, mask_path, sequence_names
from core.io.images import load_image
from core.io.masks import read_mask

LAYOUT = f"a DAVIS root: ROOT/{FRAMES}/SEQUENCE/*.jpg frames and ROOT/{MASKS}/SEQUENCE/*.png, a mask for each"


def layout_hint(root: Path) -> str:
    """Why `root` is not a DAVIS root, and what to pass instead."""
    if not root.is_dir():
        return f"{root}: no such folder; pass {LAYOUT}"
    if root.name == FRAMES.name and root.parent.name == FRAMES.parent.name:
        return f"{root}: the frames' folder of a DAVIS root; pass the root, {root.parents[1]}"
    if any(root.glob("*.jpg")) and root.parent.name == FRAMES.name:
        return f"{root}: one sequence's frames; pass the DAVIS root that holds it, {root.parents[2]}"
    if any(root.glob("*/masks")):
        return (f"{root}: a folder of clips with masks/ (as core.batch reads); training needs a mask for every "
                f"frame, in {LAYOUT}")
    return f"{root}: no {FRAMES} folder; pass {LAYOUT}"


def davis_sequences(root: str | Path, exclude: tuple[str, ...] = ()) -> list[str]:
    """Sequence names under `root/JPEGImages/480p`, minus `exclude`; BadInput when `root` is no DAVIS root."""
    if not (Path(root) / FRAMES).is_dir():
        raise BadInput(layout_hint(Path(root)))
    names = sequence_names(root)
    if not names:
        raise BadInput(f"{Path(root) / FRAMES}: no sequence folders; pass {LAYOUT}")
    if not (Path(root) / MASKS).is_dir():
        raise BadInput(f"{Path(root) / MASKS}: no such folder; training needs a mask for every frame: pass {LAYOUT}")
    return [name for name in names if name not in exclude]


def read_image(path: Path, flag: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """`load_image`, with a one-line BadInput naming the file when it cannot be read."""
    image = load_image(path, flag)
    if image is None:
        raise BadInput(f"{path}: unreadable image; replace it or leave its sequence out")
    return image


def read_training_mask(root: str | Path, name: str, frame: Path, hw: tuple[int, int]) -> np.ndarray:
    """The (H, W) bool mask of `frame`; BadInput when it is missing or not of the frame's size `hw`."""
    path = mask_path(root, name, frame)
    if not path.is_file():
        raise BadInput(f"{path}: missing; training needs the mask of every frame ({frame}): add it, or remove "
                       "the frame")
    return read_mask(path, hw) > 0


def load_sequence(root: str | Path, name: str, short_side: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One sequence's frames (RGB) and masks (uint8 0/1), resized so the short side is `short_side`; BadInput when
    it has no frame or no mask marks an object."""
    paths = frame_paths(root, name)
    if not paths:
        raise BadInput(f"{Path(root) / FRAMES / name}: no JPEG frames (*.jpg); convert its frames to JPEG or remove "
                       "the sequence")
    frames, masks = [], []
    for path in paths:
        image = cv2.cvtColor(read_image(path), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        mask = read_training_mask(root, name, path, (h, w))
        scale = short_side / min(h, w)
        size = (round(w * scale), round(h * scale))
        frames.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        masks.append(cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST))
    if not any(mask.any() for mask in masks):
        raise BadInput(f"{Path(root) / MASKS / name}: no mask marks an object (all background); fix its masks "
                       "(object pixels non-zero) or remove the sequence")
    return frames, masks


def check_sizes(root: str | Path, names: list[str], frames: list[np.ndarray], starts: list[int]) -> None:
    """BadInput unless every loaded frame has the first one's size (frames are stacked into one tensor)."""
    sizes = [frame.shape[:2] for frame in frames]
    for name, start, end in zip(names, starts, [*starts[1:], len(frames)]):
        other = next((size for size in sizes[start:end] if size != sizes[0]), None)
        if other is not None:
            raise BadInput(f"{Path(root) / FRAMES / name}: frames of {other[1]}×{other[0]} at the loaded short "
                           f"side, others of {sizes[0][1]}×{sizes[0][0]}; training needs one aspect ratio: crop its "
                           "frames and masks to the others' or remove the sequence")


def load_frames(root: str | Path, names: list[str], short_side: int) -> FrameStore:
    """Read the sequences' JPEG frames and PNG masks, resized so the short side is `short_side`."""
    if not names:
        raise BadInput(f"{Path(root) / FRAMES}: no sequence left to train on; add sequences or hold fewer out")
    frames, masks, starts, lengths = [], [], [], []
    for name in names:
        sequence_frames, sequence_masks = load_sequence(root, name, short_side)
        starts.append(len(frames))
        lengths.append(len(sequence_frames))
        frames += sequence_frames
        masks += sequence_masks
    check_sizes(root, names, frames, starts)
    stacked = np.stack(masks)
    centres, extents = object_geometry(stacked)
    return FrameStore(
        torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(stacked).unsqueeze(1).contiguous(),
        torch.tensor(starts), torch.tensor(lengths), centres, extents, list(names),
    )
