"""core.effects on small synthetic frames whose expected values follow from the definitions."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.effects import (
    ObjectRemover,
    blur_background,
    cutout,
    mask_image,
    overlay,
    replace_background,
)
from core.effects.__main__ import main as stills_main
from core.effects.stills import render_stills
from core.io.command import BAD_INPUT, run_tool
from core.io.masks import davis_palette


@pytest.fixture
def image() -> np.ndarray:
    """A textured `(48, 64, 3)` RGB frame."""
    return np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


@pytest.fixture
def labels() -> np.ndarray:
    """Object 1 a 10×12 box, object 3 a 8×8 box, background elsewhere; `(48, 64)`."""
    labels = np.zeros((48, 64), np.uint8)
    labels[10:20, 8:20] = 1
    labels[30:38, 40:48] = 3
    return labels


def test_mask_image_uses_palette_colours(labels: np.ndarray) -> None:
    rendered = mask_image(labels)
    assert rendered.shape == (48, 64, 3)
    assert rendered[15, 12].tolist() == davis_palette()[1].tolist()
    assert rendered[34, 44].tolist() == davis_palette()[3].tolist()
    assert rendered[0, 0].tolist() == [0, 0, 0]


def test_overlay_tints_objects_outlines_edges_and_keeps_background(image: np.ndarray, labels: np.ndarray) -> None:
    out = overlay(image, labels, alpha=0.5)
    background = labels == 0
    assert np.array_equal(out[background], image[background])
    colour = davis_palette()[1].astype(np.float64)
    expected_inside = np.round(0.5 * image[15, 12] + 0.5 * colour)
    assert np.abs(out[15, 12].astype(np.float64) - expected_inside).max() <= 1
    assert out[10, 12].tolist() == colour.tolist()  # top edge of object 1
    assert out[15, 8].tolist() == colour.tolist()  # left edge
    untinted = overlay(image, labels, alpha=0.0)
    assert np.array_equal(untinted[15, 12], image[15, 12])


def test_cutout_alpha_equals_mask(image: np.ndarray, labels: np.ndarray) -> None:
    rgba = cutout(image, labels)
    assert rgba.shape == (48, 64, 4) and rgba.dtype == np.uint8
    assert np.array_equal(rgba[..., 3], np.where(labels > 0, 255, 0))
    objects = labels > 0
    assert np.array_equal(rgba[..., :3][objects], image[objects])
    assert not rgba[..., :3][~objects].any()


def test_blur_keeps_objects_sharp_and_blurs_far_background(image: np.ndarray, labels: np.ndarray) -> None:
    out = blur_background(image, labels, strength=9)
    assert out.shape == image.shape and out.dtype == np.uint8
    objects = labels > 0
    assert np.array_equal(out[objects], image[objects])
    blurred = cv2.GaussianBlur(image, (9, 9), 0)
    far = np.ones_like(objects)
    far[2:28, 0:30] = False  # around object 1, beyond the feather
    far[20:48, 30:58] = False  # around object 3
    assert np.abs(out[far].astype(int) - blurred[far].astype(int)).max() <= 1
    assert out[far].std() < image[far].std() / 2


def test_blur_of_a_flat_image_is_the_image(labels: np.ndarray) -> None:
    flat = np.full((48, 64, 3), 90, np.uint8)
    assert np.array_equal(blur_background(flat, labels), flat)


def test_replace_with_colour_is_exact_outside_objects(image: np.ndarray, labels: np.ndarray) -> None:
    out = replace_background(image, labels, (0, 177, 64))
    objects = labels > 0
    assert np.array_equal(out[objects], image[objects])
    assert (out[~objects] == [0, 177, 64]).all()


def test_replace_with_image_resizes_it_to_the_frame(image: np.ndarray, labels: np.ndarray) -> None:
    backdrop = np.zeros((100, 200, 3), np.uint8)
    backdrop[:, :100] = (255, 0, 0)
    backdrop[:, 100:] = (0, 0, 255)
    out = replace_background(image, labels, backdrop)
    assert out.shape == image.shape
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 63].tolist() == [0, 0, 255]
    objects = labels > 0
    assert np.array_equal(out[objects], image[objects])


def test_object_remover_recovers_a_static_background(image: np.ndarray) -> None:
    remover = ObjectRemover(margin=1)
    for x in range(0, 48, 4):  # a 10×10 object walks right across the static background
        labels = np.zeros((48, 64), np.uint8)
        labels[20:30, x : x + 10] = 2
        frame = image.copy()
        frame[labels > 0] = (255, 255, 0)
        out = remover(frame, labels)
    assert np.array_equal(out, image)


def test_object_remover_inpaints_unseen_pixels(labels: np.ndarray) -> None:
    flat = np.full((48, 64, 3), (40, 120, 200), np.uint8)
    frame = flat.copy()
    frame[labels > 0] = (255, 0, 255)
    out = ObjectRemover()(frame, labels)
    assert np.abs(out.astype(int) - flat.astype(int)).max() <= 2


def test_object_remover_resets_on_a_new_size(image: np.ndarray, labels: np.ndarray) -> None:
    remover = ObjectRemover()
    remover(image, labels)
    small_labels = np.zeros((24, 32), np.uint8)
    small_labels[5:10, 5:10] = 1
    small = np.full((24, 32, 3), 50, np.uint8)
    small[small_labels > 0] = 250
    assert np.abs(remover(small, small_labels).astype(int) - 50).max() <= 3


def test_render_stills_writes_one_image_per_effect(judo_dir: Path, tmp_path: Path) -> None:
    written = render_stills(tmp_path, judo_dir)
    assert sorted(p.name for p in written) == [
        "blur.jpg", "cutout.png", "mask.jpg", "overlay.jpg", "remove.jpg", "replace.jpg"
    ]
    cut = cv2.imread(str(tmp_path / "cutout.png"), cv2.IMREAD_UNCHANGED)
    assert cut.shape == (480, 854, 4) and set(np.unique(cut[..., 3])) == {0, 255}


def test_stills_of_a_missing_frame_or_mask_end_in_one_line(judo_dir: Path, tmp_path: Path,
                                                           capfd: pytest.CaptureFixture[str]) -> None:
    """`python -m core.effects` names the frame or mask it could not read, and what to pass instead (and OpenCV
    prints no warning of its own on the line before: capfd sees what C code writes too)."""
    for frame, message in (("00099", r"00099\.jpg: no readable frame; pass --sample"),
                           ("00001", r"00001\.png: mask file not found")):
        with pytest.raises(SystemExit) as stop:
            run_tool(lambda: stills_main(["--stills", str(tmp_path / frame), "--sample", str(judo_dir), "--frame",
                                          frame]))
        error = capfd.readouterr().err.strip()
        assert stop.value.code == BAD_INPUT and re.match(rf"error: .*{message}", error) and "\n" not in error
