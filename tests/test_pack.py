"""`python -m core.train.pack`: a video pack of a tiny DAVIS folder unpacks into the same layout, frame names and
masks; a truncated video, or one without its list of frame names, stops the unpacking with one line naming it,
status 2, and no unpacked folder."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.train.config import VALIDATION_SEQUENCES
from core.train.data import load_frames
from core.train.pack import FRAMES, MASKS, main
from tests.test_train_pack import folder_names, pack_refused

SEQUENCES = ("bike", VALIDATION_SEQUENCES[0])


def test_a_video_pack_unpacks_to_the_same_frames_and_masks(tiny_davis: Path, tmp_path: Path) -> None:
    packed, unpacked = tmp_path / "packed", tmp_path / "unpacked"
    main([str(tiny_davis), str(packed), "--short-side", "90", "--video-crf", "18"])
    assert sorted(p.name for p in (packed / FRAMES).iterdir()) == sorted(
        f"{name}{suffix}" for name in SEQUENCES for suffix in (".mp4", ".txt"))
    main([str(packed), str(unpacked), "--unpack"])
    for name in SEQUENCES:
        originals = sorted((tiny_davis / FRAMES / name).glob("*.jpg"))
        copies = sorted((unpacked / FRAMES / name).glob("*.jpg"))
        assert [p.name for p in copies] == [p.name for p in originals]
        for original, copy in zip(originals, copies):
            assert cv2.PSNR(cv2.imread(str(original)), cv2.imread(str(copy))) > 30  # lossy, but close
        for mask in sorted((tiny_davis / MASKS / name).glob("*.png")):
            assert np.array_equal(cv2.imread(str(mask), cv2.IMREAD_UNCHANGED),
                                  cv2.imread(str(unpacked / MASKS / name / mask.name), cv2.IMREAD_UNCHANGED))
    store = load_frames(unpacked, list(SEQUENCES), 90)
    assert store.frames.shape[1:] == (3, 90, 160) and store.lengths.tolist() == [len(originals)] * 2


def unpack_refused(packed: Path, unpacked: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Unpack `packed` into `unpacked` (beside it) expecting it refused in one line (`pack_refused`), and that no
    unpacked folder, whole or partial, was left."""
    error = pack_refused([str(packed), str(unpacked), "--unpack"], capsys)
    assert folder_names(unpacked.parent) == [packed.name]
    return error


def test_a_truncated_packed_video_is_named(tiny_davis: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    packed = tmp_path / "packed"
    main([str(tiny_davis), str(packed), "--short-side", "90", "--video-crf", "18"])
    video = packed / FRAMES / "bike.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    error = unpack_refused(packed, tmp_path / "unpacked", capsys)
    assert re.search(f"{video}: 0 of .* frames decoded; pack the sequence again", error)


def test_a_packed_video_without_its_frame_names_is_named(tiny_davis: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    packed = tmp_path / "packed"
    main([str(tiny_davis), str(packed), "--short-side", "90", "--video-crf", "18"])
    (packed / FRAMES / "bike.txt").unlink()
    error = unpack_refused(packed, tmp_path / "unpacked", capsys)
    assert re.search("bike.txt: missing .*; pack the sequence again", error)


def test_masks_are_packed_at_the_videos_even_size(tiny_davis: Path, tmp_path: Path) -> None:
    """At a short side of 45 the frames' 80 × 45 is odd, which 4:2:0 video cannot hold: masks and unpacked frames
    must still have the same size."""
    packed, unpacked = tmp_path / "packed", tmp_path / "unpacked"
    main([str(tiny_davis), str(packed), "--short-side", "45", "--video-crf", "18"])
    main([str(packed), str(unpacked), "--unpack"])
    frame = cv2.imread(str(unpacked / FRAMES / "bike" / "00000.jpg"))
    mask = cv2.imread(str(unpacked / MASKS / "bike" / "00000.png"), cv2.IMREAD_UNCHANGED)
    assert frame.shape[:2] == mask.shape[:2] and frame.shape[0] % 2 == frame.shape[1] % 2 == 0
