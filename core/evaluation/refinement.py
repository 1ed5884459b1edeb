"""`python -m core.evaluation.refinement DAVIS_ROOT PREDICTIONS` — how much the annotation network's redrawing
(`core.annotate.refine`) improves a tracker's saved masks, without tracking again.

The redrawing only changes the output (the tracker's memory keeps its own masks), so the J of `core.eval --refine`
is the mean IoU of each saved tracked mask (`core.eval --out PREDICTIONS`) redrawn on its own frame. This scores
every `--every`-th frame after the first (the annotated one, which the refinement leaves alone) of each sequence,
before and after, with the shipped annotator or `--annotator CHECKPOINT`: seconds instead of a whole evaluation,
and the annotator's training uses it as its validation of that task.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.annotate.refine import MaskRefiner
from core.annotate.segmenter import BACKEND_HELP, BACKENDS, build_segmenter
from core.evaluation.davis import EvalError, prediction_path, sequence_list
from core.evaluation.interactive import chosen_sequences, davis_frames
from core.evaluation.metrics import region_similarity
from core.io.command import ToolParser, output_file, run_tool, tool_description, whole_number
from core.io.masks import read_mask

Frame = tuple[str, np.ndarray, np.ndarray, np.ndarray]  # "seq/frame", image RGB, target bool, tracked bool


def tracked_frames(root: str | Path, predictions: str | Path, sequences: Sequence[str], every: int) -> list[Frame]:
    """Every `every`-th frame after the first of each sequence, with its ground truth and its saved tracked mask
    (`predictions/<seq>/<frame>.png`; EvalError saying how to write one that is missing)."""
    frames = []
    for name, image, target in davis_frames(root, list(sequences), every, first=every):
        path = prediction_path(predictions, *name.split("/"))
        frames.append((name, image, target, read_mask(path, target.shape) > 0))
    return frames


def refined_ious(refiner: MaskRefiner, frames: Sequence[Frame]) -> tuple[float, float]:
    """Mean IoU (%) of the tracked masks and of the same masks redrawn by `refiner`, against the ground truth."""
    before, after = [], []
    for _, image, target, tracked in frames:
        refined = refiner(image, tracked.astype(np.uint8), [1])[0] > 0
        before.append(region_similarity(tracked, target))
        after.append(region_similarity(refined, target))
    return round(100 * float(np.mean(before)), 1), round(100 * float(np.mean(after)), 1)


def main(argv: Sequence[str] | None = None) -> None:
    """Score the saved tracked masks before and after redrawing, and print (and write) the two mean IoUs."""
    parser = ToolParser(prog="python -m core.evaluation.refinement", description=tool_description(__doc__))
    parser.add_argument("root", help="DAVIS root holding JPEGImages/480p and Annotations/480p")
    parser.add_argument("predictions", help="the tracker's saved masks (`core.eval ... --out PREDICTIONS`)")
    parser.add_argument("--sequences", type=sequence_list,
                        help="comma-separated names (default: the annotator's validation sequences)")
    parser.add_argument("--every", type=whole_number(1), default=1, help="score every N-th frame (default: all)")
    parser.add_argument("--annotator", help="annotator checkpoint (default: the shipped one)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    parser.add_argument("--json", type=output_file, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    sequences = chosen_sequences(args.root, args.sequences)
    frames = tracked_frames(args.root, args.predictions, sequences, args.every)
    if not frames:
        raise EvalError(f"{args.root}: nothing to score (no frame after the first with an object in "
                        f"{', '.join(sequences)}); pass other --sequences or a smaller --every")
    refiner = MaskRefiner(build_segmenter(args.annotator, args.backend).network)
    before, after = refined_ious(refiner, frames)
    print(f"{len(frames)} frames: mean IoU tracked {before}, redrawn {after}")
    if args.json:
        args.json.write_text(json.dumps({"frames": len(frames), "tracked": before, "redrawn": after,
                                         "annotator": args.annotator}, indent=2) + "\n")


if __name__ == "__main__":
    run_tool(main)
