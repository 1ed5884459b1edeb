"""`python -m core.bench`: the synthetic clip, one subprocess per variant and length, the table and the JSON, a
worker's error said once and its status passed on; `python -m core.evaluation.stages`'s error on its own line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.evaluation import bench
from core.evaluation.bench import WARMUP_FRAMES, SyntheticClip, parse_args, run_in_subprocess
from core.io.command import BAD_INPUT, run_tool
from tests.test_eval import refusal, run_module

REPO = Path(__file__).resolve().parents[1]


def test_synthetic_clip_moves_a_textured_object_deterministically() -> None:
    clip = SyntheticClip(64, 96)
    image, labels = clip.frame(0)
    assert image.shape == (64, 96, 3) and image.dtype == np.uint8
    assert labels.shape == (64, 96) and set(np.unique(labels)) == {0, 1}
    assert labels.sum() == clip.shape.sum()  # the whole object is inside the frame
    later_image, later_labels = clip.frame(7)
    assert not np.array_equal(labels, later_labels)  # it moves
    assert np.array_equal(image, SyntheticClip(64, 96).frame(0)[0])  # same seed → same frames
    assert image[labels == 0].std() > 10  # the background is textured, not flat
    background = (labels == 0) & (later_labels == 0)
    assert np.array_equal(image[background], later_image[background])  # only the object changes


def test_bench_runs_each_variant_and_length_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "core.bench", "--size", "64x96", "--frames", "5,10", "--json", str(out),
         "--device", "cpu", "--threads", "1", "--box-prior", "off", "--parts", "all"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["size"] == [64, 96] and report["frames"] == [5, 10]
    assert set(report["results"]) == {"student", "infinite"}
    for variant in ("student", "infinite"):
        assert set(report["results"][variant]) == {"5", "10"}
        for length, run in report["results"][variant].items():
            assert run["frames"] == int(length) and run["device"] == "cpu"
            assert run["box_prior"] is None and run["near_parts"] is False  # the tracker options reach the workers
            assert run["ms_per_frame"] > 0 and abs(run["fps"] * run["ms_per_frame"] - 1000) < 1e-6
            assert 50 < run["peak_rss_mb"] < 8000  # a process with torch loaded, reported in MB not KB
            parts = run["parts_ms"]  # the mean step split into the network's calls and the glue
            assert {"encode_key", "encode_value", "segment", "aggregate", "upsample", "glue"} == set(parts)
            assert all(ms > 0 for ms in parts.values())
    lines = result.stdout.splitlines()
    assert "student ms/frame" in lines[0] and "infinite ms/frame" in lines[0]
    assert [line.split()[0] for line in lines[2:]] == ["5", "10"]
    assert "student 10" in result.stderr  # the workers' progress bars
    assert "infinite × 5 frames:" in result.stderr  # one line per finished run


def test_bench_rejects_too_few_frames_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "core.bench", "--frames", "3"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "--frames" in result.stderr and "warm-up" not in result.stdout


def test_a_workers_one_line_error_is_not_said_again(capfd: pytest.CaptureFixture[str]) -> None:
    """The worker prints its own error (here: too few frames) and ends with status 2; the bench ends with it,
    adding no second error line."""
    args = parse_args(["--size", "64x96", "--device", "cpu", "--threads", "1"])
    with pytest.raises(SystemExit) as stop:
        run_in_subprocess("student", WARMUP_FRAMES, args)
    assert stop.value.code == 2
    errors = [line for line in capfd.readouterr().err.split("\n") if "error" in line]
    assert len(errors) == 1 and "--frames" in errors[0], errors


def test_ctrl_c_during_a_run_says_interrupted_once() -> None:
    """Ctrl-C at the terminal reaches every process of the foreground group: the bench alone, not its worker,
    must take it, end the worker and say so in one line."""
    bench = subprocess.Popen(
        [sys.executable, "-m", "core.bench", "--size", "64x96", "--frames", "100000", "--variants", "student",
         "--device", "cpu", "--threads", "1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal's
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: bench.stderr.read(1), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    while "student 100000" not in "".join(seen) and bench.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # polled: the worker's progress bar shows it is running with its Ctrl-C handler
    assert "student 100000" in "".join(seen), "".join(seen)
    os.killpg(bench.pid, signal.SIGINT)  # what the terminal does
    assert bench.wait(timeout=120) == 130
    reader.join(timeout=30)
    said = [line for line in "".join(seen).replace("\r", "\n").split("\n") if "interrupted" in line]
    assert len(said) == 1, said


def test_stages_prints_its_error_on_its_own_line(tmp_path: Path) -> None:
    """The progress bar is closed before the error: the error starts a line, not the bar's."""
    result = subprocess.run(
        [sys.executable, "-m", "core.evaluation.stages", "--source", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.split("\n")  # the bar redraws with \r: only \n starts a line
    assert any(line.startswith(f"error: {tmp_path}: no masks") for line in lines), result.stderr


def test_unknown_variants_end_the_bench_in_one_line() -> None:
    assert "--variants: unknown fast; choose from student, infinite" in refusal(
        run_module("core.bench", "--variants", "student,fast"))


def test_a_workers_bad_input_ends_the_bench_with_its_status_and_one_line(
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """The bench lets 3 frames through (no warm-up here), its worker refuses them in one line with status 2: the
    bench, run as its command runs, ends with that status and says nothing more."""
    monkeypatch.setattr(bench, "WARMUP_FRAMES", 0)
    with pytest.raises(SystemExit) as stop:
        run_tool(lambda: bench.main(["--size", "64x96", "--frames", "3", "--variants", "student", "--device", "cpu",
                                     "--threads", "1"]))
    errors = [line for line in capfd.readouterr().err.split("\n") if "error" in line]
    assert stop.value.code == BAD_INPUT and len(errors) == 1 and "each length must exceed 3 frames" in errors[0], errors


def test_stages_names_a_source_that_does_not_exist(tmp_path: Path) -> None:
    error = refusal(run_module("core.evaluation.stages", "--source", str(tmp_path / "missing")))
    assert error.startswith(f"error: {tmp_path / 'missing'}: no such folder; pass a folder of frames with masks/")
