"""`python -m core.batch INPUT... --out DIR`: track and composite a folder of clips, resumably, in parallel.

This module owns the command line, the scheduling of items (one process, a local process pool, or a Ray
cluster), the progress bars and summary.json. Finding inputs is core.batch.inputs; processing one item (and
the temp-folder-then-rename completion design) is core.batch.worker.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from core.batch.inputs import InputError, Job, plan_jobs
from core.batch.worker import (CUTOUT_FORMATS, ItemResult, JobError, OutputSpec, ProgressEvent, completed,
                               partial_folder, process_job)
from core.effects import EdgeSettings
from core.io.video import H264_ENCODERS, X264_PRESETS, nvenc_available
from core.pipeline import EFFECTS, BackgroundError, check_background
from core.inference.tracker import resolved_config
from core.inference.settings import TrackerConfig, add_tracker_arguments, tracker_config
from core.io.command import (INTERRUPTED, TERMINATED, BadInput, ToolParser, bounded, ctrl_c_interrupts,
                             output_folder, whole_number)

SUMMARY_FILE = "summary.json"
EDGE_PIXELS = 50  # the most --feather and --edge-shift may move an edge, in pixels at 480p
POLL_SECONDS = 0.2
FINISHING = "finishing the outputs (a removal's last frames take longest)"  # said once every frame is tracked
STOP_WAIT_S = 10.0  # how long a stopped worker process is waited for before its item's folder is removed


@dataclass(frozen=True)
class RunOptions:
    """Everything a run needs besides the list of jobs."""

    out_dir: str
    spec: OutputSpec
    tracker: TrackerConfig
    overwrite: bool = False
    quiet: bool = False
    workers: int = 1
    ray_address: str | None = None  # "local" starts a local Ray instance
    use_ray: bool = False


class ProgressBoard:
    """The bars (one overall, one per video in progress) or, with --quiet, plain log lines."""

    def __init__(self, total: int, quiet: bool):
        self._quiet = quiet
        self._overall = None if quiet else tqdm(total=total, desc="videos", unit="video", position=0)
        self._bars: dict[str, tuple[tqdm, int]] = {}  # name → (bar, screen row)
        self._free_rows: list[int] = []
        self._finished = 0
        self._total = total

    def update(self, event: ProgressEvent) -> None:
        """Move the bar of `event.name` (created on its first event); the same count again means every frame is
        tracked and the outputs are still being finished, which the bar then says."""
        if self._quiet:
            return
        if event.name not in self._bars:
            row = self._free_rows.pop(0) if self._free_rows else len(self._bars) + 1
            bar = tqdm(total=event.total, desc=event.name, unit="frame", position=row, leave=False)
            self._bars[event.name] = (bar, row)
        bar = self._bars[event.name][0]
        if event.done and event.done == bar.n:
            bar.set_postfix_str(FINISHING)
        else:
            bar.update(event.done - bar.n)

    def finish(self, result: ItemResult) -> None:
        """Close the item's bar and log one line about it."""
        self._finished += 1
        if result.name in self._bars:
            bar, row = self._bars.pop(result.name)
            bar.close()
            self._free_rows.append(row)
        self.log(_describe(result, f"[{self._finished}/{self._total}]"),
                 error=result.status == "failed" or result.warning is not None)
        if self._overall is not None:
            self._overall.update(1)

    def log(self, line: str, error: bool = False) -> None:
        tqdm.write(line, file=sys.stderr if error else sys.stdout)

    def close(self) -> None:
        for bar, _ in self._bars.values():
            bar.close()
        if self._overall is not None:
            self._overall.close()


def _describe(result: ItemResult, counter: str) -> str:
    """One log line for a finished item."""
    if result.status == "failed":
        return f"{counter} FAILED {result.error}"
    if result.status == "skipped":
        line = f"{counter} skipped {result.name}: already complete (--overwrite to redo)"
    else:
        line = (f"{counter} done {result.name}: {result.frames} frames in {result.seconds:.1f} s "
                f"({result.fps:.1f} FPS)")
    return line if result.warning is None else f"{line}; warning: {result.warning}"


class SummaryUnwritable(BadInput):
    """summary.json cannot be written (a full disk): the run ends with its one line."""


class RunSummary:
    """summary.json of this run, rewritten atomically after every item so a killed run still leaves one."""

    def __init__(self, options: RunOptions, jobs: list[Job], argv: list[str]):
        self._path = Path(options.out_dir) / SUMMARY_FILE
        self._header = {"command": ["python", "-m", "core.batch", *argv],
                        "started": _now(), "finished": None,
                        "outputs": options.spec.output_names(), "tracker": asdict(resolved_config(options.tracker))}
        # keyed by input: two inputs that claim one output name are two items (one of them failed)
        self._items = {job.source: ItemResult(job.source, job.name, "pending") for job in jobs}

    def record(self, result: ItemResult) -> None:
        self._items[result.input] = result
        self.write()

    def fail_pending(self, error: str) -> None:
        """Mark every item not begun as failed with `error` (the run could not start them)."""
        for source, item in self._items.items():
            if item.status == "pending":
                self._items[source] = replace(item, status="failed", error=error)

    def finish(self) -> None:
        for source, item in self._items.items():
            if item.status == "pending":
                self._items[source] = replace(item, status="interrupted")
        self._header["finished"] = _now()
        self.write()

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self._items.values():
            counts[item.status] = counts.get(item.status, 0) + 1
        return counts

    def write(self) -> None:
        """Rewrite summary.json whole (a temporary file renamed); SummaryUnwritable when the disk refuses it."""
        document = {**self._header, "counts": self.counts(), "items": [asdict(i) for i in self._items.values()]}
        tmp = self._path.with_name(f".{self._path.name}.tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(document, indent=2))
            os.replace(tmp, self._path)
        except OSError as error:
            tmp.unlink(missing_ok=True)
            raise SummaryUnwritable(f"{self._path}: cannot be written ({error.strerror}); free disk space (or make "
                                    "the folder writable) and run the same command again: finished items are "
                                    "kept") from None

    @property
    def path(self) -> Path:
        return self._path


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class QueueReporter:
    """Sends progress events from a worker to the main process through a queue (picklable)."""

    def __init__(self, events):
        self._events = events

    def __call__(self, event: ProgressEvent) -> None:
        self._events.put(event)


def _drain(events, board: ProgressBoard) -> None:
    """Show every progress event waiting in the queue."""
    while True:
        try:
            board.update(events.get_nowait())
        except queue.Empty:  # also ray.util.queue.Empty
            return


def run_serial(jobs: list[Job], options: RunOptions, board: ProgressBoard) -> Iterator[ItemResult]:
    """Items one after the other in this process."""
    for job in jobs:
        yield process_job(job, options.out_dir, options.spec, options.tracker, options.overwrite, board.update)


def run_pool(jobs: list[Job], options: RunOptions, board: ProgressBoard) -> Iterator[ItemResult]:
    """Items in a pool of worker processes, each with its own tracker and its share of the cores."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(options.workers, mp_context=context) as pool:
        events = manager.Queue()
        reporter = QueueReporter(events)
        pending = {pool.submit(process_job, job, options.out_dir, options.spec, options.tracker,
                               options.overwrite, reporter): job for job in jobs}
        try:
            while pending:
                done, _ = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                _drain(events, board)
                for future in done:
                    pending.pop(future)
                    yield future.result()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the items in flight are dropped, not finished
            _stop_workers(pool)
            for job in pending.values():
                shutil.rmtree(partial_folder(Path(options.out_dir) / job.name), ignore_errors=True)
            raise
        finally:
            for future in pending:
                future.cancel()


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End a pool's worker processes now, and wait (up to `STOP_WAIT_S` each) until they are gone, so that their
    items' `.partial` folders can be removed. SIGTERM reaches this process alone (Ctrl-C reaches the terminal's
    whole process group), and leaving the pool would otherwise wait for every item already handed to a worker."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # the executor offers no public handle
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        process.terminate()
    for process in workers:
        process.join(STOP_WAIT_S)


def run_ray(jobs: list[Job], options: RunOptions, board: ProgressBoard) -> Iterator[ItemResult]:
    """Items as Ray tasks (one CPU each, or one GPU with --device cuda) on a local or remote Ray cluster.

    Inputs and the output folder must be at the same paths on every node (shared storage)."""
    import ray
    from ray.util.queue import Queue

    package_root = str(Path(__file__).resolve().parents[2])
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                                            os.environ.get("PYTHONPATH")]))}}
    if options.ray_address == "local":
        # Ray starts its workers at nice 15, where any busy process on the machine starves them (a 20 s batch
        # took over 400 s beside two busy loops); a batch run's workers should share the CPU as the pool's do.
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(num_cpus=options.workers, include_dashboard=False, runtime_env=runtime_env,
                 log_to_driver=False)
    else:
        try:
            ray.init(address=options.ray_address, runtime_env=runtime_env, log_to_driver=False)
        except ConnectionError as error:
            reason = str(error).split(". ")[0].strip().rstrip(".")
            raise JobError(f"--ray {options.ray_address}: {reason}; start the cluster (`ray start --head` on its "
                           "head node) or pass --ray without an address for a local one") from None
    try:
        gpus = 1 if options.tracker.device == "cuda" else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(process_job)
        events = Queue()
        reporter = QueueReporter(events)
        pending = {task.remote(job, options.out_dir, options.spec, options.tracker, options.overwrite,
                               reporter): job for job in jobs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                _drain(events, board)
                for ref in done:
                    pending.pop(ref)
                    yield ray.get(ref)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: a cluster's tasks are stopped too, not left running
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        ray.shutdown()


def execute(jobs: list[Job], options: RunOptions, summary: RunSummary, board: ProgressBoard) -> None:
    """Skip complete items, fail items known to be bad, and run the rest with the chosen scheduler."""
    to_run = []
    for job in jobs:
        fresh = options.overwrite or job.problem
        done = None if fresh else completed(job, Path(options.out_dir), options.spec, options.tracker)
        if done is not None:
            summary.record(done)
            board.finish(done)
        elif job.problem:
            failed = ItemResult(job.source, job.name, "failed", error=job.problem)
            summary.record(failed)
            board.finish(failed)
        else:
            to_run.append(job)
    runner: Callable[..., Iterator[ItemResult]] = (
        run_ray if options.use_ray else run_pool if options.workers > 1 and len(to_run) > 1 else run_serial)
    for result in runner(to_run, options, board):
        summary.record(result)
        board.finish(result)


def build_parser() -> argparse.ArgumentParser:
    parser = ToolParser(
        prog="python -m core.batch",
        description="Track the annotated objects through videos or frame folders and write masks and effects.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video file, folder of numbered frames, or folder holding such items (recursively)")
    parser.add_argument("--out", type=output_folder, required=True, metavar="DIR",
                        help="output folder (one subfolder per input; made when missing)")
    parser.add_argument("--effect", action="append", choices=EFFECTS, default=[],
                        help="an effect video to write (repeatable)")
    parser.add_argument("--masks", choices=("png", "video", "both", "none"), default="png",
                        help="masks as palette PNGs per frame (masks/), a mask video (masks.mp4), both, or none")
    parser.add_argument("--cutout-format", choices=CUTOUT_FORMATS, default="auto",
                        help="cutout as VP9 WebM with alpha, ProRes 4444 .mov, or a folder of RGBA PNGs; auto "
                             "(default): WebM, or ProRes for 4K-sized videos (VP9 with alpha needs 1.2 GB more "
                             "memory there)")
    parser.add_argument("--background", default="green", metavar="COLOR|IMAGE|VIDEO",
                        help="replace effect's background: a colour (green, #00b140, 0,177,64), image or video "
                             "(looped); default green")
    parser.add_argument("--blur", type=bounded(3, 255, whole=True), default=31, metavar="STRENGTH",
                        help="blur effect's kernel size, 3 to 255 (default 31)")
    parser.add_argument("--x264-preset", choices=X264_PRESETS, default="ultrafast",
                        help="H.264 outputs (CRF 18): ultrafast (default) is the fastest, with files about twice "
                             "the size of veryfast's at the same quality; slower presets make smaller files")
    parser.add_argument("--encoder", choices=H264_ENCODERS, default="auto",
                        help="H.264 encoder: auto = NVIDIA NVENC when it opens (a GPU machine), else libx264")
    parser.add_argument("--edges", choices=("soft", "hard"), default="soft",
                        help="cutout, blur and replace: a soft alpha matte from the tracker's probabilities, "
                             "refined along the image's edges (default), or the hard masks")
    parser.add_argument("--feather", type=bounded(0, EDGE_PIXELS), default=EdgeSettings.feather,
                        metavar="PIXELS", help=f"soft edges: extra softening, 0 to {EDGE_PIXELS} pixels at 480p "
                                               f"(default {EdgeSettings.feather})")
    parser.add_argument("--edge-shift", type=bounded(-EDGE_PIXELS, EDGE_PIXELS), default=0.0,
                        metavar="PIXELS", help="soft edges: grow (> 0) or shrink (< 0) the objects' edge, at most "
                                               f"{EDGE_PIXELS} pixels at 480p either way")
    parser.add_argument("--refine", action="store_true",
                        help="redraw each tracked mask with the annotation network, zoomed on the object: "
                             "sharper masks (J&F 66.4 -> 69.1 on the validation split), about half the speed")
    parser.add_argument("--mask", metavar="PATH",
                        help="annotation for a single input: a palette PNG, or a folder named like the frames")
    parser.add_argument("--mask-frame", type=whole_number(0), default=0, metavar="N",
                        help="frame index the --mask PNG annotates (default 0)")
    parser.add_argument("--workers", type=whole_number(1), default=1, metavar="N",
                        help="videos processed in parallel")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="distribute the videos over a Ray cluster (ADDRESS, or 'auto'); "
                             "without ADDRESS (or with 'local') a local Ray instance with --workers CPUs")
    add_tracker_arguments(parser, backend="auto",
                          threads_help="CPU threads per worker for the tracker (default: cores / workers; 1 for "
                                       "Ray tasks)")
    parser.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs are complete")
    parser.add_argument("--quiet", action="store_true", help="no progress bars: one log line per input")
    return parser


def options_from(args: argparse.Namespace) -> RunOptions:
    """RunOptions from parsed arguments; JobError for a bad value (background, device, counts)."""
    if args.masks == "none" and not args.effect:
        raise JobError("--masks none and no --effect: nothing to write; add an --effect or keep the masks")
    if args.mask_frame and args.mask is None:
        raise JobError(f"--mask-frame {args.mask_frame} without --mask: it numbers the frame of a --mask PNG; pass "
                       "--mask FILE too, or name a mask beside its clip clip.N.png for frame N")
    if args.ray is not None and importlib.util.find_spec("ray") is None:
        raise JobError("--ray: Ray is not installed; install the batch extra: pip install -e '.[batch]'")
    if args.encoder == "nvenc" and args.ray is None and not nvenc_available():  # Ray workers may have the GPU
        raise JobError("--encoder nvenc: the NVIDIA H.264 encoder (h264_nvenc) does not open here; "
                       "use --encoder x264 or auto")
    if "replace" in args.effect:
        try:
            check_background(args.background)
        except BackgroundError as error:
            raise JobError(str(error)) from None
    spec = OutputSpec(effects=tuple(dict.fromkeys(args.effect)), mask_pngs=args.masks in ("png", "both"),
                      mask_video=args.masks in ("video", "both"), cutout_format=args.cutout_format,
                      background=args.background, blur_strength=args.blur, soft_edges=args.edges == "soft",
                      feather=args.feather, edge_shift=args.edge_shift, x264_preset=args.x264_preset,
                      encoder=args.encoder, refine=args.refine)
    threads = args.threads or (1 if args.ray else max(1, (os.cpu_count() or 1) // args.workers))
    tracker = tracker_config(args, threads=threads)
    return RunOptions(out_dir=str(args.out), spec=spec, tracker=tracker, overwrite=args.overwrite, quiet=args.quiet,
                      workers=args.workers, ray_address=args.ray, use_ray=args.ray is not None)


def make_out_dir(out: Path) -> None:
    """Make the output folder (and its parents; `output_folder` checked at parse time that they can be made);
    JobError with one line should that still fail (a full or read-only disk)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise JobError(f"--out {out}: cannot make the folder ({error.strerror}); give a folder you can write "
                       "to") from None


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a container's stop) received: the run stops as it does on Ctrl-C (and, like Ctrl-C, no
    item's error handling takes it for a failure of that item)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """Run the batch; exit status 0 when every input is done or skipped, 1 when any failed, 2 on bad usage."""
    ctrl_c_interrupts()
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        options = options_from(args)
        jobs = plan_jobs(args.inputs, str(args.out), args.mask, args.mask_frame)
        if jobs:
            make_out_dir(args.out)
    except (InputError, JobError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not jobs:
        print(f"error: no videos or frame folders found in {' '.join(args.inputs)}; "
              "pass video files or folders of numbered frames (images named by their number only: 00000.jpg, "
              "00001.jpg, …)", file=sys.stderr)
        return 2
    try:
        return run_and_summarise(jobs, options, RunSummary(options, jobs, argv))
    except SummaryUnwritable as error:  # a full disk: the items done so far are kept
        print(f"error: {error}", file=sys.stderr)
        return 2


def run_and_summarise(jobs: list[Job], options: RunOptions, summary: RunSummary) -> int:
    """Run `jobs` with progress, keeping `summary` written; the exit status (0 every item done or skipped, 1 some
    failed, 2 no workers, 130/143 stopped)."""
    summary.write()
    board = ProgressBoard(len(jobs), options.quiet)
    started = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        execute(jobs, options, summary, board)
    except JobError as error:  # the run could not start its workers (no Ray cluster at --ray ADDRESS)
        board.log(f"error: {error}", error=True)
        summary.fail_pending(str(error))
        return 2
    except KeyboardInterrupt as stop:
        board.close()  # first: bars closed after the line drew themselves again below it
        board.log("interrupted: complete outputs are kept; run the same command again to resume", error=True)
        return TERMINATED if isinstance(stop, Terminated) else INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
        board.close()
        summary.finish()
    counts = summary.counts()
    print(f"{counts.get('done', 0)} done, {counts.get('skipped', 0)} skipped, {counts.get('failed', 0)} failed "
          f"in {time.monotonic() - started:.1f} s; summary: {summary.path}", file=sys.stderr)
    return 1 if counts.get("failed") else 0
