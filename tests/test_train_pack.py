"""`python -m core.train.pack` given a source it cannot pack: one line, status 2, nothing written (the source
packed into itself was overwritten by its resized copy; a missing or non-DAVIS source packed nothing, status 0)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.io.command import BAD_INPUT, run_tool
from core.train.pack import FRAMES, main
from tests.test_train import tiny_davis  # noqa: F401 - the fixture


@pytest.mark.parametrize("source, told", [
    ("missing", "missing: no such folder; pass a DAVIS root"),
    ("data/JPEGImages/480p/bike", "one sequence's frames; pass the DAVIS root that holds it"),
])
def test_a_source_that_is_no_davis_root_is_named(tiny_davis: Path, tmp_path: Path,  # noqa: F811
                                                 capsys: pytest.CaptureFixture[str], source: str, told: str) -> None:
    shutil.copytree(tiny_davis, tmp_path / "data")
    with pytest.raises(SystemExit) as stop:
        run_tool(lambda: main([str(tmp_path / source), str(tmp_path / "packed")]))
    error = capsys.readouterr().err.strip()
    assert stop.value.code == BAD_INPUT and told in error and len(error.splitlines()) == 1
    assert not (tmp_path / "packed").exists()


def test_an_unreadable_frame_is_named(tiny_davis: Path, tmp_path: Path,  # noqa: F811
                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = Path(shutil.copytree(tiny_davis, tmp_path / "data"))
    (data / FRAMES / "bike" / "00001.jpg").write_text("not a JPEG")
    with pytest.raises(SystemExit) as stop:
        run_tool(lambda: main([str(data), str(tmp_path / "packed")]))
    assert stop.value.code == BAD_INPUT and "00001.jpg: unreadable image" in capsys.readouterr().err


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
        tiny_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811
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
