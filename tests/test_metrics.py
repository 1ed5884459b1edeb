"""core.evaluation.metrics: hand-computed J and F, and agreement with a brute-force second implementation."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from core.evaluation.metrics import (
    SequenceScorer,
    boundary_f,
    boundary_map,
    region_similarity,
    summarize,
    tolerance_radius,
)


def square(hw: tuple[int, int], top: int, left: int, size: int) -> np.ndarray:
    """`(H, W)` bool mask holding one `size`×`size` square at (top, left)."""
    mask = np.zeros(hw, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


# ---- hand-computed cases -------------------------------------------------------------------------------


def test_iou_of_two_overlapping_squares() -> None:
    a = square((50, 50), 10, 10, 10)  # 100 pixels
    b = square((50, 50), 15, 15, 10)  # overlap 5×5 = 25 → union 175
    assert region_similarity(a, b) == pytest.approx(25 / 175)
    assert region_similarity(a, a) == 1.0
    assert region_similarity(a, ~a) == 0.0


def test_both_empty_scores_one_and_one_empty_scores_zero() -> None:
    empty, full = np.zeros((20, 30), bool), square((20, 30), 5, 5, 6)
    assert region_similarity(empty, empty) == 1.0
    assert boundary_f(empty, empty) == 1.0
    assert region_similarity(full, empty) == 0.0
    assert boundary_f(full, empty) == 0.0
    assert boundary_f(empty, full) == 0.0


def test_tolerance_radius_follows_davis() -> None:
    assert tolerance_radius((480, 854)) == 8  # ceil(0.008 × 979.6)
    assert tolerance_radius((100, 100)) == 2  # ceil(0.008 × 141.4)
    assert tolerance_radius((100, 100), bound_th=5) == 5


def test_boundary_map_marks_pixels_differing_right_below_or_diagonally() -> None:
    mask = square((6, 6), 2, 2, 2)
    expected = np.zeros((6, 6), bool)
    expected[1, 1:4] = True  # above the square (lower / lower-right neighbour is inside)
    expected[2:4, 1] = True  # left of the square (right neighbour is inside)
    expected[2:4, 3] = True  # the square's right column (right neighbour is outside)
    expected[3, 2] = True  # the square's bottom row (lower neighbour is outside)
    assert np.array_equal(boundary_map(mask), expected)
    assert not boundary_map(np.ones((5, 5), bool)).any()  # the image border is no boundary


def test_shift_within_tolerance_gives_perfect_f() -> None:
    hw = (480, 854)  # radius 8
    gt = square(hw, 100, 100, 120)
    assert boundary_f(square(hw, 105, 106, 120), gt) == 1.0
    assert region_similarity(square(hw, 105, 106, 120), gt) < 1.0


def test_shift_beyond_tolerance_gives_zero_f() -> None:
    hw = (480, 854)
    gt = square(hw, 100, 100, 60)
    assert boundary_f(square(hw, 100, 300, 60), gt) == 0.0


def test_known_fraction_of_boundary_within_tolerance() -> None:
    # Ground truth: rows >= a over the full width → its boundary is row a-1 (W pixels).
    # Prediction: the same for columns < c, but rows >= a+s for columns >= c (s beyond the radius r).
    # Its boundary: row a-1 for columns < c (c pixels), a vertical step at column c-1 for rows a … a+s-1
    # (s pixels, the first r of them within r of row a-1), and row a+s-1 for columns >= c (unmatched).
    # Precision = (c + r) / (W + s); recall = (c + r) / W (the r ground-truth pixels right of column c-1
    # are within r of the prediction's corner at (a-1, c-1)).
    height, width, a, s, c = 100, 100, 30, 20, 40
    r = tolerance_radius((height, width))
    gt = np.zeros((height, width), bool)
    gt[a:] = True
    pred = gt.copy()
    pred[a : a + s, c:] = False
    precision, recall = (c + r) / (width + s), (c + r) / width
    assert boundary_f(pred, gt) == pytest.approx(2 * precision * recall / (precision + recall))


# ---- an independent brute-force implementation ---------------------------------------------------------


def brute_boundary(mask: np.ndarray) -> list[tuple[int, int]]:
    """Boundary pixels by explicit neighbour checks, following the same DAVIS convention."""
    height, width = mask.shape
    points = []
    for y in range(height):
        for x in range(width):
            neighbours = [(y, x + 1), (y + 1, x), (y + 1, x + 1)]
            if any(ny < height and nx < width and mask[ny, nx] != mask[y, x] for ny, nx in neighbours):
                points.append((y, x))
    return points


def brute_matched(points: list[tuple[int, int]], others: list[tuple[int, int]], radius: int) -> int:
    """How many of `points` have one of `others` within Euclidean distance `radius`."""
    return sum(any((y - oy) ** 2 + (x - ox) ** 2 <= radius**2 for oy, ox in others) for y, x in points)


def brute_f(pred: np.ndarray, gt: np.ndarray, radius: int) -> float:
    pred_points, gt_points = brute_boundary(pred), brute_boundary(gt)
    if not pred_points and not gt_points:
        return 1.0
    if not pred_points or not gt_points:
        return 0.0
    precision = brute_matched(pred_points, gt_points, radius) / len(pred_points)
    recall = brute_matched(gt_points, pred_points, radius) / len(gt_points)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def brute_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = sum(bool(p) or bool(g) for p, g in zip(pred.ravel(), gt.ravel()))
    inter = sum(bool(p) and bool(g) for p, g in zip(pred.ravel(), gt.ravel()))
    return 1.0 if union == 0 else inter / union


def random_blob(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """A few random ellipses (sometimes none) as an `(H, W)` bool mask."""
    mask = np.zeros(hw, np.uint8)
    for _ in range(rng.integers(0, 4)):
        centre = (int(rng.integers(0, hw[1])), int(rng.integers(0, hw[0])))
        axes = (int(rng.integers(2, hw[1] // 3)), int(rng.integers(2, hw[0] // 3)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return mask.astype(bool)


@pytest.mark.parametrize("bound_th", [0.008, 3])
def test_f_and_j_match_brute_force_on_random_blobs(bound_th: float) -> None:
    rng = np.random.default_rng(7)
    hw = (36, 52)
    radius = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*hw))
    for _ in range(25):
        pred, gt = random_blob(rng, hw), random_blob(rng, hw)
        if rng.random() < 0.5:  # also near-misses: gt slightly shifted from the prediction
            gt = np.roll(pred, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
        assert boundary_f(pred, gt, bound_th) == pytest.approx(brute_f(pred, gt, radius), abs=1e-3)
        assert region_similarity(pred, gt) == pytest.approx(brute_iou(pred, gt), abs=1e-3)


def test_sequence_jf_matches_brute_force_to_a_tenth_of_a_point() -> None:
    """Two sequences, one with two objects: J&F from SequenceScorer/summarize vs brute force, in points."""
    rng = np.random.default_rng(11)
    hw = (30, 40)
    radius = tolerance_radius(hw)
    scores, brute_j, brute_fs = [], [], []
    for name, ids, frames in (("one", [1], 6), ("two", [1, 2], 5)):
        scorer = SequenceScorer(name, ids)
        per_object = {i: ([], []) for i in ids}
        for index in range(frames):
            gt, pred = np.zeros(hw, np.uint8), np.zeros(hw, np.uint8)
            for i in ids:
                gt[random_blob(rng, hw)] = i
                pred[np.roll(gt == i, int(rng.integers(-2, 3)), axis=1)] = i
            scorer.add(pred, gt)
            if 0 < index < frames - 1:  # DAVIS scores neither the first nor the last frame
                for i in ids:
                    per_object[i][0].append(brute_iou(pred == i, gt == i))
                    per_object[i][1].append(brute_f(pred == i, gt == i, radius))
        scores += scorer.scores()
        for j_values, f_values in per_object.values():
            brute_j.append(np.mean(j_values))
            brute_fs.append(np.mean(f_values))
    summary = summarize(scores)
    expected_jf = 100 * (np.mean(brute_j) + np.mean(brute_fs)) / 2
    assert len(scores) == 3
    assert 100 * summary.jf == pytest.approx(expected_jf, abs=0.1)
    assert 100 * summary.j == pytest.approx(100 * np.mean(brute_j), abs=0.1)


def test_scorer_skips_first_and_last_frames() -> None:
    gt = square((20, 20), 5, 5, 8).astype(np.uint8)
    scorer = SequenceScorer("s", [1])
    scorer.add(np.zeros_like(gt), gt)  # first: ignored
    scorer.add(gt, gt)
    scorer.add(gt, gt)
    scorer.add(np.zeros_like(gt), gt)  # last: ignored
    [score] = scorer.scores()
    assert (score.j, score.f) == (1.0, 1.0)


def distance_f(pred: np.ndarray, gt: np.ndarray, radius: int) -> float:
    """F from exact Euclidean distance transforms (a third formulation, fast enough for 480×854 masks)."""
    pred_b, gt_b = boundary_map(pred), boundary_map(gt)

    def matched(points: np.ndarray, others: np.ndarray) -> int:
        distance = cv2.distanceTransform((~others).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        return int(np.count_nonzero(distance[points] <= radius + 1e-4))

    precision = matched(pred_b, gt_b) / pred_b.sum()
    recall = matched(gt_b, pred_b) / gt_b.sum()
    return 2 * precision * recall / (precision + recall)


def test_f_matches_distance_transform_at_davis_resolution() -> None:
    rng = np.random.default_rng(3)
    hw = (480, 854)  # radius 8
    scores = []
    while len(scores) < 5:
        gt = random_blob(rng, hw)
        if not gt.any():
            continue
        shift = (int(rng.integers(-12, 13)), int(rng.integers(-12, 13)))
        pred = np.roll(gt, shift, axis=(0, 1))
        scores.append(boundary_f(pred, gt))
        assert scores[-1] == pytest.approx(distance_f(pred, gt, 8), abs=1e-3)
    assert min(scores) < 1.0  # some shifts exceed the tolerance
