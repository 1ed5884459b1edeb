"""Streaming object removal (the live OBS face): each frame's objects filled from a clean plate of the background
seen so far, else inpainted. `core.effects.clip_removal` is the whole-clip remover of the batch and web faces.

Pure numpy / OpenCV on `(H, W, 3)` uint8 RGB images and `(H, W)` uint8 label maps (0 = background).
"""

from __future__ import annotations

import cv2
import numpy as np

_INPAINT_SHORT_SIDE = 240


class ObjectRemover:
    """Removes the objects from each frame of a video.

    Keeps a clean plate: for every pixel the latest value seen while it was background, and a map of which
    pixels have been seen. Object pixels (grown by `margin` to cover mask edges) are filled from the plate where
    seen, the rest with cv2.inpaint (TELEA). With a static camera the plate converges to the clean background.
    """

    def __init__(self, margin: int = 2, inpaint_radius: int = 5) -> None:
        self.margin = margin
        self.inpaint_radius = inpaint_radius
        self.reset()

    def reset(self) -> None:
        """Forget the clean plate (call between videos)."""
        self._plate: np.ndarray | None = None  # (H, W, 3) latest background value per pixel
        self._seen: np.ndarray | None = None  # (H, W) bool

    def __call__(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        if self._plate is None or self._plate.shape != image.shape:
            self._plate = np.zeros_like(image)
            self._seen = np.zeros(labels.shape, dtype=bool)
        hole = grow_mask(labels > 0, self.margin)  # (H, W)
        np.copyto(self._plate, image, where=~hole[..., None])
        self._seen |= ~hole
        out = np.where((hole & self._seen)[..., None], self._plate, image)  # (H, W, 3)
        unseen = hole & ~self._seen
        if unseen.any():
            np.copyto(out, inpaint_spatially(out, unseen, self.inpaint_radius), where=unseen[..., None])
        return out


def grow_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """A bool mask dilated by `pixels` (square structuring element)."""
    if pixels <= 0:
        return mask
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), dtype=np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def inpaint_spatially(image: np.ndarray, hole: np.ndarray, radius: int) -> np.ndarray:
    """cv2.inpaint (TELEA) of the `hole` pixels, run at a short side of about 240 px to stay fast."""
    height, width = hole.shape
    factor = max(1, min(height, width) // _INPAINT_SHORT_SIDE)
    if factor == 1:
        return cv2.inpaint(image, hole.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    size = (width // factor, height // factor)
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0  # any hole pixel
    filled = cv2.inpaint(small, small_hole.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    return cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
