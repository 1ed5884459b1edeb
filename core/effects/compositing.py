"""Compositing shared by batch, web and OBS: the mask image, overlays, cut-outs, background blur and replacement.

Pure numpy / OpenCV on `(H, W, 3)` uint8 RGB images and `(H, W)` uint8 label maps (0 = background).
"""

from __future__ import annotations

import cv2
import numpy as np

from core.io.masks import davis_palette

_PALETTE = davis_palette()  # (256, 3) read-only lookup table


def mask_image(labels: np.ndarray) -> np.ndarray:
    """The label map drawn in DAVIS palette colours, `(H, W, 3)` RGB."""
    return _PALETTE[labels]


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Objects tinted with their palette colour at `alpha`, each outlined by a 1-pixel line in full colour."""
    colours = _PALETTE[labels]  # (H, W, 3)
    tinted = cv2.addWeighted(image, 1.0 - alpha, colours, alpha, 0.0)
    out = np.where((labels > 0)[..., None], tinted, image)
    return np.where(_edges(labels)[..., None], colours, out)


def cutout(image: np.ndarray, labels: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """`(H, W, 4)` RGBA: the objects with alpha 255, the background transparent black (alpha 0); with a soft
    `alpha` matte ((H, W) float in [0, 1], see core.effects.matting), that alpha (straight, not premultiplied)."""
    if alpha is None:
        objects = labels > 0
        return np.dstack([image * objects[..., None], np.where(objects, np.uint8(255), np.uint8(0))])
    opacity = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)  # (H, W)
    return np.dstack([image * (opacity > 0)[..., None], opacity])


def blur_background(image: np.ndarray, labels: np.ndarray, strength: int = 31,
                    alpha: np.ndarray | None = None) -> np.ndarray:
    """The background Gaussian-blurred (kernel `strength`, made odd); objects stay sharp with a feathered edge
    that fades outwards over about a quarter of the kernel, or blended by a soft `alpha` matte when given."""
    kernel = max(3, strength | 1)
    blurred = cv2.GaussianBlur(image, (kernel, kernel), 0)
    weight = _feathered(labels > 0, max(3, (kernel // 4) | 1)) if alpha is None else alpha.astype(np.float32)
    return cv2.blendLinear(image, blurred, weight, 1.0 - weight)


def replace_background(
    image: np.ndarray, labels: np.ndarray, background: tuple[int, int, int] | np.ndarray,
    alpha: np.ndarray | None = None,
) -> np.ndarray:
    """Background pixels replaced by a colour `(r, g, b)` or an RGB image (resized to the frame); with a soft
    `alpha` matte the frame is blended over the new background by it."""
    height, width = labels.shape
    if isinstance(background, np.ndarray) and background.ndim >= 2:
        fill = background if background.ndim == 3 else np.dstack([background] * 3)
        fill = fill[..., :3]
        if fill.shape[:2] != (height, width):
            fill = cv2.resize(fill, (width, height), interpolation=cv2.INTER_AREA)
    else:
        fill = np.broadcast_to(np.asarray(background, dtype=np.uint8).reshape(1, 1, 3), (height, width, 3))
    if alpha is None:
        return np.where((labels > 0)[..., None], image, fill).astype(np.uint8)
    weight = alpha.astype(np.float32)
    return cv2.blendLinear(image, np.ascontiguousarray(fill), weight, 1.0 - weight)


def _edges(labels: np.ndarray) -> np.ndarray:
    """`(H, W)` bool: object pixels with a 4-neighbour of another label (1-pixel inner outline)."""
    edges = np.zeros(labels.shape, dtype=bool)
    edges[1:, :] |= labels[1:, :] != labels[:-1, :]
    edges[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edges[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edges & (labels > 0)


def _feathered(mask: np.ndarray, kernel: int) -> np.ndarray:
    """`(H, W)` float32 weight: 1 on the mask, fading to 0 outside it over about `kernel` pixels."""
    soft = cv2.GaussianBlur(mask.astype(np.float32), (kernel, kernel), 0)
    return np.maximum(soft * 2.0, mask).clip(0.0, 1.0)
