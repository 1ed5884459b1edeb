"""The tools' shared command-line behaviour (core.io.command): output paths refused as their flags are parsed, and
a mask or video a tool cannot use, and Ctrl-C, as one line with status 2 or 130."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from core.io.command import BAD_INPUT, INTERRUPTED, output_file, output_folder, run_tool
from core.io.masks import read_mask
from core.evaluation.davis import parse_args as eval_args
from core.weights import load_checkpoint


def test_an_output_file_must_not_be_a_folder_nor_under_a_file(tmp_path: Path) -> None:
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    assert output_file(str(tmp_path / "new" / "deeper" / "report.json")) == tmp_path / "new" / "deeper" / "report.json"
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder; give a file name"):
        output_file(str(tmp_path))
    with pytest.raises(argparse.ArgumentTypeError, match=f"{taken} is a file, not a folder"):
        output_file(str(taken / "report.json"))
    assert not (tmp_path / "new").exists()  # checking makes nothing


def test_an_output_folder_must_not_be_a_file(tmp_path: Path) -> None:
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    assert output_folder(str(tmp_path / "a" / "b")) == tmp_path / "a" / "b"
    for bad in (taken, taken / "sub"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"{taken} is a file, not a folder"):
            output_folder(str(bad))
    assert taken.read_text() == "mine"


def test_a_tool_refuses_a_bad_output_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        eval_args([str(tmp_path), "--json", str(tmp_path)])
    assert stop.value.code == 2
    assert "argument --json" in capsys.readouterr().err


def test_ctrl_c_ends_a_tool_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted() -> int:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stop:
        run_tool(interrupted)
    assert stop.value.code == INTERRUPTED == 130
    error = capsys.readouterr().err
    assert error.startswith("interrupted:") and len(error.strip().splitlines()) == 1


def test_a_mask_or_video_a_tool_cannot_use_ends_it_in_one_line(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    def reads_a_broken_mask() -> int:
        (tmp_path / "mask.png").write_text("not an image")
        read_mask(tmp_path / "mask.png")
        return 0

    with pytest.raises(SystemExit) as stop:
        run_tool(reads_a_broken_mask)
    assert stop.value.code == BAD_INPUT == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {tmp_path / 'mask.png'}: cannot read the mask") and error.count("\n") == 1


def test_a_checkpoint_a_tool_cannot_load_ends_it_in_one_line(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A WeightsError (a missing checkpoint, a foreign training state) is bad input: one line and status 2."""
    with pytest.raises(SystemExit) as stop:
        run_tool(lambda: load_checkpoint(tmp_path / "none.pt"))
    error = capsys.readouterr().err
    assert stop.value.code == BAD_INPUT and error.startswith(f"error: {tmp_path / 'none.pt'}: MobileVOS checkpoint")
    assert len(error.strip().splitlines()) == 1
