"""`python -m core.eval` — DAVIS J&F of the tracker (or of the first-mask baseline) on a DAVIS-layout folder.

Owns reading the DAVIS layout (`JPEGImages/480p/<seq>/*.jpg`, `Annotations/480p/<seq>/*.png`), feeding each
sequence's first annotation — and only that — to a predictor, writing the predicted palette PNGs, and the
per-sequence and overall scores of `core.evaluation.metrics`. Frames are read with OpenCV, one at a time, so the
training loop can call `evaluate` for periodic validation without PyAV.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from tqdm import tqdm

from core.annotate.refine import MaskRefiner, RefinedTracker
from core.annotate.segmenter import build_segmenter
from core.io.command import BadInput, ToolParser, output_file, output_folder, tool_description
from core.io.davis import FRAMES, frame_paths, mask_path, sequence_names
from core.io.images import load_image
from core.io.masks import MaskError, check_mask, object_ids, read_mask, write_mask
from core.evaluation.metrics import ObjectScore, SequenceScorer, summarize
from core.inference.memory import MEMORIES
from core.inference.tracker import Tracker
from core.inference.settings import TrackerConfig, add_tracker_arguments, tracker_config
from core.weights import load_network


class EvalError(BadInput, RuntimeError):
    """A dataset folder that cannot be evaluated; the message is one line naming the path and the fix."""


class Predictor(Protocol):
    """Anything that segments a video frame by frame like core.inference.tracker.Tracker."""

    def step(self, frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray: ...


PredictorFactory = Callable[[], Predictor]


class FirstMaskBaseline:
    """The trivial baseline: repeats the first frame's mask on every frame."""

    def __init__(self) -> None:
        self._mask: np.ndarray | None = None

    def step(self, frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Return the first mask given, whatever the frame."""
        if mask is not None and self._mask is None:
            self._mask = mask.copy()
        if self._mask is None:
            raise MaskError("first-mask baseline: the first frame needs a mask")
        return self._mask.copy()


@dataclass(frozen=True)
class SequenceFiles:
    """The frame and annotation paths of one DAVIS sequence, in frame order."""

    name: str
    frames: list[Path]
    annotations: list[Path]


@dataclass(frozen=True)
class SequenceResult:
    """Scores of one sequence in points (0–100): means over its objects; `seconds` is time spent predicting."""

    name: str
    j: float
    f: float
    jf: float
    frames: int
    seconds: float
    objects: list[ObjectScore]


@dataclass(frozen=True)
class EvalReport:
    """Per-sequence results and the DAVIS means over all objects, in points (0–100)."""

    sequences: list[SequenceResult]
    j: float
    f: float
    jf: float

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.sequences)

    @property
    def fps(self) -> float:
        """Frames per second of the predictor alone (reading, scoring and writing excluded)."""
        seconds = sum(s.seconds for s in self.sequences)
        return self.frames / seconds if seconds > 0 else float("inf")

    def to_dict(self) -> dict:
        """JSON-ready numbers: the means, frames per second and each sequence with its objects."""
        return {
            "mean": {"j": self.j, "f": self.f, "jf": self.jf},
            "fps": self.fps,
            "frames": self.frames,
            "sequences": {
                s.name: {
                    "j": s.j,
                    "f": s.f,
                    "jf": s.jf,
                    "frames": s.frames,
                    "seconds": s.seconds,
                    "objects": {str(o.object_id): {"j": 100 * o.j, "f": 100 * o.f} for o in s.objects},
                }
                for s in self.sequences
            },
        }


def list_sequences(root: str | os.PathLike) -> list[str]:
    """Sorted names of the sequences under `root`/JPEGImages/480p; EvalError when there are none."""
    images = _images_dir(Path(root))
    names = sequence_names(root)
    if not names:
        raise EvalError(f"{images}: no sequence folders; pass a DAVIS root with {FRAMES}/<seq>/*.jpg frames")
    return names


def sequence_list(text: str) -> list[str]:
    """argparse type of a --sequences flag: comma-separated sequence names, at least one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r}: name at least one sequence (comma-separated names)")
    return names


def sequence_frames(root: str | os.PathLike, name: str) -> list[Path]:
    """The JPEG frames of sequence `name` in frame order; EvalError naming the sequences there when it is not one
    of them, or when it holds no frame."""
    folder = _images_dir(Path(root)) / name
    if not folder.is_dir():
        raise EvalError(f"{folder}: no such sequence; pick from those in {folder.parent}: "
                        f"{', '.join(sequence_names(root)) or '(it holds none)'}")
    frames = frame_paths(root, name)
    if not frames:
        raise EvalError(f"{folder}: holds no .jpg frames; use the DAVIS layout {FRAMES}/<seq>/*.jpg")
    return frames


def sequence_files(root: str | os.PathLike, name: str) -> SequenceFiles:
    """The JPEG frames of sequence `name` and the annotation PNG of every frame."""
    frames = sequence_frames(root, name)
    annotations = [mask_path(root, name, p) for p in frames]
    missing = [a for a in annotations if not a.is_file()]
    if missing:
        raise EvalError(f"{missing[0]}: ground-truth mask missing; every frame needs one to be scored")
    return SequenceFiles(name, frames, annotations)


def prediction_path(predictions: str | os.PathLike, sequence: str, frame: str) -> Path:
    """Where `core.eval --out PREDICTIONS` saved the predicted mask of `frame` (a frame's name, no suffix) of
    `sequence`; EvalError saying how to write it when it is not there."""
    path = Path(predictions) / sequence / f"{frame}.png"
    if not path.is_file():
        raise EvalError(f"{path}: no saved predicted mask; write them with `python -m core.eval ROOT --out "
                        f"{predictions}`")
    return path


def read_frame(path: Path) -> np.ndarray:
    """An `(H, W, 3)` uint8 RGB frame read with OpenCV."""
    image = load_image(path)
    if image is None:
        raise EvalError(f"{path}: cannot read the frame; replace it with a valid JPEG")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def evaluate_sequence(
    files: SequenceFiles,
    predictor: Predictor,
    out_dir: Path | None = None,
    progress: tqdm | None = None,
) -> SequenceResult:
    """Track one sequence from its first annotation, write the predictions under `out_dir`, and score them."""
    first_mask = read_mask(files.annotations[0])
    ids = object_ids(first_mask)
    scorer = SequenceScorer(files.name, ids)
    seconds = 0.0
    for index, (frame_path, gt_path) in enumerate(zip(files.frames, files.annotations)):
        frame = read_frame(frame_path)
        if index == 0:
            gt = first_mask
            check_mask(gt, frame.shape[:2], str(gt_path))
        else:
            gt = read_mask(gt_path, frame.shape[:2])
        start = time.perf_counter()
        pred = predictor.step(frame, first_mask if index == 0 else None)  # (H, W) uint8
        seconds += time.perf_counter() - start
        _check_size(pred, frame, frame_path)
        if out_dir is not None:
            write_mask(out_dir / files.name / f"{frame_path.stem}.png", pred)
        scorer.add(pred, gt)
        if progress is not None:
            progress.update()
    objects = scorer.scores()
    j = 100 * float(np.mean([o.j for o in objects]))
    f = 100 * float(np.mean([o.f for o in objects]))
    return SequenceResult(files.name, j, f, (j + f) / 2, len(files.frames), seconds, objects)


def evaluate(
    root: str | os.PathLike,
    sequences: Sequence[str] | None = None,
    predictor: PredictorFactory = FirstMaskBaseline,
    *,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> EvalReport:
    """DAVIS J&F on `sequences` (all under `root` when None); `predictor()` makes a fresh predictor per sequence.

    Example for validation during training: `evaluate(root, ["bear"], lambda: Tracker(config, network=net))`.
    """
    names = list(sequences) if sequences else list_sequences(root)
    all_files = [sequence_files(root, name) for name in names]
    out = Path(out_dir) if out_dir is not None else None
    results = []
    with tqdm(total=sum(len(f.frames) for f in all_files), unit="frame", disable=not progress) as bar:
        for files in all_files:
            bar.set_description(files.name)
            results.append(evaluate_sequence(files, predictor(), out, bar))
    summary = summarize([o for r in results for o in r.objects])
    return EvalReport(results, 100 * summary.j, 100 * summary.f, 100 * summary.jf)


def format_table(report: EvalReport) -> str:
    """A plain-text table of per-sequence J, F, J&F (points) and the means, then the predictor's speed."""
    width = max([len("sequence")] + [len(s.name) for s in report.sequences])
    lines = [f"{'sequence':<{width}}  {'J':>6} {'F':>6} {'J&F':>6} {'frames':>6}"]
    for s in report.sequences:
        lines.append(f"{s.name:<{width}}  {s.j:6.1f} {s.f:6.1f} {s.jf:6.1f} {s.frames:6d}")
    objects = sum(len(s.objects) for s in report.sequences)
    lines.append(f"{'mean':<{width}}  {report.j:6.1f} {report.f:6.1f} {report.jf:6.1f} {report.frames:6d}")
    lines.append(f"({objects} objects in {len(report.sequences)} sequences; {report.fps:.2f} frames per second)")
    return "\n".join(lines)


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write `data` as indented JSON, atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; reports are ordinary files
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(data, file, indent=2)
            file.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tracker_factory(config: TrackerConfig, refine: bool = False, annotator: str | None = None) -> PredictorFactory:
    """A factory of fresh core.inference.tracker.Tracker objects sharing one configuration and one loaded network;
    with `refine`, each wrapped in a `RefinedTracker` sharing one annotation network (the checkpoint `annotator`,
    or the shipped one)."""
    network = load_network(config.weights)
    if not refine:
        return lambda: Tracker(config, network)
    refiner = MaskRefiner(build_segmenter(annotator).network if annotator else None)
    return lambda: RefinedTracker(Tracker(config, network), refiner)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ToolParser(prog="python -m core.eval", description=tool_description(__doc__))
    parser.add_argument("root", help="DAVIS root holding JPEGImages/480p and Annotations/480p")
    parser.add_argument("--sequences", type=sequence_list, help="comma-separated sequence names (default: all)")
    parser.add_argument("--out", type=output_folder, help="write predicted palette PNGs to OUT/<seq>/<frame>.png")
    parser.add_argument("--json", type=output_file, help="also write the numbers to this JSON file")
    parser.add_argument("--baseline", choices=["first-mask"], help="score a trivial baseline instead")
    parser.add_argument("--refine", action="store_true",
                        help="redraw each tracked mask with the annotation network, zoomed on the object (slower)")
    parser.add_argument("--annotator", help="with --refine: this annotator checkpoint (default: the shipped one)")
    parser.add_argument("--memory", choices=MEMORIES, default=TrackerConfig.memory,
                        help="first_previous (default): the student's constant memory; infinite: every "
                             f"{TrackerConfig.every}th frame kept as well, the memory the teacher is trained with")
    add_tracker_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Score the tracker (or the baseline) on the DAVIS root; a folder, mask or checkpoint it cannot use ends the
    command in one line through `run_tool` (status 2)."""
    args = parse_args(argv)
    if args.baseline == "first-mask":
        factory: PredictorFactory = FirstMaskBaseline
    else:
        factory = tracker_factory(tracker_config(args, memory=args.memory), args.refine, args.annotator)
    report = evaluate(args.root, args.sequences, factory, out_dir=args.out)
    print(format_table(report))
    if args.json:
        setup = {"root": str(args.root), "predictor": args.baseline or "tracker", "weights": args.weights,
                 "size": args.tracker_size, "device": args.device, "threads": args.threads, "backend": args.backend,
                 "adapt_steps": args.adapt_steps, "box_prior": args.box_prior, "refine": args.refine,
                 "annotator": args.annotator, "memory": args.memory}
        write_json(args.json, {**setup, **report.to_dict()})
    return 0


def _images_dir(root: Path) -> Path:
    """`root`'s frames folder; EvalError when `root` is no folder or no DAVIS root."""
    if not root.is_dir():
        raise EvalError(f"{root}: no such folder; pass a DAVIS root (JPEGImages/480p, Annotations/480p)")
    images = root / FRAMES
    if not images.is_dir():
        raise EvalError(f"{root}: no {FRAMES} folder; pass the DAVIS root folder")
    return images


def _check_size(labels: np.ndarray, frame: np.ndarray, source: Path) -> None:
    """EvalError when a predicted label map is not of its frame's size."""
    if labels.shape != frame.shape[:2]:
        raise EvalError(f"{source}: mask is {labels.shape} but the frame is {frame.shape[:2]}; they must match")
