"""`python -m plugin.obs`: keep an OBS source masked, cut out or background-blurred live, no green screen.

Connects to OBS Studio's built-in obs-websocket v5 server, tracks the chosen object with the MobileVOS tracker
and drives OBS's own Image Mask/Blend filter (see `plugin.stage` for the scene rig and `plugin.session` for
the loop). Also: `--list` (sources), `--annotate` (re-annotate a running plugin through a CustomEvent and wait
for its answer), `--restore` (take a rig left by a killed run out of the scene) and `--bench` (end-to-end FPS and
latency).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import queue
import secrets
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from core.io.command import (INTERRUPTED, BadInput, ToolParser, bounded, output_file, output_folder, port_number,
                             tool_description, whole_number)

Signals = list[int]  # signal numbers received, the latest last


def stopped_by_ctrl_c(status: StatusFile | None = None) -> int:
    """Say that Ctrl-C stopped the plugin (one line on stderr, and in the status file); the exit status for it."""
    message = "interrupted by Ctrl-C"
    if status is not None:
        status.write("stopped", message)
    print(message, file=sys.stderr, flush=True)
    return INTERRUPTED


@contextmanager
def ctrl_c_ends_at_once(status: StatusFile | None = None) -> Iterator[None]:
    """Within, when run as `python -m plugin.obs` (not imported) and SIGINT is not ignored, Ctrl-C ends the
    process at once (`stopped_by_ctrl_c`). For what the plugin loads first, its imports (PyTorch, OpenCV: seconds)
    and the tracker (ONNX Runtime), where a KeyboardInterrupt would not do: C extensions re-raise one as an
    ImportError, and one raised in code run by `exec` (as dataclasses does) makes Python end by SIGINT whatever
    status it exits with."""
    if __name__ != "__main__" or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: os._exit(stopped_by_ctrl_c(status)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


with ctrl_c_ends_at_once():
    import numpy as np
    from tqdm import tqdm

    from core.io.masks import MaskError, read_mask
    from core.inference.settings import DEFAULT_SIZE, add_tracker_arguments, tracker_config
    from plugin.session import (MODES, Annotation, Answer, FramePump, FrameResult, LiveSession, SessionConfig,
                                check_labels, check_objects, plugin_running)
    from plugin.stage import (SCRATCH_PREFIX, Connection, ObsStage, StageError, name_hint, remove_scratch_folder,
                              source_label, write_bytes_atomic)

if TYPE_CHECKING:
    from core.inference.tracker import Tracker

PREFETCH = {"auto": None, "on": True, "off": False}  # --prefetch → SessionConfig.prefetch
BENCH_HEADER = ("| source → frames | FPS | latency mean / p95 (ms) | capture | wait | track | show (ms, mean) |\n"
                "|---|---|---|---|---|---|---|")


def parse_size(text: str) -> tuple[int, int] | None:
    if text == "auto":
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give the size as auto or WIDTHxHEIGHT, e.g. 640x360") from None
    if min(width, height) < 16:
        raise argparse.ArgumentTypeError(f"{text!r}: give each side as 16 pixels or more, e.g. 640x360")
    return width, height


def join_negative_values(argv: list[str], flags: tuple[str, ...] = ("--box",)) -> list[str]:
    """Join `--box -50,20,300,400` into `--box=-50,...`: argparse takes a value that starts with "-" for a flag."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in flags and arg[:1] == "-" and arg[1:2].isdigit():
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def parse_box(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(float(v)) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give the box as x,y,w,h in the source's pixels") from None
    return x, y, w, h


def parse_ids(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give object ids as a comma list, e.g. 1,2") from None


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = ToolParser(prog="python -m plugin.obs", description=tool_description(__doc__))
    conn = parser.add_argument_group("connection (OBS → Tools → WebSocket Server Settings)")
    conn.add_argument("--host", default=env("OBS_WEBSOCKET_HOST", "127.0.0.1"), help="env OBS_WEBSOCKET_HOST")
    conn.add_argument("--port", type=port_number, default=env("OBS_WEBSOCKET_PORT", "4455"),
                      help="env OBS_WEBSOCKET_PORT")
    conn.add_argument("--password", default=env("OBS_WEBSOCKET_PASSWORD", ""), help="env OBS_WEBSOCKET_PASSWORD")
    parser.add_argument("--source", help="the OBS source (input) to mask, by name")
    parser.add_argument("--scene", help="the scene to work in (default: the program scene, else the first with it)")
    parser.add_argument("--mode", choices=MODES, default="mask",
                        help="mask: keep the object; blur: blur the background; hide: hide the object")
    ann = parser.add_argument_group("first annotation (one of)")
    ann.add_argument("--mask", type=Path, help="a mask PNG (palette, binary, or the web app's exported mask)")
    ann.add_argument("--box", type=parse_box,
                     help="x,y,w,h in the source's pixels; the annotation network turns it into a mask")
    parser.add_argument("--objects", type=parse_ids, default=(), help="object ids to act on (default: all)")
    parser.add_argument("--size", type=parse_size, default=None, metavar="auto|WxH",
                        help="capture size (default auto: the tracker's size, OBS scales the mask up; a larger size, "
                             "e.g. 1280x720, gives sharper mask edges and costs speed)")
    parser.add_argument("--prefetch", choices=tuple(PREFETCH), default="auto",
                        help="take the next screenshot while tracking: on, off, or auto (default: measure both "
                             "and keep the faster; in software-rendering OBS on few cores, off is faster for large "
                             "sources)")
    parser.add_argument("--jpeg-quality", type=bounded(0, 100, whole=True), default=80,
                        help="screenshot JPEG quality, 0-100 (default 80)")
    parser.add_argument("--blur", type=bounded(3, 255, whole=True), default=31,
                        help="blur kernel in --mode blur, 3 to 255 (default 31)")
    parser.add_argument("--frames", type=whole_number(1), help="stop after N tracked frames")
    parser.add_argument("--duration", type=bounded(0.001), help="stop after this many seconds")
    parser.add_argument("--wait-for-source", action="store_true", help="wait for a missing source instead of failing")
    trk = parser.add_argument_group("tracker")
    add_tracker_arguments(trk, size_flag="--track-size", backend="onnx", adapt=False)
    act = parser.add_argument_group("other actions")
    act.add_argument("--list", action="store_true", help="list OBS's sources and scenes, then exit")
    act.add_argument("--annotate", action="store_true",
                     help="send --mask/--box to a running plugin for --source (re-annotate) and print its answer: "
                          "exit status 0 when it took it (or takes it with the source's next picture), 2 when it "
                          "found it unusable or none answered")
    act.add_argument("--answer-timeout", type=bounded(0.1, 600), default=5.0, metavar="SECONDS",
                     help="with --annotate: how long to wait for the plugin's answer, 0.1 to 600 (default 5)")
    act.add_argument("--restore", action="store_true",
                     help="take the rig for --source out of OBS (after a killed run), then exit")
    act.add_argument("--bench", action="store_true", help="measure FPS and latency, print a Markdown row")
    act.add_argument("--bench-frames", type=whole_number(2), default=60, help="frames measured in --bench (default 60)")
    parser.add_argument("--work-dir", type=output_folder,
                        help="where the mask images for OBS go (default: a temp dir)")
    parser.add_argument("--status-file", type=output_file,
                        help="keep the plugin's state, FPS and latency in this JSON file (read by the OBS control "
                             "panel, plugin/obs_panel.py; its folder is made when missing)")
    return parser


class StatusFile:
    """The plugin's state as JSON for the OBS control panel; while tracking, rewritten at most every `every_s`.
    The last note on an annotation sent while tracking (taken, unusable, ignored) stays in it as "annotation"."""

    def __init__(self, path: Path | None, every_s: float = 0.5):
        self.path = path
        self.every_s = every_s
        self.last = 0.0
        self.annotation = ""

    def write(self, state: str, message: str = "", session: LiveSession | None = None, force: bool = True) -> None:
        """state: starting, tracking, waiting (OBS or the source is away), stopped or error."""
        now = time.monotonic()
        if self.path is None or (not force and now - self.last < self.every_s):
            return
        self.last = now
        data = {"state": state, "message": message, "pid": os.getpid()}
        if self.annotation:
            data["annotation"] = self.annotation
        if session is not None:
            data |= {"frames": session.frames_done, "fps": round(session.stats.fps, 1),
                     "latency_ms": round(session.stats.latency_ms)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.path, json.dumps(data).encode())

    def note(self, message: str, session: LiveSession) -> None:
        """Keep `message`, what became of an annotation sent while tracking, and write it (tracking goes on)."""
        self.annotation = message
        self.write("tracking", message, session)


def make_tracker(args: argparse.Namespace, status: StatusFile | None = None) -> Tracker:
    """The tracker for the flags; loading it (PyTorch, imported only here: --list, --annotate and --restore start in
    a second; ONNX Runtime, a graph export on first use) ends at once on Ctrl-C."""
    with ctrl_c_ends_at_once(status):
        from core.inference.tracker import Tracker

        return Tracker(tracker_config(args))


def make_stage(args: argparse.Namespace) -> ObsStage:
    """The OBS stage for the flags; its images go to --work-dir, else to a folder of its own (`scratch_folder`)."""
    work_dir = args.work_dir or scratch_folder()
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StageError(f"--work-dir {work_dir}: cannot make the folder ({error.strerror}); give another one") \
            from None
    stage = ObsStage(Connection(args.host, args.port, args.password), args.source, args.scene, work_dir,
                     args.size, args.jpeg_quality, args.tracker_size or DEFAULT_SIZE)
    if args.work_dir is None:
        atexit.register(_clear_scratch, stage)
    return stage


def scratch_folder() -> Path:
    """A new temporary folder for the rig's images (`_clear_scratch` takes it away at the end)."""
    return Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))


def _clear_scratch(stage: ObsStage) -> None:
    """At exit, remove the scratch folder of `stage` with its images, unless its rig is still in OBS (OBS gone
    before the scene was put back: its mask filter shows the images until `--restore`)."""
    if stage.placement is None:
        remove_scratch_folder(stage.mask_path.parent)


def annotation_from(args: argparse.Namespace) -> Annotation:
    """The first annotation from --mask or --box; a mask file is read and checked here, before OBS is touched."""
    if (args.mask is None) == (args.box is None):
        raise MaskError("give exactly one first annotation: --mask FILE or --box x,y,w,h")
    if args.mask is None:
        check_objects([1], args.objects, "--box")
        return Annotation(box=args.box)
    if args.mask.is_dir():
        raise MaskError(f"--mask {args.mask}: is a folder; pass one mask PNG in it (the first frame's)")
    check_labels(read_mask(args.mask), args.objects, str(args.mask))
    return Annotation(mask_path=args.mask.resolve())


def list_sources(args: argparse.Namespace) -> None:
    """Print each scene's sources, then all sources; an audio-only one (no picture to mask) is marked so."""
    stage = make_stage(args)
    stage.connect()
    try:
        kinds = stage.input_kinds()
        for scene in reversed(stage.scene_names()):
            print(f"scene {scene!r}: {sources_line(stage.scene_sources(scene), kinds)}")
        print(f"sources: {sources_line(kinds, kinds)}")
    finally:
        stage.disconnect()


def sources_line(names: Iterable[str], kinds: dict[str, str | None]) -> str:
    """`names` quoted, comma-separated, those whose input kind (in `kinds`) has no picture marked audio only."""
    return ", ".join(source_label(repr(name), kinds.get(name)) for name in names)


def send_annotation(args: argparse.Namespace) -> int:
    """--annotate: send --mask/--box to the plugin running on --source as a CustomEvent with a fresh id, then wait
    up to --answer-timeout for its answer (the stage listens to custom events from before the send on)."""
    annotation = replace(annotation_from(args), request=secrets.token_hex(8))
    stage = make_stage(args)
    stage.connect()
    try:
        stage.broadcast(annotation.event(args.source))
        answer = wait_for_answer(stage.events, annotation.request, args.answer_timeout)
        hint = "" if answer else name_hint(args.source, stage.input_names(), stage.scene_names())
    finally:
        stage.disconnect()
    return report_answer(answer, args.source, args.answer_timeout, hint)


def wait_for_answer(events: queue.Queue[dict], request: str, timeout_s: float) -> Answer | None:
    """The first answer to the annotate event with id `request` among the custom `events` received within
    `timeout_s` (other events, the annotate event itself among them, are skipped); None when none came."""
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            answer = Answer.from_event(events.get(timeout=max(0.0, deadline - time.monotonic())), request)
            if answer is not None:
                return answer
    except queue.Empty:
        return None


def report_answer(answer: Answer | None, source: str, timeout_s: float, hint: str = "") -> int:
    """Print the plugin's answer as one line and return 0 when it took the annotation; StageError (its one line,
    status 2) when it found it unusable or ignored it, or when no plugin answered within `timeout_s` (then with
    `hint`, what the name probably meant). An annotation waiting for the source's next picture counts as taken."""
    if answer is None:
        raise StageError(f"no plugin answered for source {source!r}{hint} within {timeout_s:g} s (is one running on "
                         "that source? --list shows the sources)")
    line = f"the plugin on {answer.source!r}: {answer.message}"
    if answer.outcome not in ("taken", "waiting"):
        raise StageError(line)
    print(line)
    return 0


def restore_rig(args: argparse.Namespace) -> None:
    """--restore: take the rig for --source out of OBS, unless a plugin running on it answers a ping (it puts the
    scene back itself when stopped: taking its rig apart under it would end it)."""
    stage = make_stage(args)
    stage.connect()
    try:
        if plugin_running(stage):
            raise StageError(f"a MobileVOS plugin is running on source {args.source!r}: stop it (Ctrl-C in its "
                             "terminal, or Stop in the OBS panel) and it puts the scene back itself; --restore is for "
                             "a rig a killed run left")
        if not stage.restore() and args.source not in stage.input_names():
            raise stage.missing()  # a mistyped name finds no rig either: say so, not "restored"
    finally:
        stage.disconnect()
    print(f"scene restored: no MobileVOS rig for {args.source!r} left in OBS")


def watch_stdin(session: LiveSession) -> None:
    """Hotkey in the terminal: a line "r" re-annotates with the first annotation (re-reads the mask file)."""
    for line in sys.stdin:
        if line.strip().lower() == "r":
            session.reannotate()


def run_live(args: argparse.Namespace, status: StatusFile) -> int:
    annotation = annotation_from(args)
    config = SessionConfig(mode=args.mode, objects=args.objects, frames=args.frames, duration=args.duration,
                           blur=args.blur, wait_for_source=args.wait_for_source, prefetch=PREFETCH[args.prefetch])
    tracker, stage = make_tracker(args, status), make_stage(args)  # no scratch folder while it loads
    bar = tqdm(total=args.frames, unit="frame", dynamic_ncols=True)

    def on_status(message: str) -> None:
        say(bar, message)
        status.write("tracking" if message.startswith("attached") else "waiting", message, session)

    def on_note(message: str) -> None:
        say(bar, message)
        status.note(message, session)

    session = LiveSession(stage, tracker, annotation, config,
                          on_frame=lambda result: (progress(bar, session, result),
                                                   status.write("tracking", "", session, force=False)),
                          on_status=on_status, on_note=on_note)
    stop_on_signals(session)
    if sys.stdin is not None and sys.stdin.isatty():
        bar.write('type "r" + Enter to re-annotate; Ctrl-C to stop (the scene is put back as it was)')
        threading.Thread(target=watch_stdin, args=(session,), daemon=True).start()
    try:
        frames = run_or_hint(session, stage)
    finally:
        bar.close()
    message = (f"tracked {frames} frames; {session.stats.fps:.1f} FPS, latency {session.stats.latency_ms:.0f} ms; "
               + scene_outcome(session, stage))
    status.write("stopped", f"{session.ended_because} — {message}" if session.ended_because else message, session)
    print(message)
    return 0


def stop_on_signals(session: LiveSession) -> Signals:
    """Ctrl-C (`stop_then_interrupt`), SIGTERM and SIGHUP (the terminal closed; not under `nohup`) stop `session`
    as its end does: the scene is put back. Returns the signals received, the latest last."""
    received: Signals = []

    def stop(number: int, _frame: object) -> None:
        received.append(number)
        if number == signal.SIGINT:
            stop_then_interrupt(session)
        else:
            session.stop()

    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if number != signal.SIGHUP or signal.getsignal(number) is not signal.SIG_IGN:  # under `nohup` the run
            signal.signal(number, stop)                                                 # outlives its terminal
    return received


def run_or_hint(session: LiveSession, stage: ObsStage) -> int:
    """`session.run()`; when a second Ctrl-C ends it before the scene is put back, first a line on what to run."""
    try:
        return session.run()
    except KeyboardInterrupt:
        if session.attached or stage.placement is not None:
            print(f"the scene may not be fully put back: run {restore_command(stage.source)}", file=sys.stderr)
        raise


def restore_command(source: str) -> str:
    """The command that takes the rig for `source` out of OBS."""
    return f"`python -m plugin.obs --source {shlex.quote(source)} --restore`"


def scene_outcome(session: LiveSession, stage: ObsStage) -> str:
    """How a run left the scene: restored, not changed, or (OBS gone before it could be put back) a rig OBS may
    bring back from its saved scenes, with the command that removes it."""
    if not session.attached:
        return "the scene was not changed"
    if stage.placement is None:
        return "scene restored"
    return (f"OBS went away before the scene was put back: should OBS bring the rig back, run "
            f"{restore_command(stage.source)}")


def say(bar: tqdm, message: str) -> None:
    """`message` as a line above the progress bar, out at once (also to a log file or a pipe, as the panel's)."""
    bar.write(message)
    sys.stdout.flush()


def stop_then_interrupt(session: LiveSession) -> None:
    """First Ctrl-C: finish the current frame, restore the scene, exit. Second: stop at once."""
    if session.stop_event.is_set():
        raise KeyboardInterrupt
    session.stop()


def progress(bar: tqdm, session: LiveSession, result: FrameResult) -> None:
    bar.update(1)
    bar.set_postfix_str(f"{session.stats.fps:.1f} FPS  latency {1000 * result.latency_s:.0f} ms "
                        f"(capture {1000 * result.capture_s:.0f} + wait {1000 * result.wait_s:.0f} "
                        f"+ track {1000 * result.track_s:.0f} "
                        f"+ show {1000 * result.show_s:.0f})", refresh=False)


def bench(args: argparse.Namespace) -> int:
    """Print a Markdown table with the row of `bench_source` for --source; a run stopped by a signal prints how far
    it came instead, and ends with that signal's status."""
    row = bench_source(args)
    if isinstance(row, int):
        return row
    print(BENCH_HEADER)
    print(row)
    return 0


def bench_source(args: argparse.Namespace) -> str | int:
    """Run the live loop on --source for warm-up frames (8, and with --prefetch auto also the frame pump's first
    trial of both ways) + `--bench-frames`; its Markdown row, or the exit status when a signal stopped it first."""
    annotation = annotation_from(args)
    warmup = 8 if args.prefetch != "auto" else FramePump.WARMUP + 2 * FramePump.TRIAL + 8
    timed: list[tuple[float, FrameResult]] = []
    config = SessionConfig(mode=args.mode, frames=warmup + args.bench_frames, wait_for_source=args.wait_for_source,
                           prefetch=PREFETCH[args.prefetch])
    tracker, stage = make_tracker(args), make_stage(args)
    with tqdm(total=config.frames, desc=args.source, unit="frame") as bar:
        session = LiveSession(stage, tracker, annotation, config,
                              on_frame=lambda r: (timed.append((time.perf_counter(), r)), bar.update(1)),
                              on_status=bar.write)
        received = stop_on_signals(session)  # as a live run: the scene is put back
        run_or_hint(session, stage)
    if received and session.frames_done < config.frames:
        print(f"bench stopped after {session.frames_done} of {config.frames} frames: no result", file=sys.stderr)
        return 128 + received[-1]  # the shell's status for that signal: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP
    return bench_row(session.source_size, timed[warmup:])


def bench_row(source_size: tuple[int, int] | None, timed: list[tuple[float, FrameResult]]) -> str:
    """One Markdown row from (finish time, result) of the frames after warm-up."""
    size = "×".join(map(str, source_size)) if source_size else "?"
    if len(timed) < 2:
        return f"| {size} → ? | no frames | | | | | |"
    results = [r for _, r in timed]
    frame = "×".join(map(str, results[0].frame.shape[1::-1]))
    latency = np.array([r.latency_s for r in results]) * 1000
    fps = (len(timed) - 1) / (timed[-1][0] - timed[0][0])
    mean = lambda key: 1000 * float(np.mean([getattr(r, key) for r in results]))  # noqa: E731
    return (f"| {size} → {frame} | {fps:.1f} | {latency.mean():.0f} / {np.percentile(latency, 95):.0f} | "
            f"{mean('capture_s'):.0f} | {mean('wait_s'):.0f} | {mean('track_s'):.0f} | {mean('show_s'):.0f} |")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(join_negative_values(sys.argv[1:] if argv is None else argv))
    status = StatusFile(args.status_file)
    try:
        if args.list:
            list_sources(args)
            return 0
        if not args.source:
            raise StageError("--source NAME is required (run with --list to see OBS's sources)")
        if args.annotate:
            return send_annotation(args)
        if args.restore:
            restore_rig(args)
            return 0
        if args.bench:
            return bench(args)
        status.write("starting")
        return run_live(args, status)
    except (StageError, BadInput) as error:  # BadInput: an unusable mask (MaskError) or checkpoint (WeightsError)
        status.write("error", str(error))
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return stopped_by_ctrl_c(status)


if __name__ == "__main__":
    sys.exit(main())
