"""The web face's run: decode a clip, track the annotated objects, write the chosen outputs.

The frames go through `core.pipeline.run_frames` (decoding, tracking, the soft matte and each output in its own
thread) and its sinks and renderers — the same loop the batch face uses. `run_outputs` is a generator that yields
after every tracked frame so the caller can report progress and stop early (closing the generator stops the
stages and removes the half-written files); `preview_overlays` tracks a few frames for a quick look before the
full run. Cut-out, blur and replace use the soft, temporally stable matte (`RunSettings.edges`; None for the
hard masks); removal uses the whole clip, so its frames are written a fixed number of frames late.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import effects
from core.annotate.refine import MaskRefiner, RefinedTracker
from core.inference.tracker import Tracker
from core.inference.settings import TrackerConfig
from core.io.masks import MaskError, check_mask, write_mask
from core.io.video import VideoInfo, VideoWriter, open_video, variable_rate
from core.pipeline import (EffectSettings, FrameSink, MaskPngSink, RemovalSink, VideoSink, check_reached, renderer,
                           run_frames)

# Output name → (file name, label shown in the UI).
OUTPUTS: dict[str, tuple[str, str]] = {
    "overlay": ("overlay.mp4", "Overlay"),
    "mask": ("masks.mp4", "Mask video"),
    "cutout": ("cutout.webm", "Cut-out with alpha (WebM)"),
    "blur": ("blur.mp4", "Background blurred"),
    "replace": ("replace.mp4", "Background replaced"),
    "remove": ("remove.mp4", "Object removed (inpainted)"),
    "masks_zip": ("masks.zip", "Masks (zip of palette PNGs)"),
    "first_mask": ("mask-frame-{frame}.png", "Annotated-frame mask (PNG, for the OBS plugin)"),  # the first one
}
VIDEO_OUTPUTS = ("overlay", "mask", "cutout", "blur", "replace", "remove")


@dataclass(frozen=True)
class RunSettings:
    """What to produce and how: output names from OUTPUTS, effect parameters, tracker configuration."""

    outputs: tuple[str, ...] = ("overlay",)
    background: tuple[int, int, int] = (0, 177, 64)  # replacement colour, RGB
    blur_strength: int = 31
    edges: effects.EdgeSettings | None = field(default_factory=effects.EdgeSettings)  # None: hard edges
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    refine: bool = True  # tracked masks redrawn by the annotation network (core.annotate.refine): sharper, slower

    def effect_settings(self) -> EffectSettings:
        """How core.pipeline draws the effects."""
        return EffectSettings(blur_strength=self.blur_strength, background=self.background, edges=self.edges)


@dataclass(frozen=True)
class Progress:
    """One step of a run: frames done out of `total` (None when the container does not say); a last step after the
    frames carries the `warning` of a clip found damaged or cut short (`VideoReader.damage_warning`)."""

    done: int
    total: int | None
    warning: str | None = None


def check_annotations(annotations: dict[int, np.ndarray], info: VideoInfo) -> None:
    """Raise MaskError when no frame is annotated, or an annotation is empty, has the wrong size or names a frame
    outside the clip (when its header lists the frame count)."""
    source = info.path
    if not annotations:
        raise MaskError(f"{source}: no object is marked; click on an object (or draw a box) before running")
    for index, labels in sorted(annotations.items()):
        if index < 0 or (info.num_frames is not None and index >= info.num_frames):
            last = "" if info.num_frames is None else f" (frames 0 to {info.num_frames - 1})"
            raise MaskError(f"{source}: the annotation is for frame {index}, outside the clip{last}; "
                            "annotate a frame inside it")
        check_mask(labels, (info.height, info.width), f"{source} frame {index}")


def run_outputs(
    video_path: str, annotations: dict[int, np.ndarray], out_dir: Path, settings: RunSettings,
    results: dict[str, Path],
) -> Iterator[Progress]:
    """Track `video_path` from its first annotated frame and write the chosen outputs into `out_dir`.

    `annotations` maps a frame index to its (H, W) uint8 label map; frames before the first annotation get
    empty masks. Yields a Progress after each frame, the last one again while the outputs are finished (a removal's
    last frames), and one with the warning of a damaged clip; when the run completes, `results` holds output
    name → file. Closing the generator early leaves no output file behind.
    """
    unknown = set(settings.outputs) - set(OUTPUTS)
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {', '.join(OUTPUTS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(settings.tracker)
    edges = settings.effect_settings().matte_edges(settings.outputs)
    masks_dir = out_dir / "masks"
    with open_video(video_path) as reader, ExitStack() as stack:
        info = reader.info
        check_annotations(annotations, info)
        sinks = _open_sinks(stack, video_path, info, out_dir, settings)
        if "masks_zip" in settings.outputs:
            sinks.append(MaskPngSink(masks_dir))
        try:
            refiner = MaskRefiner() if settings.refine else None
            done = 0
            with closing(run_frames(reader, annotations, tracker, sinks, edges, refiner=refiner)) as steps:
                for done in steps:
                    yield Progress(done, info.num_frames)
            warning = reader.damage_warning(done)
            if warning:
                yield Progress(done, info.num_frames, warning)
        except BaseException:
            shutil.rmtree(masks_dir, ignore_errors=True)
            raise
    for name in VIDEO_OUTPUTS:
        if name in settings.outputs:
            results[name] = out_dir / OUTPUTS[name][0]
    if "masks_zip" in settings.outputs:
        results["masks_zip"] = _zip_folder(masks_dir, out_dir / OUTPUTS["masks_zip"][0])
        shutil.rmtree(masks_dir)
    if "first_mask" in settings.outputs:
        first = min(annotations)  # named with its frame: it need not be frame 0
        results["first_mask"] = out_dir / OUTPUTS["first_mask"][0].format(frame=first)
        write_mask(results["first_mask"], annotations[first])


def preview_overlays(
    video_path: str, annotations: dict[int, np.ndarray], frames: int, tracker: TrackerConfig,
    on_frame: Callable[[int], None] = lambda done: None, refine: bool = True,
) -> list[np.ndarray]:
    """Track `frames` frames from the first annotated frame (the masks redrawn with `refine`, as a run would)
    → their overlays, each (H, W, 3) RGB."""
    first_frame = min(annotations) if annotations else 0
    model: Tracker | RefinedTracker = Tracker(tracker)
    if refine:
        model = RefinedTracker(model, MaskRefiner())
    overlays: list[np.ndarray] = []
    with open_video(video_path) as reader:
        check_annotations(annotations, reader.info)
        decoded = 0
        for frame in reader:
            decoded = frame.index + 1
            if frame.index < first_frame:
                continue
            labels = _track(model, frame.index, frame.image, annotations, first_frame)
            overlays.append(effects.overlay(frame.image, labels))
            on_frame(len(overlays))
            if len(overlays) >= frames:
                break
        if not overlays:
            check_reached(annotations, decoded, reader.info.path)
    return overlays


def _track(tracker: Tracker | RefinedTracker, index: int, image: np.ndarray, annotations: dict[int, np.ndarray],
           first_frame: int) -> np.ndarray:
    """The (H, W) uint8 labels of one frame: empty before the first annotation, else the tracker's output."""
    if index < first_frame:
        return np.zeros(image.shape[:2], dtype=np.uint8)
    return tracker.step(image, annotations.get(index))


def _open_sinks(stack: ExitStack, video_path: str, info: VideoInfo, out_dir: Path,
                settings: RunSettings) -> list[FrameSink]:
    """One sink per chosen video output, its writer registered on `stack` so they close (or clean up) together."""
    drawing = settings.effect_settings()
    timed = variable_rate(video_path, info.fps)
    sinks: list[FrameSink] = []
    for name in VIDEO_OUTPUTS:
        if name not in settings.outputs:
            continue
        writer = stack.enter_context(VideoWriter(
            str(out_dir / OUTPUTS[name][0]), info.fps, (info.width, info.height),
            audio_from=video_path if info.has_audio else None, alpha=name == "cutout", variable_rate=timed))
        sinks.append(RemovalSink(writer) if name == "remove" else VideoSink(writer, renderer(name, drawing)))
    return sinks


def _zip_folder(folder: Path, target: Path) -> Path:
    """Zip the PNGs of `folder` into `target` atomically (temporary name, then rename)."""
    tmp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for png in sorted(folder.glob("*.png")):
            archive.write(png, arcname=png.name)
    tmp.replace(target)
    return target
