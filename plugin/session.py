"""The live loop of the OBS plugin: grab the newest frame, track, show the mask; survive OBS going away.

`LiveSession` talks to OBS only through the small `Stage` interface (`plugin.stage.ObsStage` is the real one),
so the loop logic is testable without OBS. Capture is pipelined with tracking: while one frame is tracked and
shown, `FramePump` has the next screenshot in flight on its own thread and connection, when that is the
faster way on this machine (it measures). There is never a queue:
at most one frame waits, frames OBS rendered meanwhile are never requested, and a frame that waited too long
(after a pause) is dropped for a fresh one. The latency is one capture + one tracker step + one mask update.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from core.effects import blur_background
from core.io.masks import MaskError, object_ids, read_mask, resize_labels
from plugin.stage import AuthFailed, NoFrame, ObsUnavailable, RigRemoved, SourceMissing, StageError

MODES = ("mask", "blur", "hide")  # keep the objects / blur the background / hide the objects (inverse mask)
UNUSABLE = "kept the current mask; the new annotation is unusable: {}"  # an unusable re-annotation's answer
PING_WAIT_S = 5.0  # how long a starting plugin waits for a plugin already on its source to answer (a loaded
                  # machine's plugin answers with its next frame)
ASPECT_TOLERANCE = 0.03  # a mask whose width/height differs more (relatively) from the source's is for another one


class Stage(Protocol):
    """What the loop needs from OBS."""

    source: str

    def connect(self) -> None: ...
    def disconnect(self) -> None: ...
    def setup(self) -> object: ...
    def restore(self) -> None: ...
    def grab(self) -> np.ndarray: ...
    def show(self, alpha: np.ndarray, background: np.ndarray | None = None) -> None: ...
    def pending_events(self) -> list[dict]: ...
    def broadcast(self, data: dict) -> None: ...
    def rig_in_obs(self) -> bool: ...


class TrackerLike(Protocol):
    def step(self, frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray: ...
    def reset(self) -> None: ...


@dataclass(frozen=True)
class Annotation:
    """The user's first (or new) annotation: a mask file, or a box in the source's own pixels."""

    mask_path: Path | None = None
    box: tuple[int, int, int, int] | None = None  # x, y, w, h
    request: str | None = None  # the id an annotate event came with: its sender waits for the answer to it

    def labels(self, frame: np.ndarray, source_size: tuple[int, int] | None) -> np.ndarray:
        """The annotation as an (h, w) uint8 label map for `frame` (h, w, 3)."""
        height, width = frame.shape[:2]
        if self.mask_path is not None:
            return resize_labels(self.mask_labels(self.mask_path, source_size or (width, height)), (height, width))
        if self.box is None:
            raise MaskError("no annotation: pass --mask FILE or --box x,y,w,h")
        return box_labels(frame, self.box, source_size or (width, height))

    @staticmethod
    def mask_labels(path: Path, source_size: tuple[int, int]) -> np.ndarray:
        """The labels of the mask file at `path`, as drawn; MaskError when it is unreadable or of another shape
        than a source of `source_size` (w, h)."""
        labels = read_mask(path)
        check_aspect(labels, source_size, path)
        return labels

    def describe(self) -> str:
        """How the plugin's lines name this annotation: its mask file, or `--box x,y,w,h`."""
        return str(self.mask_path) if self.mask_path is not None else "--box " + ",".join(map(str, self.box or ()))

    def event(self, source: str) -> dict:
        """The CustomEvent that sends this annotation to the plugin running on `source` (read by `from_event`)."""
        data = {"mobilevos": "annotate", "source": source}
        data |= {"mask": str(self.mask_path)} if self.mask_path is not None else {"box": list(self.box or ())}
        return data | ({"id": self.request} if self.request is not None else {})

    @staticmethod
    def from_event(data: dict) -> "Annotation | None":
        """A CustomEvent {"mobilevos": "annotate", "mask": PATH} or {..., "box": [x, y, w, h]}, optionally with
        an "id" to answer, → Annotation (None for other events); MaskError for an annotate event without a usable
        mask or box."""
        if data.get("mobilevos") != "annotate":
            return None
        if data.get("mask"):
            return Annotation(mask_path=Path(str(data["mask"])), request=event_request(data))
        box = data.get("box")
        try:
            x, y, w, h = (int(float(v)) for v in box)
        except (TypeError, ValueError):
            raise MaskError(f"annotation event {data}: give \"mask\": PATH or \"box\": [x, y, w, h]") from None
        return Annotation(box=(x, y, w, h), request=event_request(data))


def event_request(data: dict) -> str | None:
    """The id an annotate CustomEvent's sender gave it to be answered (None: the sender waits for no answer)."""
    request = data.get("id")
    return None if request is None else str(request)


@dataclass(frozen=True)
class Answer:
    """A running plugin's answer to an annotate event that came with an id: what became of the annotation."""

    request: str   # the annotate event's id
    source: str    # the source the plugin runs on
    outcome: str   # taken, waiting (for the source's next picture), unusable or ignored
    message: str   # the line the plugin printed about it, e.g. "re-annotated from new.png at frame 42"
    frame: int     # the frame it was taken (or turned down) at

    def event(self) -> dict:
        """The CustomEvent the plugin broadcasts with this answer (read by `from_event`)."""
        return {"mobilevos": "answer", "id": self.request, "source": self.source, "outcome": self.outcome,
                "message": self.message, "frame": self.frame}

    @staticmethod
    def from_event(data: dict, request: str) -> "Answer | None":
        """The answer in CustomEvent `data` when it answers the annotate event with id `request`, else None."""
        if data.get("mobilevos") != "answer" or data.get("id") != request:
            return None
        return Answer(request, str(data.get("source")), str(data.get("outcome")), str(data.get("message")),
                      int(data.get("frame") or 0))


def check_aspect(labels: np.ndarray, source_size: tuple[int, int], path: Path) -> None:
    """MaskError when the mask's shape is not the source's (`source_size` = (w, h)): OBS would stretch a mask
    drawn on another picture over this one."""
    height, width = labels.shape
    ratio, wanted = width / height, source_size[0] / source_size[1]
    if abs(ratio - wanted) > ASPECT_TOLERANCE * wanted:
        raise MaskError(f"{path}: mask is {width}×{height} but the source is {source_size[0]}×{source_size[1]} "
                        "(another shape); draw the mask on a frame of this source, or pass --box x,y,w,h")


def check_labels(labels: np.ndarray, objects: tuple[int, ...], what: str) -> None:
    """MaskError when the annotation `what` marks no object, or lacks one of the chosen `objects` ids."""
    present = object_ids(labels)
    if not present:
        raise MaskError(f"{what}: the mask is empty (all background); mark at least one object")
    check_objects(present, objects, what)


def check_objects(present: list[int], objects: tuple[int, ...], what: str) -> None:
    """MaskError when one of the chosen `objects` ids is not among the annotation's `present` ids."""
    missing = sorted(set(objects) - set(present))
    if missing:
        raise MaskError(f"--objects {','.join(map(str, objects))}: {what} has no object {missing[0]}; its objects "
                        f"are {','.join(map(str, present))}")


def box_labels(frame: np.ndarray, box: tuple[int, int, int, int], source_size: tuple[int, int]) -> np.ndarray:
    """The annotation network's mask for `box` (x, y, w, h in source pixels) on `frame` → (h, w) labels with
    object 1.

    Uses `core.annotate`, the web face's annotation code, so a box gives the same mask in both faces.
    """
    height, width = frame.shape[:2]
    scale = width / source_size[0]
    x, y, w, h = box
    x0, y0 = max(0, round(x * scale)), max(0, round(y * scale))
    x1, y1 = min(width - 1, round((x + w) * scale)), min(height - 1, round((y + h) * scale))
    if x1 <= x0 or y1 <= y0:
        raise MaskError(f"--box {x},{y},{w},{h}: the box is empty or outside the {source_size[0]}×{source_size[1]} "
                        "source; give x,y,w,h in the source's pixels")
    from core.annotate import Mark, labels_from_marks  # the annotation network (PyTorch): only for a box

    labels = labels_from_marks(frame, (Mark("box", 1, x0, y0, x1, y1),))
    if not labels.any():
        labels[y0:y1 + 1, x0:x1 + 1] = 1
    return labels


@dataclass
class SessionConfig:
    """What the loop does and for how long."""

    mode: str = "mask"
    objects: tuple[int, ...] = ()      # ids to act on; empty = every tracked object
    frames: int | None = None          # stop after this many tracked frames
    duration: float | None = None      # or after this many seconds
    blur: int = 31                     # blur kernel for mode "blur"
    retry_max_s: float = 10.0          # longest wait between reconnection attempts
    give_up_s: float | None = None     # stop when OBS stays away this long (None: keep trying)
    wait_for_source: bool = False      # at start, wait for a missing source instead of failing
    max_frame_age_s: float = 0.5       # a prefetched frame older than this is dropped for a fresh one
    no_picture_s: float = 20.0         # at start, stop when the source shows no picture this long (unless
                                       # wait_for_source): an audio-only source, a media source never played
    prefetch: bool | None = None       # screenshot the next frame while tracking (None: measure which is faster)


@dataclass
class FrameResult:
    """One tracked frame, for callers that inspect the run (tests, the benchmark)."""

    index: int
    frame: np.ndarray     # (h, w, 3) RGB as OBS sent it
    labels: np.ndarray    # (h, w) uint8
    alpha: np.ndarray     # (h, w) uint8 shown to OBS (255 = visible)
    capture_s: float      # screenshot request → frame decoded
    wait_s: float         # frame decoded → tracking began (the previous frame was still being tracked)
    track_s: float
    show_s: float

    @property
    def latency_s(self) -> float:
        """Capture request → OBS acknowledged the new mask (OBS shows it on its next rendered frame)."""
        return self.capture_s + self.wait_s + self.track_s + self.show_s


@dataclass(frozen=True)
class Captured:
    """A frame and when it was asked for and arrived (`time.perf_counter()`)."""

    frame: np.ndarray
    requested: float
    received: float


class FramePump:
    """Hands out the newest frame; with prefetching, the next screenshot is in flight while the current frame is
    tracked (at most one frame ahead).

    Whether prefetching pays depends on the machine. With OBS rendering in software on 2 cores, a screenshot taken
    while the tracker runs waits for the cores: 13 ms alone, 33-41 ms next to one or two busy cores (a 1280×720
    source captured at 427×240, measured), so for large sources capturing after tracking gives more frames per
    second, and always less latency. With `prefetch` None the pump measures both: it times the interval between
    frames over `TRIAL` frames of each way, after `WARMUP` frames and again every `RETRIAL` frames, and
    otherwise runs the way whose median interval was shorter."""

    WARMUP = 5
    TRIAL = 20
    RETRIAL = 600

    def __init__(self, grab: Callable[[], np.ndarray], max_age_s: float, prefetch: bool | None = None):
        self.grab = grab
        self.max_age_s = max_age_s
        self.fixed = prefetch
        self.prefetch = prefetch is not False
        self.intervals: dict[bool, deque] = {True: deque(maxlen=self.TRIAL), False: deque(maxlen=self.TRIAL)}
        self.frames = 0
        self.last: float | None = None
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="obs-frames")
        self.pending: Future | None = None

    def capture(self) -> Captured:
        requested = time.perf_counter()
        frame = self.grab()
        return Captured(frame, requested, time.perf_counter())

    def next(self) -> Captured:
        """The frame requested during the last step (a fresh one when none is in flight or it is older than
        `max_age_s`), and, when prefetching, the request for the following one. Raises what the grab raised; such
        a step is no frame (`record` counts only frames handed out, so failed grabs never skew the trial)."""
        now = time.perf_counter()
        pending, self.pending = self.pending, None
        captured = pending.result() if pending is not None else None
        if captured is None or time.perf_counter() - captured.received > self.max_age_s:
            captured = self.capture()
        self.record(now)
        if self.prefetch:
            self.pending = self.executor.submit(self.capture)
        return captured

    def record(self, now: float) -> None:
        """Count a frame handed out at `now`: its interval from the last one goes to the current way's trial,
        and (measuring) the way for the next frame is chosen."""
        if self.last is not None and self.frames > self.WARMUP:
            self.intervals[self.prefetch].append(now - self.last)
        self.last = now
        self.frames += 1
        if self.fixed is None:
            self.prefetch = self.choose()

    def choose(self) -> bool:
        """Prefetch or not for the next frame: each way in turn during a trial, else the faster one."""
        phase = (self.frames - self.WARMUP - 1) % self.RETRIAL
        if self.frames <= self.WARMUP or phase < self.TRIAL:
            return True
        if phase < 2 * self.TRIAL:
            return False
        with_prefetch, without = (np.median(self.intervals[way]) for way in (True, False))
        return bool(with_prefetch < without)

    def drop(self, timeout_s: float = 30.0) -> None:
        """Forget the frame in flight, once its request has ended (or `timeout_s`): the rig is never changed
        and a connection never closed while OBS renders a screenshot for us (OBS 29 can crash then). The pause
        that follows is not counted as a frame interval."""
        if self.pending is not None and not self.pending.cancel():
            wait([self.pending], timeout=timeout_s)
        self.pending = None
        self.last = None

    def close(self) -> None:
        self.drop()
        self.executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class Stats:
    """Rolling FPS and latency over the last frames."""

    window: int = 30
    times: deque = field(default_factory=lambda: deque(maxlen=31))
    latencies: deque = field(default_factory=lambda: deque(maxlen=30))

    def add(self, result: FrameResult) -> None:
        self.times.append(time.perf_counter())
        self.latencies.append(result.latency_s)

    @property
    def fps(self) -> float:
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(1e-9, self.times[-1] - self.times[0])

    @property
    def latency_ms(self) -> float:
        return 1000.0 * float(np.mean(self.latencies)) if self.latencies else 0.0


def plugin_running(stage: Stage, stop: threading.Event | None = None) -> bool:
    """Whether a plugin runs on the stage's source: its rig is in OBS and it answers a ping within `PING_WAIT_S`
    (checked until then, or until `stop` is set). Custom events other than the answer are dropped meanwhile."""
    if not stage.rig_in_obs():
        return False
    request = secrets.token_hex(8)
    stage.broadcast({"mobilevos": "ping", "source": stage.source, "id": request})
    deadline, stop = time.monotonic() + PING_WAIT_S, stop or threading.Event()
    while not any(Answer.from_event(data, request) for data in stage.pending_events()):
        if time.monotonic() > deadline or stop.wait(0.05):
            return False
    return True


class LiveSession:
    """Keeps one OBS source's mask up to date from the tracker until stopped.

    `on_status` hears of changes of state (attached, waiting for OBS, the source or a picture); `on_note` (by
    default `on_status`) of what became of an annotation sent while tracking: taken, unusable or ignored. An
    annotate event that came with an id is also answered with an `Answer` event, once its frame is shown; while
    the source shows no picture, at once (`answer_while_waiting`)."""

    def __init__(self, stage: Stage, tracker: TrackerLike, annotation: Annotation, config: SessionConfig,
                 on_frame: Callable[[FrameResult], None] | None = None,
                 on_status: Callable[[str], None] | None = None,
                 on_note: Callable[[str], None] | None = None):
        if config.mode not in MODES:
            raise ValueError(f"--mode {config.mode}: choose one of {', '.join(MODES)}")
        self.stage = stage
        self.tracker = tracker
        self.annotation = annotation
        self.config = config
        self.on_frame = on_frame or (lambda result: None)
        self.on_status = on_status or (lambda message: None)
        self.on_note = on_note or self.on_status
        self.stats = Stats()
        self.stop_event = threading.Event()
        self.requested: Annotation | None = annotation
        self.answers: deque[Answer] = deque()  # answers to annotate events, sent once the frame is shown
        self.frames_done = 0
        self.source_size: tuple[int, int] | None = None
        self.pump = FramePump(stage.grab, config.max_frame_age_s, config.prefetch)
        self._rigged = False
        self.attached = False              # the rig was in OBS at some point (so the scene was changed and restored)
        self._no_picture_since: float | None = None  # when the source's picture went missing (None: it is there)
        self._source_away = False  # the source went from OBS and that was said (`source_away`)
        self._until = float("inf")  # the monotonic time `duration` ends at, once `run` starts
        self.ended_because: str | None = None  # why the run stopped itself before it was asked to (RigRemoved)

    def reannotate(self, annotation: Annotation | None = None) -> None:
        """Re-annotate on the next frame (with the first annotation again when none is given); an annotation
        sent before and not taken yet is ignored for it."""
        superseded = self.requested
        if superseded is not None and superseded.request is not None:
            self.answer(superseded.request, "ignored", "ignored: a newer annotation came before the next frame")
        self.requested = annotation or self.annotation

    def run(self) -> int:
        """Loop until `frames` / `duration` / `stop()`; always restores the scene. Returns frames tracked."""
        duration = self.config.duration
        self._until = time.monotonic() + duration if duration is not None else float("inf")
        try:
            while not self.stop_event.is_set() and not self.finished():
                self.step_guarded()
        finally:
            self.close()
        return self.frames_done

    def stop(self) -> None:
        self.stop_event.set()

    def finished(self) -> bool:
        frames = self.config.frames
        return (frames is not None and self.frames_done >= frames) or time.monotonic() >= self._until

    def step_guarded(self) -> None:
        """One step; OBS problems are reported and waited out (AuthFailed and bad annotations propagate); a rig
        the user took apart in OBS stops the run."""
        try:
            if not self._rigged:
                self.open()
            self.step()
        except ObsUnavailable as error:
            self.lost(error)
        except SourceMissing as error:
            if self.frames_done == 0 and not self.config.wait_for_source:
                raise
            self.source_away(error)
        except NoFrame as error:
            self.no_picture(error)
        except RigRemoved as error:
            self.on_status(str(error))
            self.ended_because = str(error)
            self.stop()

    def source_away(self, error: SourceMissing) -> None:
        """The source went from OBS (removed, or renamed and not followed): take the rig down, so the stream does
        not keep its last frame, say so once, and look again each second (`open` rebuilds the rig)."""
        if self._rigged:
            try:
                self.stage.restore()
            except StageError as failed:
                self.on_status(f"could not take the rig out of the scene: {failed}")
        self._rigged = False
        self.pump.drop()
        self.stage.disconnect()
        if not self._source_away:
            self._source_away = True
            self.on_status(f"{error} — waiting for it")
        self.stop_event.wait(1.0)

    def no_picture(self, error: NoFrame) -> None:
        """The source has no picture: report it once and wait for one. Before the first frame, without
        `wait_for_source`, give up after `no_picture_s` (StageError)."""
        now = time.monotonic()
        if self._no_picture_since is None:
            self._no_picture_since = now
            self.on_status(f"{error} — waiting for a picture")
        waited = now - self._no_picture_since
        if self.frames_done == 0 and not self.config.wait_for_source and waited >= self.config.no_picture_s:
            raise StageError(f"{error}; still none after {waited:.0f} s: pick a source that shows video (run --list), "
                             "start it in OBS, or pass --wait-for-source")
        self.pump.drop()
        if not self._rigged:
            self.stage.disconnect()
        else:
            self.answer_while_waiting()
        self.stop_event.wait(0.2)

    def answer_while_waiting(self) -> None:
        """Answer a re-annotation sent while the source shows no picture now, not with the next frame its sender
        may not wait for: a mask file no picture can make usable (unreadable, another shape than the source,
        lacking a chosen object) as unusable, anything else as waiting to be taken with the next picture. A
        broadcast that fails leaves the answer for later."""
        try:
            self.take_events()
            requested = self.requested
            if self.frames_done and requested is not None and requested.request is not None:
                problem = self.mask_file_problem(requested)
                if problem is not None:
                    self.answer(requested.request, "unusable", UNUSABLE.format(problem))
                    self.requested = None
                else:
                    self.answer(requested.request, "waiting", f"waiting for a picture: the source shows none; "
                                f"{requested.describe()} is taken with its next frame")
                    self.requested = replace(requested, request=None)
            self.send_answers()
        except StageError:
            pass

    def mask_file_problem(self, annotation: Annotation) -> MaskError | None:
        """Why `annotation`'s mask file is unusable on this source whatever its picture (None: no such reason, or
        no mask file)."""
        if annotation.mask_path is None or self.source_size is None:
            return None
        try:
            labels = annotation.mask_labels(annotation.mask_path, self.source_size)
            check_labels(labels, self.config.objects, annotation.describe())
        except MaskError as error:
            return error
        return None

    def open(self) -> None:
        """Connect (with back-off while OBS is away) and build the rig."""
        self.connect_with_backoff()
        self.refuse_a_second_plugin()
        placement = self.stage.setup()
        self.source_size = getattr(placement, "source_size", None)
        self._rigged = self.attached = True
        self._source_away = False
        self.on_status(f"attached to {self.stage.source!r}")

    def refuse_a_second_plugin(self) -> None:
        """StageError when another plugin already runs on this source (`plugin_running`); a rig a killed run left
        answers nothing, and is adopted."""
        if not self.frames_done and plugin_running(self.stage, self.stop_event):
            raise StageError(f"a MobileVOS plugin already runs on source {self.stage.source!r}: stop it first (Ctrl-C "
                             "in its terminal, or Stop in the OBS panel), or send it a new annotation with --annotate")

    def connect_with_backoff(self) -> None:
        """Connect, retrying with a growing delay while OBS is away, until connected, stopped, `give_up_s` has
        passed or the run's `duration` is over (then ObsUnavailable). Each new reason OBS is away is said once,
        not at every retry, and so is its coming back."""
        delay, since, said = 0.5, time.monotonic(), ""
        while not self.stop_event.is_set() and time.monotonic() < self._until:
            try:
                self.stage.connect()
                if said:
                    self.on_status(f"OBS answers again after {time.monotonic() - since:.0f} s")
                return
            except ObsUnavailable as error:
                waited = time.monotonic() - since
                if self.config.give_up_s is not None and waited >= self.config.give_up_s:
                    raise
                if str(error) != said:
                    said = str(error)
                    self.on_status(f"{error} — retrying until it answers (every {self.config.retry_max_s:g} s "
                                   "at most; Ctrl-C stops)")
                self.stop_event.wait(min(delay, max(0.0, self._until - time.monotonic())))
                delay = min(self.config.retry_max_s, delay * 2)
        raise ObsUnavailable("stopped while waiting for OBS")

    def lost(self, error: StageError) -> None:
        """The connection dropped: forget it; the next step reconnects and rebuilds the rig (unless stopping)."""
        if not (self.stop_event.is_set() or self.finished()):
            self.on_status(f"{error} — reconnecting")
        self.pump.drop()
        self.stage.disconnect()
        self._rigged = False

    def step(self) -> FrameResult:
        """Take the prefetched frame (and request the next) → (annotate) → track → show, timing each stage."""
        self.take_events()
        captured = self.pump.next()
        frame = captured.frame  # (h, w, 3)
        t1 = time.perf_counter()
        mask = self.requested_labels(frame) if self.requested is not None else None
        labels = self.tracker.step(frame, mask)  # (h, w)
        alpha = self.alpha(labels)
        background = blur_background(frame, labels, self.config.blur) if self.config.mode == "blur" else None
        t2 = time.perf_counter()
        self.stage.show(alpha, background)
        t3 = time.perf_counter()
        self.send_answers()
        result = FrameResult(self.frames_done, frame, labels, alpha, captured.received - captured.requested,
                             t1 - captured.received, t2 - t1, t3 - t2)
        self.frames_done += 1
        self._no_picture_since = None
        self.stats.add(result)
        self.on_frame(result)
        return result

    def take_events(self) -> None:
        """Re-annotate from the annotate events for this source (a malformed one is reported and ignored); answer
        a plugin starting on it that it runs here (`refuse_a_second_plugin`)."""
        for data in self.stage.pending_events():
            if data.get("source") not in (None, self.stage.source):
                continue
            if data.get("mobilevos") == "ping" and event_request(data) is not None:  # another plugin starting here
                self.answers.append(Answer(event_request(data), self.stage.source, "running",
                                           f"running, frame {self.frames_done}", self.frames_done))
                continue
            try:
                annotation = Annotation.from_event(data)
            except MaskError as error:
                self.answer(event_request(data), "ignored", f"ignored: {error}")
                continue
            if annotation is not None:
                self.reannotate(annotation)

    def answer(self, request: str | None, outcome: str, message: str) -> None:
        """Say what became of an annotation sent while tracking (`on_note`); when its sender gave an id, queue
        the answer for it (`send_answers`)."""
        self.on_note(message)
        if request is not None:
            self.answers.append(Answer(request, self.stage.source, outcome, message, self.frames_done))

    def send_answers(self) -> None:
        """Broadcast the queued answers; one whose broadcast fails (OBS went away) stays queued for the next
        frame."""
        while self.answers:
            self.stage.broadcast(self.answers[0].event())
            self.answers.popleft()

    def requested_labels(self, frame: np.ndarray) -> np.ndarray | None:
        """The requested annotation as labels for `frame`. A bad first annotation ends the run (MaskError); a bad
        re-annotation (a wrong file or box sent while tracking) is reported, and tracking goes on as before; a
        good one is reported taken."""
        requested, self.requested = self.requested, None
        what = requested.describe()
        try:
            labels = requested.labels(frame, self.source_size)
            check_labels(labels, self.config.objects, what)
        except MaskError as error:
            if self.frames_done == 0:
                raise
            self.answer(requested.request, "unusable", UNUSABLE.format(error))
            return None
        if self.frames_done:
            self.answer(requested.request, "taken", f"re-annotated from {what} at frame {self.frames_done}")
        return labels

    def alpha(self, labels: np.ndarray) -> np.ndarray:
        """(h, w) uint8 visibility for OBS: the objects (mask, blur) or everything but them (hide)."""
        chosen = np.isin(labels, self.config.objects) if self.config.objects else labels > 0
        if self.config.mode == "hide":
            chosen = ~chosen
        return np.where(chosen, np.uint8(255), np.uint8(0))

    def close(self) -> None:
        """Put the scene back as it was and disconnect (best effort when OBS is already gone)."""
        try:
            self.pump.close()
            if self._rigged:
                self.stage.restore()
        except StageError as error:
            self.on_status(f"could not restore the scene: {error}")
        finally:
            self._rigged = False
            self.stage.disconnect()


__all__ = ["Annotation", "Answer", "AuthFailed", "FrameResult", "LiveSession", "MODES", "SessionConfig", "Stage",
           "check_labels", "check_objects"]
