"""Tracked masks redrawn by the annotation network: each object's mask from the tracker is given to the
click-and-box network as its previous mask, with no click, and the network answers zoomed on the object (a square
around the mask, at its own 288-px input) instead of at the tracker's 240-px view of the whole frame. Output
only: the tracker's memory keeps its own masks (fed back, the redrawn masks lowered J&F on the validation
split). Used by `core.eval --refine`, `core.batch --refine` and the web app (its default) (docs/RESULTS.md, issue #16).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.annotate.segmenter import Network, default_segmenter, focus_window, predict_region
from core.inference.tracker import Tracker

MIN_PIXELS = 20  # objects smaller than this are kept as tracked: too small for a zoomed view to help


class MaskRefiner:
    """Redraws each object of a label map with the annotation network (the shipped one by default)."""

    def __init__(self, network: Network | None = None):
        self.network = network or default_segmenter().network

    def object_probability(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """The probability of the object tracked as `mask` (H, W) bool in `image` (H, W, 3) RGB over the part of
        the frame the network looked at (0 elsewhere), and that part's top-left corner (y, x)."""
        if np.count_nonzero(mask) < MIN_PIXELS:
            return mask.astype(np.float32), (0, 0)
        return predict_region(self.network, image, (), None, mask, focus_window(mask.shape, (), None, mask))

    def __call__(self, image: np.ndarray, labels: np.ndarray,
                 ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Labels (H, W) uint8 of objects `ids` → the redrawn labels and the (H, W) float32 probability of any
        object (each pixel goes to the object the network is surest of, if that is over one half)."""
        refined = np.zeros_like(labels)
        best = np.full(labels.shape, 0.5, np.float32)
        any_object = np.zeros(labels.shape, np.float32)
        for object_id in ids:
            probability, (top, left) = self.object_probability(image, labels == object_id)
            part = np.s_[top : top + probability.shape[0], left : left + probability.shape[1]]
            taken = probability > best[part]
            np.copyto(refined[part], object_id, where=taken)
            np.copyto(best[part], probability, where=taken)
            np.maximum(any_object[part], probability, out=any_object[part])
        return refined, any_object


class RefinedTracker:
    """A tracker whose masks on the frames without an annotation are redrawn by a `MaskRefiner` (the tracker's
    `step`, for frame-by-frame callers: the evaluation and the web app's preview)."""

    def __init__(self, tracker: Tracker, refiner: MaskRefiner):
        self.tracker, self.refiner = tracker, refiner

    def step(self, frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """frame (H, W, 3) uint8 RGB, this frame's annotation or None → labels (H, W) uint8."""
        labels = self.tracker.step(frame, mask)
        return labels if mask is not None else self.refiner(frame, labels, self.tracker.object_ids)[0]
