"""What the frame loop feeds: the effect-name → renderer dispatch shared by batch and web, the replacement
background (a colour, an image, or a looping video), and the sinks that write one output each (mask PNGs, a
rendered video, the whole-clip removal video)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from core import effects
from core.effects import EdgeSettings
from core.io.images import load_image
from core.io.masks import write_mask
from core.io.suffixes import VIDEO_SUFFIXES
from core.io.video import Frame, VideoError, VideoWriter, open_video

EFFECTS = ("overlay", "cutout", "blur", "replace", "remove")
RENDERED = ("overlay", "mask", "cutout", "blur", "replace")  # drawn frame by frame (`remove` answers late)
MATTED = frozenset({"cutout", "blur", "replace"})  # the effects that use soft edges
# Frames of this many pixels or more (3× 1080p: 4K and the like) are "large": their outputs trade a little for
# memory, so that a 4K clip with every effect stays within 2 GB.
LARGE_FRAME = 3 * 1920 * 1080
REMOVAL_RADIUS = 24  # frames the whole-clip remover looks back and ahead
LARGE_REMOVAL_RADIUS = 12  # for large frames: half the buffered frames (2.13 → 1.7 GB for a 4K removal)
NAMED_COLOURS = {
    "green": (0, 177, 64), "blue": (0, 71, 187), "black": (0, 0, 0), "white": (255, 255, 255),
    "gray": (128, 128, 128), "grey": (128, 128, 128), "red": (255, 0, 0),
}

Renderer = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], np.ndarray]  # (image, labels, alpha) → frame


class BackgroundError(ValueError):
    """A replacement background that cannot be used; the message is one line naming it and the fix."""


@dataclass(frozen=True)
class EffectSettings:
    """How the effects are drawn: `background` is a colour name, #rrggbb, r,g,b, an (r, g, b) tuple, or an image
    or video file; `edges` the soft matte's settings (None: hard edges)."""

    overlay_alpha: float = 0.5
    blur_strength: int = 31
    background: str | tuple[int, int, int] = "green"
    edges: EdgeSettings | None = field(default_factory=EdgeSettings)

    def matte_edges(self, outputs: Iterable[str]) -> EdgeSettings | None:
        """The soft matte's settings when one of `outputs` uses soft edges, else None: no matte is drawn."""
        return self.edges if MATTED & set(outputs) else None


_RUN = threading.local()  # in a pipeline's thread: the event that says its run was stopped


def bind_run(stopped: threading.Event) -> None:
    """Tie this thread to a run's stop event, for `run_stopped` (the pipeline's threads call it first)."""
    _RUN.stopped = stopped


def run_stopped() -> bool:
    """Whether the run this thread works for was stopped (False outside a pipeline's threads): a sink's long
    closing work checks it between frames."""
    stopped = getattr(_RUN, "stopped", None)
    return stopped is not None and stopped.is_set()


class FrameSink(Protocol):
    """One output: takes every frame in order with its labels and soft matte (None for hard edges)."""

    def write(self, frame: Frame, labels: np.ndarray, alpha: np.ndarray | None) -> None: ...

    def finish(self) -> None: ...


def parse_colour(text: str) -> tuple[int, int, int] | None:
    """`green`, `#00b140` or `0,177,64` → an RGB tuple; None when `text` is not a colour."""
    text = text.strip().lower()
    if text in NAMED_COLOURS:
        return NAMED_COLOURS[text]
    if text.startswith("#") and len(text) == 7:
        try:
            return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
        except ValueError:
            return None
    parts = text.split(",")
    if len(parts) == 3 and all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        return tuple(int(p) for p in parts)
    return None


def check_background(spec: str) -> None:
    """Raise BackgroundError unless `spec` is a colour, or an image or video file whose first frame can be read (so
    that a broken background fails the run once, at its start, not every input after it)."""
    if parse_colour(spec) is not None:
        return
    if not Path(spec).is_file():
        raise BackgroundError(f"--background {spec}: not a colour (green, #00b140, 0,177,64) nor an image or "
                              "video file; fix the value or the path")
    background = Background(spec)
    try:
        background.next()
    except VideoError as error:
        raise BackgroundError(f"--background {spec}: cannot read the video ({error}); use another background") from None
    finally:
        background.close()


class Background:
    """The replacement background of `replace`: a colour, an image, or a video played in a loop."""

    def __init__(self, spec: str | tuple[int, int, int]):
        self._spec = str(spec)
        self._colour = tuple(spec) if isinstance(spec, tuple) else parse_colour(spec)
        self._image: np.ndarray | None = None
        self._frames: Iterator[Frame] | None = None
        if self._colour is None and Path(self._spec).suffix.lower() not in VIDEO_SUFFIXES:
            image = load_image(self._spec)
            if image is None:
                raise BackgroundError(f"--background {spec}: cannot read the image; save it as PNG or JPEG")
            self._image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # (H, W, 3)

    def next(self) -> tuple[int, int, int] | np.ndarray:
        """The background of the next frame: a colour, or an RGB image (core.effects resizes it)."""
        if self._colour is not None:
            return self._colour
        return self._image if self._image is not None else self._next_video_frame()

    def close(self) -> None:
        """Release a background video's file (a generator closed mid-file closes its reader)."""
        if self._frames is not None:
            self._frames.close()
            self._frames = None

    def _next_video_frame(self) -> np.ndarray:
        for _ in range(2):
            if self._frames is None:
                self._frames = _looped_frames(self._spec)
            frame = next(self._frames, None)
            if frame is not None:
                return frame.image
            self._frames = None
        raise BackgroundError(f"--background {self._spec}: the video has no frames; use another background")


def _looped_frames(path: str) -> Iterator[Frame]:
    """The frames of a video, again and again; stops only when the video has none."""
    while True:
        count = 0
        with open_video(path) as reader:
            for frame in reader:
                count += 1
                yield frame
        if count == 0:
            return


def renderer(effect: str, settings: EffectSettings) -> Renderer:
    """The per-frame drawing of a rendered output (`RENDERED`): (image, labels, soft matte or None) → an (H, W, 3)
    RGB frame, or (H, W, 4) RGBA for the cut-out."""
    if effect == "overlay":
        return lambda image, labels, alpha: effects.overlay(image, labels, alpha=settings.overlay_alpha)
    if effect == "mask":
        return lambda image, labels, alpha: effects.mask_image(labels)
    if effect == "cutout":
        return effects.cutout
    if effect == "blur":
        return lambda image, labels, alpha: effects.blur_background(image, labels, settings.blur_strength, alpha)
    if effect == "replace":
        background = Background(settings.background)
        return lambda image, labels, alpha: effects.replace_background(image, labels, background.next(), alpha)
    raise ValueError(f"unknown effect {effect!r}; choose from {', '.join(RENDERED)}")


class MaskPngSink:
    """<folder>/<name>.png per frame, DAVIS palette: `names[index]` when given (a frame folder's own numbering),
    else the frame index as 00000, 00001, …"""

    def __init__(self, folder: Path, names: list[str] | None = None):
        self._folder = folder
        self._names = names
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, frame: Frame, labels: np.ndarray, alpha: np.ndarray | None) -> None:
        has_name = self._names is not None and frame.index < len(self._names)
        name = self._names[frame.index] if has_name else f"{frame.index:05d}"
        write_mask(self._folder / f"{name}.png", labels)

    def finish(self) -> None:
        """Every PNG is written by `write`."""


class VideoSink:
    """One rendered video; the writer's temporary file becomes the output only on a clean close."""

    def __init__(self, writer: VideoWriter, render: Renderer):
        self._writer = writer
        self._render = render

    def write(self, frame: Frame, labels: np.ndarray, alpha: np.ndarray | None) -> None:
        self._writer.write(self._render(frame.image, labels, alpha), frame.time)

    def finish(self) -> None:
        """Every frame is written by `write`."""


def is_large(size: tuple[int, int]) -> bool:
    """Whether a (width, height) frame is LARGE_FRAME or bigger."""
    return size[0] * size[1] >= LARGE_FRAME


class RemovalSink:
    """The objects removed using the whole clip: the remover answers a fixed number of frames late; `finish`
    writes the rest, each frame at its own time. For large frames it looks half as far back and ahead, to hold
    half the frames."""

    def __init__(self, writer: VideoWriter):
        self._writer = writer
        radius = LARGE_REMOVAL_RADIUS if is_large(writer.size) else REMOVAL_RADIUS
        self._remover = effects.ClipRemover(radius=radius)
        self._times: deque[float] = deque()  # of the frames pushed and not yet written

    def write(self, frame: Frame, labels: np.ndarray, alpha: np.ndarray | None) -> None:
        self._times.append(frame.time)
        for image in self._remover.push(frame.image, labels):
            self._writer.write(image, self._times.popleft())

    def finish(self) -> None:
        for image in self._remover.finish():
            if run_stopped():  # Ctrl-C: the closing frames (seconds each at 4K) are not made
                return
            self._writer.write(image, self._times.popleft())
