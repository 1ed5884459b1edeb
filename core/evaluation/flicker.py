"""`python -m core.evaluation.flicker DAVIS_ROOT` — how much the tracker's edges flicker, per kind of matte.

Each sequence is tracked from its first annotation. Three mattes of every frame are compared: `hard` (the
label map: 1 on objects), `soft` (`core.effects.soft_alpha` of the tracker's probabilities) and `stable`
(`core.effects.StableMatte`: the soft matte with the temporal filter). Flicker is the mean absolute change of
the matte (in %) between a frame and the next one warped back by the optical flow of the images, over the
pixels within 10 pixels of the object's outline where the flow is consistent forwards and backwards: what
stays after the motion is explained. J&F (DAVIS, of the matte thresholded at 0.5 against the ground truth;
the label maps' own J&F for `hard`) shows that the edge did not move. Sequences default to six of the
validation sequences. `--refine` measures the masks redrawn by `core.annotate.refine`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from core.annotate.refine import MaskRefiner
from core.effects.matting import EdgeSettings, StableMatte, soft_alpha
from core.evaluation.davis import read_frame, sequence_files, sequence_list, write_json
from core.evaluation.metrics import SequenceScorer, summarize
from core.evaluation.removal import BACKGROUNDS, consistent_flow
from core.inference.tracker import Tracker
from core.inference.settings import add_tracker_arguments, tracker_config
from core.io.command import ToolParser, output_file, run_tool, tool_description, whole_number
from core.io.masks import read_mask

MATTES = ("hard", "soft", "stable")
_BAND = 10  # pixels either side of the outline where flicker is measured


def track_mattes(tracker: Tracker, frames: list[np.ndarray], first_mask: np.ndarray, settings: EdgeSettings,
                 refiner: MaskRefiner | None = None) -> dict[str, list[np.ndarray]]:
    """Every frame's (H, W) float32 matte of each kind in MATTES, tracking from `first_mask` (the masks after it
    redrawn by `refiner`, when given, and the soft mattes made from its probability)."""
    tracker.reset()
    stable = StableMatte(settings)
    mattes: dict[str, list[np.ndarray]] = {name: [] for name in MATTES}
    for index, image in enumerate(frames):
        labels = tracker.step(image, first_mask if index == 0 else None)
        probabilities = tracker.probabilities
        if refiner is not None and index > 0:
            labels, objects = refiner(image, labels, tracker.object_ids)
            probabilities = np.stack([1.0 - objects, objects])
        mattes["hard"].append((labels > 0).astype(np.float32))
        mattes["soft"].append(soft_alpha(image, probabilities, settings))
        mattes["stable"].append(stable(image, probabilities))
    return mattes


def outline_band(matte: np.ndarray) -> np.ndarray:
    """`(H, W)` bool: pixels within _BAND pixels of the thresholded matte's outline."""
    mask = (matte >= 0.5).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * _BAND + 1, 2 * _BAND + 1))
    return cv2.dilate(mask, kernel) > cv2.erode(mask, kernel)


def flicker(mattes: list[np.ndarray], flows: list[tuple[np.ndarray, np.ndarray]], bands: list[np.ndarray]) -> float:
    """Mean |matte_t − matte_t+1 warped back| in % over the bands' consistent-flow pixels."""
    total, count = 0.0, 0
    for t, (coords, consistent) in enumerate(flows):
        region = bands[t] & consistent
        warped = cv2.remap(mattes[t + 1], coords, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        total += float(np.abs(mattes[t] - warped)[region].sum())
        count += int(region.sum())
    return 100.0 * total / max(count, 1)


def evaluate(root: Path, sequences: list[str], frames: int, make_tracker, settings: EdgeSettings,
             refiner: MaskRefiner | None = None) -> dict:
    """Flicker and J&F of each kind of matte, per sequence and as means over the sequences."""
    per_sequence: dict[str, dict[str, dict[str, float]]] = {}
    scorers: dict[str, list] = {name: [] for name in MATTES}
    tracker = make_tracker()
    for name in tqdm(sequences, desc="sequences", unit="seq"):
        files = sequence_files(root, name)
        images = [read_frame(path) for path in files.frames[:frames]]
        truth = [(read_mask(path, image.shape[:2]) > 0).astype(np.uint8)
                 for path, image in zip(files.annotations, images)]
        mattes = track_mattes(tracker, images, truth[0], settings, refiner)
        flows = [consistent_flow(a, b) for a, b in zip(images, images[1:])]
        bands = [outline_band(matte) for matte in mattes["hard"]]
        per_sequence[name] = {}
        for kind, series in mattes.items():
            scorer = SequenceScorer(name, [1])
            for matte, gt in zip(series, truth):
                scorer.add((matte >= 0.5).astype(np.uint8), gt)
            scores = scorer.scores()
            scorers[kind] += scores
            per_sequence[name][kind] = {"flicker": flicker(series, flows, bands),
                                        "jf": 100.0 * (scores[0].j + scores[0].f) / 2}
    overall = {}
    for kind in MATTES:
        summary = summarize(scorers[kind])
        overall[kind] = {"flicker": float(np.mean([s[kind]["flicker"] for s in per_sequence.values()])),
                         "jf": 100.0 * summary.jf}
    return {"frames_per_sequence": frames, "sequences": sequences, "overall": overall, "per_sequence": per_sequence}


def print_table(report: dict) -> None:
    """One line per kind of matte."""
    print(f"{'matte':<8} {'flicker %':>9} {'J&F':>6}")
    for kind, row in report["overall"].items():
        print(f"{kind:<8} {row['flicker']:>9.3f} {row['jf']:>6.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    """Track the sequences, print the flicker table (and write the report); bad input ends in one line through
    `run_tool`."""
    parser = ToolParser(prog="python -m core.evaluation.flicker", description=tool_description(__doc__))
    parser.add_argument("root", type=Path, help="DAVIS root holding JPEGImages/480p and Annotations/480p")
    parser.add_argument("--sequences", type=sequence_list, default=",".join(BACKGROUNDS),
                        help="comma-separated sequence names")
    parser.add_argument("--frames", type=whole_number(2), default=40, help="frames per sequence (from the start)")
    parser.add_argument("--json", type=output_file, help="also write the numbers to this JSON file")
    parser.add_argument("--refine", action="store_true", help="redraw the tracked masks (core.annotate.refine)")
    add_tracker_arguments(parser, backend="auto", adapt=False)
    args = parser.parse_args(argv)
    for name in args.sequences:  # every sequence checked before the long work starts
        sequence_files(args.root, name)
    config = tracker_config(args)
    report = evaluate(args.root, args.sequences, args.frames, lambda: Tracker(config), EdgeSettings(),
                      MaskRefiner() if args.refine else None)
    print_table(report)
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    run_tool(main)
