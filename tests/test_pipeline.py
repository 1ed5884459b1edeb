"""The threaded frame loop: the same labels as tracking frame by frame, every output in order, a failure in any
stage raised in the caller, and nothing left running after an early stop."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from core.effects import EdgeSettings, StableMatte
from core.inference.tracker import Tracker
from core.inference.settings import TrackerConfig
from core.io.masks import MaskError, read_mask
from core.io.video import Frame, open_video
from core.model.network import NetworkConfig, build_network
from core.pipeline import RemovalSink, is_large, run_frames
from core.pipeline.outputs import LARGE_REMOVAL_RADIUS, REMOVAL_RADIUS, bind_run, run_stopped
from core.pipeline.stages import _Stages

JUDO = Path(__file__).resolve().parent.parent / "samples" / "judo"


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return build_network(NetworkConfig()).eval()


@pytest.fixture(scope="module")
def annotations() -> dict[int, np.ndarray]:
    """judo's masks: one new object on frames 0, 5, 8 and 13; tracking starts on frame 0."""
    return {int(p.stem): read_mask(p) for p in sorted((JUDO / "masks").glob("*.png"))}


class Recorder:
    """A sink that keeps what it was given, and can fail on a chosen frame."""

    def __init__(self, fail_at: int | None = None):
        self.indices: list[int] = []
        self.labels: list[np.ndarray] = []
        self.alphas: list[np.ndarray | None] = []
        self.finished = 0
        self._fail_at = fail_at

    def write(self, frame: Frame, labels: np.ndarray, alpha: np.ndarray | None) -> None:
        if frame.index == self._fail_at:
            raise ValueError(f"sink failed on frame {frame.index}")
        self.indices.append(frame.index)
        self.labels.append(labels)
        self.alphas.append(alpha)

    def finish(self) -> None:
        self.finished += 1


def pipeline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pipeline-")]


@pytest.mark.parametrize("depth", [None, 1])  # 1: the outputs share one thread, as at 4K
def test_labels_and_mattes_equal_frame_by_frame_tracking(network, annotations, depth: int | None) -> None:
    reference = Tracker(TrackerConfig(device="cpu", threads=1), network)  # the loop runs torch on one thread
    matte = StableMatte(EdgeSettings())
    expected_labels, expected_alphas = [], []
    with open_video(JUDO) as reader:
        for frame in reader:
            expected_labels.append(reference.step(frame.image, annotations.get(frame.index)))
            expected_alphas.append(matte(frame.image, reference.probabilities))
    sinks = [Recorder(), Recorder()]
    with open_video(JUDO) as reader:
        steps = list(run_frames(reader, annotations, Tracker(TrackerConfig(device="cpu"), network), sinks,
                                EdgeSettings(), depth))
    assert list(dict.fromkeys(steps)) == list(range(1, 17)) and set(steps[16:]) <= {16}  # 16 again while finishing
    for sink in sinks:
        assert sink.indices == list(range(16)) and sink.finished == 1
        assert all(np.array_equal(a, b) for a, b in zip(sink.labels, expected_labels))
        assert all(np.abs(a - b).max() < 0.05 for a, b in zip(sink.alphas, expected_alphas))
    assert set(np.unique(sinks[0].labels[-1])) <= {0, 1, 2, 3, 4} and len(np.unique(sinks[0].labels[13])) > 2


def test_a_network_fine_tuned_on_the_first_mask_encodes_no_frame_ahead(annotations) -> None:
    config = TrackerConfig(device="cpu", threads=1, backend="torch", adapt_steps=2)  # the shipped weights
    first = {0: annotations[0]}
    torch.manual_seed(0)
    reference = Tracker(config)
    with open_video(JUDO) as reader:
        expected = [reference.step(frame.image, first.get(frame.index)) for frame in reader]
    sink = Recorder()
    torch.manual_seed(0)
    with open_video(JUDO) as reader:
        list(run_frames(reader, first, Tracker(config), [sink], None))
    assert len(sink.labels) == 16 and all(np.array_equal(a, b) for a, b in zip(sink.labels, expected))


def test_frames_before_the_first_annotation_are_empty_and_hard_edges_give_no_matte(network, annotations) -> None:
    sink = Recorder()
    later = {5: annotations[5]}
    with open_video(JUDO) as reader:
        list(run_frames(reader, later, Tracker(TrackerConfig(device="cpu"), network), [sink], None))
    assert all(not labels.any() for labels in sink.labels[:5]) and sink.labels[5].any()
    assert all(alpha is None for alpha in sink.alphas)


def test_a_failing_output_stops_the_loop_with_its_error(network, annotations) -> None:
    sinks = [Recorder(), Recorder(fail_at=3)]
    with open_video(JUDO) as reader, pytest.raises(ValueError, match="sink failed on frame 3"):
        list(run_frames(reader, annotations, Tracker(TrackerConfig(device="cpu"), network), sinks, EdgeSettings(),
                        depth=2))
    assert not pipeline_threads()
    assert sinks[0].finished == 0  # a failed run never finishes its outputs


def test_a_failing_tracker_and_an_early_stop_leave_nothing_running(network, annotations) -> None:
    wrong_size = {2: np.ones((10, 10), np.uint8)}
    with open_video(JUDO) as reader, pytest.raises(MaskError, match="10×10"):
        list(run_frames(reader, wrong_size, Tracker(TrackerConfig(device="cpu"), network), [Recorder()], None))
    assert not pipeline_threads()
    sink = Recorder()
    with open_video(JUDO) as reader:
        steps = run_frames(reader, annotations, Tracker(TrackerConfig(device="cpu"), network), [sink], None,
                           depth=1)
        assert next(steps) == 1 and next(steps) == 2
        steps.close()
    assert not pipeline_threads()
    assert sink.finished == 0 and sink.indices == list(range(len(sink.indices)))


class SlowFinish(Recorder):
    """A sink whose closing work (as the removal's last frames) goes on until its run is stopped."""

    def __init__(self):
        super().__init__()
        self.stopped_while_finishing = threading.Event()

    def finish(self) -> None:
        while not run_stopped():
            self.stopped_while_finishing.wait(0.01)
        self.stopped_while_finishing.set()


def test_the_count_comes_again_while_the_outputs_finish_and_closing_then_stops_them(network, annotations) -> None:
    """After the last frame, the outputs' closing work (a removal's last frames: seconds each at 1080p) used to
    run inside the generator without a yield: the web's Cancel and its status line waited for all of it."""
    sink = SlowFinish()
    with open_video(JUDO) as reader:
        steps = run_frames(reader, annotations, Tracker(TrackerConfig(device="cpu"), network), [sink], None)
        counts = [next(steps) for _ in range(18)]  # 16 frames, then 16 again while the sink finishes
        steps.close()
    assert counts == [*range(1, 17), 16, 16]
    assert sink.stopped_while_finishing.is_set() and not pipeline_threads()


class ListWriter:
    """A writer that keeps its frames and their times and claims a frame size."""

    def __init__(self, size: tuple[int, int]):
        self.size = size
        self.frames: list[np.ndarray] = []
        self.times: list[float | None] = []

    def write(self, image: np.ndarray, time: float | None = None) -> None:
        self.frames.append(image)
        self.times.append(time)


@pytest.mark.parametrize("size", [(1920, 1080), (3840, 2160)])
def test_the_removal_answers_half_as_late_for_4k_sized_frames(size: tuple[int, int]) -> None:
    writer = ListWriter(size)
    sink = RemovalSink(writer)
    image = np.full((48, 64, 3), 90, np.uint8)
    labels = np.zeros((48, 64), np.uint8)
    labels[10:20, 10:30] = 1
    pushed = 0
    while not writer.frames:
        sink.write(Frame(pushed, image, pushed / 25), labels, None)
        pushed += 1
    assert pushed - 1 == (LARGE_REMOVAL_RADIUS if is_large(size) else REMOVAL_RADIUS)
    sink.finish()
    assert len(writer.frames) == pushed


def test_the_removal_writes_each_frame_at_its_own_time() -> None:
    writer = ListWriter((64, 48))
    sink = RemovalSink(writer)
    labels = np.zeros((48, 64), np.uint8)
    labels[10:20, 10:20] = 1
    times = [0.0, 0.04, 0.1, 0.2]  # a variable frame rate
    for index, time in enumerate(times):
        sink.write(Frame(index, np.full((48, 64, 3), 90, np.uint8), time), labels, None)
    sink.finish()
    assert writer.times == times


def test_a_join_that_ctrl_c_interrupts_still_waits_for_the_threads() -> None:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job starts with it ignored
    release, finished = threading.Event(), []
    safety = threading.Timer(60, release.set)  # should Ctrl-C never arrive, the test fails instead of hanging
    try:
        stages = _Stages()
        stages.start("slow", lambda: (release.wait(), finished.append(True)))
        safety.start()
        main = threading.main_thread().ident
        threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT)).start()  # Ctrl-C while the run is joined
        with pytest.raises(KeyboardInterrupt):
            stages.join()
        assert not finished
        threading.Timer(0.2, release.set).start()
        stages.join()  # the thread still works: this waits for it (Thread.join would return at once here)
        assert finished == [True]
    finally:
        release.set()
        safety.cancel()
        signal.signal(signal.SIGINT, previous)


class CountingWriter:
    """Stands in for the video file, which is not under test: counts the frames it is given."""

    size = (64, 48)

    def __init__(self) -> None:
        self.frames = 0

    def write(self, image: np.ndarray, time: float | None = None) -> None:
        self.frames += 1


@pytest.mark.parametrize("stopped", [False, True])
def test_a_stopped_run_makes_no_closing_removal_frames(stopped: bool) -> None:
    writer = CountingWriter()
    sink = RemovalSink(writer)
    rng = np.random.default_rng(0)
    labels = np.zeros((48, 64), np.uint8)
    labels[10:20, 10:20] = 1
    for index in range(3):
        sink.write(Frame(index, rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), index / 25), labels, None)
    event = threading.Event()
    bind_run(event)
    if stopped:
        event.set()
    try:
        sink.finish()
    finally:
        bind_run(threading.Event())
    assert writer.frames == (0 if stopped else 3)  # three frames fewer than the radius: all made at the close
