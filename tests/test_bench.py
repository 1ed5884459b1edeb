"""`python -m core.bench`: the synthetic clip, one subprocess per variant and length, the table and the JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from core.evaluation.bench import SyntheticClip

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
