"""Soft edges: the guided-filter matte snaps to the image's edges, the shift and feather settings act as named,
and cut-out, blur and replace use the matte."""

from __future__ import annotations

import numpy as np
import pytest

from core.effects import EdgeSettings, blur_background, cutout, replace_background, soft_alpha
from core.effects.matting import guided_filter

HEIGHT, WIDTH, EDGE = 480, 640, 320  # at 480p the settings are in pixels; the image: dark left of column 320


@pytest.fixture
def image() -> np.ndarray:
    image = np.full((HEIGHT, WIDTH, 3), 30, np.uint8)
    image[:, EDGE:] = 220
    return image


def probabilities(centre: float, width: float = 6.0) -> np.ndarray:
    """`(2, H, W)` background/object probabilities: a blurry ramp up to the object at column `centre`, like the
    tracker's upsampled output."""
    columns = np.arange(WIDTH, dtype=np.float32)
    objects = np.clip((columns - centre) / width + 0.5, 0.0, 1.0)
    plane = np.broadcast_to(objects, (HEIGHT, WIDTH))
    return np.stack([1.0 - plane, plane]).astype(np.float32)


def test_matte_edge_snaps_to_the_image_edge(image: np.ndarray) -> None:
    alpha = soft_alpha(image, probabilities(centre=EDGE + 1.5), EdgeSettings(feather=0.0))
    raw = 1.0 - probabilities(EDGE + 1.5)[0]
    row = alpha[HEIGHT // 2]
    assert row[EDGE - 3] < 0.1 and row[EDGE + 2] > 0.9  # a step at the image's edge …
    assert raw[HEIGHT // 2, EDGE - 3] > 0.1 or raw[HEIGHT // 2, EDGE + 2] < 0.9  # … the ramp was not one
    assert alpha.dtype == np.float32 and alpha.min() >= 0.0 and alpha.max() <= 1.0


def test_shift_grows_and_shrinks_and_feather_softens(image: np.ndarray) -> None:
    flat = np.full_like(image, 128)  # no image edge: the probabilities alone decide
    probs = probabilities(centre=EDGE, width=2.0)
    base = soft_alpha(flat, probs, EdgeSettings(feather=0.0)).sum()
    grown = soft_alpha(flat, probs, EdgeSettings(feather=0.0, shift=4.0)).sum()
    shrunk = soft_alpha(flat, probs, EdgeSettings(feather=0.0, shift=-4.0)).sum()
    assert grown > base + 2 * HEIGHT and shrunk < base - 2 * HEIGHT
    sharp = soft_alpha(flat, probs, EdgeSettings(feather=0.0))[HEIGHT // 2]
    soft = soft_alpha(flat, probs, EdgeSettings(feather=4.0))[HEIGHT // 2]
    assert np.count_nonzero((soft > 0.02) & (soft < 0.98)) > np.count_nonzero((sharp > 0.02) & (sharp < 0.98))


def test_guided_filter_with_a_flat_guide_is_a_box_mean_of_box_means() -> None:
    source = np.random.default_rng(0).random((30, 30)).astype(np.float32)
    out = guided_filter(np.full((30, 30), 0.5, np.float32), source, 2, 1e-3)
    expected = np.mean([source[y - 2:y + 3, x - 2:x + 3].mean() for y in range(13, 18) for x in range(13, 18)])
    assert out[15, 15] == pytest.approx(expected, abs=1e-4)


def test_effects_use_the_matte(image: np.ndarray) -> None:
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    labels[:, EDGE:] = 1
    alpha = np.zeros((HEIGHT, WIDTH), np.float32)
    alpha[:, EDGE:] = 1.0
    alpha[:, EDGE - 1] = 0.5
    rgba = cutout(image, labels, alpha)
    assert rgba[0, EDGE - 1, 3] == 128 and rgba[0, EDGE, 3] == 255 and rgba[0, 0, 3] == 0
    assert rgba[0, EDGE - 1, :3].tolist() == image[0, EDGE - 1].tolist()  # straight (not premultiplied) alpha
    replaced = replace_background(image, labels, (0, 200, 0), alpha)
    assert replaced[0, EDGE - 1].tolist() == [15, 115, 15] and replaced[0, 0].tolist() == [0, 200, 0]
    assert replaced[0, EDGE].tolist() == image[0, EDGE].tolist()
    blurred = blur_background(image, labels, 9, alpha)
    assert blurred[0, EDGE + 5].tolist() == image[0, EDGE + 5].tolist()
    assert not np.array_equal(blurred[0, EDGE - 2], image[0, EDGE - 2])  # within the blur's reach of the edge
