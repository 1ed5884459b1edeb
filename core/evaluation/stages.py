"""`python -m core.evaluation.stages` — what every stage of a batch item costs per frame, at 480p, 720p, 1080p
and 4K, and what the whole pipeline reaches end to end.

Owns the benchmark clips: the frames of a source (a frame folder with `masks/`, by default the bundled
`samples/judo`) played forwards and backwards to the wanted length, scaled to each height (aspect kept) and
encoded as H.264, with the first mask's three largest objects as `<clip>.png` beside it (the batch's sidecar
annotation). Each stage is timed on its own, one frame at a time, as wall-clock and CPU milliseconds (CPU counts
every thread of the process, so an encoder's or ONNX Runtime's own threads are included): decode; the
tracker's resize and normalisation, network, and upsampling to full-size labels; the soft matte; each effect's
drawing; each encoder (H.264 for the RGB effects, VP9 with alpha for the cut-out); a palette PNG per mask.
Then `python -m core.batch` runs on the clip in a subprocess (overlay + blur + PNG masks by default) for the
end-to-end FPS and that process's peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from core import effects
from core.io.command import BadInput, ToolParser, output_file, output_folder, run_tool, tool_description, whole_number
from core.effects.matting import work_shape
from core.evaluation.bench import instrument
from core.evaluation.davis import write_json
from core.inference.tracker import SAMPLES, Tracker
from core.inference.settings import TrackerConfig, add_tracker_arguments, tracker_config
from core.io.masks import read_mask, write_mask
from core.io.video import VideoWriter, open_video
from core.pipeline import RENDERED, EffectSettings, renderer

HEIGHTS = (480, 720, 1080, 2160)
ENCODERS = {"h264": "x.mp4", "vp9-alpha": "x.webm"}  # encoder stage → file name that picks it
OBJECTS = 3  # the clip's first mask keeps this many of the source's largest objects
_POLL_SECONDS = 0.05  # how often the end-to-end run's peak memory is read


class StageError(BadInput, RuntimeError):
    """A benchmark that cannot run; the message is one line naming the input and the fix."""


class Costs:
    """Wall-clock and CPU seconds per stage, accumulated over frames."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.wall[stage] = self.wall.get(stage, 0.0) + time.perf_counter() - wall
        self.cpu[stage] = self.cpu.get(stage, 0.0) + time.process_time() - cpu

    def per_frame(self, frames: int) -> dict[str, dict[str, float]]:
        """stage → {"wall_ms", "cpu_ms"} per frame."""
        return {stage: {"wall_ms": 1000 * self.wall[stage] / frames, "cpu_ms": 1000 * self.cpu[stage] / frames}
                for stage in self.wall}


def source_frames(source: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """The frames of a frame folder (or of its `frames/` subfolder) and its first mask's `OBJECTS` largest
    objects as ids 1, 2, …; StageError when `source` is no such folder."""
    if not source.is_dir():
        raise StageError(f"{source}: no such folder; pass a folder of frames with masks/, like samples/judo")
    masks = sorted((source / "masks").glob("*.png"))
    if not masks:
        raise StageError(f"{source}: no masks/*.png beside the frames; pass a folder like samples/judo")
    folder = source / "frames" if (source / "frames").is_dir() else source
    with open_video(folder) as reader:
        frames = [frame.image for frame in reader]
    labels = read_mask(masks[0])
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    if len(ids) == 0:
        raise StageError(f"{masks[0]}: the mask is empty; mark at least one object")
    kept = np.zeros_like(labels)
    for new_id, old_id in enumerate(ids[np.argsort(counts)[::-1][:OBJECTS]], start=1):
        kept[labels == old_id] = new_id
    return frames, kept


def make_clip(frames: list[np.ndarray], mask: np.ndarray, height: int, length: int,
              folder: Path) -> tuple[Path, Path]:
    """`folder/clip-<height>p.mp4` of `length` frames (the source forwards, then backwards, again and again),
    scaled to `height` with the aspect kept, and its first mask `clip-<height>p.png`."""
    source_height, source_width = frames[0].shape[:2]
    width = 2 * round(source_width * height / source_height / 2)
    shrink = height <= source_height
    path = folder / f"clip-{height}p.mp4"
    order = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1)) or [0]
    with VideoWriter(path, 25, (width, height)) as writer:
        for index in range(length):
            image = frames[order[index % len(order)]]
            writer.write(cv2.resize(image, (width, height),
                                    interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC))
    mask_path = path.with_suffix(".png")
    write_mask(mask_path, cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST))
    return path, mask_path


def profile(clip: Path, mask_path: Path, config: TrackerConfig) -> dict[str, dict[str, float]]:
    """Each stage's wall and CPU milliseconds per frame on `clip`, one stage at a time (see the module doc)."""
    costs = Costs()
    with open_video(clip) as reader:
        decoded = iter(reader)
        images = []
        while True:
            with costs.timing("decode"):
                frame = next(decoded, None)
            if frame is None:
                break
            images.append(frame.image)
    labels, alphas = _track(images, read_mask(mask_path), config, costs)
    drawing = EffectSettings()
    with tempfile.TemporaryDirectory(prefix="stages-") as scratch:
        for effect in ("overlay", "cutout", "blur", "replace"):
            draw = renderer(effect, drawing)
            rendered = []
            for image, frame_labels, alpha in zip(images, labels, alphas):
                with costs.timing(effect):
                    rendered.append(draw(image, frame_labels, alpha / np.float32(255)))
            if effect in ("overlay", "cutout"):
                _encode(rendered, Path(scratch), "vp9-alpha" if effect == "cutout" else "h264", costs)
        for index, frame_labels in enumerate(labels):
            with costs.timing("mask png"):
                write_mask(Path(scratch) / f"{index:05d}.png", frame_labels)
    return costs.per_frame(len(images))


def _track(images: list[np.ndarray], mask: np.ndarray, config: TrackerConfig,
           costs: Costs) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Labels and uint8 soft mattes of every frame; the tracker's time split into resize, network and upsample,
    and the matte's time."""
    tracker = Tracker(config)
    tracker.step(images[0], mask)  # the first step builds the sessions: not timed
    tracker.reset()
    resize_wall: dict[str, float] = {}
    resize_cpu: dict[str, float] = {}
    instrument(tracker, resize_wall, ["prepare"])
    instrument(tracker, resize_cpu, ["prepare"], time.process_time)
    matte = effects.StableMatte()
    labels, alphas = [], []
    for index, image in enumerate(images):
        with costs.timing("network"):
            step = tracker.step_coarse(image, mask if index == 0 else None)
        with costs.timing("upsample"):  # as the pipeline does: labels, and the objects at the matte's scale
            frame_labels, objects = step.labels(), step.objects(work_shape(image.shape))
        with costs.timing("matte"):
            alpha = matte.of_objects(image, objects)
        labels.append(frame_labels)
        alphas.append(np.round(alpha * 255).astype(np.uint8))  # kept small: 4K frames add up
    costs.wall["network"] -= resize_wall["prepare"]
    costs.cpu["network"] -= resize_cpu["prepare"]
    costs.wall["resize"], costs.cpu["resize"] = resize_wall["prepare"], resize_cpu["prepare"]
    return labels, alphas


def _encode(rendered: list[np.ndarray], scratch: Path, encoder: str, costs: Costs) -> None:
    """Encode the frames of one effect, closing included (the encoder's delayed frames are its cost too)."""
    height, width = rendered[0].shape[:2]
    with costs.timing(f"encode {encoder}"):
        with VideoWriter(scratch / ENCODERS[encoder], 25, (width, height), alpha=encoder == "vp9-alpha") as writer:
            for image in rendered:
                writer.write(image)


def end_to_end(clip: Path, effects_wanted: Sequence[str], out: Path, extra: Sequence[str]) -> dict[str, float]:
    """`python -m core.batch` on `clip` in a subprocess: its FPS (from summary.json) and peak resident MB (its
    VmHWM, read while it runs: the rusage of a child started from this large process would count this one)."""
    command = [sys.executable, "-m", "core.batch", str(clip), "--out", str(out), "--quiet", "--overwrite"]
    for effect in effects_wanted:
        command += ["--effect", effect]
    process = subprocess.Popen([*command, *extra], cwd=Path(__file__).resolve().parents[2])
    peak_kb = 0
    while process.poll() is None:
        peak_kb = max(peak_kb, _high_water_kb(process.pid))
        time.sleep(_POLL_SECONDS)
    summary = json.loads((out / "summary.json").read_text())
    [item] = summary["items"]
    if process.returncode != 0 or item["status"] != "done":
        raise StageError(f"{clip}: the batch run failed ({item.get('error')}); see its output above")
    return {"fps": item["fps"], "seconds": item["seconds"], "frames": item["frames"], "peak_rss_mb": peak_kb / 1024}


def _high_water_kb(pid: int) -> int:
    """A process's peak resident memory so far (VmHWM, Linux), 0 when it cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1])


def format_table(results: dict[str, dict]) -> str:
    """Stages as rows, heights as columns: wall / CPU ms per frame; then the end-to-end rows."""
    heights = list(results)
    stages = list(dict.fromkeys(s for r in results.values() for s in r["stages"]))
    header = f"{'ms per frame (wall / CPU)':<26}" + "".join(f" | {h + 'p':>15}" for h in heights)
    lines = [header, "-" * len(header)]
    for stage in stages:
        cells = [results[h]["stages"].get(stage) for h in heights]
        lines.append(f"{stage:<26}" + "".join(
            f" | {c['wall_ms']:>6.1f} / {c['cpu_ms']:>6.1f}" if c else f" | {'':>15}" for c in cells))
    if all("end_to_end" in results[h] for h in heights):
        lines.append("-" * len(header))
        for key, label, fmt in (("fps", "end to end FPS", "{:>15.2f}"), ("peak_rss_mb", "peak memory MB", "{:>15.0f}")):
            lines.append(f"{label:<26}" + "".join(" | " + fmt.format(results[h]["end_to_end"][key]) for h in heights))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ToolParser(prog="python -m core.evaluation.stages", description=tool_description(__doc__))
    parser.add_argument("--source", type=Path, default=SAMPLES / "judo",
                        help="frame folder with masks/ (default samples/judo)")
    parser.add_argument("--heights", type=whole_number(16), nargs="+", default=list(HEIGHTS), metavar="H",
                        help="frame heights (default 480 720 1080 2160)")
    parser.add_argument("--frames", type=whole_number(1), default=24, help="frames timed per stage (default 24)")
    parser.add_argument("--e2e-frames", type=whole_number(0), default=0, metavar="N",
                        help="also run core.batch end to end on an N-frame clip (default 0: no)")
    parser.add_argument("--effect", action="append", dest="effects", choices=[e for e in RENDERED if e != "mask"]
                        + ["remove"], help="end-to-end effects (default overlay and blur)")
    parser.add_argument("--work", type=output_folder,
                        help="folder for the clips and outputs (default: a temporary one)")
    parser.add_argument("--json", type=output_file, help="also write the numbers to this JSON file")
    add_tracker_arguments(parser, size_flag="--infer-size", backend="auto", adapt=False)
    return parser.parse_args(argv)


def run(args: argparse.Namespace, work: Path, bar: tqdm) -> dict[str, dict]:
    """Every height's stage table and, when asked, its end-to-end run."""
    frames, mask = source_frames(args.source)
    config = tracker_config(args)
    extra = ["--backend", config.backend] + (["--threads", str(args.threads)] if args.threads else [])
    results: dict[str, dict] = {}
    for height in args.heights:
        bar.set_description(f"{height}p stages")
        clip, mask_path = make_clip(frames, mask, height, args.frames, work)
        results[str(height)] = {"size": list(read_mask(mask_path).shape), "stages": profile(clip, mask_path, config)}
        bar.update()
        if args.e2e_frames:
            bar.set_description(f"{height}p end to end")
            clip, _ = make_clip(frames, mask, height, args.e2e_frames, work / "e2e")
            results[str(height)]["end_to_end"] = end_to_end(clip, args.effects or ["overlay", "blur"],
                                                            work / f"out-{height}p", extra)
            bar.update()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Time every stage at every height and print the table (and write the numbers); an error leaves the bar's
    `with` (ending its line) before `run_tool` prints it."""
    args = parse_args(argv)
    runs = len(args.heights) * (2 if args.e2e_frames else 1)
    with (tqdm(total=runs, unit="run", file=sys.stderr) as bar,
          tempfile.TemporaryDirectory(prefix="stages-") as scratch):
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        results = run(args, work, bar)
    print(format_table(results))
    if args.json:
        write_json(args.json, {"source": str(args.source), "frames": args.frames, "e2e_frames": args.e2e_frames,
                               "effects": args.effects or ["overlay", "blur"], "cpu_count": os.cpu_count(),
                               "machine": platform.platform(), "results": results})
    return 0


if __name__ == "__main__":
    run_tool(main)
