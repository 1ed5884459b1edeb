"""Streaming video I/O with PyAV: read a video file or a folder of numbered frames one frame at a time, and
write H.264 (RGB) or alpha video (VP9 WebM, ProRes 4444 .mov, PNG frames) with the source's audio copied in.

Frames are never all in memory. Every failure reaches the caller as a one-line VideoError naming the file
and the fix. Writers create a temporary file next to the target and rename it into place on close.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain
from pathlib import Path

import av
import cv2
import numpy as np

from core.io.command import BadInput
from core.io.files import staging_folder
from core.io.images import load_image
from core.io.suffixes import FRAME_SUFFIXES

DEFAULT_FOLDER_FPS = Fraction(25)
_ALPHA_CODECS = {".webm": "libvpx-vp9", ".mov": "prores_ks"}
_RGB_CODECS = {".webm": "libvpx-vp9"}
_DEFAULT_CODEC = "libx264"
X264_MAX_SIDE = 16384  # x264 refuses wider or taller frames ("Generic error in an external library")
_NVENC_CODEC = "h264_nvenc"
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")
H264_ENCODERS = ("auto", "x264", "nvenc")  # auto: NVIDIA NVENC when it opens here, else libx264
_ENCODER_OPTIONS = {
    "libx264": {"preset": "ultrafast", "crf": "18"},  # a quarter of veryfast's CPU at 1080p, PSNR within 0.4 dB
    _NVENC_CODEC: {"preset": "p4", "rc": "vbr", "cq": "19"},
    # no look-ahead: 600 MB less for a 4K cut-out with alpha
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "crf": "30", "b": "0",
                   "lag-in-frames": "0"},
    "prores_ks": {"profile": "4444"},
}
# Audio codecs each container takes as they are (remuxed); anything else is re-encoded.
_REMUX_AUDIO = {
    ".mp4": {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"},
    ".m4v": {"aac", "mp3", "alac", "ac3", "eac3"},
    ".mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s24le", "pcm_f32le"},
    ".mkv": {"aac", "mp3", "alac", "opus", "vorbis", "flac", "ac3", "eac3", "pcm_s16le", "pcm_s24le"},
    ".webm": {"opus", "vorbis"},
}
# Remuxed audio keeps packets starting this many seconds before the first video frame: the decoder's priming
# packet (AAC encoder delay, Opus pre-skip) carries negative timestamps and is needed for the first samples.
_AUDIO_PREROLL = 0.1
_UNSEEKABLE = ("mpegts",)  # containers without an index, whose timestamps may start again: read from the start
COUNT_REPORT_EVERY = 25  # frames between two reports of a count in progress (`VideoReader.count_frames`)
TRUNCATION_SLACK = 2  # frames a video may decode short of its header's count without a warning
# A video whose header gives seconds but no frame count (Matroska, WebM) is cut short when its frames end before
# this share of them, and more than SHORT_GAP_S early (a container's duration may include a longer audio track).
SHORT_SHARE, SHORT_GAP_S = 0.9, 0.1
COMMON_RATES = tuple(Fraction(rate) for rate in (24, 25, 30, 48, 50, 60)) + tuple(
    Fraction(rate * 1000, 1001) for rate in (24, 30, 60))  # film, PAL, NTSC and their doubles
_VFR_TOLERANCE = 0.25  # of a frame: a clip whose frame times stray further from n / fps is variable-rate
_REORDER_DEPTH = 4  # frames a codec may store ahead of those it shows before them (B-frames): a cut-short file's
# last packets can lack that many earlier frames, so the frame rate is read before them
_VFR_TIME_BASE = Fraction(1, 90000)  # a variable-rate output's time base (the MPEG clock)
CONVERT_HINT = "(or convert it with `ffmpeg -i IN -c:v libx264 OUT.mp4`)"  # command-line advice (the web drops it)
_FIX_DAMAGED = f"re-export or re-download it {CONVERT_HINT}"
_SMPTE170M, _LIMITED_RANGE, _BT709 = 6, 1, 1  # FFmpeg's AVColorSpace, AVColorRange, AVColorPrimaries/Transfer values
_HDR_TRANSFERS = {16: "PQ", 18: "HLG"}  # FFmpeg's AVColorTransferCharacteristic: SMPTE ST 2084, ARIB STD-B67
_AUDIO_GAP_S = 0.005  # a re-encoded sound's frame this much later than the last one's end starts a gap
_ATTACHED_PICTURE = 1024  # FFmpeg's AV_DISPOSITION_ATTACHED_PIC: a video stream that is cover art


class VideoError(BadInput, RuntimeError):
    """A video that cannot be read or written; the message is one line naming the file and the fix."""


@dataclass(frozen=True)
class VideoInfo:
    """What a reader knows before decoding: sizes are after rotation; rotation is clockwise degrees."""

    path: str
    width: int
    height: int
    fps: Fraction
    num_frames: int | None
    rotation: int
    has_audio: bool
    duration: float | None = None  # seconds, as the container's header says (None when it does not)
    hdr: str | None = None  # "HLG" or "PQ" for a high-dynamic-range video (a phone's HDR clip), read as SDR


@dataclass(frozen=True)
class Frame:
    """One decoded frame: `image` is `(H, W, 3)` RGB (`(H, W, 4)` RGBA when read with alpha), rotation applied;
    `time` is in seconds from the first frame."""

    index: int
    image: np.ndarray
    time: float


class VideoReader:
    """Iterates the frames of a video one at a time; `info` describes it. Use as a context manager."""

    info: VideoInfo

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def frame_at(self, index: int) -> Frame | None:
        """Frame `index` as iteration numbers it, or None past the end (this default decodes up to it)."""
        return next((frame for frame in self if frame.index == index), None)

    def count_frames(self, counted: Callable[[int], None] | None = None) -> int:
        """How many frames iteration gives (this default reads them all); `counted(n)` hears of the count every
        `COUNT_REPORT_EVERY` frames, for a progress bar."""
        number = 0
        for number, _ in enumerate(self, 1):
            _report_count(number, counted)
        return number

    def damage_warning(self, decoded: int) -> str | None:
        """After an iteration that gave `decoded` frames: a one-line warning when the file is damaged or cut short,
        None when it is whole (this default: a folder's frames are checked as they are read)."""
        return None

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def damaged_or_short(info: VideoInfo, decoded: int, *, ended_at: float, stream_seconds: float | None,
                     skipped: int = 0) -> str | None:
    """A one-line warning when a video's iteration gave `decoded` frames, the last ending `ended_at` seconds into
    the stream, but its header lists more frames (`info.num_frames`, besides the `skipped` packets' and a frame or
    two: a codec's delay; unless the frames reach the stream's seconds: an edit list hides frames it lists) or,
    listing none, gives its video more seconds (`stream_seconds`, the stream's own: a container's may include a
    longer audio track): a cut-short download decodes its first part and then ends without an error. Also when the
    decoder refused `skipped` packets (damaged bytes), which were skipped. None otherwise."""
    found = []
    # A clip trimmed by an edit list counts the frames it hides too, but its frames reach the seconds it gives.
    reached_its_end = stream_seconds is not None and stream_seconds - ended_at <= SHORT_GAP_S
    if info.num_frames is not None and decoded + skipped < info.num_frames - TRUNCATION_SLACK and not reached_its_end:
        found.append(f"ends after {decoded} of the {info.num_frames} frames its header lists (truncated or damaged?)")
    elif info.num_frames is None and cut_short(ended_at, stream_seconds):
        found.append(f"ends after {_seconds(ended_at)} of the {_seconds(stream_seconds)} seconds its header gives "
                     "(truncated or damaged?)")
    if skipped:
        found.append(f"has {skipped} damaged packet{'s' if skipped > 1 else ''}, skipped")
    if not found:
        return None
    frames = "the 1 frame" if decoded == 1 else f"the {decoded} frames"
    return (f"{Path(info.path).name} {' and '.join(found)}; the outputs hold {frames} that decoded: for the rest, "
            f"{_FIX_DAMAGED}")


def cut_short(ended_at: float, stream_seconds: float | None) -> bool:
    """Whether frames ending `ended_at` seconds into a stream whose header gives it `stream_seconds` (None: it does
    not say) end too early for a whole file."""
    return bool(stream_seconds) and ended_at < SHORT_SHARE * stream_seconds and stream_seconds - ended_at > SHORT_GAP_S


def _transfer(frame: av.VideoFrame, stream: av.VideoStream) -> int | None:
    """The video's transfer characteristic (FFmpeg's number): the frame's, else its stream's; None where an older
    PyAV (`av>=14` is allowed) reads neither."""
    return getattr(frame, "color_trc", None) or getattr(stream.codec_context, "color_trc", None)


def hdr_note(info: VideoInfo) -> str | None:
    """A one-line note for a high-dynamic-range video (`info.hdr`): its picture is read as standard range, without
    tone mapping (this FFmpeg build has none), so the outputs' colours look flat; None for any other video."""
    if info.hdr is None:
        return None
    return (f"{Path(info.path).name} is HDR ({info.hdr}): its colours are read as standard range and look flat in the "
            "outputs; for true colours give an SDR copy (on a phone: HDR video off, or share as most compatible)")


def _seconds(seconds: float) -> str:
    """Seconds as a warning says them: to a hundredth under ten, else to a tenth."""
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


def _report_count(number: int, counted: Callable[[int], None] | None) -> None:
    """Tell `counted` that `number` frames are counted, when it is every `COUNT_REPORT_EVERY`-th."""
    if counted is not None and number % COUNT_REPORT_EVERY == 0:
        counted(number)


def open_video(path: str | os.PathLike, *, fps: float | Fraction | None = None, alpha: bool = False) -> VideoReader:
    """Open a video file, or a folder of numbered JPEG/PNG frames (played at `fps`, default 25).

    With `alpha=True` frames are RGBA: VP9 WebM alpha, ProRes 4444 and PNG alpha are kept (opaque otherwise).
    """
    path = Path(path)
    if path.is_dir():
        return _FolderReader(path, Fraction(fps) if fps else DEFAULT_FOLDER_FPS, alpha)
    if not path.exists():
        raise VideoError(f"{path}: file not found; check the path")
    return _ContainerReader(path, alpha)


class _ContainerReader(VideoReader):
    """Decodes the first video stream of a container with PyAV."""

    def __init__(self, path: Path, alpha: bool) -> None:
        self._path = path
        self._alpha = alpha
        self._started = False
        self._open()
        stream = self._stream
        rotation = _rotation(self._first, stream)
        width, height = self._first.width, self._first.height
        if rotation in (90, 270):
            width, height = height, width
        self.info = VideoInfo(
            path=str(path),
            width=width,
            height=height,
            fps=_frame_rate(path, stream),
            num_frames=stream.frames or None,
            rotation=rotation,
            has_audio=bool(self._container.streams.audio),
            duration=_header_seconds(self._container, stream),
            hdr=_HDR_TRANSFERS.get(_transfer(self._first, stream)),
        )
        self._stream_seconds = _stream_seconds(stream)  # the video's own, for `damage_warning`

    def _open(self) -> None:
        """Open the container, pick the video stream and decode the first frame (which validates the file)."""
        self._container = _open_container(self._path)
        self._skipped, self._read_until = 0, 0.0  # of the pass under way: packets skipped, seconds given out
        try:
            stream = main_video_stream(self._container)
            if stream is None:
                raise VideoError(f"{self._path}: has no video stream; pass a video file or a folder of frames")
            self._stream = stream
            self._decoder = _decoder(self._stream, self._alpha, self._path)
            self._frames = self._decode()
            first = next(self._frames, None)
            if first is None:
                raise VideoError(f"{self._path}: holds no decodable video frame (empty or truncated); {_FIX_DAMAGED}")
        except VideoError:
            self._container.close()
            raise
        self._first = first
        self._first_pts = first.pts

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Decoded frames in display order. A packet the decoder refuses as invalid (damaged bytes) is skipped and
        counted, for `damage_warning`; any other FFmpeg failure becomes a VideoError."""
        try:
            for packet in self._container.demux(self._stream):
                try:
                    frames = self._decoder.decode(packet)
                except av.InvalidDataError:
                    self._skipped += 1
                    continue
                yield from frames
        except av.FFmpegError as error:
            raise VideoError(f"{self._path}: decoding failed ({_reason(error)}); {_FIX_DAMAGED}") from None

    def _restart(self) -> None:
        """Back to the first frame (the container opened again), unless nothing was read yet."""
        if self._started:
            self._container.close()
            self._open()
        self._started = True

    def __iter__(self) -> Iterator[Frame]:
        self._restart()
        for index, frame in enumerate(chain([self._first], self._frames)):
            given = self._frame(index, frame)
            self._read_until = given.time + float(1 / self.info.fps)
            yield given

    def damage_warning(self, decoded: int) -> str | None:
        time_base = self._stream.time_base
        start = float(self._first_pts * time_base) if self._first_pts is not None and time_base else 0.0
        return damaged_or_short(self.info, decoded, ended_at=start + self._read_until,
                                stream_seconds=self._stream_seconds, skipped=self._skipped)

    def _frame(self, index: int, frame: av.VideoFrame) -> Frame:
        """A decoded frame as RGB(A), rotated for display, with its time from the first frame."""
        image = frame.to_ndarray(format="rgba" if self._alpha else "rgb24")  # (h, w, 3|4) before rotation
        turns = -self.info.rotation // 90
        if turns % 4:
            image = np.ascontiguousarray(np.rot90(image, turns))
        time_base = self._stream.time_base
        if frame.pts is None or self._first_pts is None or time_base is None:
            return Frame(index=index, image=image, time=float(index / self.info.fps))
        return Frame(index=index, image=image, time=float((frame.pts - self._first_pts) * time_base))

    def frame_at(self, index: int) -> Frame | None:
        """Frame `index` as iteration numbers it, or None past the end. The timestamps of the frames decoded on
        the way are remembered for the file (`_TIMESTAMPS`), so a frame among them is reached by seeking to the
        keyframe before it: scrubbing back and forth through a long clip decodes a GOP, not the clip."""
        known = _TIMESTAMPS.get(self._path) if self._container.format.name not in _UNSEEKABLE else []
        if 0 <= index < len(known):
            found = self._seek_frame(index, known[index])
            if found is not None:
                return found
        found = self._decode_from_start(index)[1]
        return None if found is None else self._frame(index, found)

    def count_frames(self, counted: Callable[[int], None] | None = None) -> int:
        """How many frames iteration gives, decoded without converting them (`counted` as in the base class);
        their timestamps are remembered for `frame_at`."""
        return self._decode_from_start(None, counted)[0]

    def _decode_from_start(self, index: int | None,
                           counted: Callable[[int], None] | None = None) -> tuple[int, av.VideoFrame | None]:
        """Decode from the first frame up to frame `index` (to the end with None) without converting any, and
        remember their timestamps: (frames decoded, frame `index` or None past the end); `counted` as in
        `count_frames`."""
        self._restart()
        timestamps: list[int | None] = []
        found = None
        for number, frame in enumerate(chain([self._first], self._frames)):
            timestamps.append(frame.pts)
            _report_count(number + 1, counted)
            if number == index:
                found = frame
                break
        _TIMESTAMPS.put(self._path, timestamps)
        return len(timestamps), found

    def _seek_frame(self, index: int, pts: int) -> Frame | None:
        """Frame `index`, whose timestamp is `pts`, decoded from the keyframe before it; None when the decoder
        does not give that frame after the seek."""
        self._started = True  # the next iteration or sequential read opens the file again
        try:
            self._container.seek(pts, stream=self._stream, backward=True, any_frame=False)
        except av.FFmpegError:
            return None
        self._decoder.flush_buffers()
        try:
            for frame in self._decode():
                if frame.pts == pts:
                    return self._frame(index, frame)
                if frame.pts is not None and frame.pts > pts:
                    break
        except VideoError:  # what follows the keyframe does not decode: read from the start instead
            return None
        return None

    def close(self) -> None:
        self._container.close()


class _Timestamps:
    """The decoded frames' timestamps of recently read files, in iteration order (a prefix of the file's frames),
    by path, size and modification time: `frame_at` seeks to a frame among them. A file once seen with a missing
    or repeated timestamp (joined MPEG-TS files start again from zero) is never sought in."""

    def __init__(self, files: int) -> None:
        self._files = files
        self._known: OrderedDict[tuple[str, int, int], list[int] | None] = OrderedDict()  # None: never seek
        self._lock = threading.Lock()

    def get(self, path: Path) -> list[int]:
        key = _file_key(path)
        with self._lock:
            return self._known.get(key) or []

    def put(self, path: Path, timestamps: list[int | None]) -> None:
        ordered = None not in timestamps and all(a < b for a, b in zip(timestamps, timestamps[1:]))
        key = _file_key(path)
        with self._lock:
            known = self._known.get(key, [])
            if not ordered:
                self._known[key] = None
            elif known is not None and len(timestamps) >= len(known):
                self._known[key] = [pts for pts in timestamps if pts is not None]
            self._known.move_to_end(key)
            while len(self._known) > self._files:
                self._known.popitem(last=False)


_TIMESTAMPS = _Timestamps(files=16)


def _file_key(path: Path) -> tuple[str, int, int]:
    """A file's resolved path, size and modification time: what it is known by while it stays unchanged."""
    status = path.stat()
    return str(path.resolve()), status.st_size, status.st_mtime_ns


def learn_timestamps(path: str | os.PathLike, frames: int) -> None:
    """Decode the video at `path` once, without converting its frames, so that `frame_at` seeks to any of its
    `frames` frames from then on instead of decoding up to it (nothing to do when they are already known)."""
    if len(_TIMESTAMPS.get(Path(path))) < frames:
        with open_video(path) as reader:
            reader.count_frames()


class _FolderReader(VideoReader):
    """Reads a folder of numbered JPEG/PNG frames in numeric order."""

    def __init__(self, path: Path, fps: Fraction, alpha: bool) -> None:
        self._files = sorted((p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES), key=_natural_key)
        if not self._files:
            raise VideoError(f"{path}: folder holds no .jpg/.png frames; put numbered frames (00000.jpg, …) in it")
        self._alpha = alpha
        height, width = self._read(self._files[0]).shape[:2]
        self.info = VideoInfo(str(path), width, height, fps, len(self._files), rotation=0, has_audio=False)

    def _read(self, file: Path) -> np.ndarray:
        """One frame as RGB(A) `(H, W, 3|4)` uint8."""
        image = load_image(file, cv2.IMREAD_UNCHANGED)
        if image is None:
            raise VideoError(f"{file}: cannot read this frame image; re-save it as JPEG or PNG")
        if image.dtype != np.uint8:
            image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image.astype(np.uint8)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if self._alpha:
            code = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGBA
        else:
            code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        return cv2.cvtColor(image, code)

    def __iter__(self) -> Iterator[Frame]:
        for index, file in enumerate(self._files):
            image = self._read(file)
            if image.shape[:2] != (self.info.height, self.info.width):
                raise VideoError(
                    f"{file}: frame is {image.shape[1]}×{image.shape[0]} but the first frame is "
                    f"{self.info.width}×{self.info.height}; resize all frames to one size"
                )
            yield Frame(index=index, image=image, time=float(index / self.info.fps))


def variable_rate(path: str | os.PathLike, fps: Fraction) -> bool:
    """Whether a frame n of the video at `path` comes more than a quarter of a frame (`_VFR_TOLERANCE`) before or
    after n / `fps` seconds, as in phones' variable-frame-rate clips; False for a frame folder. Reads the video
    packets' timestamps (once per file, `_packet_ticks`), decodes nothing."""
    if Path(path).is_dir():
        return False
    ticks, time_base = _packet_ticks(Path(path))
    return not _keeps_to(ticks * float(time_base), fps)


def _keeps_to(times: np.ndarray, fps: Fraction) -> bool:
    """Whether every frame n of `times` (seconds from the first) comes within `_VFR_TOLERANCE` of n / `fps`."""
    period = 1 / float(fps)
    return bool(np.all(np.abs(times - np.arange(len(times)) * period) <= _VFR_TOLERANCE * period))


def _frame_rate(path: Path, stream: av.VideoStream) -> Fraction:
    """The video's frame rate: its header's, unless the header lists no frame count (Matroska, WebM, MPEG-TS: its
    rate is then nominal, a default frame duration or a 1/1000 s time base) and the frames do not keep to it;
    then the packets' timestamps tell it (`_packet_ticks`, decoding nothing): the `COMMON_RATES` one nearest their
    mean rate that they keep to, else that mean rate."""
    header = stream.average_rate or stream.guessed_rate or stream.base_rate or DEFAULT_FOLDER_FPS
    if stream.frames:  # MP4, MOV: the header's rate is its frame count over its duration
        return header
    ticks, time_base = _packet_ticks(path)
    times = ticks * float(time_base)
    if len(ticks) < 2 or not ticks[-1] or _keeps_to(times, header):
        return header
    mean = (len(ticks) - 1) / (int(ticks[-1]) * time_base)
    kept = [rate for rate in COMMON_RATES if _keeps_to(times, rate)]
    return min(kept, key=lambda rate: abs(rate - mean), default=mean)


def _packet_ticks(path: Path) -> tuple[np.ndarray, Fraction]:
    """The first video stream's packet timestamps in display order, in ticks of its time base from the first, and
    that time base (`_read_packet_ticks`, remembered for the file while it stays unchanged)."""
    return _read_packet_ticks(*_file_key(path))


@functools.lru_cache(maxsize=16)
def _read_packet_ticks(path: str, size: int, modified: int) -> tuple[np.ndarray, Fraction]:
    """`_packet_ticks` of the file at `path` of `size` bytes modified at `modified` ns (up to a damaged part,
    when the file has one; none when no packet has a timestamp), read-only: the cache shares it. A file cut short
    (`cut_short`) loses its last `_REORDER_DEPTH`: they can come without frames shown before them, which looked
    like a gap, and a lower frame rate."""
    container = _open_container(Path(path))
    stamps: list[int] = []
    try:
        stream = main_video_stream(container)
        time_base = stream.time_base  # read while the container is open: closed, it is freed memory
        seconds = _stream_seconds(stream)
        for packet in container.demux(stream):
            if packet.pts is not None:
                stamps.append(packet.pts)
    except av.FFmpegError:
        pass
    finally:
        container.close()
    stamps.sort()
    ticks = np.array([pts - stamps[0] for pts in stamps], dtype=np.int64)
    if len(ticks) > 2 * _REORDER_DEPTH and cut_short(float(int(ticks[-1]) * time_base), seconds):
        ticks = ticks[:-_REORDER_DEPTH]
    ticks.setflags(write=False)
    return ticks, time_base


class VideoWriter:
    """Encodes RGB frames (RGBA with `alpha=True`) to `path`, written under a temporary name and renamed on close.

    `.mp4`/`.mkv`/`.mov` → H.264 yuv420p; `.webm` → VP9; with alpha: `.webm` → VP9 yuva420p, `.mov` → ProRes
    4444; a path without a suffix → a folder of PNG frames. `codec` overrides the encoder, `preset` the x264
    preset (default ultrafast: `X264_PRESETS` from fastest to smallest files). `encoder` (`H264_ENCODERS`) picks
    the H.264 encoder: x264 (default), nvenc (NVIDIA's h264_nvenc; VideoError where it does not open) or auto
    (nvenc where `nvenc_available()`, else x264); x264's preset does not apply to nvenc. Odd sizes are padded to
    even ones for 4:2:0 codecs by repeating the last row/column. `audio_from` copies that file's first audio
    stream (remuxed when the container takes its codec, else re-encoded to AAC, or Opus for WebM); a PNG folder
    or a frame-folder source carries no audio. The nth frame written is shown at n / `fps` seconds, or at a later
    slot of 1 / `fps` when the time `write` is given is a whole frame or more later (frames lost before it); with
    `variable_rate` (`variable_rate()` of the source) at the time `write` is given, in a 1/90000 s time base, so
    that a variable-frame-rate clip keeps its frames' timing (a PNG folder keeps no timing).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float | Fraction,
        size: tuple[int, int],
        *,
        audio_from: str | os.PathLike | None = None,
        alpha: bool = False,
        codec: str | None = None,
        preset: str | None = None,
        encoder: str = "x264",
        variable_rate: bool = False,
    ) -> None:
        self.path = Path(path)
        self.size = size
        self._channels = 4 if alpha else 3
        self._count = 0
        if not self.path.suffix:
            self._sink: _FolderSink | _ContainerSink = _FolderSink(self.path)
        else:
            self._sink = _ContainerSink(self.path, Fraction(fps).limit_denominator(100000), size, alpha, codec,
                                        preset, encoder, variable_rate)
            if audio_from is not None and not Path(audio_from).is_dir():  # a frame folder has no audio
                self._sink.add_audio(Path(audio_from))

    def write(self, image: np.ndarray, time: float | None = None) -> None:
        """Append one `(H, W, 3)` RGB frame (`(H, W, 4)` RGBA for an alpha writer) of the writer's size; `time`
        is its time in seconds from the first frame (None: n / fps; see the class for how each writer uses it)."""
        width, height = self.size
        if image.shape != (height, width, self._channels) or image.dtype != np.uint8:
            self.abort()
            raise VideoError(
                f"{self.path}: frame {self._count} is {image.shape} {image.dtype}, expected "
                f"({height}, {width}, {self._channels}) uint8; resize or convert frames before writing"
            )
        try:
            self._sink.write(np.ascontiguousarray(image), time)
        except BaseException:
            self.abort()
            raise
        self._count += 1

    def close(self) -> None:
        """Finish encoding and move the file into place."""
        if self._count == 0:
            self.abort()
            raise VideoError(f"{self.path}: no frames were written; write at least one frame before closing")
        try:
            self._sink.close()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the temporary output; the target path is left untouched."""
        self._sink.abort()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type | None, *exc_info: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _FolderSink:
    """Writes numbered PNG frames into a temporary folder, renamed to the target folder on close."""

    def __init__(self, path: Path) -> None:
        if path.exists() and not _is_frame_folder(path):
            raise VideoError(f"{path}: exists and is not a folder of frames; choose another output path")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._tmp = staging_folder(path)
        self._index = 0

    def write(self, image: np.ndarray, time: float | None) -> None:
        """Save the next numbered PNG; `time` is not kept (frames have no timing here)."""
        code = cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR
        file = self._tmp / f"{self._index:05d}.png"
        if not cv2.imwrite(str(file), cv2.cvtColor(image, code)):
            raise VideoError(f"{file}: cannot write the frame; check free disk space and permissions")
        self._index += 1

    def close(self) -> None:
        if self._path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self._path.name}.", suffix=".old", dir=self._path.parent))
            os.replace(self._path, old / self._path.name)
            os.replace(self._tmp, self._path)
            shutil.rmtree(old)
        else:
            os.replace(self._tmp, self._path)

    def abort(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


def check_x264_size(name: str, size: tuple[int, int], fix: str) -> None:
    """VideoError naming `name` and `fix` when frames of `size` (width, height) are larger than x264 encodes."""
    if max(size) > X264_MAX_SIDE:
        raise VideoError(f"{name}: frames of {size[0]}×{size[1]} are larger than H.264 (x264) encodes, "
                         f"{X264_MAX_SIDE} pixels a side; {fix}")


class _ContainerSink:
    """Encodes video (and copies audio) into a container under a temporary name."""

    def __init__(self, path: Path, fps: Fraction, size: tuple[int, int], alpha: bool, codec: str | None,
                 preset: str | None, encoder: str, variable_rate: bool) -> None:
        suffix = path.suffix.lower()
        if alpha and codec is None and suffix not in _ALPHA_CODECS:
            raise VideoError(f"{path}: {suffix} cannot hold alpha; name the output .webm or .mov, or give no suffix")
        codec = codec or (_ALPHA_CODECS if alpha else _RGB_CODECS).get(suffix) or _h264_codec(encoder, path)
        if codec == _DEFAULT_CODEC:
            check_x264_size(str(path), size, "scale the video down first")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
        os.close(handle)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs are ordinary files
        self._path, self._tmp, self._fps = path, Path(tmp), fps
        self._alpha = alpha
        self._audio: _AudioCopy | None = None
        self._index = 0
        self._slots = 0  # constant rate: frame slots used so far (`_slot`)
        self._timing = _FrameTiming(fps) if variable_rate else None
        self._time_base = _VFR_TIME_BASE if variable_rate else 1 / fps
        try:
            self._container = av.open(tmp, "w", format=_muxer(suffix))
            self._stream = self._add_video_stream(codec, size, preset)
        except (av.FFmpegError, ValueError) as error:
            self.abort()
            raise VideoError(f"{path}: cannot encode with {codec} ({_reason(error)}); try an .mp4 output") from None

    def _add_video_stream(self, codec: str, size: tuple[int, int], preset: str | None) -> av.VideoStream:
        stream = self._container.add_stream(codec, rate=self._fps)
        stream.pix_fmt = _pixel_format(codec, self._alpha)
        width, height = size
        if stream.pix_fmt.endswith("420p"):
            width, height = width + width % 2, height + height % 2
        self._pad = (height - size[1], width - size[0])
        stream.width, stream.height = width, height
        stream.codec_context.time_base = self._time_base
        _tag_colours(stream.codec_context)
        options = dict(_ENCODER_OPTIONS.get(codec, {}))
        if preset and codec == _DEFAULT_CODEC:
            options["preset"] = preset
        stream.options = options
        return stream

    def add_audio(self, source: Path) -> None:
        """Copy the first audio stream of `source` (if it has one) alongside the video."""
        self._audio = _AudioCopy.from_source(source, self._container, self._path)

    def write(self, image: np.ndarray, time: float | None) -> None:
        """Encode the next frame: at its number in a 1/fps time base, or at `time` for a variable rate."""
        if any(self._pad):
            image = np.pad(image, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        frame = _video_frame(image, self._stream.pix_fmt)
        frame.pts = self._slot(time) if self._timing is None else self._timing.pts(self._index, time)
        frame.time_base = self._time_base
        self._encode(frame)
        self._index += 1
        if self._audio is not None:
            self._audio.copy_until(self._end())

    def _slot(self, time: float | None) -> int:
        """A constant-rate frame's number in the 1/fps time base: the next one, or a later one when its `time` is
        a whole frame or more ahead (frames before it were lost: a damaged packet skipped), so that the frames
        after a loss keep their times and the video its audio; the frame before it is shown for longer."""
        slot = self._slots if time is None else max(self._slots, round(time * self._fps))
        self._slots = slot + 1
        return slot

    def _end(self) -> float:
        """Seconds of video written so far: to the end of the last frame."""
        if self._timing is None:
            return float(self._slots / self._fps)
        return self._timing.end()

    def _encode(self, frame: av.VideoFrame | None) -> None:
        try:
            self._container.mux(self._stream.encode(frame))
        except av.FFmpegError as error:
            raise VideoError(f"{self._path}: encoding failed ({_reason(error)}); check free disk space") from None

    def close(self) -> None:
        self._encode(None)
        if self._audio is not None:
            self._audio.finish(self._end())
        self._container.close()
        os.replace(self._tmp, self._path)

    def abort(self) -> None:
        if self._audio is not None:
            self._audio.close()
        container = getattr(self, "_container", None)
        if container is not None:
            try:
                container.close()
            except av.FFmpegError:
                pass
        self._tmp.unlink(missing_ok=True)


class _FrameTiming:
    """The timestamps of a variable-rate output, in `_VFR_TIME_BASE` ticks, strictly increasing as encoders need: a
    frame whose time is not after the last one's (a repeated timestamp, or joined recordings starting again from
    zero) comes one frame (1 / fps) after it, and the frames after it move with it."""

    def __init__(self, fps: Fraction) -> None:
        self._fps = fps
        self._step = max(1, round(1 / (fps * _VFR_TIME_BASE)))  # one frame at the average rate
        self._shift = 0
        self._last = -1

    def pts(self, index: int, time: float | None) -> int:
        """Frame `index`'s timestamp from its `time` in seconds (None: index / fps)."""
        seconds = index / self._fps if time is None else time
        ticks = round(seconds / _VFR_TIME_BASE) + self._shift
        if ticks <= self._last:
            self._shift += self._last + self._step - ticks
            ticks = self._last + self._step
        self._last = ticks
        return ticks

    def end(self) -> float:
        """Seconds to the end of the last frame, taken to last one frame."""
        return float((self._last + self._step) * _VFR_TIME_BASE)


class _AudioCopy:
    """Copies one audio stream into an output container, interleaved with the video as it is written."""

    def __init__(
        self,
        source: av.container.InputContainer,
        stream: av.AudioStream,
        output: av.container.OutputContainer,
        remux: bool,
        start: float,
        target: Path,
    ) -> None:
        self._source, self._in, self._remux, self._start, self._target = source, stream, remux, start, target
        if remux:
            self._out = output.add_stream_from_template(stream)
        else:
            codec = "libopus" if target.suffix.lower() == ".webm" else "aac"
            rate = 48000 if codec == "libopus" else stream.rate
            self._out = output.add_stream(codec, rate=rate)
            self._out.layout = "stereo" if stream.layout.nb_channels > 1 else "mono"
        self._packets = source.demux(stream)
        self._done = False
        self._next_sample = 0  # re-encoding: where the last frame given to the encoder ended, in samples

    @classmethod
    def from_source(cls, source: Path, output: av.container.OutputContainer, target: Path) -> _AudioCopy | None:
        """Set up the copy, or return None when `source` has no audio."""
        container = _open_container(source)
        if not container.streams.audio:
            container.close()
            return None
        stream = container.streams.audio[0]
        video = main_video_stream(container)
        start = _start_seconds(video) if video is not None else _start_seconds(stream)
        remux = stream.codec_context.name in _REMUX_AUDIO.get(target.suffix.lower(), set())
        return cls(container, stream, output, remux, start, target)

    def copy_until(self, end: float) -> None:
        """Move source audio up to `end` seconds (video time) into the output."""
        try:
            while not self._done:
                packet = next(self._packets, None)
                if packet is None:
                    self._done = True
                    self._flush_encoder()
                    return
                if packet.pts is None or packet.size == 0:
                    continue
                time = float(packet.pts * packet.time_base) - self._start
                if time >= (-_AUDIO_PREROLL if self._remux else 0.0):
                    self._copy(packet)
                if time >= end:
                    return
        except av.FFmpegError as error:
            raise VideoError(f"{self._target}: copying audio failed ({_reason(error)}); pass no audio source") from None

    def _copy(self, packet: av.Packet) -> None:
        """Remux the packet, shifted so the first video frame is time 0, or decode and re-encode it."""
        if self._remux:
            shift = round(self._start / packet.time_base)
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = self._out
            self._out.container.mux(packet)
            return
        for frame in self._in.decode(packet):
            self._place(frame)
            self._out.container.mux(self._out.encode(frame))

    def _place(self, frame: av.AudioFrame) -> None:
        """Time a decoded frame for the encoder in samples from the first video frame, as in the source: audio that
        starts late or has a gap keeps its timing (the encoder's own count from 0 moved it against the picture).
        A frame timed before the end of the one before it, or less than `_AUDIO_GAP_S` after it (a coarse time
        base's rounding: Matroska's milliseconds), follows it instead."""
        rate = frame.sample_rate
        start = self._next_sample
        if frame.pts is not None and frame.time_base:
            timed = round((float(frame.pts * frame.time_base) - self._start) * rate)
            start = timed if timed - start > _AUDIO_GAP_S * rate else start
        frame.pts, frame.time_base = start, Fraction(1, rate)
        self._next_sample = start + frame.samples

    def _flush_encoder(self) -> None:
        if not self._remux:
            self._out.container.mux(self._out.encode(None))

    def finish(self, end: float) -> None:
        """Copy the audio up to the end of the video, flush, and close the source."""
        self.copy_until(end)
        if not self._done:
            self._done = True
            self._flush_encoder()
        self.close()

    def close(self) -> None:
        self._source.close()


def main_video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    """The video stream a player shows: of several, the one with the largest picture, as FFmpeg picks (a file can
    carry a small preview first, or cover art, which counts only when it is all there is); None when there is
    none."""
    streams = [s for s in container.streams.video if not s.disposition & _ATTACHED_PICTURE]
    return max(streams or container.streams.video, key=_picture_area, default=None)


def _picture_area(stream: av.VideoStream) -> int:
    """Pixels in a stream's picture as its header gives them (0 for a codec FFmpeg lacks: `_decoder` says so)."""
    context = stream.codec_context
    return 0 if context is None else (context.width or 0) * (context.height or 0)


def _open_container(path: Path) -> av.container.InputContainer:
    """Open a media file for reading, turning FFmpeg failures into one-line VideoErrors."""
    if not path.is_file():
        raise VideoError(f"{path}: file not found; check the path")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: file is empty; re-export or re-download it")
    try:
        return av.open(str(path), "r")
    except av.FFmpegError as error:
        raise VideoError(
            f"{path}: not a readable video ({_reason(error)}); the file is damaged, truncated or not a video — "
            f"{_FIX_DAMAGED}"
        ) from None


@functools.cache
def nvenc_available() -> bool:
    """Whether FFmpeg's NVIDIA H.264 encoder opens here (an NVIDIA GPU with NVENC and its driver); probed once."""
    try:
        context = av.CodecContext.create(_NVENC_CODEC, "w")
        context.width, context.height, context.pix_fmt = 256, 144, "yuv420p"
        context.time_base, context.framerate = Fraction(1, 25), Fraction(25)
        context.open()
    except (av.FFmpegError, ValueError, OSError, AttributeError):
        return False
    return True


def _h264_codec(encoder: str, path: Path) -> str:
    """The FFmpeg encoder for an H.264 output with `encoder` (one of `H264_ENCODERS`)."""
    if encoder not in H264_ENCODERS:
        raise VideoError(f"{path}: unknown H.264 encoder {encoder!r}; choose one of {', '.join(H264_ENCODERS)}")
    if encoder == "x264":
        return _DEFAULT_CODEC
    if nvenc_available():
        return _NVENC_CODEC
    if encoder == "auto":
        return _DEFAULT_CODEC
    raise VideoError(f"{path}: the NVIDIA H.264 encoder (h264_nvenc) does not open here (no NVIDIA GPU with NVENC, "
                     "or no driver); use `--encoder x264`")


def _header_seconds(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    """The video's duration in seconds, the stream's own (`_stream_seconds`), else the container's (which may
    include a longer audio track); None when neither says."""
    own = _stream_seconds(stream)
    if own is not None:
        return own
    return container.duration / av.time_base if container.duration else None


def _stream_seconds(stream: av.VideoStream) -> float | None:
    """A video stream's own duration in seconds: its header's, else its DURATION tag (Matroska, WebM, also as
    DURATION-eng: "HH:MM:SS.fraction"); None when neither says."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    for key, value in stream.metadata.items():
        tag = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", value) if key.upper().startswith("DURATION") else None
        if tag:
            hours, minutes, seconds = tag.groups()
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return None


def _decoder(stream: av.VideoStream, alpha: bool, path: Path) -> av.CodecContext:
    """The stream's decoder; libvpx for VP9 with an alpha channel when alpha is wanted (FFmpeg's vp9 drops it)."""
    context = stream.codec_context
    if context is None:
        raise VideoError(f"{path}: its video codec is not supported here; convert it to H.264 (.mp4)")
    if alpha and context.name == "vp9" and stream.metadata.get("alpha_mode") == "1":
        libvpx = av.CodecContext.create("libvpx-vp9", "r")
        libvpx.extradata = context.extradata
        return libvpx
    context.thread_type = "AUTO"
    return context


def _tag_colours(context: av.VideoCodecContext) -> None:
    """Say in an output how its colours are coded: BT.601 in the limited range, as OpenCV's RGB to 4:2:0 and
    FFmpeg's default conversion both code them, from RGB of BT.709 primaries. Untagged, players take HD video for
    BT.709 and shifted its colours (a green of 30,200,30 showed as 16,171,22)."""
    tags = {"colorspace": _SMPTE170M, "color_range": _LIMITED_RANGE, "color_primaries": _BT709, "color_trc": _BT709}
    for name, value in tags.items():
        if hasattr(context, name):  # an older PyAV (`av>=14` is allowed) may lack some
            setattr(context, name, value)


def _video_frame(image: np.ndarray, pixel_format: str) -> av.VideoFrame:
    """An encoder's input frame: RGB to 4:2:0 by OpenCV when the encoder takes yuv420p (40 % less CPU per 1080p
    frame than FFmpeg's scaler, the same PSNR to the source), else the RGB(A) image for FFmpeg to convert."""
    if pixel_format == "yuv420p" and image.shape[2] == 3:
        return av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
    return av.VideoFrame.from_ndarray(image, format="rgba" if image.shape[2] == 4 else "rgb24")


def _rotation(frame: av.VideoFrame, stream: av.VideoStream) -> int:
    """Clockwise display rotation (0/90/180/270): the frame's display matrix, else the stream's "rotate" tag."""
    tags = {key.lower(): value for key, value in stream.metadata.items()}  # Matroska tags are upper-case
    clockwise = -frame.rotation if frame.rotation else int(float(tags.get("rotate", 0)))
    return (round(clockwise / 90) * 90) % 360


def _start_seconds(stream: av.stream.Stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _pixel_format(codec: str, alpha: bool) -> str:
    """The encoder's pixel format: 4:2:0 (with alpha plane when asked) where supported, else its first format."""
    wanted = ("yuva420p", "yuva444p10le", "rgba") if alpha else ("yuv420p", "yuv422p10le", "rgb24")
    formats = [f.name for f in av.Codec(codec, "w").video_formats or []]
    return next((f for f in wanted if f in formats), formats[0] if formats else wanted[0])


def _muxer(suffix: str) -> str | None:
    return {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".mp4": "mp4"}.get(suffix)


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and all(p.suffix.lower() in FRAME_SUFFIXES for p in path.iterdir())


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _reason(error: Exception) -> str:
    """FFmpeg's message without the errno and path PyAV adds."""
    return str(getattr(error, "strerror", None) or error).splitlines()[0]
