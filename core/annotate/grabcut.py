"""Marks → mask with GrabCut (the annotation method before the network; `method="grabcut"` in
`core.annotate.object_mask`): seeded by the box and points. Pure: the same marks on the same image always give
the same mask.
"""

from __future__ import annotations

import cv2
import numpy as np

from core.annotate.marks import Mark

# GrabCut runs on a copy whose long side is at most this many pixels (fast enough for a click-by-click UI).
_GRABCUT_SIDE = 480
_GRABCUT_ITERATIONS = 4
# Seeds around a click: a sure disk, and (with no box) a probable-foreground disk around it, as image fractions.
_SEED_RADIUS = 0.012
_NEIGHBOURHOOD_RADIUS = 0.2


def grabcut_mask(image: np.ndarray, marks: tuple[Mark, ...]) -> np.ndarray:
    """One object's points and box on `image` (H, W, 3) RGB → (H, W) bool mask (brush dabs are not applied here).

    GrabCut is seeded by the last box (outside = background) and the points (sure foreground / background
    disks); with points but no box, a disk around each positive point is probable foreground and the mask keeps
    only the regions that touch a positive point.
    """
    boxes = [mark for mark in marks if mark.kind == "box"]
    positives = [mark for mark in marks if mark.kind == "positive"]
    if not (boxes or positives):
        return np.zeros(image.shape[:2], dtype=bool)
    mask = _grabcut(image, boxes[-1] if boxes else None, marks)
    return mask if boxes else _keep_touching(mask, positives)


def _grabcut(image: np.ndarray, box: Mark | None, marks: tuple[Mark, ...]) -> np.ndarray:
    """GrabCut on a downscaled copy seeded by `box` and the point marks → (H, W) bool mask at full size."""
    height, width = image.shape[:2]
    scale = min(1.0, _GRABCUT_SIDE / max(height, width))
    small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
    small = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA)  # (h, w, 3)
    seeds = _seed_map(small.shape[:2], scale, box, marks)  # (h, w) GC_* values
    if (np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).any() and np.isin(seeds, (cv2.GC_BGD, cv2.GC_PR_BGD)).any()):
        background_model = np.zeros((1, 65), np.float64)
        foreground_model = np.zeros((1, 65), np.float64)
        cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), seeds, None, background_model, foreground_model,
                    _GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    foreground = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)  # (h, w)
    return cv2.resize(foreground, (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


def _seed_map(hw: tuple[int, int], scale: float, box: Mark | None, marks: tuple[Mark, ...]) -> np.ndarray:
    """The GrabCut seed map (h, w) uint8 at the downscaled size: box and point seeds."""
    height, width = hw
    seed_radius = max(2, round(_SEED_RADIUS * max(height, width)))
    if box is not None:
        seeds = np.full((height, width), cv2.GC_BGD, dtype=np.uint8)
        x0, y0 = round(box.x * scale), round(box.y * scale)
        x1, y1 = round(box.x2 * scale), round(box.y2 * scale)
        seeds[y0 : y1 + 1, x0 : x1 + 1] = cv2.GC_PR_FGD
    else:
        seeds = np.full((height, width), cv2.GC_PR_BGD, dtype=np.uint8)
        around = max(seed_radius + 1, round(_NEIGHBOURHOOD_RADIUS * min(height, width)))
        for mark in marks:
            if mark.kind == "positive":
                cv2.circle(seeds, (round(mark.x * scale), round(mark.y * scale)), around, cv2.GC_PR_FGD, -1)
    for mark in marks:
        if mark.kind in ("positive", "negative"):
            value = cv2.GC_FGD if mark.kind == "positive" else cv2.GC_BGD
            cv2.circle(seeds, (round(mark.x * scale), round(mark.y * scale)), seed_radius, value, -1)
    return seeds


def _keep_touching(mask: np.ndarray, points: list[Mark]) -> np.ndarray:
    """Keep only the connected regions of `mask` (H, W) bool that contain one of `points`."""
    count, components = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    height, width = mask.shape
    keep = {int(components[min(p.y, height - 1), min(p.x, width - 1)]) for p in points} - {0}
    if count <= 1 or not keep:
        return mask
    return np.isin(components, sorted(keep))
