"""Annotation by clicks, and how it becomes a label map (shared by the web face and the OBS plugin's `--box`).

The user marks objects on a frame with clicks: positive and negative points, a box (two corner clicks) and
brush dabs that add or erase. Every mark belongs to one object id. `object_mask` turns one object's marks into
a binary mask with GrabCut seeded by the box and points, then applies the brush; `labels_from_marks` stacks
the objects into an `(H, W)` `uint8` label map. `render_marks` draws the marks over an image. Everything here
is pure: the same marks on the same image always give the same mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from core.masks import davis_palette

MarkKind = Literal["positive", "negative", "box", "brush_add", "brush_erase"]
MARK_KINDS: tuple[MarkKind, ...] = ("positive", "negative", "box", "brush_add", "brush_erase")

# GrabCut runs on a copy whose long side is at most this many pixels (fast enough for a click-by-click UI).
_GRABCUT_SIDE = 480
_GRABCUT_ITERATIONS = 4
# Seeds around a click: a sure disk, and (with no box) a probable-foreground disk around it, as image fractions.
_SEED_RADIUS = 0.012
_NEIGHBOURHOOD_RADIUS = 0.2


@dataclass(frozen=True)
class Mark:
    """One user mark on a frame, in full-resolution pixel coordinates.

    `positive` / `negative`: a point at (x, y). `box`: corners (x, y) and (x2, y2).
    `brush_add` / `brush_erase`: a disk of `radius` pixels at (x, y).
    """

    kind: MarkKind
    object_id: int
    x: int
    y: int
    x2: int = 0
    y2: int = 0
    radius: int = 0


@dataclass(frozen=True)
class BoxStart:
    """The first corner of a box waiting for its second click."""

    object_id: int
    x: int
    y: int


def add_click(
    marks: tuple[Mark, ...], pending: BoxStart | None, kind: MarkKind, object_id: int, x: int, y: int,
    brush_radius: int = 10,
) -> tuple[tuple[Mark, ...], BoxStart | None]:
    """Apply one click in mode `kind`; returns the new marks and the pending box corner (if any)."""
    if kind not in MARK_KINDS:
        raise ValueError(f"unknown mark kind {kind!r}; use one of {', '.join(MARK_KINDS)}")
    if kind == "box":
        if pending is None or pending.object_id != object_id:
            return marks, BoxStart(object_id, x, y)
        box = Mark("box", object_id, min(pending.x, x), min(pending.y, y), max(pending.x, x), max(pending.y, y))
        return marks + (box,), None
    radius = brush_radius if kind.startswith("brush") else 0
    return marks + (Mark(kind, object_id, x, y, radius=radius),), None


def undo(marks: tuple[Mark, ...], pending: BoxStart | None) -> tuple[tuple[Mark, ...], BoxStart | None]:
    """Undo the last action: a pending box corner first, otherwise the last mark."""
    if pending is not None:
        return marks, None
    return marks[:-1], None


def clear(marks: tuple[Mark, ...], object_id: int | None = None) -> tuple[Mark, ...]:
    """Remove every mark (object_id None) or only those of one object."""
    if object_id is None:
        return ()
    return tuple(mark for mark in marks if mark.object_id != object_id)


def annotated_ids(marks: tuple[Mark, ...]) -> list[int]:
    """The sorted object ids that have at least one mark."""
    return sorted({mark.object_id for mark in marks})


def object_mask(image: np.ndarray, marks: tuple[Mark, ...]) -> np.ndarray:
    """One object's marks on `image` (H, W, 3) RGB → (H, W) bool mask.

    GrabCut is seeded by the last box (outside = background) and the points (sure foreground / background
    disks); with points but no box, a disk around each positive point is probable foreground and the mask keeps
    only the regions that touch a positive point. Brush dabs are applied last, in order.
    """
    height, width = image.shape[:2]
    mask = np.zeros((height, width), dtype=bool)
    boxes = [mark for mark in marks if mark.kind == "box"]
    positives = [mark for mark in marks if mark.kind == "positive"]
    if boxes or positives:
        mask = _grabcut(image, boxes[-1] if boxes else None, marks)
    if positives and not boxes:
        mask = _keep_touching(mask, positives)
    for mark in marks:
        if mark.kind in ("brush_add", "brush_erase"):
            dab = np.zeros((height, width), dtype=np.uint8)
            cv2.circle(dab, (mark.x, mark.y), max(1, mark.radius), 1, thickness=-1)
            mask[dab.astype(bool)] = mark.kind == "brush_add"
    return mask


def labels_from_marks(image: np.ndarray, marks: tuple[Mark, ...]) -> np.ndarray:
    """All objects' marks on `image` (H, W, 3) → (H, W) uint8 label map; higher ids are drawn over lower ones."""
    labels = np.zeros(image.shape[:2], dtype=np.uint8)
    for object_id in annotated_ids(marks):
        own = tuple(mark for mark in marks if mark.object_id == object_id)
        labels[object_mask(image, own)] = object_id
    return labels


def object_colour(object_id: int) -> tuple[int, int, int]:
    """The DAVIS palette colour of an object id, as an RGB tuple."""
    r, g, b = davis_palette()[object_id]
    return int(r), int(g), int(b)


def render_marks(image: np.ndarray, marks: tuple[Mark, ...], pending: BoxStart | None) -> np.ndarray:
    """Draw the marks over `image` (H, W, 3) RGB: boxes in the object colour, points as green (+) / red (−) dots,
    brush dabs as thin circles, a pending box corner as a small cross. Returns a new (H, W, 3) image."""
    canvas = image.copy()
    scale = max(1, round(max(image.shape[:2]) / 400))
    for mark in marks:
        colour = object_colour(mark.object_id)
        if mark.kind == "box":
            cv2.rectangle(canvas, (mark.x, mark.y), (mark.x2, mark.y2), colour, 2 * scale)
        elif mark.kind in ("positive", "negative"):
            fill = (40, 220, 60) if mark.kind == "positive" else (235, 40, 40)
            cv2.circle(canvas, (mark.x, mark.y), 5 * scale, (255, 255, 255), -1)
            cv2.circle(canvas, (mark.x, mark.y), 4 * scale, fill, -1)
        else:
            cv2.circle(canvas, (mark.x, mark.y), max(1, mark.radius), colour, scale)
    if pending is not None:
        size = 8 * scale
        colour = object_colour(pending.object_id)
        cv2.line(canvas, (pending.x - size, pending.y), (pending.x + size, pending.y), colour, 2 * scale)
        cv2.line(canvas, (pending.x, pending.y - size), (pending.x, pending.y + size), colour, 2 * scale)
    return canvas


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
