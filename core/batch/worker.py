"""Processing one batch item: decode, track, composite, and write every output of the item.

Completion design: all outputs of an item are written into a hidden sibling folder `DIR/.<name>.partial/`,
which is renamed to `DIR/<name>/` only after every file is closed and `job.json` (the record of what the folder
holds) is written. So `DIR/<name>/` with a `job.json` always means "complete"; a killed run leaves at most a
`.partial` folder, which the next run deletes and redoes. Outputs of an earlier run that this run does not
produce again are hard-linked (or copied) into the new folder before it replaces the old one, so asking for a
new effect never loses an old one, and the old folder stays whole until its successor is complete.

The frames go through `core.pipeline.run_frames` (decoding, tracking, the soft matte and each output in its own
thread), the same loop the web face uses; this module chooses the sinks, checks the annotations, and makes the
item's folder complete or absent.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import shutil
import time
from contextlib import ExitStack, closing, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from core.annotate.refine import MaskRefiner
from core.batch.inputs import RECORD_FILE, Job, numbered_frames
from core.effects import EdgeSettings
from core.inference.tracker import Tracker
from core.inference.settings import TrackerConfig
from core.io.masks import MaskError, object_ids, read_annotation
from core.io.video import VideoError, VideoInfo, VideoReader, VideoWriter, hdr_note, open_video, variable_rate
from core.pipeline import (BackgroundError, ClipEndedEarly, EffectSettings, FrameSink, MaskPngSink, RemovalSink,
                           VideoSink, is_large, renderer, run_frames)
from core.weights import WeightsError

CUTOUT_FILES = {"webm": "cutout.webm", "prores": "cutout.mov", "png": "cutout"}
CUTOUT_FORMATS = ("auto", *CUTOUT_FILES)  # auto: webm, or prores for large frames (libvpx's colour + alpha
# encoder pair alone holds 1.2 GB at 4K; ProRes 4444 is also what 4K editing software takes)
INVERTED_SHARE = 0.85  # an annotation whose objects cover more of the frame than this looks inverted
_RUNTIME = ("threads", "device")  # TrackerConfig's fields that do not change the masks (and the float backends)
_ENCODING = ("x264_preset", "encoder")  # OutputSpec's fields an H.264 output's file depends on
_EDGES = ("soft_edges", "feather", "edge_shift")  # and those of the soft matte
# Each output → the OutputSpec fields it is drawn with, besides the masks: a complete folder is skipped when each
# output asked for was drawn with this run's values of its fields (job.json keeps each output's).
DRAWN_WITH: dict[str, tuple[str, ...]] = {
    "masks": (), "masks.mp4": _ENCODING, "overlay.mp4": ("overlay_alpha", *_ENCODING),
    "blur.mp4": ("blur_strength", *_EDGES, *_ENCODING), "replace.mp4": ("background", *_EDGES, *_ENCODING),
    "remove.mp4": _ENCODING, **{name: _EDGES for name in CUTOUT_FILES.values()},
}


_WRITE_FIX = {errno.ENOSPC: "free disk space", errno.EDQUOT: "free disk space (over quota)",
              errno.EACCES: "make the output folder writable", errno.EROFS: "pass an --out on a writable disk"}


class JobError(RuntimeError):
    """An item that cannot be processed; the message is one line naming the file and the fix."""


@dataclass(frozen=True)
class OutputSpec:
    """Which outputs each item gets."""

    effects: tuple[str, ...] = ()
    mask_pngs: bool = True  # masks/<frame>.png, DAVIS palette
    mask_video: bool = False  # masks.mp4, palette colours
    cutout_format: str = "auto"  # CUTOUT_FORMATS: webm (VP9 + alpha) | prores (ProRes 4444 .mov) | png (RGBA
    # sequence) | auto (webm, or prores for large frames: 4K)
    background: str = "green"  # for `replace`: a colour name, #rrggbb, r,g,b, an image or a video file
    blur_strength: int = 31
    overlay_alpha: float = 0.5
    soft_edges: bool = True  # cutout, blur and replace use a soft alpha matte from the tracker's probabilities
    feather: float = EdgeSettings.feather  # the matte's softening, pixels at 480p (core.effects.EdgeSettings)
    edge_shift: float = 0.0  # grows (> 0) or shrinks (< 0) the matte, pixels at 480p
    x264_preset: str = "ultrafast"  # H.264 outputs: faster presets, bigger files (core.io.video.X264_PRESETS)
    encoder: str = "auto"  # H.264 outputs: auto (NVENC where it opens, else x264) | x264 | nvenc (H264_ENCODERS)
    refine: bool = False  # tracked masks redrawn by the annotation network (core.annotate.refine): slower, sharper

    def edge_settings(self) -> EdgeSettings | None:
        """The soft edges' settings, or None for hard edges."""
        return EdgeSettings(feather=self.feather, shift=self.edge_shift) if self.soft_edges else None

    def effect_settings(self) -> EffectSettings:
        """How core.pipeline draws the effects."""
        return EffectSettings(overlay_alpha=self.overlay_alpha, blur_strength=self.blur_strength,
                              background=self.background, edges=self.edge_settings())

    def cutout_file(self, size: tuple[int, int] | None) -> str:
        """The cut-out's file or folder name for (width, height) frames; for `auto` with no size, both names."""
        chosen = self.cutout_format
        if chosen == "auto" and size is None:
            return f"{CUTOUT_FILES['webm']} or {CUTOUT_FILES['prores']}"
        if chosen == "auto":
            chosen = "prores" if is_large(size) else "webm"
        return CUTOUT_FILES[chosen]

    def output_names(self, size: tuple[int, int] | None = None) -> list[str]:
        """The file and folder names this spec writes inside the folder of an item of (width, height) frames."""
        names = ["masks"] if self.mask_pngs else []
        names += ["masks.mp4"] if self.mask_video else []
        for effect in self.effects:
            names.append(self.cutout_file(size) if effect == "cutout" else f"{effect}.mp4")
        return names


@dataclass(frozen=True)
class ProgressEvent:
    """Frames done of one item (sent from workers to the process that draws the bars)."""

    name: str
    done: int
    total: int | None


@dataclass
class ItemResult:
    """What happened to one input; one entry of summary.json."""

    input: str
    name: str
    status: str  # done | skipped | failed | pending | interrupted
    frames: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    warning: str | None = None  # what a done (or skipped) item's user should know (`_unused`, `_own_warnings`)


Reporter = Callable[[ProgressEvent], None]


def _open_sinks(stack: ExitStack, folder: Path, job: Job, info: VideoInfo, spec: OutputSpec) -> list[FrameSink]:
    """Every output of `spec` for one item, writers registered on `stack` (closed in order, aborted on error)."""
    size = (info.width, info.height)
    audio = job.source if info.has_audio else None
    timed = variable_rate(job.source, info.fps)

    def writer(name: str, alpha: bool = False) -> VideoWriter:
        return stack.enter_context(VideoWriter(str(folder / name), info.fps, size, audio_from=audio, alpha=alpha,
                                               preset=spec.x264_preset, encoder=spec.encoder, variable_rate=timed))

    def video(name: str, effect: str, alpha: bool = False) -> VideoSink:
        return VideoSink(writer(name, alpha), renderer(effect, drawing))

    drawing = spec.effect_settings()
    sinks: list[FrameSink] = []
    if spec.mask_pngs:
        sinks.append(MaskPngSink(folder / "masks", _frame_names(job.source, info.num_frames)))
    if spec.mask_video:
        sinks.append(video("masks.mp4", "mask"))
    for effect in spec.effects:
        if effect == "remove":
            sinks.append(RemovalSink(writer("remove.mp4")))
        elif effect == "cutout":  # the name's suffix picks VP9 alpha, ProRes 4444, or PNG frames
            sinks.append(video(spec.cutout_file(size), effect, alpha=True))
        else:
            sinks.append(video(f"{effect}.mp4", effect))
    return sinks


def _frame_names(source: str, num_frames: int | None) -> list[str] | None:
    """For a frame folder, the frame file stems (so masks keep the frames' numbering); None for a video, or
    when the folder also holds images that are not numbered (then masks are named by frame index)."""
    path = Path(source)
    names = [p.stem for p in numbered_frames(path)] if path.is_dir() else []
    return names if names and len(names) == num_frames else None


def _load_annotations(job: Job, info: VideoInfo) -> dict[int, np.ndarray]:
    """frame index → label map, each checked against the frame size (MaskError on a bad one)."""
    masks = {}
    for annotation in job.annotations:
        labels = read_annotation(annotation.path, (info.height, info.width))
        if info.num_frames is not None and annotation.frame >= info.num_frames:
            raise JobError(f"{annotation.path}: annotates frame {annotation.frame} but {job.source} has "
                           f"{info.num_frames} frames; rename it to a frame index below {info.num_frames} "
                           "(with --mask FILE: pass --mask-frame below it)")
        masks[annotation.frame] = labels
    return masks


@functools.lru_cache(maxsize=1)
def worker_tracker(settings: TrackerConfig) -> Tracker:
    """The tracker of this process, built once and reset for every item. OpenCV runs single-threaded here: the
    pipeline's stages already keep the cores busy, and its own threads only added overhead (measured on 2 cores:
    12.3–12.7 FPS at 1080p against 11.7–11.9 with OpenCV's threads)."""
    cv2.setNumThreads(1)
    return Tracker(settings)


@functools.lru_cache(maxsize=1)
def worker_refiner() -> MaskRefiner:
    """The mask refiner of this process (the shipped annotation network), built once."""
    return MaskRefiner()


def _passes(spec: OutputSpec, size: tuple[int, int]) -> list[OutputSpec]:
    """The outputs of each pass over an item of (width, height) frames: one pass, except that for large frames
    (4K) the removal, which buffers frames of its own, gets a second pass, so that every effect at once stays
    under 2 GB there."""
    if not is_large(size) or "remove" not in spec.effects or spec.output_names(size) == ["remove.mp4"]:
        return [spec]
    return [replace(spec, effects=tuple(effect for effect in spec.effects if effect != "remove")),
            replace(spec, effects=("remove",), mask_pngs=False, mask_video=False)]


def _run_passes(reader: VideoReader, job: Job, masks: dict[int, np.ndarray], folder: Path, spec: OutputSpec,
                tracker: Tracker, report: Reporter) -> int:
    """Write every output of `spec` into `folder`, tracking the item once per pass: the first pass reads
    `reader`, each later one opens the video again (each gives the same labels: the tracker starts afresh).
    Returns the number of frames; progress counts the frames of all passes."""
    info = reader.info
    passes = _passes(spec, (info.width, info.height))
    total = None if info.num_frames is None else info.num_frames * len(passes)
    report(ProgressEvent(job.name, 0, total))
    frames = 0
    for number, part in enumerate(passes):
        offset = number * frames

        def progress(event: ProgressEvent, offset: int = offset) -> None:
            report(ProgressEvent(job.name, offset + event.done, total))

        tracker.reset()
        with (nullcontext(reader) if number == 0 else open_video(job.source)) as source, ExitStack() as stack:
            frames = _track(source, job, masks, _open_sinks(stack, folder, job, info, part), tracker,
                            progress, part.effect_settings().matte_edges(part.effects),
                            worker_refiner() if part.refine else None)
    return frames


def _track(reader: VideoReader, job: Job, masks: dict[int, np.ndarray], sinks: list[FrameSink],
           tracker: Tracker, report: Reporter, edges: EdgeSettings | None, refiner: MaskRefiner | None) -> int:
    """Track every frame and feed all sinks through the pipeline (with the soft matte when `edges` is given, the
    masks redrawn when a `refiner` is); returns the number of frames. Frames before the first annotation get empty
    masks."""
    total = reader.info.num_frames
    count = 0
    try:
        with closing(run_frames(reader, masks, tracker, sinks, edges, refiner=refiner)) as steps:
            for count in steps:
                report(ProgressEvent(job.name, count, total))
    except ClipEndedEarly as ended:  # said in the batch's terms: the mask file and the flags that place it
        if ended.decoded == 0:
            raise JobError(f"{job.source}: no frame could be decoded; re-encode or replace the file") from None
        path = next(a.path for a in job.annotations if a.frame == ended.frame)
        raise JobError(f"{path}: annotates a frame after the last decoded frame ({ended.decoded - 1}) of "
                       f"{job.source}; rename it to a frame index below {ended.decoded} (with --mask FILE: pass "
                       "--mask-frame below it) or repair the video") from None
    return count


def partial_folder(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial")


def _old_folder(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def _read_record(folder: Path) -> dict | None:
    """The job.json of a complete item folder, or None."""
    try:
        return json.loads((folder / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None


def completed(job: Job, out_root: Path, spec: OutputSpec, tracker: TrackerConfig) -> ItemResult | None:
    """A 'skipped' result when the item's folder already holds every output `spec` asks for, made from the same
    annotations with the same tracking, each drawn with this run's values of the settings it is drawn with."""
    final = out_root / job.name
    old = _old_folder(final)
    if not final.exists() and old.is_dir():  # killed between the two renames of a replacement
        os.rename(old, final)
    record = _read_record(final)
    size = tuple(record["size"]) if record is not None and len(record.get("size", ())) == 2 else None
    names = spec.output_names(size)
    if record is None or not set(names) <= set(record.get("outputs", [])):
        return None
    if not _same_masks(record, job, spec, tracker):
        return None
    drawn, now = _recorded_drawing(record), _drawing(spec, names)
    if drawn is not None and any(drawn.get(name) != now[name] for name in names):
        return None
    return ItemResult(job.source, job.name, "skipped", record.get("frames", 0), 0.0, 0.0,
                      [str(final / name) for name in names], warning=_joined(_unused(job), record.get("warning")))


def _write_record(folder: Path, job: Job, frames: int, info: VideoInfo, spec: OutputSpec,
                  tracker: TrackerConfig, kept: dict[str, dict], warning: str | None) -> list[str]:
    """Write job.json (last file of a complete folder): how the masks were made, how each output was drawn, this
    run's or (`kept`, carried over from an earlier run) its own, and the item's `warning` about its video and masks
    (a rerun that skips it says it again); returns every output name the folder holds."""
    outputs = sorted(p.name for p in folder.iterdir() if p.name != RECORD_FILE)
    drawn = kept | _drawing(spec, spec.output_names((info.width, info.height)))
    record = {"input": job.source, "input_file": _input_file(job), "frames": frames, "fps": float(info.fps),
              "size": [info.width, info.height], "outputs": outputs, "spec": asdict(spec), "warning": warning,
              "annotations": _annotation_records(job),
              "made_with": {"masks": _masks_made_with(spec, tracker),
                            "drawn": {name: drawn[name] for name in outputs if name in drawn}}}
    (folder / RECORD_FILE).write_text(json.dumps(record, indent=2))
    return outputs


def _annotation_records(job: Job) -> list[dict]:
    """Each annotation's path, frame and the SHA-256 of its file (None when it cannot be read)."""
    records = []
    for annotation in job.annotations:
        try:
            digest: str | None = hashlib.sha256(Path(annotation.path).read_bytes()).hexdigest()
        except OSError:
            digest = None
        records.append({**asdict(annotation), "sha256": digest})
    return records


def _masks_made_with(spec: OutputSpec, tracker: TrackerConfig) -> dict:
    """How an item's masks are made, besides its input and annotations: the tracking settings (not the threads,
    the device or a float backend: the same masks) and `refine`, as job.json holds them."""
    tracking = {name: value for name, value in asdict(tracker).items() if name not in _RUNTIME}
    tracking["backend"] = "int8" if tracker.backend == "onnx-int8" else "float"  # torch and onnx: the same masks
    return json.loads(json.dumps({**tracking, "refine": spec.refine}))


def _drawing(spec: OutputSpec, names: list[str]) -> dict[str, dict]:
    """How each of the outputs `names` is drawn with `spec`: its DRAWN_WITH fields' values, as job.json holds them."""
    values = json.loads(json.dumps(asdict(spec)))
    return {name: {field: values[field] for field in DRAWN_WITH.get(name, ())} for name in names}


def _recorded_masks(record: dict) -> dict | None:
    """How a complete folder's masks were made (`_masks_made_with`); None for a job.json written before the
    settings were kept. An older job.json's one set of tracking and drawing settings is read as today's."""
    made_with = record.get("made_with")
    if made_with is None or "masks" in made_with:
        return None if made_with is None else made_with["masks"]
    return {**made_with.get("tracking", {}), "refine": made_with.get("drawing", {}).get("refine")}


def _recorded_drawing(record: dict) -> dict[str, dict] | None:
    """How each output of a complete folder was drawn (`_drawing`); None for a job.json written before the settings
    were kept. An older job.json's one set of drawing settings applies to each of its outputs."""
    made_with = record.get("made_with")
    if made_with is None or "drawn" in made_with:
        return None if made_with is None else made_with["drawn"]
    drawing = made_with.get("drawing", {})
    return {name: {field: drawing.get(field) for field in DRAWN_WITH.get(name, ())}
            for name in record.get("outputs", [])}


def _same_masks(record: dict, job: Job, spec: OutputSpec, tracker: TrackerConfig) -> bool:
    """Whether a complete folder's masks are the ones this run makes: from the same input file (`_input_file`), the
    same annotations, tracking settings and `refine` (a job.json written before the input file or the settings
    were kept is taken to have them)."""
    recorded = _recorded_masks(record)
    return (record.get("input_file", _input_file(job)) == _input_file(job) and _same_annotations(record, job)
            and (recorded is None or recorded == _masks_made_with(spec, tracker)))


def _input_file(job: Job) -> dict | None:
    """An input video's size and modification time, as job.json keeps them: a file replaced since (re-downloaded
    after a damage warning, say) makes its item run again, without the old outputs. None for a frame folder."""
    path = Path(job.source)
    if not path.is_file():
        return None
    stat = path.stat()
    return {"bytes": stat.st_size, "modified_ns": stat.st_mtime_ns}


def _same_annotations(record: dict, job: Job) -> bool:
    """Whether a complete folder's job.json was made from the annotations `job` has now: the same frames with
    the same file contents (a mask corrected in place, or another --mask, makes the item run again). A record
    written before the digests were kept is compared by path and frame."""
    recorded = record.get("annotations", [])
    if any("sha256" not in old for old in recorded):
        return [(old.get("path"), old.get("frame")) for old in recorded] == [(a.path, a.frame) for a in job.annotations]
    now = _annotation_records(job)
    return [(old.get("frame"), old.get("sha256")) for old in recorded] == [(a["frame"], a["sha256"]) for a in now]


def _kept_outputs(record: dict, job: Job, spec: OutputSpec, tracker: TrackerConfig) -> dict[str, dict]:
    """The outputs of a complete folder (its job.json `record`) that stay beside this run's, each with how it was
    drawn: every one when its masks are the ones this run makes (`_same_masks`), none otherwise. The outputs this
    run makes again replace theirs; the others stay as they were drawn, whatever this run's drawing settings."""
    if not _same_masks(record, job, spec, tracker):
        return {}
    outputs = [name for name in record.get("outputs", []) if name in DRAWN_WITH]
    drawn = _recorded_drawing(record) or _drawing(spec, outputs)  # an old job.json: taken as drawn as now
    return {name: drawn.get(name, {}) for name in outputs}


def _carry_over(final: Path, partial: Path, kept: set[str]) -> set[str]:
    """Hard-link (or copy) into `partial` the `kept` outputs of an earlier run that this run did not redo; returns
    their names."""
    carried: set[str] = set()
    if not final.is_dir():
        return carried
    for previous in final.iterdir():
        target = partial / previous.name
        if previous.name not in kept or target.exists():
            continue
        if previous.is_dir():
            shutil.copytree(previous, target, copy_function=_link_or_copy)
        else:
            _link_or_copy(previous, target)
        carried.add(previous.name)
    return carried


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _commit(partial: Path, final: Path) -> None:
    """Move the finished folder into place (replacing an earlier one by two renames)."""
    if not final.exists():
        os.rename(partial, final)
        return
    old = _old_folder(final)
    shutil.rmtree(old, ignore_errors=True)
    os.rename(final, old)
    os.rename(partial, final)
    shutil.rmtree(old)


def _refuse_foreign(final: Path, overwrite: bool) -> None:
    """Never replace a folder that a batch run did not write, unless --overwrite says so."""
    if final.exists() and _read_record(final) is None and not overwrite:
        raise JobError(f"{final}: exists but was not written by core.batch; move it away or pass --overwrite")


def process_job(job: Job, out_root: str, spec: OutputSpec, settings: TrackerConfig,
                overwrite: bool, report: Reporter) -> ItemResult:
    """Run one item end to end; never raises: every failure becomes a 'failed' result with a one-line error."""
    started = time.monotonic()
    final = Path(out_root) / job.name
    partial = partial_folder(final)
    try:
        if job.problem:
            raise JobError(job.problem)
        _refuse_foreign(final, overwrite)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        tracker = worker_tracker(settings)
        started = time.monotonic()  # per-input time excludes building the worker's tracker
        with open_video(job.source) as reader:
            info = reader.info
            masks = _load_annotations(job, info)
            frames = _run_passes(reader, job, masks, partial, spec, tracker, report)
            own_warning = _own_warnings(job, masks, reader.damage_warning(frames), hdr_note(info))
        previous = _read_record(final)
        kept = {} if previous is None else _kept_outputs(previous, job, spec, settings)  # never outputs made otherwise
        carried = _carry_over(final, partial, set(kept))
        outputs = _write_record(partial, job, frames, info, spec, settings,
                                {name: drawn for name, drawn in kept.items() if name in carried}, own_warning)
        _commit(partial, final)
        seconds = time.monotonic() - started
        return ItemResult(job.source, job.name, "done", frames, round(seconds, 3), round(frames / seconds, 2),
                          [str(final / name) for name in outputs],
                          warning=_joined(_unused(job), own_warning))
    except (JobError, MaskError, VideoError, WeightsError, BackgroundError) as error:
        return _failed(job, started, str(error).replace(str(partial), str(final)))  # the folder the user will see
    except OSError as error:  # writing an output: a full disk, a folder gone or not writable
        return _failed(job, started, f"{job.source}: cannot write its outputs in {final} ({error.strerror}); "
                                     f"{_WRITE_FIX.get(error.errno, 'check the output folder')} and run again")
    except Exception as error:  # a bug or an unexpected library error: report it, keep the batch going
        return _failed(job, started, f"{job.source}: unexpected {type(error).__name__}: {error}; "
                                     "please report this with the file")
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _own_warnings(job: Job, masks: dict[int, np.ndarray], damage: str | None, hdr: str | None) -> str | None:
    """What a done item's user should know about its video and masks (besides mask files that annotated no frame,
    `_unused`): a mask that looks inverted, a video damaged or cut short (`damage`, to which the batch's way to
    redo it once the file is replaced is added), an HDR video read as standard range (`hdr`); None when nothing."""
    redo = None if damage is None else f"{damage}; then run again with --overwrite"
    return _joined(_inverted(job, masks), redo, hdr)


def _joined(*warnings: str | None) -> str | None:
    """The warnings given, joined by "; " (an item's one warning line); None when there are none."""
    return "; ".join(warning for warning in warnings if warning) or None


def _unused(job: Job) -> str | None:
    """A warning naming the mask files beside the annotations that annotated no frame."""
    if not job.unused:
        return None
    more = f" and {len(job.unused) - 1} more" if len(job.unused) > 1 else ""
    return (f"{job.unused[0]}{more} annotated no frame of {job.source} (not named like one of its frames, or a "
            f"second mask for frame 0); rename or remove {'them' if more else 'it'}")


def _inverted(job: Job, masks: dict[int, np.ndarray]) -> str | None:
    """A warning when an annotation's one object covers nearly the whole frame, as a black object on white does
    (several objects may: a scene annotated in full)."""
    for annotation in job.annotations:
        mask = masks[annotation.frame]
        covered = float(np.count_nonzero(mask)) / mask.size
        if covered > INVERTED_SHARE and len(object_ids(mask)) == 1:
            return (f"{annotation.path}: the objects cover {covered:.0%} of the frame: if the mask is inverted (the "
                    "object black on white), invert it and run again with --overwrite")
    return None


def _failed(job: Job, started: float, error: str) -> ItemResult:
    return ItemResult(job.source, job.name, "failed", seconds=round(time.monotonic() - started, 3),
                      error=" ".join(error.split()))
