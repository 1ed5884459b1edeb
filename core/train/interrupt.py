"""Ctrl-C while a training command trains: the first press lets the step under way finish, the run saves its state
and the command ends (status 130 through `core.io.command.run_tool`), so the rerun resumes with nothing lost; a
second press stops at once, as Ctrl-C does elsewhere."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import NoReturn


class StopRequest:
    """A SIGINT handler: `asked` after the first Ctrl-C, KeyboardInterrupt on the second."""

    def __init__(self) -> None:
        self.asked = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True
        print("\nCtrl-C: stopping after this step and saving the run's state (Ctrl-C again: stop now, losing the "
              "steps since the last save)", flush=True)


@contextmanager
def stop_after_step() -> Iterator[StopRequest]:
    """Within the block, Ctrl-C sets the request's `asked` (the loop saves and raises KeyboardInterrupt) instead of
    interrupting; outside the main thread, where no handler can be set, it is never asked."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = signal.signal(signal.SIGINT, request)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_after_saving(step: int, state: Path) -> NoReturn:
    """After the run saved `state` at `step` on a Ctrl-C request: say so, and end as Ctrl-C does."""
    print(f"saved step {step} in {state}; run the same command to resume", flush=True)
    raise KeyboardInterrupt
