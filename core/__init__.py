"""MobileVOS's shared core: video I/O, the tracker, effects, annotation, training and evaluation (see
docs/ARCHITECTURE.md). Run as a tool (`python -m core.…`), Ctrl-C while it loads ends it in one line
(`ctrl_c_ends_start`)."""

from core.io.command import ctrl_c_ends_start

ctrl_c_ends_start()
