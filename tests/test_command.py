"""The tools' shared command-line behaviour (core.io.command): output paths refused as their flags are parsed, and
a mask or video a tool cannot use, and Ctrl-C, as one line with status 2 or 130."""

from __future__ import annotations

import argparse
import re
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import pytest

from core.io.command import BAD_INPUT, INTERRUPTED, output_file, output_folder, run_tool, tool_description
from core.io.masks import read_mask
from core.evaluation.davis import parse_args as eval_args
from core.weights import load_checkpoint
from tests.conftest import stalled_import


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


TOOLS = ("core.batch", "core.bench", "core.eval", "core.export", "core.effects", "core.demo", "core.model",
         "core.train", "core.train.annotator", "core.train.pack", "core.weights.imagenet",
         "core.evaluation.interactive", "core.evaluation.refinement", "core.evaluation.failures",
         "core.evaluation.flicker", "core.evaluation.removal", "core.evaluation.stages",
         "core.evaluation.annotate_bench", "web.app", "plugin.obs")


class _Parsed(Exception):
    """Raised in place of parsing a tool's command line: its parser has been seen."""


def tool_parser(module: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser `python -m module` reads its command line with, caught as it starts parsing."""
    seen: list[argparse.ArgumentParser] = []

    def catch(parser: argparse.ArgumentParser, *_: object, **__: object) -> NoReturn:
        seen.append(parser)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", catch)
    monkeypatch.setattr(sys, "argv", [module])
    with pytest.raises(_Parsed):
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    return seen[0]


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # runpy on a module imported before
@pytest.mark.parametrize("module", TOOLS)
def test_every_tools_help_says_what_it_and_each_flag_is_for(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = tool_parser(module, monkeypatch)
    undocumented = [action.option_strings or action.dest for action in parser._actions if not action.help]
    assert not undocumented
    assert parser.description and parser.description.rstrip().endswith((".", ")")), parser.description


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("module", TOOLS)
def test_every_tools_usage_error_is_one_line_with_status_2(module: str, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    parser = tool_parser(module, monkeypatch)
    monkeypatch.undo()
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--no-such-flag"])
    assert stop.value.code == BAD_INPUT
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.endswith(f"; see python -m {module} --help\n"), error
    assert error.count("\n") == 1 and ("--no-such-flag" in error or "arguments are required" in error), error


def test_a_tools_description_is_its_docstrings_first_sentence() -> None:
    doc = "`python -m tool IN... --out DIR`: do the thing, in\nparallel. More on how.\n\nDetails."
    assert tool_description(doc) == "`python -m tool IN... --out DIR`: do the thing, in parallel."
    assert tool_description("no full stop here\n\nDetails.") == "no full stop here"


def documented_flags(markdown: str) -> dict[str, set[str]]:
    """The --flags the code in a Markdown text passes to each tool of TOOLS (`python -m core.eval --x`, or a
    tool's name with flags after it), read from fenced blocks (continued lines joined) and inline code."""
    snippets = [line for block in re.findall(r"```[a-z]*\n(.*?)```", markdown, re.S)
                for line in block.replace("\\\n", " ").splitlines()]
    snippets += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", markdown, flags=re.S))
    flags: dict[str, set[str]] = {}
    for snippet in snippets:
        for command in re.split(r"&&|;|\|", snippet):
            for use in re.finditer(r"((?:core|plugin|web)\.[\w.]+)([^#]*)", command):
                if use.group(1) in TOOLS:
                    flags.setdefault(use.group(1), set()).update(re.findall(r"(?<!\S)(--[a-z][\w-]*)", use.group(2)))
    return flags


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("document", ["README.md", "docs/ARCHITECTURE.md"])
def test_every_flag_the_docs_show_is_one_the_tool_takes(document: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shown = documented_flags((Path(__file__).parents[1] / document).read_text())
    unknown = {}
    for module, flags in shown.items():
        taken = {option for action in tool_parser(module, monkeypatch)._actions for option in action.option_strings}
        unknown.update({module: sorted(flags - taken)} if flags - taken else {})
    assert shown and not unknown


def test_the_docs_flags_are_read_from_code_only() -> None:
    markdown = ("Run `python -m core.eval ROOT --refine` or\n```bash\npython -m core.batch IN \\\n  --out D  # --x\n"
                "```\nand `core.train --seed 3 && python -m web.app --port 1`; prose --not-a-flag.")
    assert documented_flags(markdown) == {"core.eval": {"--refine"}, "core.batch": {"--out"},
                                          "core.train": {"--seed"}, "web.app": {"--port"}}


@pytest.mark.parametrize("module", ["core.eval", "core.batch", "core.train.annotator", "web.app"])
def test_ctrl_c_while_a_tool_loads_ends_it_in_one_line(module: str, tmp_path: Path) -> None:
    """Ctrl-C while `python -m TOOL` imports (the import of torch held until it comes, by a sitecustomize on the
    child's path) ends it with one line and status 130, not an ImportError's traceback."""
    env, flag = stalled_import(tmp_path, "torch")
    child = subprocess.Popen([sys.executable, "-m", module, "--help"], cwd=Path(__file__).parents[1], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not flag.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert flag.exists(), "the child never reached its torch import"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == INTERRUPTED
    assert err.strip() == "interrupted: stopped by Ctrl-C while starting; nothing was written"
