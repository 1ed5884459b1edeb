"""Shared fixtures: the bundled samples and small real videos encoded with PyAV (H.264 + an AAC sine tone).

`judo_mp4` is the 16 judo frames at 25 fps with audio (session-wide, encoded once); `make_video` encodes
custom variants (rotation, no audio, other frames) into the test's tmp_path. ONNX graphs that the tests export
go to a session temporary folder (`MOBILEVOS_CACHE`), not the user's ~/.cache.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from itertools import accumulate, cycle, islice
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from core.io.command import INTERRUPTED, run_tool
from core.train.config import VALIDATION_SEQUENCES

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
AUDIO_RATE = 44100
TONE_HZ = 440.0
TIMED_BASE = Fraction(1, 90000)  # the time base of a clip encoded with its frames' `times`


def encode_hlg_clip(path: Path) -> Path:
    """Three black 64×48 frames tagged as a phone's HDR clip (HLG transfer, BT.2020 colours)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        context = stream.codec_context
        context.color_trc, context.color_primaries, context.colorspace = 18, 9, 9
        for index in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`MOBILEVOS_CACHE` for this test session (subprocesses inherit it): exported graphs never reach ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("mobilevos-cache")
        patch.setenv("MOBILEVOS_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module", autouse=True)
def torch_threads_restored() -> Iterator[None]:
    """A test file may pin torch to one thread (a tracker with `threads=1`: fast on a busy 2-core machine); the
    next file gets the old count back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def sample_frames(name: str = "judo") -> list[np.ndarray]:
    """The RGB `(H, W, 3)` frames of a bundled sample, in order."""
    return [np.array(Image.open(p).convert("RGB")) for p in sorted((SAMPLES / name).glob("*.jpg"))]


def encode_video(
    path: Path,
    frames: Sequence[np.ndarray],
    fps: int = 25,
    *,
    audio: bool = True,
    rotation: int = 0,
    rotate_tag: bool = False,
    options: dict[str, str] | None = None,
    times: Sequence[Fraction] | None = None,
    audio_start: float = 0.0,
    audio_gap: tuple[float, float] | None = None,
) -> Path:
    """Encode RGB frames as H.264 yuv420p with PyAV; `audio` adds a mono AAC sine tone to the video's end, from
    `audio_start` seconds on (a camera's sound that starts late), missing within `audio_gap` (seconds from, to: a
    recorder that dropped sound);
    `rotation` is the clockwise display rotation, written as the stream's display matrix, or with `rotate_tag`
    as the legacy "rotate" stream tag (kept by Matroska, not by MP4). `times` (seconds, one per frame) puts the
    frames at those times instead of n / fps, in a TIMED_BASE time base: a variable-frame-rate clip."""
    container = av.open(str(path), "w", options=options or {})
    video = container.add_stream("libx264", rate=fps)
    video.height, video.width = frames[0].shape[:2]
    video.pix_fmt = "yuv420p"
    if times is not None:
        video.codec_context.time_base = TIMED_BASE
    if rotation and rotate_tag:
        video.metadata["rotate"] = str(rotation)
    elif rotation:
        video.set_display_rotation(-rotation)  # PyAV takes counter-clockwise degrees
    tone = None
    if audio:
        tone = container.add_stream("aac", rate=AUDIO_RATE)
        tone.layout = "mono"
    for index, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        if times is not None:
            frame.pts, frame.time_base = round(times[index] / TIMED_BASE), TIMED_BASE
        container.mux(video.encode(frame))
    container.mux(video.encode(None))
    if tone is not None:
        seconds = len(frames) / fps if times is None else times[-1] + Fraction(1, fps)
        samples = np.arange(round((seconds - audio_start) * AUDIO_RATE))
        wave = (0.3 * np.sin(2 * np.pi * TONE_HZ * samples / AUDIO_RATE)).astype(np.float32)
        for start in range(0, len(wave), 1024):
            if audio_gap and audio_gap[0] <= audio_start + start / AUDIO_RATE < audio_gap[1]:
                continue
            frame = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="flt", layout="mono")
            frame.sample_rate = AUDIO_RATE
            frame.pts = start + round(audio_start * AUDIO_RATE)
            container.mux(tone.encode(frame))
        container.mux(tone.encode(None))
    container.close()
    return path


def uneven_times(count: int) -> list[Fraction]:
    """`count` frame times of a variable-frame-rate clip: gaps of 1/30 s and 1/10 s in turn, from 0."""
    gaps = islice(cycle([Fraction(1, 30), Fraction(1, 10)]), count - 1)
    return list(accumulate(gaps, initial=Fraction(0)))


def frame_times(path: Path) -> list[float]:
    """The decoded frames' times in seconds from the first, as PyAV gives them."""
    with av.open(str(path)) as container:
        stamps = [frame.time for frame in container.decode(video=0)]
    return [time - stamps[0] for time in stamps]


@pytest.fixture(scope="session")
def judo_dir() -> Path:
    """samples/judo: 16 JPEG frames 854×480 and masks/ (00000: id 1, 00005: id 2, 00008: id 3, 00013: id 4)."""
    return SAMPLES / "judo"


@pytest.fixture(scope="session")
def bike_dir() -> Path:
    """samples/bike: 4 JPEG frames 854×480 and masks/00000.png with ids 1 and 2."""
    return SAMPLES / "bike"


@pytest.fixture(scope="session")
def judo_frames() -> list[np.ndarray]:
    return sample_frames("judo")


@pytest.fixture(scope="session")
def judo_mp4(tmp_path_factory: pytest.TempPathFactory, judo_frames: list[np.ndarray]) -> Path:
    """A real H.264 mp4 of the judo frames at 25 fps (16 frames, 0.64 s) with a 440 Hz AAC tone."""
    return encode_video(tmp_path_factory.mktemp("video") / "judo.mp4", judo_frames)


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """Factory: make_video(name, frames, fps=25, audio=True, rotation=0, rotate_tag=False, options=None,
    times=None) → path in tmp_path."""

    def make(name: str, frames: Sequence[np.ndarray], fps: int = 25, **kwargs: object) -> Path:
        return encode_video(tmp_path / name, frames, fps, **kwargs)

    return make


@pytest.fixture
def ctrl_c_at_second_call(monkeypatch: pytest.MonkeyPatch) -> Callable[[object, str], list[int]]:
    """Patch `owner.name` so that its second call first sends this process SIGINT, as Ctrl-C does; returns the
    list that counts its calls."""

    def patch(owner: object, name: str) -> list[int]:
        original, calls = getattr(owner, name), []

        def interrupted(*args):  # noqa: ANN002, ANN202 - the patched function's own signature
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGINT)
            return original(*args)

        monkeypatch.setattr(owner, name, interrupted)
        return calls

    return patch


def run_interrupted(main: Callable[[list[str]], object], args: list[str], run: Path,
                    capsys: pytest.CaptureFixture[str], step: int) -> str:
    """Run a training command's `main` through `run_tool` where Ctrl-C comes during `step` (ctrl_c_at_second_call):
    it must end with status 130 and one "interrupted:" line, its state saved at `step` in `run`; its stdout."""
    with pytest.raises(SystemExit) as stop:
        run_tool(lambda: main(args))
    said = capsys.readouterr()
    assert stop.value.code == INTERRUPTED and said.err.strip().splitlines()[-1].startswith("interrupted:")
    assert torch.load(run / "state.pt", weights_only=False)["step"] == step
    return said.out


STALL_IMPORT = """
import importlib.abc, os, pathlib, sys, time

class Stall(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # STALL_AT loads until Ctrl-C, which it turns into an
        if name == os.environ["STALL_AT"]:              # ImportError, as C extensions (NumPy, ONNX Runtime) do
            pathlib.Path(os.environ["STALL_FLAG"]).touch()
            try:
                while True:
                    time.sleep(0.01)
            except KeyboardInterrupt:
                raise ImportError("initialization failed") from None

sys.meta_path.insert(0, Stall())
"""


def stalled_import(folder: Path, module: str) -> tuple[dict[str, str], Path]:
    """(environment, flag) for a child Python whose import of `module` is held until Ctrl-C comes (a
    sitecustomize.py written into `folder`, on the child's path), so a test of Ctrl-C while a command loads does not
    depend on the machine's speed; the child creates the flag file when it reaches that import."""
    (folder / "sitecustomize.py").write_text(STALL_IMPORT)
    flag = folder / "loading"
    return {**os.environ, "PYTHONPATH": str(folder), "STALL_AT": module, "STALL_FLAG": str(flag)}, flag


@pytest.fixture(scope="module")
def tiny_davis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DAVIS-layout folder: the bike sample (object 1) as a training sequence and as each validation one."""
    root = tmp_path_factory.mktemp("davis")
    mask = Image.open(SAMPLES / "bike" / "masks" / "00000.png")
    for name in ("bike", *VALIDATION_SEQUENCES[:1]):
        frames, annotations = root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name
        frames.mkdir(parents=True)
        annotations.mkdir(parents=True)
        for i, jpg in enumerate(sorted((SAMPLES / "bike").glob("*.jpg"))):
            Image.open(jpg).resize((160, 90)).save(frames / f"{i:05d}.jpg")
            mask.resize((160, 90), Image.NEAREST).point(lambda v: 255 if v == 1 else 0).save(
                annotations / f"{i:05d}.png")
    return root
