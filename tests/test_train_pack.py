"""`python -m core.train.pack` given a source it cannot pack: one line, status 2, nothing written (the source
packed into itself was overwritten by its resized copy; a missing or non-DAVIS source packed nothing, status 0); a
frame it cannot read part-way leaves no partial DST (it is written beside DST, then moved into place)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import pytest

from core.io.command import BAD_INPUT, run_tool
from core.train.config import VALIDATION_SEQUENCES
from core.train.pack import FRAMES, MASKS, main


@pytest.mark.parametrize("source, told", [
    ("missing", "missing: no such folder; pass a DAVIS root"),
    ("data/JPEGImages/480p/bike", "one sequence's frames; pass the DAVIS root that holds it"),
])
def test_a_source_that_is_no_davis_root_is_named(tiny_davis: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str], source: str, told: str) -> None:
    shutil.copytree(tiny_davis, tmp_path / "data")
    with pytest.raises(SystemExit) as stop:
        run_tool(lambda: main([str(tmp_path / source), str(tmp_path / "packed")]))
    error = capsys.readouterr().err.strip()
    assert stop.value.code == BAD_INPUT and told in error and len(error.splitlines()) == 1
    assert not (tmp_path / "packed").exists()


def pack_refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command on `args` expecting it refused: its one error line, after checking the status and that it
    said exactly one, on a line of its own."""
    with pytest.raises(SystemExit) as stop:
        run_tool(lambda: main(args))
    errors = [line for line in capsys.readouterr().err.split("\n") if line.startswith("error: ")]
    assert stop.value.code == BAD_INPUT and len(errors) == 1
    return errors[0]


def folder_names(folder: Path) -> list[str]:
    """The names in `folder`, hidden ones (a staging folder left behind) included, sorted."""
    return sorted(path.name for path in folder.iterdir())


@pytest.mark.parametrize("video", [[], ["--video-crf", "30"]], ids=["jpeg", "video"])
def test_an_unreadable_frame_is_named_and_leaves_no_partial_pack(
        tiny_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        video: list[str]) -> None:
    """A frame in the middle of the last sequence fails after the first sequence and every mask were written:
    the command left them as DST, which a second run (`[ -d DST ] || pack`) took as a complete pack."""
    data = Path(shutil.copytree(tiny_davis, tmp_path / "data"))
    frame = data / FRAMES / VALIDATION_SEQUENCES[0] / "00001.jpg"
    original = frame.read_bytes()
    frame.write_text("not a JPEG")
    packed = tmp_path / "packed"
    args = [str(data), str(packed), "--short-side", "45", *video]
    assert "00001.jpg: unreadable image" in pack_refused(args, capsys)
    assert folder_names(tmp_path) == ["data"]
    frame.write_bytes(original)
    main(args)
    assert folder_names(tmp_path) == ["data", "packed"]
    sequences = folder_names(data / FRAMES)
    assert folder_names(packed / FRAMES) == (
        sorted(f"{name}{suffix}" for name in sequences for suffix in (".mp4", ".txt")) if video else sequences)


def test_packing_into_a_folder_that_exists_replaces_its_pack_files_and_keeps_the_others(
        tiny_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A failed run leaves DST as it was; a complete one writes its files over DST's own and keeps the others."""
    data = Path(shutil.copytree(tiny_davis, tmp_path / "data"))
    packed = tmp_path / "packed"
    (packed / FRAMES / "bike").mkdir(parents=True)
    (packed / "notes.txt").write_text("mine")
    (packed / FRAMES / "bike" / "00000.jpg").write_text("an older pack's frame")
    (data / FRAMES / "bike" / "00002.jpg").write_text("not a JPEG")
    pack_refused([str(data), str(packed)], capsys)
    assert (packed / FRAMES / "bike" / "00000.jpg").read_text() == "an older pack's frame"
    assert folder_names(packed) == [FRAMES.parts[0], "notes.txt"] and folder_names(tmp_path) == ["data", "packed"]
    shutil.copy(tiny_davis / FRAMES / "bike" / "00002.jpg", data / FRAMES / "bike" / "00002.jpg")
    main([str(data), str(packed)])
    assert (packed / "notes.txt").read_text() == "mine"
    assert cv2.imread(str(packed / FRAMES / "bike" / "00000.jpg")).shape == (240, 427, 3)
    assert folder_names(tmp_path) == ["data", "packed"]


def test_a_sequence_without_frames_is_named_when_packing_videos(
        tiny_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = Path(shutil.copytree(tiny_davis, tmp_path / "data"))
    (data / FRAMES / "empty").mkdir()
    error = pack_refused([str(data), str(tmp_path / "packed"), "--video-crf", "30"], capsys)
    assert f"{data / FRAMES / 'empty'}: no JPEG frames (*.jpg) to pack" in error
    assert folder_names(tmp_path) == ["data"]


def test_a_folder_that_is_no_video_pack_is_not_unpacked(tiny_davis: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    error = pack_refused([str(tiny_davis), str(tmp_path / "unpacked"), "--unpack"], capsys)
    assert f"{tiny_davis / FRAMES}: no packed videos; make the pack with --video-crf" in error
    assert folder_names(tmp_path) == []


@pytest.mark.parametrize("args, told", [
    (["{data}", "{data}"], "is SRC itself"),
    (["{data}", "{data}/"], "is SRC itself"),
    (["{data}", "{data}", "--unpack"], "is SRC itself"),
    (["{data}", "{taken}"], "is a file, not a folder"),
    (["{data}", "{out}", "--short-side", "0"], "argument --short-side: '0'"),
    (["{data}", "{out}", "--quality", "500"], "argument --quality: '500': give a whole number from 1 to 100"),
    (["{data}", "{out}", "--video-crf", "-1"], "argument --video-crf: '-1': give a whole number from 0 to 51"),
])
def test_bad_arguments_are_refused_before_anything_is_written(
        tiny_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        args: list[str], told: str) -> None:
    data = Path(shutil.copytree(tiny_davis, tmp_path / "data"))
    (tmp_path / "taken").write_text("mine")
    before = sorted((p.relative_to(data), p.stat().st_size) for p in data.rglob("*"))
    paths = {"data": data, "taken": tmp_path / "taken", "out": tmp_path / "out"}
    with pytest.raises(SystemExit) as stop:
        main([arg.format(**paths) for arg in args])
    assert stop.value.code == 2 and told in capsys.readouterr().err
    assert sorted((p.relative_to(data), p.stat().st_size) for p in data.rglob("*")) == before
    assert not (tmp_path / "out").exists() and (tmp_path / "taken").read_text() == "mine"


@pytest.mark.parametrize("video", [False, True])
def test_a_root_whose_sequence_folders_are_links_is_packed_whole(tiny_davis: Path, tmp_path: Path,
                                                                 video: bool) -> None:
    """A DAVIS root assembled from links to other roots' sequences: every frame and mask is packed (a recursive
    glob, which does not enter linked folders, packed no mask and, without --video-crf, no frame)."""
    linked = tmp_path / "linked"
    for layout in (FRAMES, MASKS):
        for sequence in (tiny_davis / layout).iterdir():
            (linked / layout).mkdir(parents=True, exist_ok=True)
            (linked / layout / sequence.name).symlink_to(sequence, target_is_directory=True)
    packed = tmp_path / "packed"
    main([str(linked), str(packed), "--short-side", "45", *(["--video-crf", "30"] if video else [])])
    for sequence in (tiny_davis / FRAMES).iterdir():
        masks = sorted(p.name for p in (tiny_davis / MASKS / sequence.name).glob("*.png"))
        assert sorted(p.name for p in (packed / MASKS / sequence.name).glob("*.png")) == masks
        frames = (packed / FRAMES / f"{sequence.name}.txt").read_text().split() if video else sorted(
            p.stem for p in (packed / FRAMES / sequence.name).glob("*.jpg"))
        assert frames == sorted(p.stem for p in sequence.glob("*.jpg"))
