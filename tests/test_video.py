"""core.io.video on real encoded video: round trips, audio copy, rotation, alpha, frame folders and bad files."""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from core.io.masks import read_mask
from core.io.video import (VideoError, VideoInfo, VideoWriter, damaged_or_short, hdr_note, nvenc_available,
                           open_video, variable_rate)
from tests.conftest import encode_hlg_clip, frame_times, uneven_times


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def stream_packets(path: Path, kind: str = "audio") -> tuple[str, list[bytes]]:
    """The codec name and packet payloads of the first stream of `kind` ("audio" or "video")."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return stream.codec_context.name, [bytes(p) for p in container.demux(stream) if p.size]


def assert_one_line_error(error: pytest.ExceptionInfo[VideoError], path: Path) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message


def test_reads_real_mp4_frame_by_frame(judo_mp4: Path, judo_frames: list[np.ndarray]) -> None:
    with open_video(judo_mp4) as reader:
        info = reader.info
        frames = list(reader)
    assert (info.width, info.height, info.fps, info.num_frames) == (854, 480, Fraction(25), 16)
    assert info.has_audio and info.rotation == 0
    assert [f.index for f in frames] == list(range(16))
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(16)], abs=1e-6)
    for frame, source in zip(frames, judo_frames):
        assert frame.image.shape == (480, 854, 3) and frame.image.dtype == np.uint8
        assert mean_abs_diff(frame.image, source) < 4.0


def test_reader_can_iterate_twice(judo_mp4: Path) -> None:
    with open_video(judo_mp4) as reader:
        first = [f.image for f in reader]
        second = [f.image for f in reader]
    assert len(first) == len(second) == 16
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_write_round_trip_copies_audio_packets(judo_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with open_video(judo_mp4) as reader:
        with VideoWriter(out, reader.info.fps, (reader.info.width, reader.info.height), audio_from=judo_mp4) as writer:
            for frame in reader:
                writer.write(frame.image)
    with open_video(out) as reader:
        assert (reader.info.width, reader.info.height, reader.info.fps) == (854, 480, Fraction(25))
        assert reader.info.has_audio
        assert sum(1 for _ in reader) == 16
    source_codec, source_packets = stream_packets(judo_mp4)
    codec, packets = stream_packets(out)
    assert codec == source_codec == "aac"
    assert packets == source_packets[: len(packets)]  # remuxed, not re-encoded
    assert len(packets) >= len(source_packets) - 2


def test_audio_reencoded_to_opus_for_webm(judo_mp4: Path, judo_frames: list[np.ndarray], tmp_path: Path) -> None:
    out = tmp_path / "out.webm"
    with VideoWriter(out, 25, (854, 480), audio_from=judo_mp4) as writer:
        for image in judo_frames[:6]:
            writer.write(image)
    codec, packets = stream_packets(out)
    assert codec == "opus" and packets
    with open_video(out) as reader:
        assert reader.info.has_audio and sum(1 for _ in reader) == 6


def test_odd_size_is_padded_to_even(judo_frames: list[np.ndarray], tmp_path: Path) -> None:
    odd = [f[:479, :853] for f in judo_frames[:3]]
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, 25, (853, 479)) as writer:
        for image in odd:
            writer.write(image)
    with open_video(out) as reader:
        assert (reader.info.width, reader.info.height) == (854, 480)
        image = next(iter(reader)).image
    assert mean_abs_diff(image[:479, :853], odd[0]) < 4.0


def test_slower_x264_presets_make_smaller_files_of_the_same_frames(judo_frames: list[np.ndarray],
                                                                    tmp_path: Path) -> None:
    sizes = {}
    for preset in ("ultrafast", "veryfast"):
        out = tmp_path / f"{preset}.mp4"
        with VideoWriter(out, 25, (854, 480), preset=preset) as writer:
            for image in judo_frames[:8]:
                writer.write(image)
        with open_video(out) as reader:
            decoded = [frame.image for frame in reader]
        assert len(decoded) == 8 and mean_abs_diff(decoded[4], judo_frames[4]) < 4.0
        sizes[preset] = out.stat().st_size
    assert sizes["veryfast"] < 0.9 * sizes["ultrafast"]


def test_auto_encoder_falls_back_to_x264_without_nvenc(judo_frames: list[np.ndarray], tmp_path: Path) -> None:
    out = tmp_path / "auto.mp4"
    with VideoWriter(out, 25, (854, 480), encoder="auto") as writer:
        for image in judo_frames[:4]:
            writer.write(image)
    codec, packets = stream_packets(out, "video")
    assert codec == "h264"
    assert (b"x264" in packets[0]) != nvenc_available()  # libx264 writes its name and settings into the first frame
    with open_video(out) as reader:
        decoded = [frame.image for frame in reader]
    assert len(decoded) == 4 and mean_abs_diff(decoded[2], judo_frames[2]) < 4.0


@pytest.mark.skipif(nvenc_available(), reason="NVENC opens on this machine")
def test_nvenc_encoder_without_nvenc_is_a_one_line_error(tmp_path: Path) -> None:
    out = tmp_path / "nvenc.mp4"
    with pytest.raises(VideoError, match="--encoder x264") as error:
        VideoWriter(out, 25, (854, 480), encoder="nvenc")
    assert_one_line_error(error, out)
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


@pytest.mark.parametrize(("name", "rotation"), [("matrix.mp4", 90), ("matrix.mp4", 270), ("tag.mkv", 90)])
def test_rotation_metadata_is_applied(make_video, judo_frames: list[np.ndarray], name: str, rotation: int) -> None:
    path = make_video(name, judo_frames[:2], audio=False, rotation=rotation, rotate_tag=name.startswith("tag"))
    with open_video(path) as reader:
        assert reader.info.rotation == rotation
        assert (reader.info.width, reader.info.height) == (480, 854)
        image = next(iter(reader)).image
    assert image.shape == (854, 480, 3)
    upright = np.rot90(judo_frames[0], -rotation // 90)  # clockwise turn
    assert mean_abs_diff(image, upright) < 4.0
    assert mean_abs_diff(image, np.rot90(upright, 2)) > 20.0


@pytest.mark.parametrize("suffix", [".webm", ".mov", ""])
def test_alpha_round_trip_keeps_alpha(judo_dir: Path, judo_frames: list[np.ndarray], tmp_path: Path,
                                      suffix: str) -> None:
    alpha = np.where(read_mask(judo_dir / "masks" / "00000.png") > 0, 255, 0).astype(np.uint8)
    rgba = np.dstack([judo_frames[0], alpha])
    out = tmp_path / f"cutout{suffix}"
    with VideoWriter(out, 25, (854, 480), alpha=True) as writer:
        for _ in range(3):
            writer.write(rgba)
    with open_video(out, alpha=True) as reader:
        frames = list(reader)
    assert len(frames) == 3
    decoded = frames[-1].image
    assert decoded.shape == (480, 854, 4)
    agreement = np.mean((decoded[..., 3] >= 128) == (alpha == 255))
    assert agreement > 0.99
    if suffix == "":
        assert np.array_equal(decoded, rgba)


def test_a_png_folder_output_gets_the_umasks_permissions(judo_frames: list[np.ndarray], tmp_path: Path) -> None:
    """The folder is built under a hidden name and renamed into place; it must not keep a private 0700."""
    umask = os.umask(0o027)
    try:
        with VideoWriter(tmp_path / "frames", 25, (854, 480)) as writer:
            writer.write(judo_frames[0])
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "frames").stat().st_mode) == 0o750
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]


def test_alpha_needs_a_container_that_holds_it(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"\.webm or \.mov"):
        VideoWriter(tmp_path / "cutout.mp4", 25, (64, 32), alpha=True)
    assert list(tmp_path.iterdir()) == []


def test_frame_folder_reads_in_numeric_order(tmp_path: Path, judo_frames: list[np.ndarray]) -> None:
    for number, image in zip((1, 2, 10), judo_frames[:3]):
        cv2.imwrite(str(tmp_path / f"{number}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    with open_video(tmp_path, fps=10) as reader:
        assert (reader.info.fps, reader.info.num_frames, reader.info.has_audio) == (10, 3, False)
        frames = list(reader)
    assert [f.time for f in frames] == pytest.approx([0.0, 0.1, 0.2])
    assert all(np.array_equal(f.image, s) for f, s in zip(frames, judo_frames[:3]))


def test_sample_folder_defaults_to_25_fps(judo_dir: Path) -> None:
    with open_video(judo_dir) as reader:
        assert (reader.info.width, reader.info.height, reader.info.fps) == (854, 480, 25)
        assert sum(1 for _ in reader) == 16


def test_exception_leaves_no_files(judo_frames: list[np.ndarray], tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyError):
        with VideoWriter(out, 25, (854, 480)) as writer:
            writer.write(judo_frames[0])
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []


def test_target_appears_only_on_close(judo_frames: list[np.ndarray], tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    writer = VideoWriter(out, 25, (854, 480))
    writer.write(judo_frames[0])
    assert out.read_bytes() == b"old"
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
    with open_video(out) as reader:
        assert reader.info.num_frames == 1


def test_writer_rejects_wrong_frames_and_empty_output(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"expected \(32, 64, 3\)"):
        VideoWriter(tmp_path / "a.mp4", 25, (64, 32)).write(np.zeros((32, 60, 3), np.uint8))
    with pytest.raises(VideoError, match="no frames"):
        VideoWriter(tmp_path / "b.mp4", 25, (64, 32)).close()
    assert list(tmp_path.iterdir()) == []


def test_truncated_mp4_is_a_video_error(judo_mp4: Path, tmp_path: Path) -> None:
    half = judo_mp4.stat().st_size // 2
    cut = tmp_path / "cut.mp4"
    subprocess.run(["head", "-c", str(half), str(judo_mp4)], stdout=cut.open("wb"), check=True)
    with pytest.raises(VideoError) as error:
        open_video(cut)
    assert_one_line_error(error, cut)


def test_truncated_faststart_mp4_fails_while_decoding(make_video, judo_frames: list[np.ndarray],
                                                      tmp_path: Path) -> None:
    path = make_video("fast.mp4", judo_frames, options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(VideoError) as error:
        with open_video(cut) as reader:
            for _ in reader:
                pass
    assert_one_line_error(error, cut)


@pytest.mark.parametrize("content", [b"", b"this is not a video\n", bytes(np.random.default_rng(0).bytes(20000))])
def test_garbage_files_are_video_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError) as error:
        open_video(path)
    assert_one_line_error(error, path)


def test_unsupported_codec_is_a_video_error(judo_mp4: Path, tmp_path: Path) -> None:
    path = tmp_path / "unknown.mp4"
    path.write_bytes(judo_mp4.read_bytes().replace(b"avc1", b"zzz9"))  # an unknown video fourcc
    with pytest.raises(VideoError, match="not supported") as error:
        open_video(path)
    assert_one_line_error(error, path)


def test_audio_only_and_missing_files_are_video_errors(tmp_path: Path) -> None:
    audio_only = tmp_path / "tone.m4a"
    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        frame.sample_rate = 44100
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(VideoError, match="no video stream"):
        open_video(audio_only)
    with pytest.raises(VideoError, match="not found") as error:
        open_video(tmp_path / "missing.mp4")
    assert_one_line_error(error, tmp_path / "missing.mp4")
    empty_folder = tmp_path / "frames"
    empty_folder.mkdir()
    with pytest.raises(VideoError, match="no .jpg/.png frames"):
        open_video(empty_folder)


def test_frame_folder_with_a_bad_or_odd_sized_frame(tmp_path: Path, judo_frames: list[np.ndarray]) -> None:
    cv2.imwrite(str(tmp_path / "00000.png"), judo_frames[0])
    cv2.imwrite(str(tmp_path / "00001.png"), judo_frames[1][:240])
    with pytest.raises(VideoError, match=r"00001\.png: frame is 854×240 but the first frame is 854×480"):
        list(open_video(tmp_path))
    (tmp_path / "00001.png").write_bytes(b"broken")
    with pytest.raises(VideoError, match=r"00001\.png: cannot read"):
        list(open_video(tmp_path))


@pytest.mark.parametrize("name, alpha", [("clip.mp4", False), ("cutout.webm", True)])
def test_outputs_say_how_their_colours_are_coded(tmp_path: Path, name: str, alpha: bool) -> None:
    """BT.601, limited range, BT.709 primaries: untagged, an HD output's colours shifted in players (taken for
    BT.709)."""
    with VideoWriter(tmp_path / name, 25, (1280, 720), alpha=alpha) as writer:
        writer.write(np.zeros((720, 1280, 4 if alpha else 3), np.uint8))
    with av.open(str(tmp_path / name)) as container:
        context = container.streams.video[0].codec_context
        assert (context.colorspace, context.color_range, context.color_primaries, context.color_trc) == (6, 1, 1, 1)


def test_an_hdr_clip_is_noted_as_read_in_standard_range(tmp_path: Path, judo_mp4: Path) -> None:
    """A phone's HDR clip (HLG) is decoded as standard range (no tone mapping here): its colours look flat, and
    the user is told why."""
    path = encode_hlg_clip(tmp_path / "phone.mov")
    with open_video(path) as reader:
        assert reader.info.hdr == "HLG"
        assert hdr_note(reader.info).startswith("phone.mov is HDR (HLG): its colours are read as standard range")
    with open_video(judo_mp4) as reader:
        assert reader.info.hdr is None and hdr_note(reader.info) is None


def test_a_damage_warning_only_when_frames_are_missing_or_packets_were_skipped() -> None:
    mp4 = VideoInfo("/up/clip.mp4", 64, 32, Fraction(25), 30, 0, False, 1.2)
    nothing = replace(mp4, num_frames=None, duration=None)
    assert damaged_or_short(nothing, 2, ended_at=0.08, stream_seconds=None) is None  # the header says nothing
    assert damaged_or_short(mp4, 28, ended_at=1.12, stream_seconds=1.2) is None  # a frame or two short
    warning = damaged_or_short(mp4, 2, ended_at=0.08, stream_seconds=1.2)
    assert warning.startswith("clip.mp4 ends after 2 of the 30 frames its header lists (truncated or damaged?); "
                              "the outputs hold the 2 frames that decoded")
    assert "re-download" in warning and "\n" not in warning and "/up" not in warning
    webm = replace(mp4, path="/up/clip.webm", num_frames=None, duration=1.0)  # seconds but no frame count
    assert damaged_or_short(webm, 24, ended_at=0.96, stream_seconds=1.0) is None
    assert damaged_or_short(webm, 24, ended_at=0.91, stream_seconds=1.0) is None  # within 0.1 s
    assert damaged_or_short(webm, 10, ended_at=0.4, stream_seconds=1.0).startswith(
        "clip.webm ends after 0.40 of the 1.00 seconds its header gives (truncated or damaged?); the outputs hold the "
        "10 frames")
    assert damaged_or_short(webm, 10, ended_at=0.4, stream_seconds=None) is None  # only the container's (with audio)
    skipped = damaged_or_short(mp4, 26, ended_at=1.2, stream_seconds=1.2, skipped=4)  # not cut short: 4 frames lost
    assert skipped.startswith("clip.mp4 has 4 damaged packets, skipped; ")


def test_damaged_bytes_mid_file_are_skipped_and_warned_of(make_video, judo_frames: list[np.ndarray],
                                                           tmp_path: Path) -> None:
    """Zeroed bytes in the middle of an MP4 lose a frame or so, not the clip (it used to fail at that packet, and
    the batch lost every frame tracked before it)."""
    data = bytearray(make_video("clip.mp4", judo_frames, audio=False).read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(4096)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(data)
    with open_video(damaged) as reader:
        decoded = sum(1 for _ in reader)
        warning = reader.damage_warning(decoded)
    assert 5 <= decoded < len(judo_frames) and "damaged packet" in warning and warning.startswith("damaged.mp4 ")


def test_frames_after_a_lost_one_keep_their_times_at_a_constant_rate(make_video, judo_frames: list[np.ndarray],
                                                                      tmp_path: Path) -> None:
    """A frame lost to a damaged packet used to move every later frame one frame early in a constant-rate output,
    so the video drifted from its audio; now the frame before the loss is shown longer instead."""
    size = (judo_frames[0].shape[1], judo_frames[0].shape[0])
    with VideoWriter(tmp_path / "gap.mp4", 25, size) as writer:
        for time, image in zip((0.0, 0.04, 0.12, 0.16), judo_frames):  # the frame at 0.08 s was lost
            writer.write(image, time)
    with open_video(tmp_path / "gap.mp4") as reader:
        assert [round(frame.time, 3) for frame in reader] == [0.0, 0.04, 0.12, 0.16]
    data = bytearray(make_video("clip.mp4", judo_frames, audio=False).read_bytes())
    data[len(data) // 2:len(data) // 2 + 4096] = bytes(4096)
    (tmp_path / "damaged.mp4").write_bytes(data)
    with open_video(tmp_path / "damaged.mp4") as reader, VideoWriter(tmp_path / "out.mp4", reader.info.fps,
                                                                     size) as writer:
        times = []
        for frame in reader:
            times.append(round(frame.time, 3))
            writer.write(frame.image, frame.time)
    with open_video(tmp_path / "out.mp4") as reader:
        assert [round(frame.time, 3) for frame in reader] == times and len(times) < len(judo_frames)


def test_sound_that_starts_late_keeps_its_time_when_it_is_re_encoded(make_video, judo_frames: list[np.ndarray],
                                                                     tmp_path: Path) -> None:
    """A WebM output re-encodes AAC to Opus; the encoder's own count from 0 put a camera's sound that starts late
    0.4 s early against the picture (a remuxed MP4 kept it)."""
    late = make_video("late.mp4", judo_frames, audio_start=0.4)
    size = (judo_frames[0].shape[1], judo_frames[0].shape[0])
    for name in ("out.webm", "out.mp4"):
        with open_video(late) as reader, VideoWriter(tmp_path / name, reader.info.fps, size, audio_from=late) as writer:
            for frame in reader:
                writer.write(frame.image, frame.time)
        with av.open(str(tmp_path / name)) as container:
            first = next(container.decode(audio=0))
            assert first.time == pytest.approx(0.4, abs=0.03), name
    gapped = make_video("gap.mp4", judo_frames * 2, audio_gap=(0.4, 0.8))  # 1.28 s, no sound from 0.4 to 0.8 s
    with open_video(gapped) as reader, VideoWriter(tmp_path / "gap.webm", reader.info.fps, size,
                                                   audio_from=gapped) as writer:
        for frame in reader:
            writer.write(frame.image, frame.time)
    assert audio_gaps(tmp_path / "gap.webm") == [pytest.approx((0.4, 0.8), abs=0.04)]


def audio_gaps(path: Path) -> list[tuple[float, float]]:
    """(from, to) seconds of each stretch of more than 0.05 s that the first audio stream has no sound for."""
    gaps, end = [], None
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            if end is not None and frame.time - end > 0.05:
                gaps.append((end, frame.time))
            end = frame.time + frame.samples / frame.sample_rate
    return gaps


def test_a_clip_trimmed_by_an_edit_list_is_not_taken_for_a_damaged_one(make_video, judo_frames: list[np.ndarray],
                                                                        tmp_path: Path) -> None:
    """A cut made without re-encoding (`ffmpeg -ss … -c copy`) keeps the frames before the cut, hidden by an edit
    list, and its header counts them: it was warned of as truncated, and the user told to download it again."""
    whole = make_video("whole.mp4", judo_frames, audio=False)
    trimmed = tmp_path / "trimmed.mp4"
    with av.open(str(whole)) as source, av.open(str(trimmed), "w") as target:
        video = source.streams.video[0]
        out = target.add_stream_from_template(video)
        shift = round(Fraction(4, 25) / video.time_base)  # the cut: 4 frames in
        for packet in source.demux(video):
            if packet.dts is None:
                continue
            packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, out
            target.mux(packet)
    with open_video(trimmed) as reader:
        decoded = sum(1 for _ in reader)
        assert decoded < reader.info.num_frames - 2 and reader.damage_warning(decoded) is None


def test_of_two_video_streams_the_larger_picture_is_read(judo_frames: list[np.ndarray], tmp_path: Path) -> None:
    """A file carrying a small preview as its first video stream was read at the preview's size, and a mask of the
    real picture refused as the wrong size."""
    path = tmp_path / "two.mkv"
    with av.open(str(path), "w") as container:
        streams = []
        for width, height in ((160, 90), (854, 480)):
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            streams.append(stream)
        for image in judo_frames[:4]:
            for stream in streams:
                small = cv2.resize(image, (stream.width, stream.height))
                container.mux(stream.encode(av.VideoFrame.from_ndarray(small, format="rgb24")))
        for stream in streams:
            container.mux(stream.encode(None))
    with open_video(path) as reader:
        assert (reader.info.width, reader.info.height) == (854, 480) and sum(1 for _ in reader) == 4


def test_a_matroska_file_cut_short_keeps_its_frame_rate(make_video, judo_frames: list[np.ndarray],
                                                       tmp_path: Path) -> None:
    """Cut inside a group of pictures, a file's last packets lack frames shown before them: its rate was read as
    23.56 instead of 25 and its outputs played 6 % slow against the sound."""
    whole = make_video("long.mkv", judo_frames * 6)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    with open_video(cut) as reader:
        assert reader.info.fps == 25 and not variable_rate(cut, reader.info.fps)


def test_a_matroska_file_cut_short_is_warned_of_by_its_header_seconds(make_video, judo_frames: list[np.ndarray],
                                                             tmp_path: Path) -> None:
    """WebM lists no frame count: a cut-short one used to end early without a word."""
    whole = make_video("clip.mkv", judo_frames, audio=False)  # Matroska, as WebM is
    with open_video(whole) as reader:
        assert reader.damage_warning(sum(1 for _ in reader)) is None
    later = [Fraction(50 + i, 25) for i in range(len(judo_frames))]
    late = make_video("late.mkv", judo_frames, audio=False, times=later)
    with open_video(late) as reader:  # its video starts 2 s in: whole, not 0.64 of 2.64 s
        assert reader.damage_warning(sum(1 for _ in reader)) is None
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 7 // 10])
    with open_video(cut) as reader:
        decoded = sum(1 for _ in reader)
        assert decoded < len(judo_frames) - 2 and "seconds its header gives" in reader.damage_warning(decoded)


def test_frames_wider_than_x264_encodes_are_refused_before_a_file_is_made(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"frames of 16386×64 are larger than H.264 \(x264\) encodes, 16384 pixels "
                                         r"a side; scale the video down first"):
        VideoWriter(tmp_path / "wide.mp4", 25, (16386, 64))
    assert list(tmp_path.iterdir()) == []


def encode_with_gops(path: Path, frames: list[np.ndarray], gop: int) -> Path:
    """H.264 with a keyframe every `gop` frames and B-frames (frames decode out of order), as cameras write."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"g": str(gop), "bf": "2", "keyint_min": str(gop)})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("rotated", [False, True])
def test_frame_at_gives_the_frames_iteration_gives_in_any_order(make_video, judo_frames: list[np.ndarray],
                                                                tmp_path: Path, rotated: bool) -> None:
    frames = [cv2.resize(f, (160, 96)) for f in judo_frames + judo_frames[::-1]]  # 32 frames
    path = (make_video("turned.mp4", frames, audio=False, rotation=90) if rotated
            else encode_with_gops(tmp_path / "gops.mp4", frames, gop=5))
    with open_video(path) as reader:
        expected = [frame.image for frame in reader]
    order = [20, 3, 31, 0, 17, 16, 30, 5, 9, 25, 1, 12]  # the first read decodes up to 20; the rest seek or extend
    with open_video(path) as reader:
        for index in order:
            frame = reader.frame_at(index)
            assert frame is not None and frame.index == index and np.array_equal(frame.image, expected[index])
        assert reader.frame_at(len(frames)) is None
        assert reader.frame_at(4).index == 4
        again = [frame.image for frame in reader]  # iteration still starts at the first frame
    assert len(again) == len(expected) and all(np.array_equal(a, b) for a, b in zip(again, expected))


def test_a_file_once_seen_with_unordered_timestamps_is_never_sought_in(tmp_path: Path) -> None:
    from core.io.video import _Timestamps

    path = tmp_path / "joined.ts"
    path.write_bytes(b"two recordings joined")
    known = _Timestamps(files=2)
    known.put(path, [0, 1, 2, 0, 1])  # the second recording starts again from zero
    known.put(path, [0, 1, 2])  # a later read that stopped before the reset
    assert known.get(path) == []
    other = tmp_path / "clip.mp4"
    other.write_bytes(b"one recording")
    known.put(other, [0, 512, 1024])
    assert known.get(other) == [0, 512, 1024]


def audio_end(path: Path) -> float:
    """Seconds to the end of the last audio packet."""
    with av.open(str(path)) as container:
        return max(float((p.pts + p.duration) * p.time_base) for p in container.demux(audio=0) if p.size)


def copy_video(source: Path, out: Path, **options: object) -> list[float]:
    """Write `source`'s frames to `out` with their times (variable-rate when the source is), its audio copied;
    the source frames' times."""
    with open_video(source) as reader:
        info = reader.info
        with VideoWriter(out, info.fps, (info.width, info.height), audio_from=source,
                         variable_rate=variable_rate(source, info.fps), **options) as writer:
            times = []
            for frame in reader:
                writer.write(frame.image, frame.time)
                times.append(frame.time)
    return times


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_a_variable_rate_clip_keeps_each_frames_time_and_its_audio(make_video, judo_frames: list[np.ndarray],
                                                                   tmp_path: Path, suffix: str) -> None:
    frames = [cv2.resize(f, (160, 96)) for f in judo_frames + judo_frames[::-1][1:-1]]  # 30 frames
    source = make_video("phone.mp4", frames, 30, times=uneven_times(len(frames)))
    with open_video(source) as reader:
        assert variable_rate(source, reader.info.fps)
    times = copy_video(source, tmp_path / f"out{suffix}")
    assert times == pytest.approx([float(t) for t in uneven_times(30)], abs=1e-6)
    assert frame_times(tmp_path / f"out{suffix}") == pytest.approx(times, abs=1e-3)
    assert audio_end(tmp_path / f"out{suffix}") == pytest.approx(audio_end(source), abs=0.05)  # copied whole


def test_a_constant_rate_clip_is_written_as_without_times(judo_mp4: Path, make_video, judo_frames: list[np.ndarray],
                                                          tmp_path: Path) -> None:
    with open_video(judo_mp4) as reader:
        assert not variable_rate(judo_mp4, reader.info.fps)
        with VideoWriter(tmp_path / "count.mp4", reader.info.fps, (854, 480), audio_from=judo_mp4) as writer:
            for frame in reader:
                writer.write(frame.image)
    copy_video(judo_mp4, tmp_path / "timed.mp4")
    assert (tmp_path / "timed.mp4").read_bytes() == (tmp_path / "count.mp4").read_bytes()
    with av.open(str(tmp_path / "timed.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.time_base == Fraction(1, 12800)  # the mp4 muxer's for the 1/25 s of a count-based writer
        assert sorted(p.pts * stream.time_base for p in container.demux(stream) if p.size) == [
            Fraction(n, 25) for n in range(16)]
    milliseconds = make_video("cfr.mkv", [cv2.resize(f, (160, 96)) for f in judo_frames], 30, audio=False)
    with open_video(milliseconds) as reader:  # frame times rounded to the millisecond stay constant-rate
        assert not variable_rate(milliseconds, reader.info.fps)


def nominal_rate_clip(path: Path, frames: list[np.ndarray], codec: str, rate: int, times: list[Fraction]) -> Path:
    """Encode RGB frames with `codec` at `times` (seconds, in a 1/1000 s time base) under a stream rate of `rate`:
    a Matroska/WebM header whose rate is nominal, whatever the frames' times."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for image, time in zip(frames, times):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = round(time * 1000), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize(("suffix", "codec"), [(".webm", "libvpx-vp9"), (".mkv", "libx264")])
def test_a_header_rate_the_frames_do_not_keep_to_gives_way_to_their_mean_rate(make_video,
                                                                               judo_frames: list[np.ndarray],
                                                                               tmp_path: Path, suffix: str,
                                                                               codec: str) -> None:
    frames = [cv2.resize(f, (160, 96)) for f in judo_frames]  # 16 frames
    steady = nominal_rate_clip(tmp_path / f"steady{suffix}", frames, codec, 1000, [Fraction(n, 30) for n in range(16)])
    phone = nominal_rate_clip(tmp_path / f"phone{suffix}", frames, codec, 30, uneven_times(16))
    ntsc = nominal_rate_clip(tmp_path / f"ntsc{suffix}", frames * 4, codec, 1000,
                             [Fraction(1001 * n, 30000) for n in range(64)])
    with av.open(str(steady)) as container:
        assert container.streams.video[0].average_rate == 1000  # the header's nominal rate
    with open_video(steady) as reader:
        assert reader.info.fps == 30  # 15 frame gaps in 0.5 s
        assert not variable_rate(steady, reader.info.fps)
    with open_video(ntsc) as reader:  # 63 gaps in 2.102 s, to the millisecond: 29.971 fps, the NTSC rate
        assert reader.info.fps == Fraction(30000, 1001)
        assert not variable_rate(ntsc, reader.info.fps)
    with open_video(phone) as reader:  # the header says 30
        assert reader.info.fps == Fraction(15, round(uneven_times(16)[-1], 3))
        assert variable_rate(phone, reader.info.fps)
    listed = make_video("phone.mp4", frames, 30, audio=False, times=uneven_times(16))
    with av.open(str(listed)) as container, open_video(listed) as reader:  # an MP4 header's rate is its mean
        assert reader.info.fps == container.streams.video[0].average_rate == Fraction(16, uneven_times(16)[-1] +
                                                                                      Fraction(1, 30))


def test_repeated_or_earlier_times_follow_the_last_frame(tmp_path: Path) -> None:
    out = tmp_path / "joined.mp4"
    with VideoWriter(out, 10, (64, 48), variable_rate=True) as writer:
        for time in (0.0, 0.05, 0.05, 0.0, 0.02):  # a repeated timestamp, then a recording that starts again
            writer.write(np.zeros((48, 64, 3), np.uint8), time)
    assert frame_times(out) == pytest.approx([0.0, 0.05, 0.15, 0.25, 0.27], abs=1e-4)
