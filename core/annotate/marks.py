"""The marks a user puts on a frame, and how they are edited and drawn.

Clicks: positive and negative points, a box (two corner clicks) and brush dabs that add or erase. Every mark
belongs to one object id. `render_marks` draws the marks over an image. Everything here is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from core.io.masks import davis_palette

MarkKind = Literal["positive", "negative", "box", "brush_add", "brush_erase"]
MARK_KINDS: tuple[MarkKind, ...] = ("positive", "negative", "box", "brush_add", "brush_erase")

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


def add_drag(marks: tuple[Mark, ...], kind: MarkKind, object_id: int, points: list[tuple[int, int]],
             brush_radius: int = 10) -> tuple[Mark, ...]:
    """Apply one drag through `points` (x, y) in mode `kind` (a box's waiting corner is dropped by the caller):
    a box spans the drag's first and last points; the brush paints dabs along the path, at most half a radius
    apart, so that the stroke is solid; a click kind takes the drag as a click where it ended."""
    if not points:
        raise ValueError("a drag needs at least one point")
    if kind == "box":
        (x1, y1), (x2, y2) = points[0], points[-1]
        return marks + (Mark("box", object_id, min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)),)
    if not kind.startswith("brush"):
        return add_click(marks, None, kind, object_id, *points[-1])[0]
    return marks + tuple(Mark(kind, object_id, x, y, radius=brush_radius)
                         for x, y in stroke_dabs(points, max(1.0, brush_radius / 2)))


def stroke_dabs(points: list[tuple[int, int]], spacing: float) -> list[tuple[int, int]]:
    """Dab centres along the polyline `points`, the first and last points among them, neighbours at most `spacing`
    apart (repeats dropped)."""
    dabs = [points[0]]
    for (x1, y1), (x2, y2) in zip(points, points[1:]):
        steps = int(np.ceil(np.hypot(x2 - x1, y2 - y1) / spacing))
        for step in range(1, steps + 1):
            dab = (round(x1 + (x2 - x1) * step / steps), round(y1 + (y2 - y1) * step / steps))
            if dab != dabs[-1]:
                dabs.append(dab)
    return dabs


def clear(marks: tuple[Mark, ...], object_id: int | None = None) -> tuple[Mark, ...]:
    """Remove every mark (object_id None) or only those of one object."""
    if object_id is None:
        return ()
    return tuple(mark for mark in marks if mark.object_id != object_id)


def annotated_ids(marks: tuple[Mark, ...]) -> list[int]:
    """The sorted object ids that have at least one mark."""
    return sorted({mark.object_id for mark in marks})


def object_colour(object_id: int) -> tuple[int, int, int]:
    """The DAVIS palette colour of an object id, as an RGB tuple."""
    r, g, b = davis_palette()[object_id]
    return int(r), int(g), int(b)


def render_marks(image: np.ndarray, marks: tuple[Mark, ...], pending: BoxStart | None) -> np.ndarray:
    """Draw the marks over `image` (H, W, 3) RGB: boxes in the object colour, points as green (+) / red (−) dots,
    the brush's painted area outlined thinly (in the object colour where it added, in white where it erased), a
    pending box corner as a small cross. Returns a new (H, W, 3) image."""
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
    for (object_id, kind), painted in brushed_areas(marks, image.shape[:2]).items():
        contours, _ = cv2.findContours(painted, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        colour = object_colour(object_id) if kind == "brush_add" else (255, 255, 255)
        cv2.drawContours(canvas, contours, -1, colour, scale)
    if pending is not None:
        size = 8 * scale
        colour = object_colour(pending.object_id)
        cv2.line(canvas, (pending.x - size, pending.y), (pending.x + size, pending.y), colour, 2 * scale)
        cv2.line(canvas, (pending.x, pending.y - size), (pending.x, pending.y + size), colour, 2 * scale)
    return canvas


def brushed_areas(marks: tuple[Mark, ...], shape: tuple[int, int]) -> dict[tuple[int, MarkKind], np.ndarray]:
    """(object id, brush kind) → (H, W) uint8, 1 where that object's dabs of that kind cover, for every pair that
    has dabs: a stroke is drawn as the outline of its area, not as a ring per dab."""
    areas: dict[tuple[int, MarkKind], np.ndarray] = {}
    for mark in marks:
        if mark.kind in ("brush_add", "brush_erase"):
            area = areas.setdefault((mark.object_id, mark.kind), np.zeros(shape, np.uint8))
            cv2.circle(area, (mark.x, mark.y), max(1, mark.radius), 1, thickness=-1)
    return areas
