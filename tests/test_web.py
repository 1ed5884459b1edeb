"""Tests of the web face: annotation → mask (pure), the run pipeline on a real encoded clip, and the running
Gradio app driven by `gradio_client` (named endpoint, bad input, limits, queueing, per-session folders)."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from core.io.masks import MaskError, read_mask, resize_labels, write_mask  # noqa: E402
from core.batch.worker import OutputSpec  # noqa: E402
from core.inference.settings import TrackerConfig  # noqa: E402
from core.io.video import (  # noqa: E402
    VideoError, VideoReader, VideoWriter, _ContainerReader, learn_timestamps, open_video,
)
from core import annotate  # noqa: E402
from core.annotate import Mark  # noqa: E402
from web.app import (  # noqa: E402
    DISPLAY_SIDE, MARKS_CHANGED, START, AppConfig, AppUnreachable, Session, Workspace, _learn_quietly, _parse_colour,
    _safe_name, annotated_view, annotations_of, build_app, cancel_message, display_scale, display_size, frame_point,
    learn_in_background, marks_summary, parse_args, edit_marks, loaded_clip, named_after_clip, probe_clip, read_frame,
    run_problem, run_status_after_edit, scrub_slider, serve, undo_edit, update_marks, user_error, user_message,
    wait_until_answering,
    main as web_main,
)
from web.pipeline import OUTPUTS, VIDEO_OUTPUTS, RunSettings, preview_overlays, run_outputs  # noqa: E402
import web.app as web_app  # noqa: E402
from tests.conftest import encode_hlg_clip, encode_video, sample_frames  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "judo"
CLIP_SIZE = (320, 180)  # (w, h) of the test clip: small, so the tracker runs fast on CPU
CLIP_FRAMES = 5
TRACKER = TrackerConfig(device="cpu", threads=1)


def make_clip(path: Path, frames: int = CLIP_FRAMES, fps: int = 10) -> Path:
    """Encode the first `frames` judo frames, downscaled to CLIP_SIZE, as an H.264 MP4 (real PyAV encode)."""
    with open_video(SAMPLE) as reader, VideoWriter(path, fps, CLIP_SIZE) as writer:
        for frame in reader:
            if frame.index >= frames:
                break
            writer.write(cv2.resize(frame.image, CLIP_SIZE, interpolation=cv2.INTER_AREA))
    return path


def make_mask(path: Path) -> Path:
    """The judo first-frame annotation (object 1), resized to the test clip, as a palette PNG."""
    labels = resize_labels(read_mask(SAMPLE / "masks" / "00000.png"), (CLIP_SIZE[1], CLIP_SIZE[0]))
    write_mask(path, labels)
    return path


def count_frames(path: Path, alpha: bool = False) -> tuple[int, tuple[int, ...]]:
    """(number of decoded frames, shape of the first frame) of a video file."""
    shape: tuple[int, ...] = ()
    count = 0
    with open_video(path, alpha=alpha) as reader:
        for frame in reader:
            shape = shape or frame.image.shape
            count += 1
    return count, shape


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "judo.mp4")


@pytest.fixture(scope="module")
def mask(tmp_path_factory) -> Path:
    return make_mask(tmp_path_factory.mktemp("mask") / "00000.png")


def disc_image(size: int = 120, radius: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc on a dark noisy background → ((H, W, 3) RGB image, (H, W) bool disc)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= radius**2
    image[disc] = rng.integers(190, 255, (int(disc.sum()), 3), dtype=np.uint8)
    return image, disc


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


# ---- annotation (pure) ----

def test_box_needs_two_clicks_and_orders_its_corners():
    marks, pending = annotate.add_click((), None, "box", 1, 50, 40)
    assert marks == () and pending == annotate.BoxStart(1, 50, 40)
    marks, pending = annotate.add_click(marks, pending, "box", 1, 10, 90)
    assert pending is None and marks == (Mark("box", 1, 10, 40, 50, 90),)


def test_box_corner_of_another_object_starts_a_new_box():
    _, pending = annotate.add_click((), annotate.BoxStart(1, 5, 5), "box", 2, 30, 30)
    assert pending == annotate.BoxStart(2, 30, 30)


def test_undo_drops_a_pending_corner_first_then_each_edit_a_clear_too():
    frame = np.zeros((40, 60, 3), np.uint8)
    session = Session(video="clip.mp4", frames=1, frame=frame)
    first, second = Mark("positive", 1, 10, 10), Mark("negative", 1, 20, 20)
    session = edit_marks(edit_marks(session, (first,), None), (first, second), None)
    session = edit_marks(session, (), None)  # Clear frame
    session.pending = annotate.BoxStart(1, 0, 0)
    assert undo_edit(session).marks == {} and session.pending is None  # the corner first
    assert undo_edit(session).marks[0] == (first, second)  # then the Clear
    assert undo_edit(session).marks[0] == (first,)
    assert undo_edit(session).marks == {} and 0 not in session.labels
    assert undo_edit(session).marks == {}  # nothing left to undo


def test_clear_one_object_or_all():
    marks = (Mark("positive", 1, 1, 1), Mark("positive", 2, 2, 2), Mark("negative", 1, 3, 3))
    assert annotate.clear(marks, 1) == (marks[1],)
    assert annotate.clear(marks) == ()


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown mark kind"):
        annotate.add_click((), None, "lasso", 1, 0, 0)  # type: ignore[arg-type]


def test_positive_click_segments_the_clicked_object():
    image, disc = disc_image()
    mask = annotate.object_mask(image, (Mark("positive", 1, 60, 60),))
    assert iou(mask, disc) > 0.8


def test_box_segments_the_object_inside_it():
    image, disc = disc_image()
    mask = annotate.object_mask(image, (Mark("box", 1, 25, 25, 95, 95),))
    assert iou(mask, disc) > 0.8
    assert not mask[:20].any()  # nothing outside the box


def test_negative_click_alone_marks_nothing():
    image, _ = disc_image()
    assert not annotate.object_mask(image, (Mark("negative", 1, 60, 60),)).any()


def test_brush_adds_then_erases_in_order():
    image, _ = disc_image()
    added = annotate.object_mask(image, (Mark("brush_add", 1, 20, 20, radius=6),))
    assert added[20, 20] and added[20, 25] and not added[20, 30]
    erased = annotate.object_mask(image, (Mark("brush_add", 1, 20, 20, radius=6),
                                          Mark("brush_erase", 1, 20, 20, radius=3)))
    assert not erased[20, 20] and erased[20, 25]


def test_a_brush_drag_paints_a_solid_stroke_and_a_box_drag_spans_its_ends():
    image, _ = disc_image()
    stroke = annotate.add_drag((), "brush_add", 2, [(10, 10), (10, 70), (90, 70)], brush_radius=4)
    painted = annotate.object_mask(image, stroke)
    assert painted[10:71, 10].all() and painted[70, 10:91].all()  # the whole path, no gaps between dabs
    assert not painted[40, 40] and not painted[10, 20]
    drawn = annotate.render_marks(image, stroke, None)
    assert not np.array_equal(drawn[40, 6], image[40, 6]) and np.array_equal(drawn[40, 10], image[40, 10])  # outlined
    box = annotate.add_drag((), "box", 1, [(80, 90), (70, 60), (30, 20)])
    assert box == (Mark("box", 1, 30, 20, 80, 90),)  # first and last points, in either direction
    assert annotate.add_drag((), "positive", 1, [(5, 5), (60, 60)]) == (Mark("positive", 1, 60, 60),)


def test_labels_from_marks_keeps_each_object_id():
    image, disc = disc_image()
    marks = (Mark("positive", 3, 60, 60), Mark("brush_add", 7, 10, 10, radius=4))
    labels = annotate.labels_from_marks(image, marks)
    assert labels.dtype == np.uint8 and labels.shape == disc.shape
    assert set(np.unique(labels)) == {0, 3, 7}
    assert labels[60, 60] == 3 and labels[10, 10] == 7


def test_render_marks_draws_without_touching_the_input():
    image, _ = disc_image()
    before = image.copy()
    drawn = annotate.render_marks(image, (Mark("positive", 1, 60, 60),), annotate.BoxStart(2, 20, 20))
    assert np.array_equal(image, before)
    assert not np.array_equal(drawn[60, 60], image[60, 60]) and not np.array_equal(drawn[20, 20], image[20, 20])


# ---- app helpers (pure) ----

def test_session_marks_become_annotations_per_frame():
    image, _ = disc_image()
    session = Session(video="clip.mp4", frame=image, frame_index=4)
    session = update_marks(session, (Mark("positive", 2, 60, 60),), None)
    assert list(annotations_of(session)) == [4] and annotations_of(session)[4][60, 60] == 2
    session = update_marks(session, (), None)
    assert annotations_of(session) == {} and session.marks == {}


def test_marks_that_cover_no_pixels_are_named_in_the_summary_and_by_run():
    image, _ = disc_image()
    session = update_marks(Session(video="clip.mp4", frame=image), (Mark("negative", 1, 60, 60),), None)
    assert "1 covers no pixels" in marks_summary(session)
    assert run_problem(session, ["overlay"]).startswith("The marks cover no pixels")
    shown = run_problem(session, ["overlay"])
    assert run_status_after_edit(shown, session) == gr.skip()  # the complaint still holds: it stays
    session = update_marks(session, (Mark("positive", 1, 60, 60),), None)
    assert "covers no pixels" not in marks_summary(session) and run_problem(session, ["overlay"]) is None
    assert run_status_after_edit(shown, session) == ""  # answered: the run status line is cleared
    assert run_status_after_edit("Done: 2 outputs for 16 frames.", session) == gr.skip()  # not rewritten


@pytest.mark.parametrize("text, colour", [("#00b140", (0, 177, 64)), ("rgba(10, 20.4, 30, 0.5)", (10, 20, 30))])
def test_colours_from_the_picker_are_read(text, colour):
    assert _parse_colour(text) == colour


@pytest.mark.parametrize("text", ["#GGGGGG", "rgb(300, -5, 0)", "rgb(1, 2)", "rgb 1, 2, 3", "green"])
def test_unreadable_colours_are_one_message(text):
    with pytest.raises(gr.Error, match="Cannot read the colour"):
        _parse_colour(text)


def test_clicks_on_the_display_map_to_frame_pixels():
    assert display_scale((180, 320)) == DISPLAY_SIDE / 320  # small clips are enlarged
    assert frame_point((DISPLAY_SIDE // 2, 0), (180, 320)) == (160, 0)
    assert frame_point((DISPLAY_SIDE + 50, -3), (1080, 1920)) == (1919, 0)  # clamped inside the frame


def test_annotated_view_is_display_sized_and_shows_the_marks():
    image, _ = disc_image(size=120)
    session = update_marks(Session(video="clip.mp4", frame=image), (Mark("positive", 1, 60, 60),), None)
    view = annotated_view(session)
    assert view.shape == (DISPLAY_SIDE, DISPLAY_SIDE, 3)
    centre = DISPLAY_SIDE // 2
    assert view[centre, centre, 1] > 150 and view[centre, centre, 0] < 100  # the green positive dot


def test_flags_default_to_localhost_and_set_limits():
    assert parse_args([]).host == "127.0.0.1"
    config = parse_args(["--host", "0.0.0.0", "--port", "9000", "--max-upload-mb", "5", "--max-seconds", "3"])
    assert (config.host, config.port, config.max_upload_mb, config.max_seconds) == ("0.0.0.0", 9000, 5, 3.0)


@pytest.mark.parametrize("flags, message", [
    (["--port", "99999"], "argument --port: '99999': give a whole number from 1 to 65535"),
    (["--max-upload-mb", "-1"], "argument --max-upload-mb: '-1': give a whole number of 1 or more"),
    (["--max-seconds", "nan"], "argument --max-seconds: 'nan': give a number of 1 or more"),
    (["--weights", "{missing}"], "argument --weights: {missing}: MobileVOS checkpoint not found"),
])
def test_bad_flags_end_in_one_line_before_the_server_starts(tmp_path, capsys, flags, message):
    missing = str(tmp_path / "none.pt")
    with pytest.raises(SystemExit):
        parse_args([flag.format(missing=missing) for flag in flags])
    error = capsys.readouterr().err.strip().splitlines()
    assert message.format(missing=missing) in error[-1] and "Traceback" not in "".join(error)


def test_a_taken_port_ends_in_one_line():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(SystemExit, match=f"cannot listen on 127.0.0.1:{port}: the port is taken"):
            web_main(["--port", str(port)])


def test_sigterm_closes_the_app_and_removes_its_session_folders(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    port = free_port()
    command = [sys.executable, "-m", "web.app", "--port", str(port)]
    server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "TMPDIR": str(scratch)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while server.poll() is None and time.monotonic() < deadline and not listening(port):
            time.sleep(0.1)
        assert listening(port), server.stderr.read() if server.poll() is not None else "no server in 180 s"
        assert [p.name[:14] for p in scratch.glob("mobilevos-web-*")] == ["mobilevos-web-"]
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    finally:
        server.kill()
    assert not list(scratch.glob("mobilevos-web-*"))


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_an_hdr_clip_is_loaded_with_a_note_on_its_colours(tmp_path):
    _, status = loaded_clip(str(encode_hlg_clip(tmp_path / "phone.mov")), 120.0)
    assert status.startswith("Loaded phone.mov: 64×48, 3 frames at 25.00 fps. Click on an object to mark it. Note: "
                              "phone.mov is HDR (HLG): its colours are read as standard range")


def test_probe_refuses_unreadable_and_too_long_clips(tmp_path, clip):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(VideoError, match="junk.mp4"):
        probe_clip(str(junk), 60)
    with pytest.raises(VideoError, match="--max-seconds"):
        probe_clip(str(clip), 0.2)
    assert probe_clip(str(clip), 60).num_frames == CLIP_FRAMES
    wide = tmp_path / "panorama.png"
    cv2.imwrite(str(wide), np.zeros((16, 16400, 3), np.uint8))  # a still loads as a one-frame clip
    with pytest.raises(VideoError, match=r"panorama.png: frames of 16400×16 are larger .* scale the clip down"):
        probe_clip(str(wide), 60)


def test_a_webm_too_long_is_refused_by_its_header_before_its_frames_are_counted(tmp_path, monkeypatch):
    clip = tmp_path / "long.webm"
    with VideoWriter(clip, 25, (64, 48)) as writer:
        for index in range(30):
            writer.write(np.full((48, 64, 3), index * 8, np.uint8))
    reports: list[tuple[int, int | None]] = []
    assert probe_clip(str(clip), 60, lambda *report: reports.append(report)).num_frames == 30  # WebM lists no
    assert reports == [(25, 30)]  # frame count: they are counted, told every 25 against the header's duration
    assert abs(read_frame(str(clip), 29).mean() - 29 * 8) < 8  # the last frame, found after the count

    def counted(reader, report=None) -> int:
        raise AssertionError("the frames were counted")

    monkeypatch.setattr(VideoReader, "count_frames", counted)
    with pytest.raises(VideoError, match=r"long.webm: the clip lasts 1.2 s, more than the 0.5 s allowed"):
        probe_clip(str(clip), 0.5)


def test_the_upload_names_its_limits():
    app = build_app(AppConfig(max_upload_mb=7, max_seconds=12.5), Workspace())
    upload = next(block for block in app.blocks.values() if getattr(block, "elem_id", None) == "upload")
    assert upload.label == "1. Upload a clip (up to 7 MB and 12.5 s)"


def test_an_uploaded_clips_timestamps_are_learnt_so_the_first_scrub_seeks(clip, monkeypatch):
    """After the background scan, reading the last frame seeks to its keyframe: no decode from the first frame."""
    scan = learn_in_background(str(clip), CLIP_FRAMES)
    scan.join(timeout=120)
    assert not scan.is_alive() and scan.daemon  # closing the app never waits for a scan
    with open_video(clip) as reader:
        expected = [frame.image for frame in reader][-1]

    def no_decode_from_start(*args):
        raise AssertionError("decoded from the first frame")

    monkeypatch.setattr(_ContainerReader, "_decode_from_start", no_decode_from_start)
    assert np.array_equal(read_frame(str(clip), CLIP_FRAMES - 1), expected)
    learn_timestamps(clip, CLIP_FRAMES)  # known: nothing decoded again
    _learn_quietly(str(clip.parent / "gone.mp4"), 5)  # only a speed-up: a clip that went away is no error


def test_a_one_frame_clip_has_nothing_to_scrub():
    assert scrub_slider(1).interactive is False
    assert scrub_slider(CLIP_FRAMES).interactive is True and scrub_slider(CLIP_FRAMES).maximum == CLIP_FRAMES - 1


def test_read_frame_returns_the_requested_frame(clip):
    with open_video(clip) as reader:
        third = [frame.image for frame in reader][2]
    assert np.array_equal(read_frame(str(clip), 2), third)
    with pytest.raises(VideoError, match=r"judo\.mp4: the file ends before frame 99 \(cut short or damaged\?\)"):
        read_frame(str(clip), 99)


def test_user_error_hides_server_folders():
    message = user_error(VideoError("/tmp/gradio/abc123/clip.mp4: not a readable video\nmore")).message
    assert message == "clip.mp4: not a readable video"
    gone = user_error(VideoError("/tmp/gradio/abc123/clip.mp4: file not found; check the path")).message
    assert gone == "clip.mp4: the upload is no longer on the server (uploads are kept 6 hours); upload the clip again"


def test_a_damaged_clip_is_met_with_what_the_page_can_do(tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(make_clip(tmp_path / "whole.mp4").read_bytes()[:2000])
    with pytest.raises(VideoError) as error:
        probe_clip(str(cut), 60.0)
        read_frame(str(cut), 0)
    assert user_error(error.value).message.endswith("re-export or re-download it and upload it again")


@dataclass
class Request:
    """The part of a gr.Request the app reads: which browser session sent it."""

    session_hash: str


def test_workspace_folders_are_per_session_and_released():
    workspace = Workspace()
    first, second = workspace.folder(Request("alice")), workspace.folder(Request("bob"))
    assert first.parent != second.parent
    workspace.release(Request("alice"))
    assert not first.exists() and second.exists()


def test_cancel_stays_on_while_a_later_run_of_the_session_is_queued_or_going():
    """Cancel then Run at once: the cancelled run ends after the next one turned Cancel on, and must not turn it
    off (it did, leaving a run that could not be cancelled)."""
    workspace, alice = Workspace(), Request("alice")
    workspace.run_started(alice)
    workspace.run_started(alice)  # Run again before the cancelled run has ended
    workspace.run_started(Request("bob"))
    assert workspace.run_ended(alice) == 1  # the cancelled one: Cancel stays on for the next
    assert workspace.run_ended(alice) == 0 and workspace.run_ended(alice) == 0


def test_workspace_sweeps_old_job_folders():
    workspace = Workspace()
    old, new = workspace.folder(None), workspace.folder(None)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    workspace.sweep(3600)
    assert not old.exists() and new.exists()


def test_a_page_slower_to_answer_than_gradios_3_s_check_still_starts_and_none_at_all_is_one_error():
    """Gradio's own launch check gives the page 3 s, which a busy machine overran (the launch failed, saying
    localhost was not accessible); the app waits for its page up to ANSWER_WAIT_S."""
    class SlowPage(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - the handler's name for HEAD requests
            time.sleep(4)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        wait_until_answering(f"http://127.0.0.1:{server.server_port}/", 30)
        assert time.monotonic() - started >= 4
    finally:
        server.shutdown()
        server.server_close()
    closed = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(AppUnreachable, match=rf"the app started but {closed} does not answer \(ConnectError\)"):
        wait_until_answering(closed, 0.5)


# ---- pipeline on a real encoded clip ----

def test_run_writes_every_output(tmp_path, clip, mask):
    results: dict = {}
    settings = RunSettings(outputs=tuple(OUTPUTS), tracker=TRACKER)
    steps = list(run_outputs(str(clip), {0: read_mask(mask)}, tmp_path / "out", settings, results))
    assert list(dict.fromkeys(step.done for step in steps)) == list(range(1, CLIP_FRAMES + 1))  # the last again
    assert set(results) == set(OUTPUTS) and results["first_mask"].name == "mask-frame-0.png"  # while finishing
    width, height = CLIP_SIZE
    for name in ("overlay", "mask", "blur", "replace", "remove"):
        assert count_frames(results[name]) == (CLIP_FRAMES, (height, width, 3)), name
    assert count_frames(results["cutout"], alpha=True) == (CLIP_FRAMES, (height, width, 4))
    with zipfile.ZipFile(results["masks_zip"]) as archive:
        assert archive.namelist() == [f"{i:05d}.png" for i in range(CLIP_FRAMES)]
    assert np.array_equal(read_mask(results["first_mask"]), read_mask(mask))


def test_download_names_keep_a_clips_name_readable():
    """Each space, dash or emoji used to become its own "_": "my_clip___été____1"."""
    assert named_after_clip({}, "x") == {}
    assert _safe_name("my clip – été 🎬 #1") == "my_clip_été_1" and _safe_name("🎬", "clip") == "clip"


def test_the_web_names_its_videos_as_the_batch_does():
    batch = OutputSpec(effects=("overlay", "cutout", "blur", "replace", "remove"), mask_pngs=False, mask_video=True)
    assert sorted(OUTPUTS[name][0] for name in VIDEO_OUTPUTS) == sorted(batch.output_names((854, 480)))


def test_the_cutout_keeps_the_clips_sound(tmp_path, mask):
    frames = [cv2.resize(image, CLIP_SIZE, interpolation=cv2.INTER_AREA) for image in sample_frames()[:CLIP_FRAMES]]
    clip = encode_video(tmp_path / "sound.mp4", frames, fps=10)
    results: dict = {}
    list(run_outputs(str(clip), {0: read_mask(mask)}, tmp_path / "out", RunSettings(("cutout",), tracker=TRACKER),
                     results))
    with av.open(str(results["cutout"])) as container:
        assert [stream.codec_context.name for stream in container.streams.audio] == ["opus"]


@pytest.mark.parametrize("frame", [CLIP_FRAMES, 99])
def test_an_annotation_past_the_end_of_a_clip_without_a_frame_count_is_refused(tmp_path, mask, frame):
    """A WebM's header lists no frame count, so only decoding finds that the annotated frame is not there: the run
    and the preview say so instead of writing outputs without the object."""
    clip = make_clip(tmp_path / "judo.webm")
    with open_video(clip) as reader:
        assert reader.info.num_frames is None
    message = rf"judo\.webm: the annotation is for frame {frame}, but the clip ends before it \(frames 0 to 4\)"
    with pytest.raises(MaskError, match=message):
        list(run_outputs(str(clip), {frame: read_mask(mask)}, tmp_path / "out", RunSettings(tracker=TRACKER), {}))
    assert not list((tmp_path / "out").iterdir())
    with pytest.raises(MaskError, match=message):
        preview_overlays(str(clip), {frame: read_mask(mask)}, 2, TRACKER, refine=False)


def test_a_run_of_a_clip_cut_short_ends_with_a_step_that_warns(tmp_path, mask):
    """A Matroska clip (no frame count in its header) that a download cut short: the run's last step carries the
    warning the page shows beside "Done"."""
    whole = make_clip(tmp_path / "whole.mkv", frames=12)
    cut = tmp_path / "judo.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    steps = list(run_outputs(str(cut), {0: read_mask(mask)}, tmp_path / "out", RunSettings(("overlay",),
                                                                                         tracker=TRACKER), {}))
    assert all(step.warning is None for step in steps[:-1])
    assert steps[-1].warning.startswith("judo.mkv ends after ") and steps[-1].done < 12
    assert f"the outputs hold the {steps[-1].done} frames that decoded" in steps[-1].warning
    assert user_message(steps[-1].warning).endswith("for the rest, re-export or re-download it and upload it again")


def test_run_from_a_later_frame_leaves_earlier_frames_empty(tmp_path, clip, mask):
    results: dict = {}
    settings = RunSettings(outputs=("masks_zip",), tracker=TRACKER)
    list(run_outputs(str(clip), {2: read_mask(mask)}, tmp_path, settings, results))
    with zipfile.ZipFile(results["masks_zip"]) as archive:
        archive.extractall(tmp_path / "masks")
    assert not read_mask(tmp_path / "masks" / "00001.png").any()
    assert np.array_equal(read_mask(tmp_path / "masks" / "00002.png"), read_mask(mask))


def test_stopping_a_run_leaves_no_output_file(tmp_path, clip, mask):
    results: dict = {}
    settings = RunSettings(outputs=("overlay", "cutout", "masks_zip"), tracker=TRACKER)
    steps = run_outputs(str(clip), {0: read_mask(mask)}, tmp_path, settings, results)
    next(steps)
    steps.close()
    assert results == {} and [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_run_refuses_missing_or_empty_annotations(tmp_path, clip, mask):
    settings = RunSettings(tracker=TRACKER)
    with pytest.raises(MaskError, match="no object is marked"):
        list(run_outputs(str(clip), {}, tmp_path, settings, {}))
    empty = np.zeros((CLIP_SIZE[1], CLIP_SIZE[0]), np.uint8)
    with pytest.raises(MaskError, match="empty"):
        list(run_outputs(str(clip), {0: empty}, tmp_path, settings, {}))
    for frame in (CLIP_FRAMES, -3):
        with pytest.raises(MaskError, match=rf"frame {frame}, outside the clip \(frames 0 to {CLIP_FRAMES - 1}\)"):
            list(run_outputs(str(clip), {frame: read_mask(mask)}, tmp_path, settings, {}))


def test_preview_tracks_a_few_frames_from_the_annotation(clip, mask):
    overlays = preview_overlays(str(clip), {1: read_mask(mask)}, 3, TRACKER)
    assert len(overlays) == 3 and overlays[0].shape == (CLIP_SIZE[1], CLIP_SIZE[0], 3)


# ---- the app's event functions, called as the browser's events call them ----

@pytest.fixture(scope="module")
def app() -> gr.Blocks:
    """The app's Blocks (not served), with 2 s clips at most."""
    return build_app(AppConfig(max_seconds=2.0, preview_frames=2, tracker=TRACKER), Workspace())


def handler(app: gr.Blocks, name: str):
    """The Python function behind the app's event function `name`."""
    return next(function.fn for function in app.fns.values() if function.name == name)


def sound_only(source: Path, target: Path) -> Path:
    """`source`'s audio stream alone, remuxed into `target`: a file with sound and no picture."""
    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        audio = reader.streams.audio[0]
        stream = writer.add_stream_from_template(audio)
        for packet in reader.demux(audio):
            if packet.dts is not None:
                packet.stream = stream
                writer.mux(packet)
    return target


def unusable_uploads(folder: Path, with_sound: Path) -> dict[Path, str]:
    """Uploads that are no usable video (for a 2 s limit) → the start of what the status line says of each."""
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    notes = folder / "notes.mp4"
    notes.write_text("shopping list\n" * 40)
    return {
        empty: "empty.mp4: file is empty; re-export or re-download it",
        notes: "notes.mp4: not a readable video",
        sound_only(with_sound, folder / "song.mp4"): "song.mp4: holds no picture (sound only?); upload a video file",
        make_clip(folder / "long.mp4", frames=16, fps=5): "long.mp4: the clip lasts 3.2 s, more than the 2 s allowed",
    }


def test_an_unusable_upload_is_named_in_the_status_line_and_leaves_no_clip(app, tmp_path, clip, judo_mp4):
    load = handler(app, "load_clip")
    for upload, says in unusable_uploads(tmp_path, judo_mp4).items():
        view, slider, status, summary, session = load(str(clip), None)[:5]
        assert session.video == str(clip)
        view, slider, status, summary, session = load(str(upload), None)[:5]
        assert status.startswith(f"**Not loaded.** {says}"), status
        assert "/" not in status.split(":")[0] and "Traceback" not in status
        assert session.video is None and view.value is None and slider.interactive is False


def test_a_one_frame_clip_loads_as_one_frame(app, tmp_path):
    _, slider, status = handler(app, "load_clip")(str(make_clip(tmp_path / "still.mp4", frames=1)), None)[:3]
    assert "320×180, 1 frame at 10.00 fps" in status and slider.interactive is False


def test_a_new_clip_or_none_drops_the_marks_preview_and_results_of_the_last(app, tmp_path, clip):
    session = handler(app, "load_clip")(str(clip), None)[4]
    session = update_marks(session, (Mark("positive", 1, 160, 80),), None)
    assert annotations_of(session)
    other = make_clip(tmp_path / "other.mp4", frames=2)
    for shown in (handler(app, "load_clip")(str(other), None), handler(app, "reset")(None)):
        summary, session, gallery, run_status, player, view, files = shown[3:]
        assert session.marks == {} and summary.startswith("No objects marked yet")
        assert (gallery, run_status, player, files) == (None, "", None, None) and view.choices == []
    assert session.video is None and shown[2] == START


def select(session: Session, x: int, y: int) -> gr.SelectData:
    """A click on the displayed frame at frame pixel (x, y)."""
    scale = display_scale(session.frame.shape[:2])
    return gr.SelectData(None, {"index": [round(x * scale), round(y * scale)], "value": None})


def test_scrubbing_away_drops_a_box_corner_and_back_shows_the_marks(app, clip):
    session = handler(app, "load_clip")(str(clip), None)[4]
    click, seek = handler(app, "click"), handler(app, "seek")
    marked, _, session, _ = click("Positive click", 1, 12, session, "", select(session, 160, 80))
    _, summary, session, _ = click("Box (drag, or two corners)", 2, 12, session, "", select(session, 10, 10))
    assert "opposite corner" in summary
    _, summary, session, _ = seek(0, session)  # the same frame: the corner stays
    assert "opposite corner" in summary and session.pending is not None
    _, summary, session, box = seek(3, session)
    assert isinstance(box, type(gr.skip()))  # a frame inside the clip leaves the slider's number box as it is
    assert "opposite corner" not in summary and summary.startswith("Marked — frame 0: objects 1.")
    assert summary.endswith("The box corner set on frame 0 was dropped: a box's two corners go on one frame (or drag "
                            "the box).")
    _, summary, session, _ = seek(0, session)
    assert np.array_equal(annotated_view(session), marked) and summary.startswith("Marked — frame 0: objects 1.")
    _, _, session, box = seek(CLIP_FRAMES + 40, session)  # typed past the end in the slider's number box
    assert session.frame_index == box == CLIP_FRAMES - 1  # the last frame, and the box says so
    assert all(isinstance(output, type(gr.skip())) for output in seek(None, session))  # an emptied box waits


def test_a_drag_is_one_edit_and_drops_a_box_corner_waiting(app, clip):
    session = handler(app, "load_clip")(str(clip), None)[4]
    click, drag = handler(app, "click"), handler(app, "drag")
    scale = display_scale(session.frame.shape[:2])
    path = lambda *points: json.dumps(  # noqa: E731
        {"points": [[round(x * scale), round(y * scale)] for x, y in points]})
    _, summary, session, _ = click("Box (drag, or two corners)", 1, 12, session, "", select(session, 10, 10))
    assert "opposite corner" in summary
    _, summary, session, _ = drag("Box (drag, or two corners)", 1, 12, session, "", path((120, 20), (200, 160)))
    assert session.pending is None and "opposite corner" not in summary
    assert session.marks[0][-1].kind == "box" and abs(session.marks[0][-1].x2 - 200) <= 1
    _, summary, session, _ = drag("Brush: add", 3, 5, session, "", path((5, 5), (5, 100)))
    assert summary.startswith("Marked — frame 0: objects 1, 3.")
    assert session.labels[0][5:100, 5].tolist().count(3) > 90
    _, summary, session, _ = handler(app, "undo")(session, "")
    assert summary.startswith("Marked — frame 0: objects 1.")  # the whole stroke undone at once
    for sent in ("not json", '{"points": [[Infinity, 0]]}', '{"points": []}', "[1]"):  # not from the page: no edit
        assert all(isinstance(output, type(gr.skip())) for output in drag("Brush: add", 3, 5, session, "", sent))


def test_a_click_sent_by_the_page_while_the_frame_reloads_is_a_click(app, clip):
    """drag.js sends a click made while the picture reloads as a one-point path marked "click": it counts as the
    click it was, a box corner left waiting or a brush dab, never a drag."""
    session = handler(app, "load_clip")(str(clip), None)[4]
    drag = handler(app, "drag")
    scale = display_scale(session.frame.shape[:2])
    shown = list(display_size(session.frame.shape[:2]))
    clicked = lambda x, y, size=shown: json.dumps(  # noqa: E731
        {"points": [[round(x * scale), round(y * scale)]], "click": True, "size": size})
    assert all(isinstance(output, type(gr.skip()))  # placed on another clip's picture (a portrait one): no edit
               for output in drag("Brush: add", 2, 5, session, "", clicked(10, 10, shown[::-1])))
    _, summary, session, _ = drag("Box (drag, or two corners)", 1, 12, session, "", clicked(10, 10))
    assert "opposite corner" in summary and session.pending is not None
    _, summary, session, _ = drag("Box (drag, or two corners)", 1, 12, session, "", clicked(200, 160))
    assert session.pending is None and abs(session.marks[0][-1].x2 - 200) <= 1
    _, summary, session, _ = drag("Brush: add", 2, 5, session, "", clicked(300, 200))
    assert summary.startswith("Marked — frame 0: objects 1, 2.")
    assert [mark.kind for mark in session.marks[0]] == ["box", "brush_add"]


def test_a_run_counts_a_webms_frames_and_names_its_downloads_after_the_clip(app, tmp_path):
    clip = make_clip(tmp_path / "my talk.webm")  # WebM lists no frame count
    session = update_marks(handler(app, "load_clip")(str(clip), Request("webm"))[4], (Mark("positive", 1, 160, 80),),
                           None)
    totals: list = []
    chosen = [OUTPUTS["overlay"][1], OUTPUTS["masks_zip"][1]]
    steps = list(handler(app, "run")(chosen, "#00b140", 31, 0, 0, False, session, Request("webm"),
                                     lambda done, **_: totals.append(done)))
    assert list(dict.fromkeys(totals)) == [(done, CLIP_FRAMES) for done in range(1, CLIP_FRAMES + 1)]  # the last
    assert steps[0][0] == f"Tracking… frame 1 of {CLIP_FRAMES}"  # again while the outputs finish
    files = steps[-1][3]
    assert [Path(file).name for file in files] == ["my_talk-overlay.mp4", "my_talk-masks.zip"]
    assert count_frames(Path(files[0]))[0] == CLIP_FRAMES
    gallery, status = handler(app, "preview")(False, session, steps[-1][0], Request("webm"), lambda *_, **__: None)
    assert len(gallery) == 2 and isinstance(status, type(gr.skip()))  # the run's "Done:" line stays


def test_a_preview_or_run_of_a_clip_replaced_since_stops_without_a_word(app, tmp_path):
    """A preview or run whose clip the same browser session has replaced (a new upload, the example, a clear)
    stops at its first frame and changes nothing on the page: the new clip's view stands."""
    clip, request = make_clip(tmp_path / "judo.mp4"), Request("dave")
    old = update_marks(handler(app, "load_clip")(str(clip), request)[4], (Mark("positive", 1, 160, 80),), None)
    handler(app, "reset")(request)
    skipped = (gr.skip(),) * 5
    assert handler(app, "preview")(False, old, "", request, lambda *_, **__: None) == skipped[:2]
    chosen = [OUTPUTS["overlay"][1]]
    assert list(handler(app, "run")(chosen, "#00b140", 31, 0, 0, False, old, request, lambda *_, **__: None)) == \
        [skipped]
    assert not old.results


def test_cancel_stops_a_preview(app, tmp_path):
    """A preview (seconds per frame at 1080p with sharper masks) could not be stopped."""
    clip, request = make_clip(tmp_path / "judo.mp4"), Request("gil")
    session = update_marks(handler(app, "load_clip")(str(clip), request)[4], (Mark("positive", 1, 160, 80),), None)
    handler(app, "stop_run")(request)  # Cancel
    assert handler(app, "preview")(False, session, "", request, lambda *_, **__: None)[1] == "Preview cancelled."


def test_marks_changed_during_a_run_are_said_to_be_left_out_of_it(app, tmp_path, monkeypatch):
    """An object added while the run tracked left the outputs without it, and the page said nothing."""
    clip, request = make_clip(tmp_path / "judo.mp4"), Request("fay")
    session = update_marks(handler(app, "load_clip")(str(clip), request)[4], (Mark("positive", 1, 160, 80),), None)
    run_outputs = web_app.run_outputs

    def edited_meanwhile(*args):
        for step in run_outputs(*args):
            update_marks(session, (*session.marks[0], Mark("brush_add", 2, 20, 20, radius=6)), None)
            yield step

    monkeypatch.setattr(web_app, "run_outputs", edited_meanwhile)
    steps = list(handler(app, "run")([OUTPUTS["overlay"][1]], "#00b140", 31, 0, 0, False, session, request,
                                     lambda *_, **__: None))
    assert steps[-1][0].startswith("Done: 1 output for ") and steps[-1][0].endswith(MARKS_CHANGED)
    monkeypatch.setattr(web_app, "run_outputs", run_outputs)
    steps = list(handler(app, "run")([OUTPUTS["overlay"][1]], "#00b140", 31, 0, 0, False, session, request,
                                     lambda *_, **__: None))
    assert not steps[-1][0].endswith(MARKS_CHANGED)


def test_a_clip_replaced_as_a_run_finishes_its_outputs_leaves_the_new_clips_view(app, tmp_path, monkeypatch):
    """A new clip after the last frame, while the run's outputs are finished, used to get the old run's results,
    downloads and session (and Preview and Run then did nothing, or the output list raised an error)."""
    clip, request = make_clip(tmp_path / "judo.mp4"), Request("erin")
    session = update_marks(handler(app, "load_clip")(str(clip), request)[4], (Mark("positive", 1, 160, 80),), None)
    run_outputs = web_app.run_outputs

    def replaced_at_the_end(*args):
        yield from run_outputs(*args)
        handler(app, "reset")(request)

    monkeypatch.setattr(web_app, "run_outputs", replaced_at_the_end)
    steps = list(handler(app, "run")([OUTPUTS["overlay"][1]], "#00b140", 31, 0, 0, False, session, request,
                                     lambda *_, **__: None))
    assert steps[-1] == (gr.skip(),) * 5 and all(step[0].startswith(("Tracking", "Finishing")) for step in steps[:-1])


# ---- the running app, through gradio_client ----

@pytest.fixture(scope="module")
def server():
    """The app on a free local port, with small limits: 1 MB uploads, 2 s clips."""
    workspace = Workspace()
    config = AppConfig(port=free_port(), max_upload_mb=1, max_seconds=2.0, preview_frames=2, tracker=TRACKER)
    app, url = serve(config, workspace, block=False)
    yield url, workspace
    app.close()


def call_segment(url: str, video: Path, mask: Path, output: str, frame: int = 0) -> str:
    client = gradio_client.Client(url, verbose=False)
    return client.predict(gradio_client.handle_file(str(video)), gradio_client.handle_file(str(mask)), output,
                          frame, api_name="/segment")


def test_api_lists_only_the_segment_endpoint(server):
    api = gradio_client.Client(server[0], verbose=False).view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/segment"]
    segment = api["named_endpoints"]["/segment"]  # named parameters, not "parameter_48"
    assert [p["parameter_name"] for p in segment["parameters"]] == ["video", "mask", "output", "frame"]
    assert [r["label"] for r in segment["returns"]] == ["result"]


def test_api_returns_a_cutout_with_alpha(server, clip, mask):
    result = Path(call_segment(server[0], clip, mask, "cutout"))
    assert result.name == "judo-cutout.webm"  # named after the clip, as the page's downloads
    assert count_frames(result, alpha=True) == (CLIP_FRAMES, (CLIP_SIZE[1], CLIP_SIZE[0], 4))


def test_api_returns_the_masks_zip(server, clip, mask):
    with zipfile.ZipFile(call_segment(server[0], clip, mask, "masks_zip")) as archive:
        assert len(archive.namelist()) == CLIP_FRAMES


def test_api_queues_several_users(server, clip, mask):
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(call_segment(server[0], clip, mask, "mask")))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2
    assert all(count_frames(Path(r))[0] == CLIP_FRAMES for r in results)


def test_api_explains_bad_input(server, tmp_path, clip, mask):
    junk = tmp_path / "broken.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(gradio_client.exceptions.AppError, match=r"^broken\.mp4: .*not a readable video"):
        call_segment(server[0], junk, mask, "overlay")
    empty = tmp_path / "empty.png"
    write_mask(empty, np.zeros((CLIP_SIZE[1], CLIP_SIZE[0]), np.uint8))
    with pytest.raises(gradio_client.exceptions.AppError, match=r"^empty\.png: .*empty"):
        call_segment(server[0], clip, empty, "overlay")
    small = tmp_path / "small.png"
    write_mask(small, np.ones((CLIP_SIZE[1] // 2, CLIP_SIZE[0] // 2), np.uint8))
    with pytest.raises(gradio_client.exceptions.AppError, match=r"^small\.png: .*160×90 but the video is 320×180"):
        call_segment(server[0], clip, small, "overlay")
    with pytest.raises(gradio_client.exceptions.AppError, match=r"^Unknown output 'sparkles'; choose one of overlay"):
        call_segment(server[0], clip, mask, "sparkles")
    for frame in (2.5, -1):  # a fraction was taken as the frame before it
        with pytest.raises(gradio_client.exceptions.AppError, match=r"^frame is the annotated frame's index, a whole "
                                                                     r"number from 0, not (2\.5|-1)\.$"):
            call_segment(server[0], clip, mask, "overlay", frame)


def test_a_refused_upload_prints_no_traceback_on_the_server(server, tmp_path, mask, capfd):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    with pytest.raises(gradio_client.exceptions.AppError, match=r"^junk\.mp4: "):
        call_segment(server[0], junk, mask, "overlay")
    assert "Traceback" not in capfd.readouterr().err


def test_api_takes_no_frame_as_the_first(server, clip, mask):
    assert count_frames(Path(call_segment(server[0], clip, mask, "overlay", None)))[0] == CLIP_FRAMES


def test_api_enforces_duration_and_upload_limits(server, tmp_path, mask):
    long_clip = make_clip(tmp_path / "long.mp4", frames=16, fps=5)  # 3.2 s > 2 s
    with pytest.raises(gradio_client.exceptions.AppError, match="--max-seconds"):
        call_segment(server[0], long_clip, mask, "overlay")
    big = tmp_path / "big.mp4"
    big.write_bytes(np.random.default_rng(0).bytes(2 * 1024 * 1024))
    with pytest.raises(Exception, match="(?i)size|large|413"):
        call_segment(server[0], big, mask, "overlay")


def test_session_files_are_not_served(server, clip, mask):
    url, workspace = server
    call_segment(url, clip, mask, "overlay")
    produced = next(workspace.root.rglob("judo-overlay.mp4"))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}gradio_api/file={produced}")
    assert refused.value.code == 403


def test_a_cancelled_run_says_whose_outputs_are_still_shown() -> None:
    first = "Run cancelled: nothing was written. Change the annotation or outputs and run again."
    assert cancel_message(Session()) == first
    again = cancel_message(Session(results={"overlay": "judo-overlay.mp4"}))
    assert again.startswith("Run cancelled: nothing was written (the outputs below are from the run before).")
