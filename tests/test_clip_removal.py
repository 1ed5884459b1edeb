"""The whole-clip remover and the removal evaluation on a synthetic panning scene whose background is known."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.effects import ClipRemover, ObjectRemover
from core.effects.clip_removal import push_pull
from core.evaluation import removal
from core.io.command import BAD_INPUT, run_tool
from core.io.masks import write_mask

HEIGHT, WIDTH, STEP, FRAMES = 160, 240, 5, 14
BOX = (slice(60, 100), slice(100, 140))  # the object: fixed in the frame while the camera pans


@pytest.fixture(scope="module")
def canvas() -> np.ndarray:
    """A blocky random texture (corners for ORB) wider than a frame, lightly blurred like a real picture."""
    blocks = np.random.default_rng(1).integers(0, 256, (HEIGHT // 8, (WIDTH + STEP * FRAMES) // 8 + 1, 3), np.uint8)
    big = cv2.resize(blocks, None, fx=8, fy=8, interpolation=cv2.INTER_NEAREST)
    return cv2.GaussianBlur(big, (3, 3), 0)


def pan(canvas: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """The truth frames of a camera panning right, the frames with a magenta object, and its labels."""
    truth, frames, labels = [], [], []
    for t in range(FRAMES):
        view = np.ascontiguousarray(canvas[:, t * STEP: t * STEP + WIDTH])
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        mask[BOX] = 1
        frame = view.copy()
        frame[mask > 0] = (255, 0, 255)
        truth.append(view)
        frames.append(frame)
        labels.append(mask)
    return truth, frames, labels


def run_clip_remover(remover: ClipRemover, frames: list[np.ndarray], labels: list[np.ndarray]) -> list[np.ndarray]:
    outputs: list[np.ndarray] = []
    for frame, mask in zip(frames, labels):
        outputs += remover.push(frame, mask)
    return outputs + list(remover.finish())


def hole_error(output: np.ndarray, truth: np.ndarray) -> float:
    return float(np.abs(output[BOX].astype(int) - truth[BOX].astype(int)).mean())


def test_clip_remover_recovers_the_background_behind_an_object_that_moves_with_the_camera(canvas) -> None:
    truth, frames, labels = pan(canvas)
    remover = ClipRemover(radius=6)
    outputs = run_clip_remover(remover, frames, labels)
    assert len(outputs) == FRAMES
    middle = FRAMES // 2
    assert hole_error(outputs[middle], truth[middle]) < 6  # seen in other frames, aligned by the homography
    streaming = ObjectRemover()
    plate = [streaming(frame, mask) for frame, mask in zip(frames, labels)]
    assert hole_error(plate[middle], truth[middle]) > 3 * hole_error(outputs[middle], truth[middle])
    outside = np.ones((HEIGHT, WIDTH), bool)
    outside[55:105, 95:145] = False  # the object grown by the margin
    assert np.array_equal(outputs[middle][outside], frames[middle][outside])


def test_large_frames_are_worked_on_shrunk_and_keep_the_frame_outside_the_holes(canvas) -> None:
    truth, frames, labels = (
        [cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST) for image in images]
        for images in pan(canvas))  # twice the size: the remover works on them at the original size
    outputs = run_clip_remover(ClipRemover(radius=6, max_short_side=HEIGHT), frames, labels)
    middle = FRAMES // 2
    assert outputs[middle].shape == frames[middle].shape
    box = (slice(2 * BOX[0].start, 2 * BOX[0].stop), slice(2 * BOX[1].start, 2 * BOX[1].stop))
    error = np.abs(outputs[middle][box].astype(int) - truth[middle][box].astype(int)).mean()
    assert error < 10  # filled at the original size, then upsampled
    outside = np.ones((2 * HEIGHT, 2 * WIDTH), bool)
    outside[114:206, 194:286] = False  # the object grown by the margin at full size (3 pixels at half size)
    kept = np.abs(outputs[middle][outside].astype(int) - frames[middle][outside].astype(int))
    assert kept.mean() < 4  # the waiting frames are kept as 4:2:0 YUV, as their video is encoded


def test_clip_remover_answers_late_and_finish_resets(canvas) -> None:
    _, frames, labels = pan(canvas)
    remover = ClipRemover(radius=3)
    early = [remover.push(frame, mask) for frame, mask in zip(frames[:5], labels[:5])]
    assert [len(batch) for batch in early] == [0, 0, 0, 1, 1]
    assert len(list(remover.finish())) == 3
    assert len(run_clip_remover(remover, frames[:2], labels[:2])) == 2  # a new video after finish


def test_clip_remover_inpaints_pixels_no_frame_saw() -> None:
    flat = np.full((64, 96, 3), (40, 120, 200), np.uint8)
    frame = flat.copy()
    mask = np.zeros((64, 96), np.uint8)
    mask[20:40, 30:60] = 1
    frame[mask > 0] = (255, 0, 255)
    outputs = run_clip_remover(ClipRemover(radius=2), [frame] * 4, [mask] * 4)
    assert all(np.abs(out.astype(int) - flat.astype(int)).max() <= 3 for out in outputs)


def test_push_pull_keeps_known_values_and_fills_smoothly() -> None:
    values = np.zeros((40, 50, 2), np.float32)
    values[..., 0] = np.arange(50, dtype=np.float32)  # a ramp in x
    values[..., 1] = 7.0
    known = np.ones((40, 50), bool)
    known[10:30, 15:35] = False
    filled = push_pull(values * known[..., None], known)
    assert np.allclose(filled[known], values[known])
    assert np.allclose(filled[~known][:, 1], 7.0, atol=1e-4)
    assert filled[~known][:, 0].min() >= 0 and filled[~known][:, 0].max() <= 49


def write_davis(root: Path, name: str, frames: list[np.ndarray], masks: list[np.ndarray]) -> None:
    """A DAVIS-layout sequence: JPEGImages/480p/<name>/00000.jpg … and Annotations/480p/<name>/00000.png …"""
    images = root / "JPEGImages" / "480p" / name
    annotations = root / "Annotations" / "480p" / name
    images.mkdir(parents=True)
    annotations.mkdir(parents=True)
    for index, (frame, mask) in enumerate(zip(frames, masks)):
        cv2.imwrite(str(images / f"{index:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        write_mask(annotations / f"{index:05d}.png", mask)


def test_removal_evaluation_scores_the_whole_clip_remover_above_the_streaming_one(canvas, tmp_path: Path,
                                                                                  capsys) -> None:
    truth, frames, labels = pan(canvas)
    write_davis(tmp_path, "panning", truth, [np.zeros_like(m) for m in labels])
    write_davis(tmp_path, "square", frames, labels)
    out = tmp_path / "out"
    assert removal.main([str(tmp_path), "--backgrounds", "panning", "--objects", "square", "--frames", "10",
                         "--out", str(out)]) == 0
    report = json.loads((out / "removal.json").read_text())
    clip, stream = report["removers"]["whole-clip"]["overall"], report["removers"]["streaming"]["overall"]
    assert clip["frames"] == 10
    assert clip["psnr_hole"] > stream["psnr_hole"] + 5 and clip["psnr_frame"] > stream["psnr_frame"]
    assert clip["ssim_hole"] > stream["ssim_hole"]
    assert (out / "stills" / "panning+square.jpg").is_file()
    assert "whole-clip" in capsys.readouterr().out


def test_removal_evaluation_names_a_missing_sequence(tmp_path: Path, capsys) -> None:
    (tmp_path / "JPEGImages" / "480p").mkdir(parents=True)
    with pytest.raises(SystemExit) as stop:
        run_tool(lambda: removal.main([str(tmp_path), "--backgrounds", "nope", "--objects", "gone"]))
    assert stop.value.code == BAD_INPUT
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "JPEGImages/480p/nope: no such sequence" in error


def test_psnr_and_ssim_of_identical_frames_are_perfect(canvas) -> None:
    frame = canvas[:, :WIDTH]
    hole = np.zeros(frame.shape[:2], np.uint8)
    hole[BOX] = 1
    scores = removal.frame_scores(frame, frame, hole)
    assert scores["psnr_hole"] == scores["psnr_frame"] == 100.0
    assert scores["ssim_hole"] == pytest.approx(1.0) and scores["ssim_frame"] == pytest.approx(1.0)
    noisy = np.clip(frame.astype(int) + 10, 0, 255).astype(np.uint8)
    assert 25 < removal.psnr(noisy, frame) < 29  # about 10 grey levels off: 28.1 dB
