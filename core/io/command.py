"""How the `python -m core.…` tools take their output paths and how they end: an output file or folder that cannot be
written is refused as its flag is parsed (argparse's usage error, before any work), and so is a number out of its
range; a bad mask or video ends a tool with its one-line message and status 2, and Ctrl-C ends it with one line and
status 130, never a traceback."""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import NoReturn

INTERRUPTED = 130  # the shell's status for a command ended by Ctrl-C (128 + SIGINT)
TERMINATED = 143  # and by SIGTERM (128 + SIGTERM): `kill`, a container's stop
BAD_INPUT = 2  # as argparse's usage errors: the command could not do its work with what it was given


class BadInput(Exception):
    """A file or value a user gave that a tool cannot use (MaskError, VideoError); its message is one line naming
    it and the fix."""


class ToolParser(argparse.ArgumentParser):
    """Every tool's parser: a usage error (an unknown flag, a bad or missing value) is one line naming the flag and
    pointing at --help, with BAD_INPUT, instead of argparse's usage block before it."""

    def error(self, message: str) -> NoReturn:
        self.exit(BAD_INPUT, f"error: {message}; see {self.prog} --help\n")


def tool_description(doc: str) -> str:
    """A tool's --help description: the first sentence of its module's docstring, on one line (a sentence ends at
    a full stop before a space, not at an ellipsis such as INPUT...)."""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    sentence = re.match(r"(.*?[^.]\.)(?:\s|$)", paragraph)
    return sentence.group(1) if sentence else paragraph


def output_file(text: str) -> Path:
    """argparse type of an output file (a report, a --json): not a folder, in a folder that can be made and written."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: is a folder; give a file name")
    _check_writable(path.parent, text)
    return path


def output_folder(text: str) -> Path:
    """argparse type of an output folder: not a file, and one that can be made (with its parents) and written."""
    path = Path(text)
    _check_writable(path, text)
    return path


def bounded(low: float, high: float = math.inf, whole: bool = False) -> Callable[[str], float]:
    """An argparse type: a number from `low` to `high` (a whole one with `whole`), else argparse's usage error
    naming the flag (nan and infinities included)."""

    def parse(text: str) -> float:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high):
            kind = "a whole number" if whole else "a number"
            span = f"of {low:g} or more" if high == math.inf else f"from {low:g} to {high:g}"
            raise argparse.ArgumentTypeError(f"{text!r}: give {kind} {span}")
        return value

    return parse


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`, else argparse's usage error naming the flag."""
    return bounded(minimum, whole=True)


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    return int(bounded(1, 65535, whole=True)(text))


def _check_writable(folder: Path, text: str) -> None:
    """Refuse `folder` when it, or the nearest of its parents that exists, is a file or cannot be written."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: {existing} is a file, not a folder; give another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text!r}: {existing} cannot be written by this user; give another path")


def ctrl_c_ends_start() -> None:
    """Called as the package of a `python -m` command is imported (`sys.argv[0]` is "-m" until the command's own
    module runs): while the tool loads (imports, seconds), Ctrl-C ends it at once in one line with INTERRUPTED
    (`_end_while_starting`), until `ctrl_c_interrupts`. Nothing otherwise (the package imported by a program),
    nor where SIGINT is ignored (a job started in the background with `&`)."""
    if sys.argv[:1] == ["-m"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _end_while_starting)


def ctrl_c_interrupts() -> None:
    """From here Ctrl-C raises KeyboardInterrupt again, for the tool's own handling (`run_tool`, the batch)."""
    if signal.getsignal(signal.SIGINT) is _end_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _end_while_starting(signum: int, frame: object) -> None:
    """Ctrl-C while a tool loads: its one line, then out at once. A KeyboardInterrupt would not do: a C extension
    being loaded turns it into an ImportError, and one raised in code run by `exec` (as dataclasses does) ends
    Python by SIGINT, each with a traceback."""
    print("interrupted: stopped by Ctrl-C while starting; nothing was written", file=sys.stderr, flush=True)
    os._exit(INTERRUPTED)


def run_tool(main: Callable[[], int | None]) -> NoReturn:
    """Run a tool's `main` and exit with its status; a BadInput (a mask or video the tool cannot use) prints its
    one-line message and exits with BAD_INPUT; Ctrl-C prints one line and exits with INTERRUPTED. Called from a
    program's `__main__` block, it ends the program as `exit_program` does; from elsewhere (a test) by SystemExit."""
    ctrl_c_interrupts()
    try:
        status = main()
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        status = BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: stopped by Ctrl-C; whatever was written completely is kept", file=sys.stderr)
        status = INTERRUPTED
    if sys._getframe(1).f_globals.get("__name__") == "__main__":
        exit_program(status)
    sys.exit(status)


def exit_program(status: int | None) -> NoReturn:
    """End the program with `status`, from its entry point. After Ctrl-C or SIGTERM (INTERRUPTED, TERMINATED) at
    once, once stdout and stderr are flushed, skipping the interpreter's teardown: after a run stopped midway, a
    native library's threads abort that teardown now and then ("terminate called without an active exception",
    status 134: 1 in 8 demos stopped while removing the players). A tool has written and closed all it keeps
    before it returns its status."""
    if status in (INTERRUPTED, TERMINATED):
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError):  # a reader of a pipe gone (`| head`)
                stream.flush()
        os._exit(status)
    sys.exit(status)
