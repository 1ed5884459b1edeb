"""The batch command end to end: `python -m core.batch` run as a subprocess on real encoded clips.

Clips are encoded once per session from the bundled samples (428×240, a few frames each) with PyAV; the
tracker is the real one with the shipped weights (untrained weights are fine: assertions are on files,
frame counts, ids, sizes and statuses, and on the annotated frames, which the tracker reproduces).
"""

from __future__ import annotations

import errno
import json
import re
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from core.batch.cli import FINISHING, ProgressBoard
from core.batch.cli import main as batch_main
from core.demo import main as demo_main
from core.batch.inputs import InputError, Job, plan_jobs
from core.batch.worker import OutputSpec, ProgressEvent, completed, process_job
from core.inference.settings import DEFAULT_SIZE, TrackerConfig
from core.io.masks import MaskError, object_ids, read_mask, resize_labels, write_mask
from core.io.video import VideoError, nvenc_available, open_video
from core.weights import default_checkpoint
from tests.conftest import SAMPLES, encode_video, frame_times, sample_frames, uneven_times

ROOT = Path(__file__).resolve().parent.parent
SIZE = (240, 428)  # (H, W) of the test clips
FPS = 12
ALL_EFFECTS = ["overlay", "cutout", "blur", "replace", "remove"]


def small(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [cv2.resize(f, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_AREA) for f in frames]


def sample_mask(name: str, frame: str, hw: tuple[int, int] = SIZE) -> np.ndarray:
    return resize_labels(read_mask(SAMPLES / name / "masks" / f"{frame}.png"), hw)


# One torch thread per worker: on shared, busy cores more threads spin and run many times slower.
THREADS = ["--threads", "1"]


def run_batch(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real command, as a user runs it, from the repository root."""
    command = [sys.executable, "-m", "core.batch", *map(str, args), *THREADS]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def run_main(*args: str | Path) -> int:
    """The same command in this process (no interpreter start-up): for the quick checks; a usage error's exit
    status is returned as the command's."""
    try:
        return batch_main([*map(str, args), *THREADS])
    except SystemExit as stop:
        return int(stop.code)


def summary_items(out: Path) -> dict[str, dict]:
    return {item["name"]: item for item in json.loads((out / "summary.json").read_text())["items"]}


def frame_count(path: Path) -> int:
    with open_video(path) as reader:
        return sum(1 for _ in reader)


@pytest.fixture(scope="session")
def judo_small() -> list[np.ndarray]:
    return small(sample_frames("judo"))


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory, judo_small: list[np.ndarray]) -> Path:
    """A folder of good inputs, one per way of annotating:
    judo.mp4 (audio; judo.png on frame 0 and judo.5.png adding object 2 on frame 5),
    sub/bike.mov (display rotation 90°, bike.mask.png), late.mkv (only late.3.png: frames 0–2 have no objects),
    frames/bike/ (a folder of numbered frames with masks/00000.png)."""
    root = tmp_path_factory.mktemp("clips")
    encode_video(root / "judo.mp4", judo_small[:8], FPS, audio=True)
    write_mask(root / "judo.png", sample_mask("judo", "00000"))
    write_mask(root / "judo.5.png", sample_mask("judo", "00005"))
    (root / "sub").mkdir()
    bike = small(sample_frames("bike"))
    upright = [np.ascontiguousarray(np.rot90(f, -1)) for f in bike + bike[::-1]]  # stored sideways
    encode_video(root / "sub" / "bike.mov", upright, FPS, audio=False, rotation=90)
    with open_video(root / "sub" / "bike.mov") as reader:
        shown = (reader.info.height, reader.info.width)
    write_mask(root / "sub" / "bike.mask.png", sample_mask("bike", "00000", shown))
    encode_video(root / "late.mkv", judo_small[8:14], FPS, audio=False)
    write_mask(root / "late.3.png", sample_mask("judo", "00013"))
    folder = root / "frames" / "bike"
    (folder / "masks").mkdir(parents=True)
    for index, image in enumerate(bike):
        cv2.imwrite(str(folder / f"{index:05d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    write_mask(folder / "masks" / "00000.png", sample_mask("bike", "00000"))
    return root


@pytest.fixture(scope="session")
def background_video(tmp_path_factory: pytest.TempPathFactory, judo_small: list[np.ndarray]) -> Path:
    """3 frames, shorter than every clip: the replace effect has to loop it."""
    return encode_video(tmp_path_factory.mktemp("bg") / "bg.mp4", judo_small[-3:][::-1], FPS, audio=False)


def test_plan_finds_items_names_and_annotations(clips: Path, tmp_path: Path) -> None:
    jobs = {job.name: job for job in plan_jobs([str(clips)], str(tmp_path / "out"))}
    assert sorted(jobs) == ["frames/bike", "judo", "late", "sub/bike"]
    assert [(Path(a.path).name, a.frame) for a in jobs["judo"].annotations] == [("judo.png", 0), ("judo.5.png", 5)]
    assert [a.frame for a in jobs["late"].annotations] == [3]
    assert [Path(a.path).name for a in jobs["sub/bike"].annotations] == ["bike.mask.png"]
    assert [Path(a.path).name for a in jobs["frames/bike"].annotations] == ["00000.png"]
    assert all(job.problem is None for job in jobs.values())


def test_plan_reads_frames_beside_masks_and_rejects_bad_arguments(tmp_path: Path) -> None:
    clip = tmp_path / "clip"
    shutil.copytree(SAMPLES / "bike", clip / "frames", ignore=shutil.ignore_patterns("masks"))
    shutil.copytree(SAMPLES / "bike" / "masks", clip / "masks")
    for given in (clip / "frames", clip):  # the clip's frames folder, or the clip's own folder
        (job,) = plan_jobs([str(given)], str(tmp_path / "out"))
        assert job.name == "clip" and [a.frame for a in job.annotations] == [0]
    (tmp_path / "out" / "clip").mkdir(parents=True)
    (tmp_path / "out" / "clip" / "overlay.mp4").touch()  # outputs inside the input folder are not inputs
    (tmp_path / "other.mp4").touch()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "other.mkv").touch()
    names = {job.name: job.problem for job in plan_jobs([str(tmp_path)], str(tmp_path / "out"))}
    assert sorted(names) == ["clip", "other", "sub/other"]
    (tmp_path / "out" / "clip" / "job.json").write_text('{"input": "clip", "outputs": [], "made_with": {}}')
    assert sorted(job.name for job in plan_jobs([str(tmp_path)], str(tmp_path / "out2"))) == [  # an earlier run's
        "clip", "other", "sub/other"]                                                       # item: no input now
    (tmp_path / "sub" / "job.json").write_text('{"name": "mine"}')  # a user's own job.json: searched as before
    assert "sub/other" in {job.name for job in plan_jobs([str(tmp_path)], str(tmp_path / "out2"))}
    assert "no annotation" in names["other"] and "other.png" in names["other"]
    with pytest.raises(InputError, match="no such file"):
        plan_jobs([str(tmp_path / "missing.mp4")], str(tmp_path / "out"))
    with pytest.raises(InputError, match="exactly one input"):
        plan_jobs([str(SAMPLES)], str(tmp_path / "out"), mask=str(clip / "masks" / "00000.png"))


def test_every_effect_on_every_kind_of_input(clips: Path, background_video: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_batch(clips, "--out", out, *sum((["--effect", e] for e in ALL_EFFECTS), []),
                       "--masks", "both", "--background", background_video, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "videos" in result.stderr  # the overall tqdm bar
    items = summary_items(out)
    assert {name: item["status"] for name, item in items.items()} == dict.fromkeys(
        ["judo", "sub/bike", "late", "frames/bike"], "done")
    expected = {"judo": 8, "sub/bike": 8, "late": 6, "frames/bike": 4}
    for name, frames in expected.items():
        folder = out / name
        assert items[name]["frames"] == frames and items[name]["fps"] > 0 and items[name]["error"] is None
        assert {Path(p).name for p in items[name]["outputs"]} == {
            "masks", "masks.mp4", "overlay.mp4", "cutout.webm", "blur.mp4", "replace.mp4", "remove.mp4"}
        assert len(list((folder / "masks").glob("*.png"))) == frames
        for video in ("masks.mp4", "overlay.mp4", "blur.mp4", "replace.mp4", "remove.mp4", "cutout.webm"):
            assert frame_count(folder / video) == frames, (name, video)
        assert not list(out.glob(f"{Path(name).parent}/.*partial"))

    # the annotated frames come back as annotated, at full size
    assert np.array_equal(read_mask(out / "judo" / "masks" / "00000.png"), sample_mask("judo", "00000"))
    later = sample_mask("judo", "00005")
    assert (read_mask(out / "judo" / "masks" / "00005.png")[later == 2] == 2).all()
    # frames before a later-frame annotation have no objects; the annotated one has them
    assert all(not read_mask(out / "late" / "masks" / f"{i:05d}.png").any() for i in range(3))
    assert object_ids(read_mask(out / "late" / "masks" / "00003.png")) == [4]

    # output videos keep frame rate, (displayed) size and audio
    with open_video(clips / "judo.mp4") as source, open_video(out / "judo" / "overlay.mp4") as overlay:
        assert (overlay.info.fps, overlay.info.width, overlay.info.height) == (FPS, SIZE[1], SIZE[0])
        assert source.info.has_audio and overlay.info.has_audio
    with open_video(clips / "sub" / "bike.mov") as source, open_video(out / "sub" / "bike" / "blur.mp4") as blur:
        assert source.info.rotation != 0
        assert (blur.info.width, blur.info.height) == (source.info.width, source.info.height)
    with open_video(out / "judo" / "cutout.webm", alpha=True) as cutout:
        alpha = next(iter(cutout)).image[..., 3]
    annotated = sample_mask("judo", "00000") > 0
    assert alpha[annotated].mean() > 200 and alpha[~annotated].mean() < 50


def test_bad_inputs_fail_one_line_each_and_the_rest_continue(clips: Path, judo_small: list[np.ndarray],
                                                             tmp_path: Path) -> None:
    bad = tmp_path / "in"
    bad.mkdir()
    good = encode_video(bad / "good.mp4", judo_small[:3], FPS, audio=False)
    write_mask(bad / "good.png", sample_mask("judo", "00000"))
    (bad / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
    (bad / "corrupt.png").write_bytes((bad / "good.png").read_bytes())
    (bad / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    shutil.copy(bad / "good.png", bad / "truncated.png")
    fast = encode_video(tmp_path / "fast.mp4", judo_small, FPS, audio=False, options={"movflags": "faststart"})
    (bad / "cut_while_decoding.mp4").write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    shutil.copy(bad / "good.png", bad / "cut_while_decoding.png")
    shutil.copy(good, bad / "unannotated.mp4")
    shutil.copy(good, bad / "wrong_size.mp4")
    write_mask(bad / "wrong_size.png", sample_mask("judo", "00000", (480, 854)))
    shutil.copy(good, bad / "empty_mask.mp4")
    write_mask(bad / "empty_mask.png", np.zeros(SIZE, np.uint8))
    shutil.copy(good, bad / "beyond.mp4")
    write_mask(bad / "beyond.50.png", sample_mask("judo", "00000"))
    (bad / "codec.mp4").write_bytes(good.read_bytes().replace(b"avc1", b"zzz9"))
    shutil.copy(bad / "good.png", bad / "codec.png")

    out = tmp_path / "out"
    result = run_batch(bad, "--out", out, "--quiet", "--effect", "overlay")
    assert result.returncode == 1
    items = summary_items(out)
    assert items.pop("good")["status"] == "done"
    assert frame_count(out / "good" / "overlay.mp4") == 3
    expected_words = {"corrupt": "damaged", "truncated": "truncated", "cut_while_decoding": "decoding",
                      "unannotated": "no annotation", "wrong_size": "854×480", "empty_mask": "empty",
                      "codec": "codec", "beyond": "frame 50"}
    assert set(items) == set(expected_words)
    failure_lines = [line for line in result.stderr.splitlines() if "FAILED" in line]
    assert len(failure_lines) == len(expected_words)
    for name, word in expected_words.items():
        error = items[name]["error"]
        assert items[name]["status"] == "failed" and "\n" not in error and word in error, (name, error)
        assert "; " in error  # the fix follows the problem
        assert sum(name + "." in line for line in failure_lines) >= 1, name
        assert not (out / name).exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_links_back_up_the_tree_or_to_a_found_item_add_no_jobs(tmp_path: Path) -> None:
    tree, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    (tree / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    for video in (tree / "a.mp4", tree / "sub" / "b.mp4", elsewhere / "c.mp4"):
        video.touch()
        video.with_suffix(".png").touch()
    (tree / "loop").symlink_to(".")  # `ln -s . loop`: was followed ~40 levels deep
    (tree / "sub" / "up").symlink_to("..")
    (tree / "sub" / "same.mp4").symlink_to("b.mp4")
    (tree / "knot").symlink_to("knot")  # a link to itself: neither a file nor a folder
    (tree / "ext").symlink_to(elsewhere)  # a folder outside the tree is followed, once
    jobs = plan_jobs([str(tree), str(elsewhere), str(tree / "a.mp4")], str(tmp_path / "out"))
    assert [job.name for job in jobs] == ["a", "ext/c", "sub/b"]
    assert all(job.problem is None for job in jobs)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def blank_png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit palette PNG of zeros, compressed row by row: 30000×30000 takes 0.3 s and 110 kB
    (PIL takes 2 s and 110 MB of memory to write it)."""
    row = bytes(1 + (width + 7) // 8)  # filter byte + 8 pixels a byte
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 3, 0, 0, 0)  # bit depth 1, colour type 3 (palette)
    chunks = [(b"IHDR", header), (b"PLTE", bytes([0, 0, 0, 128, 0, 0])), (b"IDAT", pixels), (b"IEND", b"")]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(kind, body) for kind, body in chunks))
    return path


def test_oversized_masks_fail_one_line_naming_both_sizes(judo_small: list[np.ndarray], tmp_path: Path) -> None:
    bad = tmp_path / "in"
    bad.mkdir()
    clip = encode_video(tmp_path / "clip.mp4", judo_small[:2], FPS, audio=False)
    sizes = {"bomb": (30000, 30000), "over_limit": (10000, 10000), "large": (4000, 3000)}  # PIL: error, warning, ok
    for name, (width, height) in sizes.items():
        shutil.copy(clip, bad / f"{name}.mp4")
        blank_png(bad / f"{name}.png", width, height)
    assert run_main(bad, "--out", tmp_path / "out", "--quiet") == 1
    items = summary_items(tmp_path / "out")
    assert set(items) == set(sizes)
    for name, (width, height) in sizes.items():
        assert items[name]["status"] == "failed"
        assert items[name]["error"] == (f"{bad / name}.png: mask is {width}×{height} but the video is 428×240; "
                                        "resize it to 428×240 (nearest neighbour, to keep the object ids)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning does not leak either
        for name in ("bomb", "over_limit"):
            with pytest.raises(MaskError) as error:
                read_mask(bad / f"{name}.png")
            width, height = sizes[name]
            assert str(error.value) == (f"{bad / name}.png: mask is {width}×{height}, far larger than any video "
                                        "frame; save it at the video's size")


def first_done(out: Path) -> bool:
    """Whether the running batch has recorded video `a` as done in its summary.json (written atomically)."""
    summary = out / "summary.json"
    return summary.exists() and summary_items(out)["a"]["status"] == "done"


def test_killed_run_resumes_without_redoing_complete_videos(judo_small: list[np.ndarray], tmp_path: Path) -> None:
    clips = tmp_path / "in"
    clips.mkdir()
    for name, frames in (("a", 3), ("b", 8), ("c", 8)):
        encode_video(clips / f"{name}.mp4", judo_small[:frames], FPS, audio=False)
        write_mask(clips / f"{name}.png", sample_mask("judo", "00000"))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "core.batch", str(clips), "--out", str(out), "--quiet", *THREADS]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600  # a loaded machine's start (imports, the graphs' first export) is slow
    while not first_done(out) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    ended = process.poll()
    os.kill(process.pid, signal.SIGKILL)
    _, stderr = process.communicate()
    assert first_done(out), f"the batch ended with {ended} before video a was done: {stderr[-2000:]}" \
        if ended is not None else "video a not done in 600 s"
    assert (out / "a" / "job.json").exists()
    assert not (out / "c").exists()  # the kill came before the last video was complete
    first_outputs = {p: p.stat().st_mtime_ns for p in (out / "a").rglob("*")}

    result = run_batch(clips, "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    items = summary_items(out)
    assert items["a"]["status"] == "skipped"
    assert items["c"]["status"] == "done" and items["b"]["status"] in ("done", "skipped")
    assert {p: p.stat().st_mtime_ns for p in (out / "a").rglob("*")} == first_outputs
    assert len(list((out / "b" / "masks").glob("*.png"))) == len(list((out / "c" / "masks").glob("*.png"))) == 8
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_new_outputs_keep_old_ones_and_overwrite_redoes(clips: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    source = clips / "frames" / "bike"
    assert run_main(source, "--out", out, "--quiet") == 0
    masks_mtime = (out / "bike" / "masks" / "00000.png").stat().st_mtime_ns
    assert run_main(source, "--out", out, "--quiet", "--effect", "remove") == 0
    assert summary_items(out)["bike"]["status"] == "done"
    assert sorted(p.name for p in (out / "bike").iterdir()) == ["job.json", "masks", "remove.mp4"]
    capsys.readouterr()
    assert run_main(source, "--out", out, "--quiet", "--effect", "remove") == 0
    assert summary_items(out)["bike"]["status"] == "skipped" and "skipped bike" in capsys.readouterr().out
    assert run_main(source, "--out", out, "--quiet", "--overwrite", "--effect", "cutout",
                    "--cutout-format", "png") == 0
    assert summary_items(out)["bike"]["status"] == "done"
    assert sorted(p.name for p in (out / "bike").iterdir()) == ["cutout", "job.json", "masks", "remove.mp4"]
    assert len(list((out / "bike" / "cutout").glob("*.png"))) == 4
    assert (out / "bike" / "masks" / "00000.png").stat().st_mtime_ns != masks_mtime


def test_auto_cutout_is_webm_up_to_1440p_and_prores_at_4k_and_a_finished_4k_item_is_skipped(tmp_path: Path) -> None:
    auto = OutputSpec(effects=("overlay", "cutout"))
    assert auto.output_names((2560, 1440)) == ["masks", "overlay.mp4", "cutout.webm"]
    assert auto.output_names((3840, 2160)) == ["masks", "overlay.mp4", "cutout.mov"]
    chosen = OutputSpec(effects=("cutout",), cutout_format="webm", mask_pngs=False)
    assert chosen.output_names((3840, 2160)) == ["cutout.webm"]
    folder = tmp_path / "out" / "clip"
    folder.mkdir(parents=True)
    job = Job(str(tmp_path / "clip.mp4"), "clip")
    record = {"frames": 3, "size": [3840, 2160], "outputs": ["cutout.mov", "masks", "overlay.mp4"]}
    (folder / "job.json").write_text(json.dumps(record))
    skipped = completed(job, tmp_path / "out", auto, TrackerConfig())
    assert skipped is not None and skipped.status == "skipped"
    assert completed(job, tmp_path / "out", chosen, TrackerConfig()) is None  # a WebM cut-out was asked for


def test_large_frames_get_the_removal_in_a_second_pass_with_the_same_masks(clips: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    job = plan_jobs([str(clips / "judo.mp4")], str(tmp_path))[0]
    spec = OutputSpec(effects=("overlay", "remove"))
    settings = TrackerConfig(backend="torch", threads=1)
    one_pass = process_job(job, str(tmp_path / "one"), spec, settings, False, lambda event: None)
    monkeypatch.setattr("core.pipeline.outputs.LARGE_FRAME", 100)  # the 428×240 clip counts as 4K-sized
    events: list[ProgressEvent] = []
    two_passes = process_job(job, str(tmp_path / "two"), spec, settings, False, events.append)
    assert one_pass.status == two_passes.status == "done" and two_passes.frames == 8
    assert (events[0].done, events[-1].done, events[-1].total) == (0, 16, 16)
    assert [e.done for e in events] == sorted(e.done for e in events)
    for name in ("overlay.mp4", "remove.mp4"):
        assert frame_count(tmp_path / "two" / "judo" / name) == 8
    masks = sorted((tmp_path / "one" / "judo" / "masks").glob("*.png"))
    assert len(masks) == 8
    assert all(np.array_equal(read_mask(m), read_mask(tmp_path / "two" / "judo" / "masks" / m.name)) for m in masks)


def test_frames_named_otherwise_than_by_number_are_said_to_need_numbers(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    for number in (1, 2):
        shutil.copy(SAMPLES / "bike" / f"0000{number}.jpg", tmp_path / f"frame_{number}.jpg")
    assert run_main(tmp_path, "--out", tmp_path / "out") == 2
    assert "folders of numbered frames (images named by their number only: 00000.jpg" in capsys.readouterr().err


def test_a_videos_bar_says_when_its_outputs_are_being_finished(capsys: pytest.CaptureFixture[str]) -> None:
    """After the last frame a removal's closing frames take seconds each: the bar sat at 90–100 % for a minute with
    no sign of work."""
    board = ProgressBoard(1, quiet=False)
    for done in (1, 2, 2, 2):  # the worker's count comes again while the outputs finish
        board.update(ProgressEvent("clip", done, 2))
    bar = board._bars["clip"][0]
    assert bar.n == 2 and bar.postfix == FINISHING
    board.close()


def test_a_full_disk_is_one_line_naming_the_input_and_the_fix(clips: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A full disk ended an item with "unexpected OSError … please report this", and summary.json's own write with
    a traceback and a leftover temporary file."""
    out = tmp_path / "out"

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("core.batch.worker._write_record", full)
    assert run_main(clips / "frames" / "bike", "--out", out, "--quiet") == 1
    assert summary_items(out)["bike"]["error"] == (
        f"{clips / 'frames' / 'bike'}: cannot write its outputs in {out / 'bike'} (No space left on device); free disk "
        "space and run again")

    def encoding_failed(folder: Path, *_args):
        raise VideoError(f"{folder / 'overlay.mp4'}: encoding failed (No space left on device); check free disk space")

    monkeypatch.setattr("core.batch.worker._write_record", encoding_failed)  # named in the folder being written
    assert run_main(clips / "frames" / "bike", "--out", out, "--quiet") == 1
    assert summary_items(out)["bike"]["error"].startswith(f"{out / 'bike' / 'overlay.mp4'}: encoding failed")
    capsys.readouterr()
    monkeypatch.setattr(Path, "write_text", full)
    assert run_main(clips / "frames" / "bike", "--out", tmp_path / "other", "--quiet") == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {tmp_path / 'other' / 'summary.json'}: cannot be written (No space left on device); free disk space "
        "(or make the folder writable) and run the same command again: finished items are kept"]
    assert not list((tmp_path / "other").glob(".summary*"))


def test_a_folder_not_written_by_batch_is_never_replaced(clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "bike").mkdir(parents=True)
    (out / "bike" / "notes.txt").write_text("mine")
    assert run_main(clips / "frames" / "bike", "--out", out, "--quiet") == 1
    assert "not written by core.batch" in summary_items(out)["bike"]["error"]
    assert (out / "bike" / "notes.txt").read_text() == "mine"


def test_single_input_with_mask_option(clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_main(clips / "late.mkv", "--out", out, "--quiet", "--mask", clips / "judo.png",
                    "--mask-frame", "1", "--size", "120") == 0
    assert not read_mask(out / "late" / "masks" / "00000.png").any()
    assert read_mask(out / "late" / "masks" / "00001.png").shape == SIZE  # full size at --size 120
    assert read_mask(out / "late" / "masks" / "00001.png").any()


def test_a_variable_rate_clip_keeps_its_frame_times_and_a_constant_rate_one_its_pts(judo_small: list[np.ndarray],
                                                                                   tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    frames = judo_small + judo_small[::-1][1:-1]  # 30 frames
    encode_video(source / "phone.mp4", frames, 30, audio=True, times=uneven_times(len(frames)))
    encode_video(source / "steady.mp4", judo_small, FPS, audio=True)
    for name in ("phone", "steady"):
        write_mask(source / f"{name}.png", sample_mask("judo", "00000"))
    out = tmp_path / "out"
    result = run_batch(source, "--out", out, "--effect", "overlay", "--masks", "none", "--quiet")
    assert result.returncode == 0, result.stderr
    assert frame_times(out / "phone" / "overlay.mp4") == pytest.approx(frame_times(source / "phone.mp4"), abs=1e-3)
    assert frame_times(source / "phone.mp4") == pytest.approx([float(t) for t in uneven_times(30)], abs=1e-6)
    with av.open(str(out / "steady" / "overlay.mp4")) as container:  # as the count-based writer made it
        stream = container.streams.video[0]
        assert stream.time_base == Fraction(1, 12288)  # the mp4 muxer's for a 1/12 s encoder time base
        assert sorted(p.pts * stream.time_base for p in container.demux(stream) if p.size) == [
            Fraction(n, FPS) for n in range(len(judo_small))]


def test_onnx_backend_gives_the_torch_masks(clips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBILEVOS_CACHE", str(tmp_path / "cache"))
    for backend in ("torch", "onnx"):
        assert run_main(clips / "judo.mp4", "--out", tmp_path / backend, "--quiet", "--backend", backend) == 0
    torch_masks = sorted((tmp_path / "torch" / "judo" / "masks").iterdir())
    assert len(torch_masks) > 1
    for path in torch_masks:
        ours = read_mask(tmp_path / "onnx" / "judo" / "masks" / path.name)
        assert (ours == read_mask(path)).mean() > 0.999


def test_frame_folder_keeps_its_frame_numbers(judo_small: list[np.ndarray], tmp_path: Path) -> None:
    folder = tmp_path / "yt"
    (folder / "masks").mkdir(parents=True)
    for number, image in zip((0, 5, 10), judo_small):  # YouTube-VOS numbers every 5th frame
        cv2.imwrite(str(folder / f"{number:05d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    write_mask(folder / "masks" / "00005.png", sample_mask("judo", "00000"))
    assert run_main(folder, "--out", tmp_path / "out", "--quiet") == 0
    masks = tmp_path / "out" / "yt" / "masks"
    assert sorted(p.name for p in masks.iterdir()) == ["00000.png", "00005.png", "00010.png"]
    assert not read_mask(masks / "00000.png").any()
    assert np.array_equal(read_mask(masks / "00005.png"), sample_mask("judo", "00000"))


@pytest.mark.parametrize("bad_args, word", [
    (["--effect", "replace", "--background", "nope"], "--background"),
    (["--mask", "judo.png"], "exactly one"),
    (["--weights", "none.pt"], "--weights"),
    (["--masks", "none"], "nothing to write"),
    (["--workers", "0"], "--workers"),
    (["--threads", "0"], "argument --threads: '0': give a whole number of 1 or more"),
    (["--size", "8"], "argument --size: '8': give a whole number of 16 or more"),
    (["--feather", "nan"], "argument --feather: 'nan': give a number from 0 to 50"),
    (["--edge-shift", "inf"], "argument --edge-shift: 'inf': give a number from -50 to 50"),
    (["--blur", "0"], "argument --blur: '0': give a whole number from 3 to 255"),
    (["--mask-frame", "-1"], "argument --mask-frame: '-1': give a whole number of 0 or more"),
    pytest.param(["--encoder", "nvenc"], "--encoder",
                 marks=pytest.mark.skipif(nvenc_available(), reason="NVENC opens on this machine")),
])
def test_usage_errors_are_one_line_with_status_2(clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 bad_args: list[str], word: str) -> None:
    args = [str(clips / a) if a.endswith((".png", ".pt")) else a for a in bad_args]
    assert run_main(clips, "--out", tmp_path / "out", *args) == 2
    error = capsys.readouterr().err
    assert word in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_workers_process_videos_in_parallel(clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_batch(clips / "judo.mp4", clips / "late.mkv", "--out", out, "--workers", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    items = summary_items(out)
    assert items["judo"]["status"] == items["late"]["status"] == "done"
    assert len(list((out / "judo" / "masks").glob("*.png"))) == 8
    assert len(list((out / "late" / "masks").glob("*.png"))) == 6


@pytest.mark.slow
def test_ray_local_instance(clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_batch(clips / "judo.mp4", clips / "frames" / "bike", "--out", out, "--ray", "--workers", "2",
                       "--quiet", "--effect", "overlay", timeout=400)
    assert result.returncode == 0, result.stderr
    items = summary_items(out)
    assert items["judo"]["status"] == items["bike"]["status"] == "done"
    assert frame_count(out / "judo" / "overlay.mp4") == 8 and frame_count(out / "bike" / "overlay.mp4") == 4


def test_a_ray_address_where_no_cluster_runs_fails_the_run_in_one_line(clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_batch(clips / "frames" / "bike", "--out", out, "--ray", "auto", "--quiet")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    line = "error: --ray auto: Could not find any running Ray instance; start the cluster (`ray start --head`"
    assert result.stderr.startswith(line) and result.stderr.count("\n") == 1, result.stderr
    assert summary_items(out)["bike"]["status"] == "failed"


def test_soft_edges_give_the_cutout_a_real_alpha_and_hard_edges_the_masks(clips: Path, tmp_path: Path) -> None:
    source = clips / "frames" / "bike"
    soft, hard = tmp_path / "soft", tmp_path / "hard"
    assert run_main(source, "--out", soft, "--quiet", "--effect", "cutout", "--cutout-format", "png") == 0
    assert run_main(source, "--out", hard, "--quiet", "--effect", "cutout", "--cutout-format", "png",
                    "--edges", "hard") == 0
    assert np.array_equal(read_mask(hard / "bike" / "masks" / "00002.png"),
                          read_mask(soft / "bike" / "masks" / "00002.png"))  # the masks do not change
    labels = read_mask(hard / "bike" / "masks" / "00002.png") > 0
    hard_alpha = cv2.imread(str(sorted((hard / "bike" / "cutout").glob("*.png"))[2]), cv2.IMREAD_UNCHANGED)[..., 3]
    soft_alpha = cv2.imread(str(sorted((soft / "bike" / "cutout").glob("*.png"))[2]), cv2.IMREAD_UNCHANGED)[..., 3]
    assert np.array_equal(hard_alpha > 0, labels) and set(np.unique(hard_alpha)) == {0, 255}
    partial = (soft_alpha > 10) & (soft_alpha < 245)
    assert partial.sum() > 0.5 * labels.sum() ** 0.5  # a soft rim along the outline
    opaque = soft_alpha >= 128
    # the matte follows the mask, except along the wheels' thin arcs, which it smooths away (0.82-0.84 with
    # the stop-13 default; 0.85+ with the earlier one, whose masks kept fewer of them)
    assert (opaque & labels).sum() / (opaque | labels).sum() > 0.75


def test_two_inputs_with_one_output_name_count_as_a_failure(clips: Path, tmp_path: Path) -> None:
    both = tmp_path / "in"
    both.mkdir()
    shutil.copy(clips / "judo.mp4", both / "c.mp4")
    shutil.copy(clips / "late.mkv", both / "c.mkv")
    shutil.copy(clips / "judo.png", both / "c.png")
    out = tmp_path / "out"
    assert run_main(both, "--out", out, "--quiet") == 1
    items = json.loads((out / "summary.json").read_text())["items"]
    assert sorted((Path(i["input"]).name, i["status"]) for i in items) == [("c.mkv", "failed"), ("c.mp4", "done")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"done": 1, "failed": 1}
    tracker = summary["tracker"]  # the settings as they ran, not the flags' None for "the default"
    assert tracker["size"] == DEFAULT_SIZE and Path(tracker["weights"]) == default_checkpoint()
    assert tracker["device"] == "cpu" and tracker["backend"] in ("onnx", "torch")


def test_an_out_that_is_a_file_or_cannot_be_made_is_one_line(clips: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "taken"
    taken.write_text("mine")
    for out, words in ((taken, "is a file, not a folder"), (taken / "sub", "is a file, not a folder")):
        assert run_main(clips / "judo.mp4", "--out", out, "--quiet") == 2
        error = capsys.readouterr().err
        assert words in error and str(out) in error and len(error.strip().splitlines()) == 1
    assert taken.read_text() == "mine"


def judo_with_its_mask(clips: Path, folder: Path) -> Path:
    """`folder` holding a copy of the judo clip and its first frame's mask beside it (to change or replace)."""
    folder.mkdir()
    shutil.copy(clips / "judo.mp4", folder / "judo.mp4")
    write_mask(folder / "judo.png", sample_mask("judo", "00000"))
    return folder


def test_a_changed_annotation_redoes_the_item_without_the_old_outputs(clips: Path, tmp_path: Path) -> None:
    source = judo_with_its_mask(clips, tmp_path / "in")
    out = tmp_path / "out"
    assert run_main(source / "judo.mp4", "--out", out, "--quiet", "--effect", "overlay") == 0
    assert run_main(source / "judo.mp4", "--out", out, "--quiet", "--masks", "none", "--effect", "overlay") == 0
    assert summary_items(out)["judo"]["status"] == "skipped"  # the same annotation: nothing to redo
    corrected = sample_mask("judo", "00000")
    corrected[: SIZE[0] // 2] = 0  # the object's upper half taken off, in place
    write_mask(source / "judo.png", corrected)
    assert run_main(source / "judo.mp4", "--out", out, "--quiet", "--masks", "none", "--effect", "overlay") == 0
    assert summary_items(out)["judo"]["status"] == "done"
    assert sorted(p.name for p in (out / "judo").iterdir()) == ["job.json", "overlay.mp4"]  # old masks not kept
    assert run_main(source / "judo.mp4", "--out", out, "--quiet", "--mask", clips / "judo.png") == 0
    assert summary_items(out)["judo"]["status"] == "done"  # another --mask file
    assert object_ids(read_mask(out / "judo" / "masks" / "00000.png")) == object_ids(sample_mask("judo", "00000"))


def test_a_replaced_input_file_redoes_the_item_without_the_old_outputs(clips: Path, tmp_path: Path) -> None:
    """A clip re-downloaded after a damage warning (or any other file put in its place) used to be skipped, its
    folder's outputs made from the old file; the outputs it is not asked for are not kept either."""
    source = judo_with_its_mask(clips, tmp_path / "in")
    out = tmp_path / "out"
    assert run_main(source / "judo.mp4", "--out", out, "--quiet", "--effect", "blur") == 0
    assert run_main(source / "judo.mp4", "--out", out, "--quiet", "--effect", "blur") == 0
    assert summary_items(out)["judo"]["status"] == "skipped"
    (source / "judo.mp4").unlink()
    shutil.copy(clips / "judo.mp4", source / "judo.mp4")  # the same name, another file (a new modification time)
    os.utime(source / "judo.mp4", ns=(0, 10**9))
    assert run_main(source / "judo.mp4", "--out", out, "--quiet", "--masks", "none", "--effect", "overlay") == 0
    assert summary_items(out)["judo"]["status"] == "done"
    assert sorted(p.name for p in (out / "judo").iterdir()) == ["job.json", "overlay.mp4"]


def test_other_drawing_or_tracking_settings_redo_the_item_but_the_runtime_ones_do_not(clips: Path,
                                                                                       tmp_path: Path) -> None:
    out = tmp_path / "out"
    source = clips / "frames" / "bike"
    assert run_main(source, "--out", out, "--quiet", "--effect", "blur") == 0
    for same in (["--backend", "onnx"], ["--device", "cpu"], ["--workers", "2"]):
        assert run_main(source, "--out", out, "--quiet", "--effect", "blur", *same) == 0
        assert summary_items(out)["bike"]["status"] == "skipped", same
    for other in (["--blur", "5"], ["--edges", "hard"], ["--size", "120"], ["--parts", "all"]):
        assert run_main(source, "--out", out, "--quiet", "--effect", "blur", *other) == 0
        assert summary_items(out)["bike"]["status"] == "done", other
        assert run_main(source, "--out", out, "--quiet", "--effect", "blur", *other) == 0
        assert summary_items(out)["bike"]["status"] == "skipped", other
    assert run_main(source, "--out", out, "--quiet", "--masks", "none", "--effect", "overlay") == 0
    assert sorted(p.name for p in (out / "bike").iterdir()) == ["job.json", "overlay.mp4"]  # not --parts all's blur


def test_a_changed_setting_redoes_only_the_outputs_drawn_with_it(clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    source = clips / "frames" / "bike"

    def run(*flags: str) -> dict[str, int]:
        assert run_main(source, "--out", out, "--quiet", *flags) == 0
        return {p.name: p.stat().st_ino for p in (out / "bike").iterdir() if p.name != "job.json"}

    first = run("--effect", "overlay", "--effect", "blur")
    again = run("--effect", "blur", "--blur", "9")  # the overlay is drawn without the blur: kept as it was
    assert sorted(again) == ["blur.mp4", "masks", "overlay.mp4"] and again["overlay.mp4"] == first["overlay.mp4"]
    assert again["blur.mp4"] != first["blur.mp4"]
    assert summary_items(out)["bike"]["status"] == "done"
    assert run_main(source, "--out", out, "--quiet", "--effect", "overlay", "--effect", "blur", "--blur", "9") == 0
    assert summary_items(out)["bike"]["status"] == "skipped"
    preset = run("--effect", "blur", "--blur", "9", "--x264-preset", "veryfast")  # the overlay, not asked for, stays
    assert sorted(preset) == ["blur.mp4", "masks", "overlay.mp4"] and preset["overlay.mp4"] == first["overlay.mp4"]
    assert run_main(source, "--out", out, "--quiet", "--effect", "overlay", "--x264-preset", "veryfast") == 0
    assert summary_items(out)["bike"]["status"] == "done"  # the overlay was encoded with the other preset: redone
    assert sorted(run("--masks", "none", "--effect", "cutout", "--blur", "9", "--size", "120")) == ["cutout.webm"]


def test_an_output_not_asked_for_stays_as_it_was_drawn(clips: Path, tmp_path: Path) -> None:
    """A blur drawn with --blur 51, then an overlay asked for with the default blur: the blur stays (it was
    deleted: this run's blur strength differed from its), and a later run asking for the default blur redraws it
    instead of skipping the folder."""
    out = tmp_path / "out"
    source = clips / "frames" / "bike"

    def run(*flags: str) -> dict[str, int]:
        assert run_main(source, "--out", out, "--quiet", "--masks", "none", *flags) == 0
        return {p.name: p.stat().st_ino for p in (out / "bike").iterdir() if p.name != "job.json"}

    first = run("--effect", "blur", "--blur", "51")
    second = run("--effect", "overlay")
    assert sorted(second) == ["blur.mp4", "overlay.mp4"] and second["blur.mp4"] == first["blur.mp4"]
    assert run("--effect", "blur", "--blur", "51")["blur.mp4"] == first["blur.mp4"]
    assert summary_items(out)["bike"]["status"] == "skipped"  # drawn as asked: nothing to redo
    third = run("--effect", "blur")
    assert third["blur.mp4"] != first["blur.mp4"] and third["overlay.mp4"] == second["overlay.mp4"]
    assert summary_items(out)["bike"]["status"] == "done"


def cut_short(frames: list[np.ndarray], folder: Path) -> Path:
    """folder/in/cut.mp4: `frames` encoded, then cut after the fourth frame's data (a download that stopped), with
    folder/in/cut.png, a mask of its frame 0."""
    whole = encode_video(folder / "whole.mp4", frames, FPS, audio=False, options={"movflags": "faststart"})
    with av.open(str(whole)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    source = folder / "in"
    source.mkdir()
    (source / "cut.mp4").write_bytes(whole.read_bytes()[:packets[3].pos + packets[3].size])
    write_mask(source / "cut.png", sample_mask("judo", "00000"))
    return source / "cut.mp4"


def test_a_mask_for_a_frame_a_cut_short_video_never_reaches_names_the_file_and_the_fix(
        judo_small: list[np.ndarray], tmp_path: Path) -> None:
    cut = cut_short(judo_small, tmp_path)
    out = tmp_path / "out"
    assert run_main(cut, "--out", out, "--quiet", "--mask", cut.with_suffix(".png"), "--mask-frame", "8") == 1
    item = summary_items(out)["cut"]
    assert item["status"] == "failed" and not (out / "cut").exists()
    decoded = re.search(r"after the last decoded frame \((\d+)\) of ", item["error"])
    assert item["error"].startswith(f"{cut.with_suffix('.png')}: annotates a frame after") and decoded, item["error"]
    assert item["error"].endswith(f"rename it to a frame index below {int(decoded[1]) + 1} (with --mask FILE: pass "
                                  "--mask-frame below it) or repair the video")


def test_a_video_cut_short_at_a_packet_is_done_with_a_warning(judo_small: list[np.ndarray], tmp_path: Path) -> None:
    source = cut_short(judo_small, tmp_path).parent
    out = tmp_path / "out"
    result = run_batch(source / "cut.mp4", "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    item = summary_items(out)["cut"]
    decoded = item["frames"]
    assert item["status"] == "done" and 0 < decoded < len(judo_small) - 2
    assert item["warning"].startswith(f"cut.mp4 ends after {decoded} of the {len(judo_small)} frames")
    assert item["warning"].endswith("run again with --overwrite")
    warned = [line for line in result.stderr.splitlines() if "warning:" in line]
    assert len(warned) == 1 and "done cut" in warned[0]


def test_a_mask_frame_beyond_the_clip_names_the_option(clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_main(clips / "judo.mp4", "--out", out, "--quiet", "--mask", clips / "judo.png",
                    "--mask-frame", "100") == 1
    assert "pass --mask-frame below it" in summary_items(out)["judo"]["error"]


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_the_run_as_interrupted(judo_small: list[np.ndarray], tmp_path: Path, workers: int) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for name in ("a", "b", "c"):
        encode_video(source / f"{name}.mp4", judo_small * 4, FPS, audio=False)
        write_mask(source / f"{name}.png", sample_mask("judo", "00000"))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "core.batch", str(source), "--out", str(out), "--quiet", "--effect", "remove",
               "--workers", str(workers), *THREADS]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / ".a.partial").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "interrupted: complete outputs are kept" in stderr
    items = summary_items(out)
    assert items["c"]["status"] == "interrupted"
    for name, item in items.items():  # the summary says what is there: nothing finished after it was written
        assert (out / name / "job.json").exists() == (item["status"] == "done"), (name, item["status"])
    assert not any(p.name.endswith(".partial") for p in out.iterdir())  # a pool's too, once its worker is gone


def test_the_demo_answers_help_without_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        demo_main(["--help"])
    assert stop.value.code == 0 and "--out DIR" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_a_mask_that_looks_inverted_is_done_with_a_warning(clips: Path, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(clips / "judo.mp4", source / "judo.mp4")
    write_mask(source / "judo.png", np.where(sample_mask("judo", "00000") > 0, 0, 1).astype(np.uint8))
    out = tmp_path / "out"
    assert run_main(source / "judo.mp4", "--out", out, "--quiet") == 0
    item = summary_items(out)["judo"]
    assert item["status"] == "done" and "judo.png: the objects cover" in item["warning"]
    assert "if the mask is inverted" in item["warning"]
    assert run_main(source / "judo.mp4", "--out", out, "--quiet") == 0  # the rerun's summary keeps the warning
    assert summary_items(out)["judo"] == {**item, "status": "skipped", "seconds": 0.0, "fps": 0.0}
    write_mask(source / "judo.png", sample_mask("judo", "00000"))
    assert run_main(source / "judo.mp4", "--out", out, "--quiet") == 0
    assert summary_items(out)["judo"]["warning"] is None
    write_mask(source / "judo.png", np.where(sample_mask("judo", "00000") > 0, 2, 1).astype(np.uint8))
    assert run_main(source / "judo.mp4", "--out", out, "--quiet") == 0  # a scene annotated in full: two objects
    assert summary_items(out)["judo"]["warning"] is None


def test_masks_that_annotate_no_frame_are_named_in_a_warning(judo_small: list[np.ndarray], tmp_path: Path) -> None:
    folder = tmp_path / "in" / "yt"
    (folder / "masks").mkdir(parents=True)
    for index, image in enumerate(judo_small[:3]):
        cv2.imwrite(str(folder / f"{index:05d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    for name in ("00000", "00099", "frame_3"):
        write_mask(folder / "masks" / f"{name}.png", sample_mask("judo", "00000"))
    video = encode_video(tmp_path / "in" / "clip.mp4", judo_small[:3], FPS, audio=False)
    write_mask(video.with_suffix(".png"), sample_mask("judo", "00000"))
    write_mask(tmp_path / "in" / "clip.mask.png", sample_mask("judo", "00000"))
    out = tmp_path / "out"
    assert run_main(tmp_path / "in", "--out", out, "--quiet") == 0
    items = summary_items(out)
    assert items["yt"]["status"] == "done"
    assert items["yt"]["warning"].startswith(f"{folder / 'masks' / '00099.png'} and 1 more annotated no frame")
    assert items["clip"]["warning"].startswith(f"{tmp_path / 'in' / 'clip.mask.png'} annotated no frame")
    (tmp_path / "in" / "clip.mask.png").unlink()
    assert run_main(tmp_path / "in", "--out", out, "--quiet") == 0  # a rerun says it again, while it holds
    again = summary_items(out)
    assert again["yt"]["status"] == "skipped" and again["yt"]["warning"] == items["yt"]["warning"]
    assert again["clip"]["status"] == "skipped" and again["clip"]["warning"] is None


def test_camcorder_and_phone_containers_are_inputs(judo_small: list[np.ndarray], tmp_path: Path) -> None:
    """A camcorder's MPEG-TS (.MTS) and a phone's .3gp were passed over without a word (a folder of only them: "no
    videos found")."""
    source = tmp_path / "in"
    source.mkdir()
    for name in ("cam.MTS", "phone.3gp"):
        encode_video(source / name, judo_small[:4], FPS, audio=False)
        write_mask(source / f"{Path(name).stem}.png", sample_mask("judo", "00000"))
    out = tmp_path / "out"
    result = run_batch(source, "--out", out, "--quiet", "--effect", "overlay")
    assert result.returncode == 0, result.stderr
    items = summary_items(out)
    assert {name: (item["status"], item["frames"]) for name, item in items.items()} == {"cam": ("done", 4),
                                                                                         "phone": ("done", 4)}
    (source / "cam.mp4").touch()  # the camcorder's clip converted beside it: it takes the name, the .MTS clashes
    jobs = plan_jobs([str(source)], str(out))
    assert [(job.name, Path(job.source).name, job.problem is None) for job in jobs] == [
        ("cam", "cam.mp4", True), ("cam", "cam.MTS", False), ("phone", "phone.3gp", True)]


def test_a_jpeg_beside_a_video_is_named_as_not_read(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for name in ("clip.mp4", "clip.JPG"):
        (tmp_path / "in" / name).touch()
    (job,) = plan_jobs([str(tmp_path / "in")], str(tmp_path / "out"))
    assert job.problem == (f"{tmp_path / 'in' / 'clip.mp4'}: no annotation found; clip.JPG is not read (beside a video "
                           "a JPEG may be its thumbnail): save the first frame's mask as "
                           f"{tmp_path / 'in' / 'clip.png'} beside it (palette PNG, one index per object) or pass "
                           "--mask PATH")


def test_masks_are_found_whatever_the_case_of_their_suffix(tmp_path: Path) -> None:
    (tmp_path / "in" / "f" / "masks").mkdir(parents=True)
    (tmp_path / "in" / "clip.mp4").touch()
    for name in ("clip.PNG", "clip.mask.png", "clip.3.Png", "f/00000.jpg", "f/00001.jpg", "f/masks/00001.PNG"):
        (tmp_path / "in" / name).touch()
    jobs = {job.name: job for job in plan_jobs([str(tmp_path / "in")], str(tmp_path / "out"))}
    assert [(Path(a.path).name, a.frame) for a in jobs["clip"].annotations] == [("clip.PNG", 0), ("clip.3.Png", 3)]
    assert [Path(path).name for path in jobs["clip"].unused] == ["clip.mask.png"]
    assert [(Path(a.path).name, a.frame) for a in jobs["f"].annotations] == [("00001.PNG", 1)]


def test_a_frame_folder_whose_masks_name_none_of_its_frames_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    (folder / "masks").mkdir(parents=True)
    for name in ("00000.jpg", "00001.jpg", "masks/00099.png", "masks/first.png"):
        (folder / name).touch()
    (job,) = plan_jobs([str(folder)], str(tmp_path / "out"))
    assert job.problem == (f"{folder}: {folder / 'masks' / '00099.png'} (and 1 more) is named like none of its "
                           "frames (00000 to 00001); rename each mask after the frame it annotates, or pass "
                           "--mask PATH")


def test_a_folder_with_masks_but_unnumbered_frames_fails_saying_why(tmp_path: Path) -> None:
    folder = tmp_path / "in" / "named"
    (folder / "masks").mkdir(parents=True)
    for name in ("frame_a.jpg", "frame_b.jpg", "masks/frame_a.png"):
        (folder / name).touch()
    (tmp_path / "in" / "holiday").mkdir()
    (tmp_path / "in" / "holiday" / "beach.jpg").touch()  # a folder of pictures, not meant as a clip: passed over
    (job,) = plan_jobs([str(tmp_path / "in")], str(tmp_path / "out"))
    assert job.problem == (f"{folder}: its images are not named by frame number; rename them 00000.jpg, "
                           "00001.jpg, … in order, and each mask in masks/ after its frame")


def test_mask_frame_without_a_mask_is_refused(clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(clips / "judo.mp4", "--out", tmp_path / "out", "--mask-frame", "3") == 2
    assert capsys.readouterr().err.startswith("error: --mask-frame 3 without --mask: ")
    assert not (tmp_path / "out").exists()


def test_a_broken_background_video_fails_the_run_once_at_its_start(clips: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "background.mp4"
    broken.write_bytes(b"not a video")
    assert run_main(clips, "--out", tmp_path / "out", "--effect", "replace", "--background", broken) == 2
    error = capsys.readouterr().err
    assert f"--background {broken}: cannot read the video" in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_int8_network_counts_as_other_settings_and_the_float_backends_do_not() -> None:
    from core.batch.worker import _masks_made_with

    spec = OutputSpec()
    made = {backend: _masks_made_with(spec, TrackerConfig(backend=backend))
            for backend in ("torch", "onnx", "onnx-int8")}
    assert made["torch"] == made["onnx"] != made["onnx-int8"]
