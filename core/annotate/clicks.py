"""Clicks and boxes as the annotation network sees them, and the simulated user that trains and scores it.

Simulation (the protocol of interactive-segmentation papers): the first click is the object's most interior
point (the maximum of its distance transform); each next click goes to the centre (distance-transform
maximum) of the largest error region, positive on missed object, negative on wrongly taken background.
Encoding: positive and negative clicks as disks, the box as a filled rectangle, and the previous mask, stacked
into `GUIDANCE_CHANNELS` maps at the network's input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

GUIDANCE_CHANNELS = 4  # positive disks, negative disks, box, previous mask

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 inclusive, in pixels


@dataclass(frozen=True)
class Click:
    """A simulated or user click at pixel (x, y); positive marks the object, negative the background."""

    x: int
    y: int
    positive: bool


def _inner_distance(region: np.ndarray) -> np.ndarray:
    """(H, W) bool → (H, W) float32 distance to the nearest pixel outside `region` (the image border counts)."""
    padded = np.pad(region.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]


def interior_point(mask: np.ndarray) -> tuple[int, int] | None:
    """The (x, y) of `mask`'s (H, W) bool maximum distance transform; None for an empty mask."""
    if not mask.any():
        return None
    distance = _inner_distance(mask)
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return int(x), int(y)


def random_interior_click(mask: np.ndarray, rng: np.random.Generator, depth: float = 0.25) -> Click:
    """A positive click at a random pixel of `mask` (H, W) bool (non-empty) at least `depth` of its maximum
    distance-transform value inside it (a user's click somewhere on the object)."""
    distance = _inner_distance(mask)
    ys, xs = np.nonzero(distance >= depth * distance.max())
    pick = rng.integers(len(xs))
    return Click(int(xs[pick]), int(ys[pick]), True)


def next_click(target: np.ndarray, prediction: np.ndarray) -> Click | None:
    """The click a simulated user adds: the interior point of the larger error region of `prediction` (H, W)
    bool against `target` (H, W) bool (missed object → positive, extra background → negative). None when the
    prediction is exact."""
    missed = _inner_distance(target & ~prediction)
    extra = _inner_distance(prediction & ~target)
    positive = missed.max() >= extra.max()
    distance = missed if positive else extra
    if distance.max() == 0:
        return None
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return Click(int(x), int(y), bool(positive))


def touched_parts(mask: np.ndarray, points: list[tuple[int, int]], reach: int = 0) -> np.ndarray:
    """The 8-connected parts of `mask` (H, W) bool that come within `reach` pixels of one of `points` (x, y; held to
    the frame); `mask` as it is when it has one part at most or no part is touched."""
    count, parts = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    height, width = mask.shape
    touched: set[int] = set()
    for x, y in points:
        x, y = min(max(x, 0), width - 1), min(max(y, 0), height - 1)
        near = parts[max(0, y - reach) : y + reach + 1, max(0, x - reach) : x + reach + 1]
        touched.update(np.unique(near[near > 0]).tolist())
    return np.isin(parts, sorted(touched)) if touched else mask


def tight_box(mask: np.ndarray) -> Box | None:
    """The bounding box of `mask` (H, W) bool; None for an empty mask."""
    x, y, w, h = cv2.boundingRect(mask.astype(bool, copy=False).view(np.uint8))  # faster than np.nonzero
    if w == 0:
        return None
    return x, y, x + w - 1, y + h - 1


def jittered_box(mask: np.ndarray, rng: np.random.Generator, jitter: float = 0.1) -> Box | None:
    """`tight_box` with each side moved by up to ±`jitter` of the box's size, clipped to the image."""
    box = tight_box(mask)
    if box is None:
        return None
    height, width = mask.shape
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0 + 1, y1 - y0 + 1
    dx0, dy0, dx1, dy1 = rng.uniform(-jitter, jitter, 4) * (bw, bh, bw, bh)
    x0, x1 = sorted((round(np.clip(x0 + dx0, 0, width - 1)), round(np.clip(x1 + dx1, 0, width - 1))))
    y0, y1 = sorted((round(np.clip(y0 + dy0, 0, height - 1)), round(np.clip(y1 + dy1, 0, height - 1))))
    return x0, y0, x1, y1


def guidance_maps(hw: tuple[int, int], clicks: list[Click], box: Box | None, previous: np.ndarray | None,
                  radius: int) -> np.ndarray:
    """The network's extra input (GUIDANCE_CHANNELS, H, W) float32 at size `hw`: click disks of `radius`
    pixels, the filled box, and the previous mask (H, W) (zeros when None). Coordinates are at size `hw`."""
    height, width = hw
    maps = np.zeros((GUIDANCE_CHANNELS, height, width), np.float32)
    for click in clicks:
        cv2.circle(maps[0 if click.positive else 1], (click.x, click.y), radius, 1.0, thickness=-1)
    if box is not None:
        x0, y0, x1, y1 = box
        maps[2, y0 : y1 + 1, x0 : x1 + 1] = 1.0
    if previous is not None:
        maps[3] = previous
    return maps

