"""The frame loop, in stages that overlap: a decoding thread (which also makes the network's input), the key
encoder in a thread of its own, the rest of tracking at the network's resolution in the caller's thread, a
thread that brings each frame's result to full size (labels, redrawn by the annotation network when a refiner
is given, and the objects' probability for the matte), a soft-matte thread (when an output uses soft edges)
and one thread per output that renders and encodes its frames.

Stages are joined by queues of `depth` frames, so memory stays bounded whatever the video's length and a slow
output holds the others back instead of piling frames up. Each output takes every frame in order, so what it
writes is the same as a loop doing one frame at a time. The heavy work of every stage (PyAV's decoders and
encoders, OpenCV, ONNX Runtime or torch) releases the GIL, so the stages share the cores. A failure in any
stage stops the others and is raised in the caller; closing the generator early stops every stage and waits
for them before returning, so the caller may then abort its writers. A clip whose frames end before an annotated
one (its header listed more, or none) raises `ClipEndedEarly` once its frames are done.
"""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from core.annotate.refine import MaskRefiner
from core.effects import EdgeSettings, StableMatte
from core.effects.matting import work_shape
from core.inference.tracker import CoarseStep, Tracker
from core.io.masks import MaskError
from core.io.video import Frame, VideoReader
from core.pipeline.outputs import FrameSink, bind_run, is_large

_END = object()  # the last item through a queue
_POLL_SECONDS = 0.1  # how often a waiting stage looks whether another one failed
_FULL_HD_DEPTH = 4  # frames per queue up to 1080p: enough to smooth out the stages' uneven pace
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_FINISHING_POLL_S = 0.5  # how often `run_frames` yields while the outputs finish after the last frame
_LARGE_BLOCK = 16 * 2**20  # bytes: a 4K frame is 25 MB, a 1080p one 6 MB


class _Cancelled(Exception):
    """Raised inside a stage when another stage failed or the caller stopped the run."""


@dataclass(frozen=True)
class _Tracked:
    """A tracked frame on its way to the matte and the outputs."""

    frame: Frame
    labels: np.ndarray  # (H, W) uint8
    objects: np.ndarray | None  # (H, W) float32 probability of any object; None before the first annotation
    alpha: np.ndarray | None = None  # (H, W) float32 soft matte, once the matte stage drew it


class _Stages:
    """The threads of one run, their first failure, and the queues' polite put and get."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.error: BaseException | None = None
        self._ended: list[threading.Event] = []  # one per thread, set when its work has returned

    def start(self, name: str, work: Callable[[], None]) -> None:
        ended = threading.Event()

        def run() -> None:
            bind_run(self.stopped)
            try:
                work()
            except _Cancelled:
                pass
            except BaseException as error:  # handed to the caller's thread
                if self.error is None:
                    self.error = error
                self.stopped.set()
            finally:
                ended.set()

        self._ended.append(ended)
        threading.Thread(target=run, name=f"pipeline-{name}", daemon=True).start()

    def put(self, inbox: queue.Queue, item: object) -> None:
        while not self.stopped.is_set():
            try:
                inbox.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue
        raise _Cancelled

    def put_all(self, outboxes: list[queue.Queue], item: object) -> None:
        for outbox in outboxes:
            self.put(outbox, item)

    def get(self, inbox: queue.Queue) -> object:
        while not self.stopped.is_set():
            try:
                return inbox.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
        raise _Cancelled

    def join(self) -> None:
        """Wait until every thread's work has returned. On events, not `Thread.join`: a join that Ctrl-C
        interrupts marks the thread as ended while it still runs (CPython before 3.13), so the join after it
        would return at once and leave a thread in native code at exit, which then aborts the process."""
        for ended in self._ended:
            ended.wait()

    def finishing(self, every_s: float) -> Iterator[None]:
        """Yields every `every_s` while any thread's work has not returned, so that the caller, by yielding in
        turn, can be stopped during the outputs' closing work."""
        for ended in self._ended:
            while not ended.wait(every_s):
                yield

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def run_frames(reader: VideoReader, annotations: dict[int, np.ndarray], tracker: Tracker,
               sinks: Sequence[FrameSink], edges: EdgeSettings | None, depth: int | None = None,
               refiner: MaskRefiner | None = None) -> Iterator[int]:
    """Track the frames of `reader` and feed every sink; yields the number of frames tracked so far (the last
    again every `_FINISHING_POLL_S` while the sinks finish: a caller that closes the generator then stops their
    closing work too), and returns once every sink has finished. Frames before the first annotated one get empty
    labels. `annotations` maps a frame index to its (H, W) uint8 label map; `edges` None gives the sinks no matte
    (hard edges); a `refiner` redraws the tracked masks of the frames without an annotation. Each queue holds
    `depth` frames: by default 4 up to 1080p, fewer for larger frames so memory stays bounded; at depth 1 (4K) the
    outputs share one thread, so only one of them holds its temporaries at a time."""
    depth = depth or queue_depth(reader.info.width, reader.info.height)
    if is_large((reader.info.width, reader.info.height)):
        _return_large_blocks()
    decoded = 0
    with _one_torch_thread(tracker):
        for decoded in _run(reader, annotations, tracker, sinks, edges, depth, refiner):
            yield decoded
    check_reached(annotations, decoded, reader.info.path)


class ClipEndedEarly(MaskError):
    """An annotated frame (`frame`) lies past the `decoded` frames of a clip: one whose header does not list its
    frame count (WebM) or lists more than the file holds (cut short) ended before it."""

    def __init__(self, message: str, frame: int, decoded: int):
        super().__init__(message)
        self.frame, self.decoded = frame, decoded


def check_reached(annotations: dict[int, np.ndarray], decoded: int, source: str) -> None:
    """Raise ClipEndedEarly when an annotated frame lies past the `decoded` frames of `source`."""
    unreached = [index for index in sorted(annotations) if index >= decoded]
    if unreached:
        frames = f"frames 0 to {decoded - 1}" if decoded else "no frame could be decoded"
        raise ClipEndedEarly(f"{source}: the annotation is for frame {unreached[0]}, but the clip ends before it "
                             f"({frames}); annotate a frame inside it", unreached[0], decoded)


def _return_large_blocks() -> None:
    """Have glibc give every block of _LARGE_BLOCK bytes or more straight back to the system when freed, instead
    of keeping it in a heap where the next frame's blocks fragment around it. For this process's lifetime:
    called for 4K-sized frames only, since it slowed 1080p runs by 17 % (12.0–12.2 → 10.0–10.1 FPS) while 4K runs
    with every effect peaked at 1.87 GB instead of 2.23 (measured). A no-op where the C library is not glibc."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, _LARGE_BLOCK)
    except (OSError, AttributeError):
        pass


def queue_depth(width: int, height: int) -> int:
    """Frames each queue holds: _FULL_HD_DEPTH for frames up to 1080p, proportionally fewer above (1 at 4K)."""
    return max(1, min(_FULL_HD_DEPTH, _FULL_HD_DEPTH * 1920 * 1080 // max(1, width * height)))


@contextmanager
def _one_torch_thread(tracker: Tracker) -> Iterator[None]:
    """Torch on the CPU with one intra-op thread while the loop runs: its OpenMP pool busy-waits, and with the
    other stages on the cores two torch threads tracked 25 times slower than one (measured on 2 cores)."""
    threads = torch.get_num_threads()
    if tracker.backend == "torch" and tracker.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _run(frames: Iterable[Frame], annotations: dict[int, np.ndarray], tracker: Tracker,
         sinks: Sequence[FrameSink], edges: EdgeSettings | None, depth: int,
         refiner: MaskRefiner | None) -> Iterator[int]:
    """`run_frames` without the thread settings."""
    stages = _Stages()
    groups = [[sink] for sink in sinks] if depth > 1 else [list(sinks)]  # 4K: one thread, one frame's temporaries
    outboxes = [queue.Queue(depth) for _ in groups]
    decoded: queue.Queue = queue.Queue(depth)
    coarse: queue.Queue = queue.Queue(depth)
    stages.start("decode", lambda: _decode(stages, frames, tracker, decoded))
    if tracker.features_ahead and annotations:
        encoded: queue.Queue = queue.Queue(depth)
        stages.start("key", lambda: _encode_keys(stages, tracker, min(annotations), decoded, encoded))
        decoded = encoded
    for index, (group, inbox) in enumerate(zip(groups, outboxes)):
        stages.start(f"output-{index}", lambda group=group, inbox=inbox: _output(stages, group, inbox))
    full_size_box = outboxes
    if edges is not None:
        matte_box: queue.Queue = queue.Queue(depth)
        stages.start("matte", lambda: _matte(stages, StableMatte(edges), matte_box, outboxes))
        full_size_box = [matte_box]
    full_size = _FullSize(edges is not None, refiner, frozenset(annotations))
    stages.start("full-size", lambda: _bring_to_full_size(stages, full_size, coarse, full_size_box))
    try:
        count = 0
        while (item := stages.get(decoded)) is not _END:
            frame, prepared, features = item
            mask = annotations.get(frame.index)
            tracked = mask is not None or bool(tracker.object_ids)  # nothing to track before the first mask
            step = tracker.step_coarse(frame.image, mask, prepared, features) if tracked else None
            stages.put(coarse, (frame, step))
            count += 1
            yield count
        stages.put(coarse, _END)
        for _ in stages.finishing(_FINISHING_POLL_S):
            yield count  # the sinks still finish (a removal's last frames): the count again
    except _Cancelled:
        stages.join()
        stages.raise_error()
        raise RuntimeError("the frame loop stopped without an error") from None
    finally:
        stages.stopped.set()
        stages.join()
    stages.raise_error()


@dataclass(frozen=True)
class _FullSize:
    """How a tracked frame is brought to full size: with the objects' probability for the matte or not, and
    redrawn by a refiner on the frames that have no annotation."""

    matted: bool
    refiner: MaskRefiner | None
    annotated: frozenset[int]

    def __call__(self, frame: Frame, step: CoarseStep | None) -> _Tracked:
        """Full-size labels (empty before the first annotation) and, for the matte, the objects' probability."""
        if step is None:
            return _Tracked(frame, np.zeros(frame.image.shape[:2], np.uint8), None)
        shape = work_shape(frame.image.shape)
        if self.refiner is None or frame.index in self.annotated:
            return _Tracked(frame, step.labels(), step.objects(shape) if self.matted else None)
        labels, objects = self.refiner(frame.image, step.labels(), step.ids)
        small = cv2.resize(objects, shape[::-1], interpolation=cv2.INTER_AREA) if self.matted else None
        return _Tracked(frame, labels, small)


def _bring_to_full_size(stages: _Stages, full_size: _FullSize, inbox: queue.Queue,
                        outboxes: list[queue.Queue]) -> None:
    while (item := stages.get(inbox)) is not _END:
        stages.put_all(outboxes, full_size(*item))
    stages.put_all(outboxes, _END)


def _decode(stages: _Stages, frames: Iterable[Frame], tracker: Tracker, outbox: queue.Queue) -> None:
    """Decoded frames with the tracker's input made from each (resizing is off the tracking thread's path)."""
    for frame in frames:
        stages.put(outbox, (frame, tracker.prepare(frame.image), None))
    stages.put(outbox, _END)


def _encode_keys(stages: _Stages, tracker: Tracker, first: int, inbox: queue.Queue, outbox: queue.Queue) -> None:
    """The key encoder's features of each frame from the first annotated one on, while the tracking thread reads
    the memory for the frame before: the largest network call of a step, moved off the tracking thread's path."""
    while (item := stages.get(inbox)) is not _END:
        frame, prepared, _ = item
        stages.put(outbox, (frame, prepared, tracker.features(prepared) if frame.index >= first else None))
    stages.put(outbox, _END)


def _matte(stages: _Stages, matte: StableMatte, inbox: queue.Queue, outboxes: list[queue.Queue]) -> None:
    while (item := stages.get(inbox)) is not _END:
        alpha = None if item.objects is None else matte.of_objects(item.frame.image, item.objects)
        stages.put_all(outboxes, _Tracked(item.frame, item.labels, None, alpha))
    stages.put_all(outboxes, _END)


def _output(stages: _Stages, sinks: list[FrameSink], inbox: queue.Queue) -> None:
    while (item := stages.get(inbox)) is not _END:
        for sink in sinks:
            sink.write(item.frame, item.labels, item.alpha)
    for sink in sinks:
        if stages.stopped.is_set():  # a stopped run writes no closing frames (the removal's can take long)
            raise _Cancelled
        sink.finish()
