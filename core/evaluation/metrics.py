"""DAVIS scores: region similarity J, boundary F-measure F, and their per-sequence and overall means.

Definitions follow the DAVIS benchmark (Perazzi et al. 2016; Pont-Tuset et al. 2017):

- J is the intersection over union of the predicted and ground-truth masks (both empty → 1).
- F compares the two masks' boundary maps. A pixel is on the boundary when its label differs from one of its
  right, lower or lower-right neighbours that lie inside the image (the DAVIS `seg2bmap` convention at the
  mask's own resolution; pixels outside the image count as equal, so the image border is no boundary).
  A predicted boundary pixel is matched when a ground-truth boundary pixel lies within a disk of radius
  `ceil(bound_th × image diagonal)` (bound_th = 0.008 → 8 pixels at 480×854), and vice versa;
  F = 2PR / (P + R). Both boundaries empty → 1; exactly one empty → 0.
- A sequence's score for one object is the mean over its frames without the first (the given annotation)
  and the last; the overall J and F are means over all objects of all sequences, J&F their mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

DEFAULT_BOUND_TH = 0.008


def region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    """J: intersection over union of two `(H, W)` binary masks; 1.0 when both are empty."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return np.count_nonzero(pred & gt) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """`(H, W)` bool: pixels whose label differs from their right, lower or lower-right neighbour in the image."""
    mask = mask.astype(bool)
    boundary = np.zeros_like(mask)
    boundary[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    boundary[:-1, :] |= mask[:-1, :] != mask[1:, :]
    boundary[:-1, :-1] |= mask[:-1, :-1] != mask[1:, 1:]
    return boundary


def tolerance_radius(hw: tuple[int, int], bound_th: float = DEFAULT_BOUND_TH) -> int:
    """Matching radius in pixels: `bound_th` itself when >= 1, else ceil(bound_th × diagonal of `hw`)."""
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * math.hypot(*hw))


def disk(radius: int) -> np.ndarray:
    """`(2r+1, 2r+1)` uint8 structuring element: offsets (dy, dx) with dy² + dx² <= r²."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = DEFAULT_BOUND_TH) -> float:
    """F: boundary F-measure of two `(H, W)` binary masks with the DAVIS tolerance (see the module docstring)."""
    pred_boundary, gt_boundary = boundary_map(pred), boundary_map(gt)
    pred_count, gt_count = np.count_nonzero(pred_boundary), np.count_nonzero(gt_boundary)
    if pred_count == 0 and gt_count == 0:
        return 1.0
    if pred_count == 0 or gt_count == 0:
        return 0.0
    kernel = disk(tolerance_radius(pred.shape, bound_th))
    pred_near = cv2.dilate(pred_boundary.astype(np.uint8), kernel).astype(bool)
    gt_near = cv2.dilate(gt_boundary.astype(np.uint8), kernel).astype(bool)
    precision = np.count_nonzero(pred_boundary & gt_near) / pred_count
    recall = np.count_nonzero(gt_boundary & pred_near) / gt_count
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class ObjectScore:
    """Mean J and F of one object over the scored frames of one sequence (fractions in [0, 1])."""

    sequence: str
    object_id: int
    j: float
    f: float


@dataclass
class SequenceScorer:
    """Accumulates per-frame J and F of each object of one sequence, one frame at a time.

    `object_ids` are the objects to score (those of the first annotation). Masks are never kept, only scores.
    """

    sequence: str
    object_ids: list[int]
    bound_th: float = DEFAULT_BOUND_TH
    _j: list[list[float]] = field(default_factory=list)  # (frames, objects)
    _f: list[list[float]] = field(default_factory=list)  # (frames, objects)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Score one frame's `(H, W)` predicted label map against its ground-truth label map."""
        if pred.shape != gt.shape:
            raise ValueError(f"{self.sequence}: prediction is {pred.shape} but ground truth is {gt.shape}")
        self._j.append([region_similarity(pred == i, gt == i) for i in self.object_ids])
        self._f.append([boundary_f(pred == i, gt == i, self.bound_th) for i in self.object_ids])

    def scores(self) -> list[ObjectScore]:
        """Per-object means over frames 1 … n-2 (all frames when a sequence has fewer than three)."""
        if not self._j:
            raise ValueError(f"{self.sequence}: no frames were scored")
        scored = slice(1, -1) if len(self._j) >= 3 else slice(None)
        j = np.asarray(self._j, dtype=np.float64)[scored].mean(axis=0)  # (objects,)
        f = np.asarray(self._f, dtype=np.float64)[scored].mean(axis=0)  # (objects,)
        return [ObjectScore(self.sequence, i, float(jj), float(ff)) for i, jj, ff in zip(self.object_ids, j, f)]


@dataclass(frozen=True)
class Summary:
    """Means over objects (fractions in [0, 1]); `jf` = (j + f) / 2."""

    j: float
    f: float
    jf: float


def summarize(scores: list[ObjectScore]) -> Summary:
    """Overall J, F and J&F: means over every object of every sequence, as the DAVIS tables report them."""
    if not scores:
        raise ValueError("no object scores to summarize")
    j = float(np.mean([s.j for s in scores]))
    f = float(np.mean([s.f for s in scores]))
    return Summary(j=j, f=f, jf=(j + f) / 2)
