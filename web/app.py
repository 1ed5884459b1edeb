"""`python -m web.app` — the browser face of MobileVOS, a Gradio app that works offline.

The user uploads a clip (or picks the bundled example), scrubs to a frame, marks objects with clicks, a box
and a brush (`core.annotate`), previews a few tracked frames, then runs the whole clip (`web.pipeline`) and
downloads the outputs. A named endpoint `/segment` does the same for scripts via `gradio_client`.
Each browser session works in its own temporary folder, removed when the session ends; heavy work is queued.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry calls

import atexit
import json
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import cv2
import gradio as gr
import httpx
import numpy as np

from core import effects
from core.io.command import (INTERRUPTED, ToolParser, bounded, ctrl_c_interrupts, port_number, tool_description,
                             whole_number)
from core.io.masks import MaskError, read_annotation
from core.io.suffixes import VIDEO_SUFFIXES
from core.inference.settings import TrackerConfig, add_tracker_arguments, tracker_config
from core.io.video import (CONVERT_HINT, VideoError, VideoInfo, check_x264_size, hdr_note, learn_timestamps,
                           open_video)
from core import annotate
from web.pipeline import OUTPUTS, VIDEO_OUTPUTS, RunSettings, preview_overlays, run_outputs

EXAMPLE_CLIP = Path(__file__).resolve().parent.parent / "samples" / "judo"
MODES: dict[str, annotate.MarkKind] = {
    "Positive click": "positive",
    "Negative click": "negative",
    "Box (drag, or two corners)": "box",
    "Brush: add": "brush_add",
    "Brush: erase": "brush_erase",
}
MAX_OBJECTS = 8
MAX_DRAG_POINTS = 2000  # of one drag's path (drag.js sends no more)
# Files older than this are removed: job folders of sessions that never closed (API clients) and Gradio's
# copies of uploads and results. Long enough for a slow run of the longest accepted clip.
FILE_LIFETIME_S = 6 * 3600
ANSWER_WAIT_S = 60.0  # seconds a started server's page may take to answer first (a busy machine's is slow)
# System fonts only: the default theme would fetch fonts from a CDN, and the app must work offline.
_THEME = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
# A crosshair over the frame; no "Remove this file" × in the downloads (Gradio's file list offers one even when
# read-only, and a click dropped the download until the next run).
_CSS = ("#frame img { cursor: crosshair; user-select: none; -webkit-user-drag: none; } "
        ".frame-drags #frame img { touch-action: none; } "
        "#files button[aria-label='Remove this file'] { display: none; }")
# Drags on the frame (a box, a brush stroke) reach the server through the hidden #drag textbox.
_HEAD = f"<script>{(Path(__file__).resolve().parent / 'drag.js').read_text()}</script>"
# Long side, in pixels, of the annotation picture sent to the browser: small clips are enlarged so that they
# are easy to click, large ones reduced so that every click answers quickly.
DISPLAY_SIDE = 960
# Uploaded clips' timestamps are learnt (learn_in_background) at this nice value, one clip at a time.
_SCAN_NICENESS = 10
_SCANNING = threading.Lock()
START = "Upload a clip to start."
Counting = Callable[[int, int | None], None]  # told (frames counted, frames expected or None) while counting
DONE = "Done:"  # how a finished run's status line starts
# Advice in core's messages meant for the command line → what a user of the page does instead.
_WEB_ADVICE = {
    "file not found; check the path": f"the upload is no longer on the server (uploads are kept "
                                      f"{FILE_LIFETIME_S // 3600} hours); upload the clip again",
    "has no video stream; pass a video file or a folder of frames": "holds no picture (sound only?); upload a "
                                                                    "video file",
    f" {CONVERT_HINT}": " and upload it again",
}


@dataclass(frozen=True)
class AppConfig:
    """Server, limits and tracker settings (the command-line flags)."""

    host: str = "127.0.0.1"
    port: int = 7860
    max_upload_mb: int = 200
    max_seconds: float = 120.0
    preview_frames: int = 8
    queue_size: int = 16
    tracker: TrackerConfig = field(default_factory=TrackerConfig)


@dataclass
class Session:
    """One browser session's state: the clip, the frame on screen, and the marks per frame index."""

    video: str | None = None
    frames: int = 0  # the clip's frame count (counted on upload when the container does not list it)
    frame_index: int = 0
    frame: np.ndarray | None = None  # (H, W, 3) RGB of frame_index
    marks: dict[int, tuple[annotate.Mark, ...]] = field(default_factory=dict)
    pending: annotate.BoxStart | None = None
    labels: dict[int, np.ndarray] = field(default_factory=dict)  # frame index → (H, W) uint8
    results: dict[str, str] = field(default_factory=dict)  # output name → file
    clip: int = 0  # which of the browser session's loaded clips this is (`Workspace.new_clip`)
    history: dict[int, list[tuple[annotate.Mark, ...]]] = field(default_factory=dict)  # frame → its marks before
    # each edit, the latest last (Undo)


class Workspace:
    """Per-session temporary folders under one root, removed when a session ends and at exit."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mobilevos-web-"))
        self._stops: dict[str, threading.Event] = {}  # session → its Cancel, read by its run between frames
        self._clips: dict[str, int] = {}  # session → clips it loaded (a run or preview of an older one stops)
        self._runs: dict[str, int] = {}  # session → its runs started and not ended (queued or going)
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)

    def stop_flag(self, request: gr.Request | None) -> threading.Event:
        """The Cancel flag of the session that sent `request`: set by its Cancel, cleared by its Run."""
        return self._stops.setdefault(_session_key(request), threading.Event())

    def run_started(self, request: gr.Request | None) -> None:
        """Count a run the session that sent `request` started (Run pressed)."""
        key = _session_key(request)
        self._runs[key] = self._runs.get(key, 0) + 1

    def run_ended(self, request: gr.Request | None) -> int:
        """Count a run of the session that sent `request` ended → how many of its runs are still queued or going."""
        key = _session_key(request)
        self._runs[key] = max(0, self._runs.get(key, 0) - 1)
        return self._runs[key]

    def new_clip(self, request: gr.Request | None) -> int:
        """Count a clip loaded (or cleared) by the session that sent `request` → its number (`Session.clip`)."""
        key = _session_key(request)
        self._clips[key] = self._clips.get(key, 0) + 1
        return self._clips[key]

    def replaced(self, session: Session, request: gr.Request | None) -> bool:
        """Whether the browser session that sent `request` loaded another clip since `session`'s: its run or
        preview then stops at the next frame."""
        return self._clips.get(_session_key(request), 0) != session.clip

    def folder(self, request: gr.Request | None) -> Path:
        """A fresh folder for one job of the session that sent `request` (old job folders are swept first)."""
        self.sweep(FILE_LIFETIME_S)
        folder = self.root / _safe_name(_session_key(request)) / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        return folder

    def sweep(self, max_age_s: float) -> None:
        """Remove the job folders last changed more than `max_age_s` seconds ago."""
        cutoff = time.time() - max_age_s
        for job in self.root.glob("*/*"):
            try:
                if job.stat().st_mtime < cutoff:
                    shutil.rmtree(job, ignore_errors=True)
            except FileNotFoundError:
                continue

    def release(self, request: gr.Request) -> None:
        """Remove every folder and count of the session that sent `request` (called when its browser tab closes)."""
        if request.session_hash:
            shutil.rmtree(self.root / _safe_name(request.session_hash), ignore_errors=True)
            for kept in (self._stops, self._clips, self._runs):
                kept.pop(request.session_hash, None)


def _session_key(request: gr.Request | None) -> str:
    """Which browser session sent `request` ("anonymous" for none, as in a direct call)."""
    return (request.session_hash if request is not None else None) or "anonymous"


def probe_clip(path: str, max_seconds: float, counting: Counting | None = None) -> VideoInfo:
    """Open `path`, check its size and duration against `max_seconds`, return its info (frame count filled in: a
    container that does not list it, WebM say, is refused by its header's duration before its frames are counted;
    `counting(done, expected)` hears of that count as it goes, `expected` from the header's duration)."""
    name = Path(path).name
    with open_video(path) as reader:
        info = reader.info
        check_x264_size(name, (info.width, info.height), "scale the clip down and upload it again")
        if info.num_frames is None:
            _check_seconds(name, info.duration or 0.0, max_seconds)
            expected = round(info.duration * float(info.fps)) if info.duration else None
            counted = None if counting is None else lambda done: counting(done, expected)
            info = replace(info, num_frames=reader.count_frames(counted))
    _check_seconds(name, info.num_frames / float(info.fps or Fraction(25)), max_seconds)
    return info


def _check_seconds(name: str, seconds: float, max_seconds: float) -> None:
    if seconds > max_seconds:
        raise VideoError(f"{name}: the clip lasts {seconds:.1f} s, more than the {max_seconds:g} s allowed; "
                         "trim it (or, if you run this app, start it with a larger --max-seconds)")


def read_frame(path: str, index: int) -> np.ndarray:
    """Decode frame `index` of `path` → (H, W, 3) RGB: the first time up to it, then from the keyframe before it
    (`VideoReader.frame_at`), so scrubbing a long clip stays quick; never holds the whole clip."""
    with open_video(path) as reader:
        frame = reader.frame_at(index)
    if frame is None:  # the slider offers the frames the header lists: the file holds fewer
        raise VideoError(f"{Path(path).name}: the file ends before frame {index} (cut short or damaged?); pick an "
                         "earlier frame, or re-export the clip and upload it again")
    return frame.image


def learn_in_background(path: str, frames: int) -> threading.Thread:
    """Learn an uploaded clip's timestamps (`learn_timestamps`) in a low-priority daemon thread (one clip at a
    time; closing the app does not wait for it), while the user looks at its first frame: the first scrub to a far
    frame then seeks instead of decoding up to it. Only a speed-up: a clip that fails, or is removed meanwhile, is
    left to `read_frame`."""
    thread = threading.Thread(target=_learn_quietly, args=(path, frames), name="mobilevos-timestamps", daemon=True)
    thread.start()
    return thread


def _learn_quietly(path: str, frames: int) -> None:
    with suppress(OSError):  # Linux: a thread's own nice value; the tracking threads keep the cores first
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _SCAN_NICENESS)
    with _SCANNING, suppress(VideoError, OSError):
        learn_timestamps(path, frames)


def scrub_slider(frames: int) -> gr.Slider:
    """The *Frame* slider for a clip of `frames` frames; a single frame (a still image) leaves nothing to scrub,
    so the slider is fixed at 0 (Gradio needs a range, so it still spans 0 to 1)."""
    return gr.Slider(minimum=0, maximum=max(frames - 1, 1), value=0, step=1, interactive=frames > 1)


def scrubbed_frame(value: float | None, frames: int) -> int | None:
    """The frame the *Frame* slider asks for in a clip of `frames` frames, kept inside the clip (its number box
    holds whatever is typed, past either end included); None while that box is empty."""
    if value is None:
        return None
    return min(max(round(value), 0), frames - 1)


class ClipReplaced(Exception):
    """A preview's clip was replaced by a new one while it tracked."""


class PreviewCancelled(Exception):
    """Cancel was pressed while a preview tracked."""


def cancel_message(session: Session) -> str:
    """The run status after Cancel stopped a run of `session`: nothing was written, and the outputs still shown
    are those of the run before, if any."""
    before = " (the outputs below are from the run before)" if session.results else ""
    return f"Run cancelled: nothing was written{before}. Change the annotation or outputs and run again."


def user_message(error: Exception | str) -> str:
    """A one-line message for the browser: server folders stripped from any file path, and command-line advice
    replaced by what the user of the page does (a file gone from the server is an upload past its lifetime,
    which the user can only send again)."""
    message = re.sub(r"/\S*/", "", str(error)).splitlines()[0]
    for advice, instead in _WEB_ADVICE.items():
        message = message.replace(advice, instead)
    return message


def literal(text: str) -> str:
    """`text` as itself in a Markdown component: a file name such as `my *best* take_2.mp4` neither turns italic
    nor loses characters, and one such as `# 1.mp4` or `1. cut.mp4` at its start makes no heading or list (the
    Markdown marks escaped; plain dots and dashes left as they are)."""
    escaped = re.sub(r"([\\`*_\[\]<>|~])", r"\\\1", text)
    return re.sub(r"^(\d+)([.)])|^([#+-])", lambda mark: f"{mark[1]}\\{mark[2]}" if mark[1] else f"\\{mark[3]}",
                  escaped)


def refusal(message: str) -> gr.Error:
    """An error shown in the browser for what the user sent or did, not printed with its traceback on the server's
    console (the server has nothing to mend)."""
    return gr.Error(message, print_exception=False)


def user_error(error: Exception) -> gr.Error:
    """`user_message` as an error shown in the browser."""
    return refusal(user_message(error))


def loaded_clip(path: str | None, max_seconds: float,
                counting: Counting | None = None) -> tuple[Session, str]:
    """Open an upload → (its session on frame 0, the status line); `counting` as in `probe_clip`. A file that is
    no usable video gives an empty session and a status line naming the problem and the fix: the status line, not
    a passing error, says why the file in the upload box is not the clip on screen."""
    if not path:
        return Session(), "**Not loaded.** No file received; choose a video file to upload."
    try:
        info = probe_clip(path, max_seconds, counting)
        frame = read_frame(path, 0)
    except VideoError as error:
        return Session(), f"**Not loaded.** {literal(user_message(error))}"
    learn_in_background(path, info.num_frames)
    note = hdr_note(info)
    return Session(video=path, frames=info.num_frames, frame=frame), (
        f"Loaded {literal(Path(path).name)}: {info.width}×{info.height}, {counted(info.num_frames, 'frame')} at "
        f"{float(info.fps):.2f} fps. Click on an object to mark it." + (f" Note: {literal(note)}." if note else ""))


def finishing_line(outputs: tuple[str, ...]) -> str:
    """The run's status line once every frame is tracked and the outputs are still being finished."""
    if "remove" in outputs:
        return "Finishing: removing the object from the last frames (seconds each at 1080p), then the videos…"
    return "Finishing the videos…"


def counted(number: int, noun: str) -> str:
    """`number` `noun`s in words: "1 frame", "16 frames"."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def named_after_clip(results: dict[str, Path], clip: str) -> dict[str, str]:
    """Rename a run's files after its clip (judo.mp4 → judo-overlay.mp4), so that the downloads of several clips
    keep apart → output name → renamed file."""
    stem = _safe_name(Path(clip).stem, "clip")
    return {name: str(path.replace(path.with_name(f"{stem}-{path.name}"))) for name, path in results.items()}


def display_scale(frame_hw: tuple[int, int]) -> float:
    """Display size / frame size for a frame of `frame_hw` = (H, W): its long side becomes DISPLAY_SIDE."""
    return DISPLAY_SIDE / max(frame_hw)


def display_size(frame_hw: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the displayed picture of a frame of `frame_hw` = (H, W) (`display_scale`)."""
    height, width = frame_hw
    scale = display_scale(frame_hw)
    return max(1, round(width * scale)), max(1, round(height * scale))


def frame_point(display_xy: tuple[int, int], frame_hw: tuple[int, int]) -> tuple[int, int]:
    """A click on the displayed picture → (x, y) in frame pixels, clamped inside the frame."""
    scale = display_scale(frame_hw)
    height, width = frame_hw
    x, y = display_xy
    return min(width - 1, max(0, int(x / scale))), min(height - 1, max(0, int(y / scale)))


def page_gesture(path: str, frame_hw: tuple[int, int]) -> tuple[list[tuple[int, int]], bool] | None:
    """A drag or click from drag.js (JSON: "points", [x, y] on the displayed picture; "click", true for a click
    made while the picture reloaded; "size", that picture's) → its points in frame pixels and whether it is a
    click; None for anything else (the field emptied, a request not from the page, a gesture placed on another
    clip's picture: one made while a new clip's first picture loaded)."""
    try:
        sent = json.loads(path)
        if "size" in sent and [int(side) for side in sent["size"]] != list(display_size(frame_hw)):
            return None
        points = [frame_point((int(x), int(y)), frame_hw) for x, y in sent["points"][:MAX_DRAG_POINTS]]
        return (points, sent.get("click") is True) if points else None
    except (ValueError, TypeError, KeyError, OverflowError, AttributeError):  # OverflowError: Infinity, which
        return None  # JSON here allows; AttributeError: JSON that is no object


def annotated_view(session: Session) -> np.ndarray | None:
    """The current frame with its objects' overlay and the marks drawn on top, at display size →
    (h, w, 3) RGB with max(h, w) = DISPLAY_SIDE."""
    if session.frame is None:
        return None
    labels = session.labels.get(session.frame_index)
    image = session.frame if labels is None else effects.overlay(session.frame, labels)
    view = annotate.render_marks(image, session.marks.get(session.frame_index, ()), session.pending)
    scale = display_scale(view.shape[:2])
    return cv2.resize(view, display_size(view.shape[:2]),
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def clip_view(session: Session, status: str) -> tuple:
    """What a new clip (or none) shows: its first frame, slider, status line and marks, and the previous clip's
    preview, run status, player, output list and downloads emptied."""
    return (framed_view(session), scrub_slider(session.frames), status, marks_summary(session), session,
            None, "", None, gr.Dropdown(choices=[], value=None), None)


def frame_label(index: int) -> str:
    """The caption of the annotation image: which frame is on screen."""
    return f"Frame {index} — click to mark"


def framed_view(session: Session) -> gr.Image:
    """The annotation image after a frame change: the view and a caption naming the frame."""
    return gr.Image(value=annotated_view(session), label=frame_label(session.frame_index))


def edit_marks(session: Session, marks: tuple[annotate.Mark, ...], pending: annotate.BoxStart | None) -> Session:
    """An edit of the frame on screen (a click, a stroke, a Clear): its marks before are kept for Undo."""
    before = session.marks.get(session.frame_index, ())
    if marks != before:
        session.history.setdefault(session.frame_index, []).append(before)
    return update_marks(session, marks, pending)


def undo_edit(session: Session) -> Session:
    """Undo on the frame on screen: a box's first corner waiting for its second first, else the last edit (a Clear
    too)."""
    marks = session.marks.get(session.frame_index, ())
    history = session.history.get(session.frame_index)
    if session.pending is None and history:
        marks = history.pop()
    return update_marks(session, marks, None)


def update_marks(session: Session, marks: tuple[annotate.Mark, ...], pending: annotate.BoxStart | None) -> Session:
    """Store the marks of the frame on screen and recompute its label map (a frame without marks drops out)."""
    index = session.frame_index
    session.pending = pending
    if marks:
        session.marks[index] = marks
        session.labels[index] = annotate.labels_from_marks(session.frame, marks)
    else:
        session.marks.pop(index, None)
        session.labels.pop(index, None)
    return session


def corner_dropped(session: Session, index: int) -> str:
    """What the marks summary adds when a move to frame `index` drops a box's first corner set on another frame."""
    if session.pending is None or index == session.frame_index:
        return ""
    return (f" The box corner set on frame {session.frame_index} was dropped: a box's two corners go on one frame "
            "(or drag the box).")


MARKS_CHANGED = " The marks were changed during the run, which tracked them as they were: Run again to use them."


def same_annotations(first: dict[int, np.ndarray], second: dict[int, np.ndarray]) -> bool:
    """Whether two `annotations_of` results are alike, frame for frame and pixel for pixel."""
    return first.keys() == second.keys() and all(np.array_equal(first[i], second[i]) for i in first)


def annotations_of(session: Session) -> dict[int, np.ndarray]:
    """The non-empty label maps by frame index, ready for the tracker."""
    return {index: labels for index, labels in session.labels.items() if labels.any()}


def marks_summary(session: Session) -> str:
    """One line listing the annotated frames and their objects, and whether a box waits for its second corner."""
    corner = " Box corner set: click the opposite corner." if session.pending else ""
    if not session.marks:
        return "No objects marked yet: click on an object in the frame." + corner
    parts = []
    for index, marks in sorted(session.marks.items()):
        marked = annotate.annotated_ids(marks)
        labels = session.labels.get(index)
        empty = [str(i) for i in marked if labels is None or not (labels == i).any()]
        note = f" ({', '.join(empty)} covers no pixels: click on it again)" if empty else ""
        parts.append(f"frame {index}: objects {', '.join(map(str, marked))}{note}")
    return "Marked — " + "; ".join(parts) + "." + corner


NO_PIXELS = ("The marks cover no pixels (a box with no area, everything erased, or only negative clicks): click on "
             "the object (or draw a box around it) before previewing or running.")
NO_OBJECT = "No object is marked: click on an object (or draw a box) before previewing or running."


def run_problem(session: Session, chosen: list[str]) -> str | None:
    """Why a preview or run cannot start (no clip, no object marked, no output chosen), or None."""
    if session.video is None:
        return "Upload a clip (or pick the example) first."
    if not annotations_of(session):
        return NO_PIXELS if session.marks else NO_OBJECT
    if not chosen:
        return "Choose at least one output to produce."
    return None


def run_status_after_edit(shown: str, session: Session):
    """The run status line after an edit of the marks: a complaint about the marks (`NO_PIXELS`, `NO_OBJECT`) goes
    once they mark an object; anything else stays (skipped, not rewritten: a run may be writing it)."""
    return "" if shown in (NO_PIXELS, NO_OBJECT) and annotations_of(session) else gr.skip()


def legend_html() -> str:
    """Colour swatches of the object ids, so the user can tell the objects apart."""
    swatches = []
    for object_id in range(1, MAX_OBJECTS + 1):
        r, g, b = annotate.object_colour(object_id)
        swatches.append(f'<span style="display:inline-block;margin-right:10px"><span style="display:inline-block;'
                        f'width:12px;height:12px;background:rgb({r},{g},{b});border-radius:2px"></span> '
                        f"{object_id}</span>")
    return "<div>" + "".join(swatches) + "</div>"


def build_app(config: AppConfig, workspace: Workspace | None = None) -> gr.Blocks:
    """The Gradio Blocks of the app, wired to `config`; call `.launch` (or `serve`) to start it."""
    workspace = workspace or Workspace()
    hidden = "undocumented"

    def load_clip(path: str | None, request: gr.Request, progress=gr.Progress()):
        clip = workspace.new_clip(request)

        def counting(done: int, expected: int | None) -> None:
            progress((done, max(expected, done) if expected else None), desc="Counting frames", unit="frames")

        session, status = loaded_clip(path, config.max_seconds, counting)
        session.clip = clip
        return clip_view(session, status)

    def load_example(request: gr.Request, progress=gr.Progress()):
        return *load_clip(str(EXAMPLE_CLIP), request, progress), None  # the upload box no longer names another clip

    def reset(request: gr.Request):
        return clip_view(Session(clip=workspace.new_clip(request)), START)

    def seek(value: float | None, session: Session):
        if session.video is None:
            raise refusal("Upload a clip first.")
        index = scrubbed_frame(value, session.frames)
        if index is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            session.frame = read_frame(session.video, index)
        except VideoError as error:
            raise user_error(error) from None
        dropped = corner_dropped(session, index)
        if index != session.frame_index:
            session.frame_index, session.pending = index, None
        typed_past_an_end = index != value  # the number box then shows the end frame too
        return (framed_view(session), marks_summary(session) + dropped, session,
                index if typed_past_an_end else gr.skip())

    def edited(session: Session, shown: str):
        return annotated_view(session), marks_summary(session), session, run_status_after_edit(shown, session)

    def clicked(mode: str, object_id: float, brush: float, session: Session, shown: str, point: tuple[int, int]):
        marks, pending = annotate.add_click(session.marks.get(session.frame_index, ()), session.pending,
                                            MODES[mode], int(object_id), *point, int(brush))
        return edited(edit_marks(session, marks, pending), shown)

    def click(mode: str, object_id: float, brush: float, session: Session, shown: str, event: gr.SelectData):
        if session.frame is None:
            raise refusal("Upload a clip (or pick the example) before marking objects.")
        return clicked(mode, object_id, brush, session, shown, frame_point(tuple(event.index), session.frame.shape[:2]))

    def drag(mode: str, object_id: float, brush: float, session: Session, shown: str, path: str):
        gesture = page_gesture(path, session.frame.shape[:2]) if session.frame is not None else None
        if gesture is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        points, is_click = gesture
        if is_click:
            return clicked(mode, object_id, brush, session, shown, points[-1])
        marks = annotate.add_drag(session.marks.get(session.frame_index, ()), MODES[mode], int(object_id), points,
                                  int(brush))
        return edited(edit_marks(session, marks, None), shown)

    def undo(session: Session, shown: str):
        return edited(undo_edit(session), shown)

    def clear_object(object_id: float, session: Session, shown: str):
        marks = annotate.clear(session.marks.get(session.frame_index, ()), int(object_id))
        return edited(edit_marks(session, marks, None), shown)

    def clear_frame(session: Session, shown: str):
        return edited(edit_marks(session, (), None), shown)

    def preview(refine: bool, session: Session, shown: str, request: gr.Request, progress=gr.Progress()):
        problem = run_problem(session, [OUTPUTS["overlay"][1]])
        if problem:
            return gr.skip(), problem
        annotations = annotations_of(session)
        stop = workspace.stop_flag(request)

        def tick(done: int) -> None:
            if workspace.replaced(session, request):
                raise ClipReplaced
            if stop.is_set():
                raise PreviewCancelled
            progress((done, config.preview_frames), desc="Preview", unit="frames")

        try:
            overlays = preview_overlays(session.video, annotations, config.preview_frames, config.tracker, tick,
                                        refine)
            if workspace.replaced(session, request):  # a new clip came as the last frame was tracked
                raise ClipReplaced
        except ClipReplaced:  # the new clip's view stands
            return gr.skip(), gr.skip()
        except PreviewCancelled:
            return gr.skip(), "Preview cancelled."
        except (VideoError, MaskError) as error:
            return gr.skip(), gr.skip() if workspace.replaced(session, request) else literal(user_message(error))
        first = min(annotations)
        ready = gr.skip() if shown.startswith(DONE) else "Preview ready."  # a run's outcome (and warning) stays
        return [(image, f"frame {first + i}") for i, image in enumerate(overlays)], ready

    def run(chosen: list[str], colour: str, blur: float, feather: float, edge_shift: float, refine: bool,
            session: Session, request: gr.Request, progress=gr.Progress()):
        problem = run_problem(session, chosen)
        if problem:
            yield problem, *[gr.skip()] * 3, session
            return
        outputs = tuple(name for name in OUTPUTS if OUTPUTS[name][1] in chosen)
        settings = RunSettings(outputs=outputs, background=_parse_colour(colour), blur_strength=_odd(blur),
                               edges=effects.EdgeSettings(feather=feather, shift=edge_shift),
                               tracker=config.tracker, refine=refine)
        results: dict = {}
        done, warning, cancelled = 0, None, False
        stop = workspace.stop_flag(request)
        tracked = annotations_of(session)
        try:
            with closing(run_outputs(session.video, tracked, workspace.folder(request), settings,
                                     results)) as steps:
                for step in steps:
                    cancelled = workspace.replaced(session, request) or stop.is_set()
                    if cancelled:  # Cancel or a new clip: closing the run leaves none of its files
                        break
                    finishing = step.done == done > 0 and step.warning is None  # the frames' count again
                    done, warning = step.done, step.warning
                    total = step.total or session.frames
                    progress((step.done, total), desc="Finishing" if finishing else "Tracking", unit="frames")
                    yield finishing_line(outputs) if finishing else f"Tracking… frame {step.done} of {total}", \
                        *[gr.skip()] * 4
        except (VideoError, MaskError) as error:
            yield (gr.skip(),) * 5 if workspace.replaced(session, request) else (
                literal(user_message(error)), *[gr.skip()] * 3, session)
            return
        if workspace.replaced(session, request):  # a new clip came, perhaps as the last outputs were finished: its
            yield (gr.skip(),) * 5                # view stands (a last output of skips: Gradio shows the last again)
            return
        if cancelled:
            yield cancel_message(session), *[gr.skip()] * 4
            return
        session.results = named_after_clip(results, session.video)
        shown = [OUTPUTS[name][1] for name in VIDEO_OUTPUTS if name in results]
        status = f"{DONE} {counted(len(results), 'output')} for {counted(done, 'frame')}."
        status += f" Warning: {literal(user_message(warning))}." if warning else ""
        status += "" if same_annotations(tracked, annotations_of(session)) else MARKS_CHANGED
        yield (status, show_output(shown[0] if shown else None, session),
               gr.Dropdown(choices=shown, value=shown[0] if shown else None), list(session.results.values()),
               session)

    def show_output(label: str | None, session: Session):
        name = next((name for name, (_, text) in OUTPUTS.items() if text == label), None)
        return session.results.get(name) if name else None

    def segment(video: str | None, mask: str | None, output: str, frame: float, request: gr.Request) -> str:
        """Track `video` from the annotation `mask` (a palette PNG of frame `frame`) and return one output."""
        if not video or not mask:
            raise refusal("Send both a video file and an annotation mask image.")
        if output not in OUTPUTS:
            raise refusal(f"Unknown output {output!r}; choose one of {', '.join(OUTPUTS)}.")
        index = frame or 0
        if index < 0 or index != int(index):
            raise refusal(f"frame is the annotated frame's index, a whole number from 0, not {frame:g}.")
        try:
            info = probe_clip(video, config.max_seconds)
            labels = read_annotation(mask, (info.height, info.width))  # its own name in its errors: the file to fix
            results: dict = {}
            settings = RunSettings(outputs=(output,), tracker=config.tracker)
            for _ in run_outputs(video, {int(index): labels}, workspace.folder(request), settings, results):
                pass
        except (VideoError, MaskError) as error:
            raise user_error(error) from None
        return named_after_clip(results, video)[output]

    with gr.Blocks(title="MobileVOS", analytics_enabled=False, delete_cache=(1800, FILE_LIFETIME_S)) as app:
        session = gr.State(Session())
        gr.Markdown("# MobileVOS\nMark an object on one frame; MobileVOS follows it through the clip.")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                limits = f"up to {config.max_upload_mb} MB and {config.max_seconds:g} s"
                upload = gr.File(label=f"1. Upload a clip ({limits})", elem_id="upload",
                                 file_types=list(VIDEO_SUFFIXES))
                example = gr.Button("…or use the bundled example (judo)", size="sm", elem_id="example",
                                    visible=EXAMPLE_CLIP.is_dir())
                status = gr.Markdown(START, elem_id="status")
                mode = gr.Radio(list(MODES), value="Positive click", label="2. Click mode", elem_id="mode",
                                info="Click on the object to mark it. Box: drag across the object (or click two "
                                     "opposite corners). Brush: drag to paint (a click paints one dot).")
                object_id = gr.Radio(list(range(1, MAX_OBJECTS + 1)), value=1, label="Object", elem_id="object")
                gr.HTML(legend_html())
                brush = gr.Slider(2, 60, value=12, step=1, label="Brush radius (pixels)")
                with gr.Row():
                    undo_button = gr.Button("Undo", size="sm", elem_id="undo")
                    clear_object_button = gr.Button("Clear object", size="sm")
                    clear_frame_button = gr.Button("Clear frame", size="sm")
                summary = gr.Markdown(marks_summary(Session()), elem_id="summary")
            with gr.Column(scale=2):
                frame_view = gr.Image(label=frame_label(0), interactive=False, type="numpy",
                                      format="png", elem_id="frame", buttons=[], height=420)
                frame_slider = gr.Slider(0, 1, value=0, step=1, label="Frame (scrub to annotate any frame)",
                                         interactive=False, elem_id="scrub")
                drag_path = gr.Textbox(visible="hidden", elem_id="drag")  # set by drag.js; its "change" event
                # comes (a new value each drag or click sent), Gradio's "input" not
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                preview_button = gr.Button("3. Preview a few frames", elem_id="preview")
                chosen = gr.CheckboxGroup([text for _, text in OUTPUTS.values()],
                                          value=[OUTPUTS["overlay"][1], OUTPUTS["cutout"][1],
                                                 OUTPUTS["masks_zip"][1], OUTPUTS["first_mask"][1]],
                                          label="4. Outputs", elem_id="outputs")
                colour = gr.ColorPicker("#00b140", label="Replacement background colour")
                blur = gr.Slider(3, 99, value=31, step=2, label="Background blur strength")
                with gr.Row():
                    feather = gr.Slider(0, 10, value=effects.EdgeSettings.feather, step=0.5,
                                        label="Edge feather (px at 480p)", elem_id="feather")
                    edge_shift = gr.Slider(-10, 10, value=0, step=1, label="Edge shift (px at 480p; + grows)",
                                           elem_id="edge-shift")
                refine = gr.Checkbox(True, label="Sharper masks: each tracked mask redrawn by the annotation "
                                                 "network (about half the speed)", elem_id="refine")
                with gr.Row():
                    run_button = gr.Button("Run", variant="primary", elem_id="run")
                    cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel", interactive=False)
                run_status = gr.Markdown("", elem_id="run-status")
            with gr.Column(scale=2):
                gallery = gr.Gallery(label="Preview (overlay)", columns=4, height=220, elem_id="gallery")
                view = gr.Dropdown([], label="Show output", elem_id="view")
                player = gr.Video(label="Result", interactive=False, elem_id="player")
                files = gr.File(label="Download", file_count="multiple", interactive=False, elem_id="files")
        with gr.Row(visible=False):
            # labelled: the API page and gradio_client's view_api name the parameters after them
            api_video, api_mask = gr.File(label="video"), gr.File(label="mask")
            api_output = gr.Dropdown(list(OUTPUTS), value="overlay", allow_custom_value=True,  # `segment` refuses
                                     label="output")
            api_frame = gr.Number(0, label="frame")  # no precision: Gradio would round 2.5 to 2 unsaid
            api_result = gr.File(label="result")
            api_button = gr.Button()

        annotate_outputs = [frame_view, summary, session]
        # `input` comes with every change the user makes (drag, click, arrow keys, the number box), unlike
        # `release` (pointer up, leaving the box); "always_last" runs one decode at a time and then the latest
        # position, not every tick of a drag. Unpreprocessed: `seek` keeps a typed number inside the clip, and an
        # emptied box (None) is no error.
        frame_slider.input(seek, [frame_slider, session], [*annotate_outputs, frame_slider], api_visibility=hidden,
                           trigger_mode="always_last", preprocess=False)
        # Every click counts (trigger_mode "multiple"); one annotation edit at a time keeps the marks consistent. The
        # pending edit shows as a timer in a corner ("minimal"): the full overlay would take the next click or drag.
        edits = dict(api_visibility=hidden, concurrency_id="annotate", concurrency_limit=1, trigger_mode="multiple",
                     show_progress="minimal")
        # An edit also clears the run status line's complaint about the marks once they mark an object.
        edit_outputs = [*annotate_outputs, run_status]
        frame_view.select(click, [mode, object_id, brush, session, run_status], edit_outputs, **edits)
        drag_path.change(drag, [mode, object_id, brush, session, run_status, drag_path], edit_outputs, **edits)
        undo_button.click(undo, [session, run_status], edit_outputs, **edits)
        clear_object_button.click(clear_object, [object_id, session, run_status], edit_outputs, **edits)
        clear_frame_button.click(clear_frame, [session, run_status], edit_outputs, **edits)
        # Cancel can be pressed only while a run or a preview is queued or going: on with Run or Preview (unqueued,
        # and set up before the run's own listener: the page answers a button's listeners in that order), off when
        # pressed, when the session's last run ends (`Workspace.run_ended`: a run cancelled just before another was
        # started ends after that one turned Cancel on), or when a new clip stops it. It asks the run to stop
        # between two frames (the run then says so itself): Gradio's own cancelling marks the run's outputs "Error".
        cancel_off = dict(fn=lambda: gr.Button(interactive=False), inputs=None, outputs=cancel_button,
                          api_visibility=hidden, queue=False)

        def start_run(request: gr.Request):
            workspace.stop_flag(request).clear()
            workspace.run_started(request)
            return gr.Button(interactive=True)

        def stop_run(request: gr.Request):
            workspace.stop_flag(request).set()
            return gr.Button(interactive=False)

        def run_ended(request: gr.Request):
            return gr.Button(interactive=workspace.run_ended(request) > 0)

        run_button.click(start_run, None, cancel_button, api_visibility=hidden, queue=False)
        run_event = run_button.click(run, [chosen, colour, blur, feather, edge_shift, refine, session],
                                     [run_status, player, view, files, session], api_visibility=hidden,
                                     concurrency_id="tracking", concurrency_limit=1)
        run_event.then(run_ended, None, cancel_button, api_visibility=hidden, queue=False)
        preview_button.click(start_run, None, cancel_button, api_visibility=hidden, queue=False)  # as Run's
        preview_event = preview_button.click(preview, [refine, session, run_status], [gallery, run_status],
                                             api_visibility=hidden, concurrency_id="tracking", concurrency_limit=1)
        preview_event.then(run_ended, None, cancel_button, api_visibility=hidden, queue=False)
        # A new clip, or none, replaces the old one's view, marks and results; the old one's preview or run stops
        # at its next frame, without a word (`Workspace.replaced`).
        clip_outputs = [frame_view, frame_slider, status, summary, session, gallery, run_status, player, view, files]
        upload.upload(load_clip, [upload], clip_outputs, api_visibility=hidden).then(**cancel_off)
        upload.clear(reset, None, clip_outputs, api_visibility=hidden).then(**cancel_off)
        example.click(load_example, None, [*clip_outputs, upload], api_visibility=hidden).then(**cancel_off)
        cancel_button.click(stop_run, None, cancel_button, api_visibility=hidden, queue=False)
        view.change(show_output, [view, session], [player], api_visibility=hidden)
        api_button.click(segment, [api_video, api_mask, api_output, api_frame], [api_result], api_name="segment",
                         concurrency_id="tracking", concurrency_limit=1)
        app.unload(workspace.release)
    app.queue(default_concurrency_limit=4, max_size=config.queue_size)
    return app


def serve(config: AppConfig, workspace: Workspace | None = None, block: bool = True) -> tuple[gr.Blocks, str]:
    """Build and launch the app on config.host:config.port → (app, local URL), once its page answers
    (`wait_until_answering`); `block=True` then serves until Ctrl-C. Gradio's own check of the page (`_frontend`)
    gives it 3 s, which a busy machine overruns: the launch then failed, saying localhost was not accessible."""
    app = build_app(config, workspace)
    _, url, _ = app.launch(server_name=config.host, server_port=config.port, max_file_size=f"{config.max_upload_mb}mb",
                           theme=_THEME, css=_CSS, head=_HEAD, ssr_mode=False, share=False, show_error=True,
                           quiet=not block, prevent_thread_lock=True, footer_links=["api"], mcp_server=False,
                           _frontend=False)
    try:
        wait_until_answering(url, ANSWER_WAIT_S)
    except BaseException:  # unreachable, or Ctrl-C while waiting: the server closes
        app.close()
        raise
    if block:
        app.block_thread()
    return app, url


class AppUnreachable(RuntimeError):
    """The server started but its page does not answer at its own address (a proxy in the way, say)."""


def wait_until_answering(url: str, wait_s: float) -> None:
    """Return once `url` answers a request (any HTTP status); AppUnreachable when it has not within `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            httpx.head(url, timeout=max(0.1, deadline - time.monotonic()), trust_env=False)  # no proxy: it is here
            return
        except httpx.HTTPError as error:
            if time.monotonic() >= deadline:
                raise AppUnreachable(f"the app started but {url} does not answer ({type(error).__name__}): a proxy in "
                                     "the way? set NO_PROXY=localhost,127.0.0.1 and start it again") from None
            time.sleep(0.2)


def parse_args(argv: list[str] | None = None) -> AppConfig:
    """The command line → AppConfig."""
    parser = ToolParser(prog="python -m web.app", description=tool_description(__doc__))
    parser.add_argument("--host", default="127.0.0.1", help="listen address (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=port_number, default=7860, help="listen port")
    parser.add_argument("--max-upload-mb", type=whole_number(1), default=200, help="largest accepted upload, in MB")
    parser.add_argument("--max-seconds", type=bounded(1), default=120.0, help="longest accepted clip, in seconds")
    parser.add_argument("--preview-frames", type=whole_number(1), default=8, help="frames tracked by Preview")
    parser.add_argument("--queue-size", type=whole_number(1), default=16,
                        help="jobs waiting at most before new ones are refused")
    add_tracker_arguments(parser, backend="auto", adapt=False)
    args = parser.parse_args(argv)
    return AppConfig(host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds,
                     preview_frames=args.preview_frames, queue_size=args.queue_size, tracker=tracker_config(args))


def main(argv: list[str] | None = None) -> None:
    """`python -m web.app`: serve until stopped; a port already taken ends in one line."""
    ctrl_c_interrupts()
    config = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` or a container's stop closes the app as Ctrl-C does
    try:
        serve(config)
    except OSError:
        raise SystemExit(f"error: cannot listen on {config.host}:{config.port}: the port is taken or the address is "
                         "not this machine's; pass a free --port, or a --host this machine has") from None
    except AppUnreachable as error:
        raise SystemExit(f"error: {error}") from None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before the page answered
        print("interrupted: stopped while starting", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: Gradio then closes the server and returns, and the session folders are removed at exit
    (a process ended by the signal itself would skip the clean-up)."""
    raise KeyboardInterrupt


def _parse_colour(text: str) -> tuple[int, int, int]:
    """'#rrggbb' (or 'rgb(r, g, b)' / 'rgba(...)' as some browsers send) → an RGB tuple."""
    text = text.strip()
    try:
        if text.startswith("#") and len(text) == 7:
            channels = [int(text[start : start + 2], 16) for start in (1, 3, 5)]
        elif text.startswith("rgb"):
            channels = [round(float(v)) for v in text[text.index("(") + 1 : text.index(")")].split(",")[:3]]
        else:
            channels = []
    except ValueError:  # not hex digits or numbers, or no parentheses
        channels = []
    if len(channels) != 3 or not all(0 <= c <= 255 for c in channels):
        raise refusal(f"Cannot read the colour {text!r}; pick it again with the colour picker.")
    return channels[0], channels[1], channels[2]


def _odd(value: float) -> int:
    """A blur kernel size: the nearest odd integer ≥ 3."""
    return max(3, int(value) | 1)


def _safe_name(text: str, empty: str = "anonymous") -> str:
    """`text` (a session hash, a clip's name) made safe in a file name: each run of characters other than letters
    (of any script), digits, '-' and '_' becomes one '_' ("my clip – été #1" → "my_clip_été_1"); `empty` when
    nothing is left."""
    return re.sub(r"[^\w-]+", "_", text).strip("_")[:64] or empty


if __name__ == "__main__":
    main()
