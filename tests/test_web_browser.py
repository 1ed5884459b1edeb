"""The web app in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright; never downloaded):
upload a clip, click on the object, preview, run, download the result; cancel a run; a new clip (or none) clears
the last one's work; a file that is no video; no request leaves the host.

Screenshots of each step go to $WEB_SCREENSHOTS when set (`WEB_SCREENSHOTS=docs/web` refreshes the docs),
else to the test's temporary folder.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]
playwright_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("gradio")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tests.conftest import encode_video, sample_frames  # noqa: E402
from tests.test_web import CLIP_FRAMES, TRACKER, count_frames, free_port, make_clip  # noqa: E402
from web import app as web_app  # noqa: E402
from web.app import AppConfig, Workspace, serve  # noqa: E402

TIMEOUT_MS = 120_000
LOCAL = ("http://127.0.0.1", "data:", "blob:")


@pytest.fixture(scope="module")
def workspace() -> Workspace:
    return Workspace()


@pytest.fixture(scope="module")
def url(workspace):
    config = AppConfig(port=free_port(), preview_frames=2, tracker=TRACKER)
    app, address = serve(config, workspace, block=False)
    yield address
    app.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, url):
    """A fresh page on the app that records every request to a host other than this one."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.outside = []
    page.on("request", lambda request: None if request.url.startswith(LOCAL) else page.outside.append(request.url))
    page.goto(url)
    page.wait_for_selector("#upload", timeout=TIMEOUT_MS)
    yield page
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("WEB_SCREENSHOTS") or tmp_path_factory.mktemp("screens"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page, folder: Path, name: str) -> Path:
    """A full-page screenshot, shrunk to at most 800 px wide and 256 colours to keep the PNG small."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    image = Image.open(path).convert("RGB")
    if image.width > 800:
        image = image.resize((800, round(image.height * 800 / image.width)), Image.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    return path


def wait_for_text(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([selector, text]) => (document.querySelector(selector)?.innerText || '').includes(text)",
        arg=[selector, text], timeout=TIMEOUT_MS)


def on_frame(page, fx: float, fy: float) -> tuple[float, float]:
    """The page position of a fraction (fx, fy) of the displayed frame's width and height (the picture is
    letterboxed inside its element, never enlarged, so the fractions are taken of the picture, not of the
    element)."""
    image = page.locator("#frame img")
    image.scroll_into_view_if_needed()
    box = image.bounding_box()
    natural_w, natural_h = page.wait_for_function(  # as a user sees it: loaded (an edit's answer reloads it)
        "() => { const img = document.querySelector('#frame img'); "
        "return img?.naturalWidth ? [img.naturalWidth, img.naturalHeight] : null; }", timeout=TIMEOUT_MS).json_value()
    scale = min(box["width"] / natural_w, box["height"] / natural_h, 1)  # Gradio's object-fit: never enlarged
    shown_w, shown_h = natural_w * scale, natural_h * scale
    left, top = box["x"] + (box["width"] - shown_w) / 2, box["y"] + (box["height"] - shown_h) / 2
    return left + fx * shown_w, top + fy * shown_h


def click_on_frame(page, fx: float, fy: float) -> None:
    page.mouse.click(*on_frame(page, fx, fy))


def drag_on_frame(page, *path: tuple[float, float]) -> None:
    """A drag through `path`, fractions of the frame (as `on_frame`)."""
    drag_through(page, *(on_frame(page, *point) for point in path))


def drag_through(page, *path: tuple[float, float]) -> None:
    """Press at the first point of `path` (page positions), move through the others in small steps, release at
    the last."""
    page.mouse.move(*path[0])
    page.mouse.down()
    for point in path[1:]:
        page.mouse.move(*point, steps=8)
    page.mouse.up()


def upload(page, clip: Path) -> None:
    """Upload `clip`, first clearing the clip the upload box holds (the box takes one file)."""
    clear = page.locator("#upload button[aria-label=Clear]")
    if clear.count():
        clear.click()
        wait_for_text(page, "#status", "Upload a clip to start.")
    page.set_input_files("#upload input[type=file]", str(clip))


def test_upload_mark_preview_run_download(page, shots, tmp_path, workspace):
    clip = make_clip(tmp_path / "judo.mp4")
    others = set(workspace.root.iterdir())
    screenshot(page, shots, "1-start")

    upload(page, clip)
    wait_for_text(page, "#status", f"{CLIP_FRAMES} frames")
    page.wait_for_selector("#frame img", timeout=TIMEOUT_MS)
    screenshot(page, shots, "2-first-frame")

    click_on_frame(page, 0.5, 0.45)  # the judoka in the centre (object 1 of the sample's annotation)
    wait_for_text(page, "#summary", "frame 0: objects 1")
    screenshot(page, shots, "3-marked")

    page.click("#preview")
    page.wait_for_function("document.querySelectorAll('#gallery img').length >= 2", timeout=TIMEOUT_MS)
    screenshot(page, shots, "4-preview")

    page.click("#run")
    wait_for_text(page, "#run-status", "Done")
    page.wait_for_selector("#player video", timeout=TIMEOUT_MS)
    page.wait_for_selector("#cancel:disabled", timeout=TIMEOUT_MS)  # the run is over
    screenshot(page, shots, "5-result")
    assert page.locator("#files a").count() == 4 and not page.locator("#files button:visible").count()  # no ×

    with page.expect_download(timeout=TIMEOUT_MS) as download:
        page.click("#files a[download='judo-cutout.webm']")  # named after the clip
    saved = tmp_path / "cutout.webm"
    download.value.save_as(saved)
    frames, shape = count_frames(saved, alpha=True)
    assert frames == CLIP_FRAMES and shape[2] == 4

    # The last clip's marks, preview and results go; the new one's name shows as it is, not as Markdown.
    upload(page, make_clip(tmp_path / "my _best_ take [2].mp4", frames=2))
    wait_for_text(page, "#status", "Loaded my _best_ take [2].mp4: ")
    wait_for_text(page, "#summary", "No objects marked yet")
    page.wait_for_function("!document.querySelector('#gallery img') && !document.querySelector('#files a') && "
                           "!document.querySelector('#player video')", timeout=TIMEOUT_MS)
    assert page.inner_text("#run-status").strip() == ""
    assert page.outside == []

    mine = set(workspace.root.iterdir()) - others  # this session's folder, removed when the tab closes
    assert len(mine) == 1
    page.close()
    deadline = time.monotonic() + TIMEOUT_MS / 1000  # the server hears of the closed tab, then removes the folder
    while any(folder.exists() for folder in mine) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(folder.exists() for folder in mine)


def test_scrub_brush_and_undo(page, tmp_path):
    clip = make_clip(tmp_path / "judo.mp4")
    upload(page, clip)
    wait_for_text(page, "#status", f"{CLIP_FRAMES} frames")
    track = page.locator("#scrub input[type=range]")
    track.scroll_into_view_if_needed()
    slider = track.bounding_box()
    page.mouse.click(slider["x"] + slider["width"] - 2, slider["y"] + slider["height"] / 2)  # the last frame
    wait_for_text(page, "#frame", f"Frame {CLIP_FRAMES - 1} ")
    track.press("ArrowLeft")  # the keyboard steps one frame too
    wait_for_text(page, "#frame", f"Frame {CLIP_FRAMES - 2} ")
    track.press("ArrowRight")
    wait_for_text(page, "#frame", f"Frame {CLIP_FRAMES - 1} ")
    number = page.locator("#scrub input[type=number]")
    number.fill("99")  # typed past the end: the last frame, and the box says so
    number.press("Enter")
    page.wait_for_function(f"document.querySelector('#scrub input[type=number]').value === '{CLIP_FRAMES - 1}'",
                           timeout=TIMEOUT_MS)
    wait_for_text(page, "#frame", f"Frame {CLIP_FRAMES - 1} ")
    click_on_frame(page, 0.5, 0.45)
    wait_for_text(page, "#summary", f"frame {CLIP_FRAMES - 1}: objects 1.")

    page.locator("#mode label", has_text="Brush: add").click()
    page.locator("#object label", has_text="3").click()
    click_on_frame(page, 0.9, 0.9)  # a brush dab makes object 3
    wait_for_text(page, "#summary", f"frame {CLIP_FRAMES - 1}: objects 1, 3.")
    page.click("#undo")
    wait_for_text(page, "#summary", f"frame {CLIP_FRAMES - 1}: objects 1.")


@contextmanager
def pictures_held(page) -> Iterator[None]:
    """Within: the pictures the page asks for (image.png) wait; at the end they all come."""
    held = []
    page.route("**/image.png", lambda route: held.append(route))
    try:
        yield
    finally:
        for route in held:
            route.continue_()
        page.unroute("**/image.png")


def test_marks_made_while_the_last_edit_is_answered_all_count(page, tmp_path):
    """A user who marks objects in quick succession, without waiting for each answer, gets every mark: the frame
    takes clicks and drags while an edit is being answered (a progress overlay over it would swallow them)."""
    upload(page, make_clip(tmp_path / "judo.mp4"))
    wait_for_text(page, "#status", f"{CLIP_FRAMES} frames")
    page.locator("#mode label", has_text="Brush: add").click()
    click_on_frame(page, 0.1, 0.1)
    page.locator("#object label", has_text="2").click()
    click_on_frame(page, 0.9, 0.1)
    page.locator("#object label", has_text="3").click()
    drag_on_frame(page, (0.1, 0.9), (0.5, 0.9), (0.9, 0.9))
    wait_for_text(page, "#summary", "frame 0: objects 1, 2, 3.")


def test_a_click_or_drag_while_the_frame_reloads_counts_for_the_object_chosen_then(page, tmp_path):
    """Each edit's answer is a new picture, which has no size while it loads: Gradio would drop a click made then
    (it places clicks by that size), and a drag would not start. Both are placed by the last picture's size, and
    each marks the object chosen when it was made."""
    upload(page, make_clip(tmp_path / "judo.mp4"))
    wait_for_text(page, "#status", f"{CLIP_FRAMES} frames")
    page.locator("#mode label", has_text="Brush: add").click()
    spots = [on_frame(page, fx, 0.1) for fx in (0.1, 0.5, 0.9)]
    stroke = [on_frame(page, fx, 0.9) for fx in (0.1, 0.5, 0.9)]
    page.mouse.click(*spots[0])
    wait_for_text(page, "#summary", "frame 0: objects 1.")
    with pictures_held(page):  # the next pictures wait for the test
        page.locator("#object label", has_text="2").click()
        page.mouse.click(*spots[1])
        page.wait_for_function("document.querySelector('#frame img')?.naturalWidth === 0", timeout=TIMEOUT_MS)
        page.locator("#object label", has_text="3").click()
        page.mouse.click(*spots[2])
        page.locator("#object label", has_text="4").click()
        drag_through(page, *stroke)
    wait_for_text(page, "#summary", "frame 0: objects 1, 2, 3, 4.")


def test_a_click_while_a_new_clips_first_picture_loads_is_no_mark(page, tmp_path):
    """A click made while a new clip's first picture loads can only be placed by the last clip's picture, which a
    clip of another shape (the landscape example after a phone's portrait clip) does not share: it marks nothing,
    where it used to mark a point of the new frame that nobody clicked."""
    portrait = encode_video(tmp_path / "portrait.mp4", [np.ascontiguousarray(frame.transpose(1, 0, 2))
                                                        for frame in sample_frames("judo")[:4]], audio=False)
    upload(page, portrait)
    wait_for_text(page, "#status", "4 frames")
    spot = on_frame(page, 0.5, 0.6)
    with pictures_held(page):  # the new clip's picture waits for the test
        page.click("#example")
        page.wait_for_function("document.querySelector('#frame img')?.naturalWidth === 0", timeout=TIMEOUT_MS)
        page.mouse.click(*spot)
    wait_for_text(page, "#status", "854×480")
    page.locator("#object label", has_text="2").click()
    click_on_frame(page, 0.5, 0.5)
    wait_for_text(page, "#summary", "frame 0: objects 2.")  # "objects 1, 2." had the first click counted


def test_a_drag_draws_a_box_or_a_brush_stroke_as_one_edit(page, shots, tmp_path):
    """Boxes are dragged and brush strokes painted, as in every other annotation tool; the release is no click of
    its own (no box corner left waiting), and Undo takes a whole stroke back."""
    upload(page, make_clip(tmp_path / "judo.mp4"))
    wait_for_text(page, "#status", f"{CLIP_FRAMES} frames")
    page.locator("#mode label", has_text="Box").click()
    drag_on_frame(page, (0.35, 0.1), (0.6, 0.5), (0.65, 0.95))
    wait_for_text(page, "#summary", "frame 0: objects 1.")
    page.locator("#mode label", has_text="Brush: add").click()
    page.locator("#object label", has_text="2").click()
    drag_on_frame(page, (0.03, 0.05), (0.03, 0.6), (0.2, 0.6))
    wait_for_text(page, "#summary", "frame 0: objects 1, 2.")
    screenshot(page, shots, "6-dragged")
    assert "corner" not in page.inner_text("#summary") and not page.locator("#drag-overlay").count()
    click_on_frame(page, 0.9, 0.1)  # a click after a drag is a click again: a dab
    page.locator("#object label", has_text="3").click()
    click_on_frame(page, 0.9, 0.1)
    wait_for_text(page, "#summary", "frame 0: objects 1, 2, 3.")
    page.click("#undo")
    wait_for_text(page, "#summary", "frame 0: objects 1, 2.")
    page.click("#undo")
    wait_for_text(page, "#summary", "frame 0: objects 1, 2.")  # object 2's dab at (0.9, 0.1)
    page.click("#undo")
    wait_for_text(page, "#summary", "frame 0: objects 1.")  # the whole stroke at once
    assert page.outside == []


def test_empty_annotation_and_cancel_give_clear_messages(page, shots):
    page.click("#example")
    wait_for_text(page, "#status", "16 frames")
    assert page.is_disabled("#cancel")  # nothing to cancel before a run
    page.click("#run")
    wait_for_text(page, "#run-status", "No object is marked")
    screenshot(page, shots, "6-no-object")

    click_on_frame(page, 0.5, 0.45)
    wait_for_text(page, "#summary", "objects 1")
    page.wait_for_function("document.querySelector('#run-status').innerText.trim() === ''",
                           timeout=TIMEOUT_MS)  # the complaint goes once an object is marked
    page.locator("#mode label", has_text="Box").click()
    page.locator("#object label", has_text="2").click()
    click_on_frame(page, 0.01, 0.42)  # a box around the seated judoka on the left: object 2
    wait_for_text(page, "#summary", "opposite corner")
    click_on_frame(page, 0.16, 0.72)
    wait_for_text(page, "#summary", "objects 1, 2")
    screenshot(page, shots, "7-two-objects")

    page.click("#run")
    page.click("#cancel")  # waits for Cancel to be enabled by the run
    wait_for_text(page, "#run-status", "Run cancelled: nothing was written. Change")
    page.wait_for_selector("#cancel:disabled", timeout=TIMEOUT_MS)
    screenshot(page, shots, "8-cancelled")
    assert page.outside == []


def test_a_file_that_is_no_video_is_named_in_the_status_line(page, tmp_path):
    notes = tmp_path / "notes.mp4"
    notes.write_text("shopping list\n" * 40)
    upload(page, notes)
    wait_for_text(page, "#status", "Not loaded. notes.mp4: not a readable video")
    for element in ("#status", "#frame"):  # no "Error" badge over the status line or the frame
        assert "Error" not in page.inner_text(element)
    assert page.locator("#frame img").count() == 0


@dataclass
class HeldRun:
    """The app's runs, each held after its first frame until `go`; `ended` says whether each was stopped or
    finished."""

    held: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)
    ended: list[str] = field(default_factory=list)

    def release_and_wait(self) -> list[str]:
        """Let the held run go on, and wait until it has ended → how it ended."""
        self.go.set()
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while not self.ended and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.ended


@pytest.fixture
def held_run(monkeypatch) -> HeldRun:
    hold, run_outputs = HeldRun(), web_app.run_outputs

    def held(*args):
        steps = run_outputs(*args)
        try:
            yield next(steps)
            hold.held.set()
            hold.go.wait(TIMEOUT_MS / 1000)
            yield from steps
            hold.ended.append("finished")
        except GeneratorExit:
            hold.ended.append("stopped")
            raise
        finally:
            steps.close()

    monkeypatch.setattr(web_app, "run_outputs", held)
    return hold


def start_a_held_run(page, tmp_path, held_run: HeldRun) -> None:
    """Upload a 16-frame clip, mark the judoka and Run: held after its first frame, Cancel on."""
    upload(page, make_clip(tmp_path / "judo.mp4", frames=16))
    wait_for_text(page, "#status", "16 frames")
    click_on_frame(page, 0.5, 0.45)
    wait_for_text(page, "#summary", "frame 0: objects 1")
    page.click("#run")
    assert held_run.held.wait(TIMEOUT_MS / 1000)
    page.wait_for_selector("#cancel:enabled", timeout=TIMEOUT_MS)  # while the run goes, it can be cancelled


@pytest.mark.parametrize("new_clip, status", [("#upload button[aria-label=Clear]", "Upload a clip to start."),
                                              ("#example", "Loaded")])
def test_a_new_clip_or_none_stops_the_run_with_no_error_shown(page, tmp_path, held_run, new_clip, status):
    """Clearing the upload, or loading the example, while a run goes stops the run at its next frame; the new
    clip's view stands, with no "Error" badge (Gradio's own cancelling put one on the run line and the results)."""
    start_a_held_run(page, tmp_path, held_run)
    page.click(new_clip)
    wait_for_text(page, "#status", status)
    assert held_run.release_and_wait() == ["stopped"]
    page.wait_for_selector("#cancel:disabled", timeout=TIMEOUT_MS)
    for element in ("#run-status", "#view", "#player", "#files"):
        assert "Error" not in page.inner_text(element), element
    assert page.inner_text("#run-status").strip() == ""  # neither "Tracking…" nor "Run cancelled" of the old clip
    # the upload box no longer names the old clip (its × then cleared the example)
    page.wait_for_function("() => !document.querySelector('#upload button[aria-label=Clear]')", timeout=TIMEOUT_MS)


def test_cancel_stops_a_run_midway_with_no_error_shown(page, tmp_path, held_run):
    start_a_held_run(page, tmp_path, held_run)
    page.click("#cancel")
    page.wait_for_selector("#cancel:disabled", timeout=TIMEOUT_MS)
    assert held_run.release_and_wait() == ["stopped"]
    wait_for_text(page, "#run-status", "Run cancelled: nothing was written. Change")
    for element in ("#run-status", "#view", "#player", "#files"):  # a cancel is no error: no "Error" badge
        assert "Error" not in page.inner_text(element), element
