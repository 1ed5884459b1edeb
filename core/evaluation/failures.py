"""`python -m core.evaluation.failures` — pictures of where the tracker fails, for the failure analysis in
docs/RESULTS.md.

Reads a DAVIS root, the predicted palette PNGs that `python -m core.eval --out PRED --json EVAL.json` wrote and
that run's JSON; for each of the worst sequences by J&F it picks the frame with the lowest IoU and writes one
still: the frame with the ground truth outlined, the prediction, and the errors (missed object pixels in blue,
false ones in red), with J&F, the frame index and its IoU written on it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from core.evaluation.davis import EvalError, prediction_path, read_frame, sequence_files
from core.io.command import ToolParser, output_folder, run_tool, tool_description, whole_number
from core.io.masks import read_mask

MISSED, FALSE = (40, 90, 255), (255, 40, 40)  # RGB


def worst_sequences(report: dict, count: int) -> list[tuple[str, float]]:
    """The `count` sequences with the lowest J&F in a `core.eval` JSON report, worst first."""
    scores = sorted((seq["jf"], name) for name, seq in report["sequences"].items())
    return [(name, jf) for jf, name in scores[:count]]


def read_report(path: Path) -> dict:
    """A `core.eval --json` report; EvalError saying how to make one when `path` is missing or is something else."""
    make = "run `python -m core.eval ROOT --out PRED --json FILE` first"
    if not path.is_file():
        raise EvalError(f"{path}: not found; {make}")
    try:
        report = json.loads(path.read_text())
        if all(isinstance(sequence["jf"], (int, float)) for sequence in report["sequences"].values()):
            return report
    except (ValueError, TypeError, KeyError, AttributeError):  # not JSON, or JSON of another shape
        pass
    raise EvalError(f"{path}: not a report of `python -m core.eval`; {make}")


def predicted_mask(predictions: Path, sequence: str, frame: str, hw: tuple[int, int]) -> np.ndarray:
    """The saved prediction of `frame` (its name) of `sequence` as (H, W) bool; EvalError or MaskError when it is
    missing or not of the size `hw`."""
    return read_mask(prediction_path(predictions, sequence, frame), hw) > 0


def frame_ious(predictions: Path, sequence: str, annotations: list[Path]) -> list[float]:
    """IoU of the foreground (all objects as one) per frame; 1.0 where both are empty."""
    ious = []
    for gt_path in annotations:
        gt = read_mask(gt_path) > 0
        pred = predicted_mask(predictions, sequence, gt_path.stem, gt.shape)
        union = (gt | pred).sum()
        ious.append(float((gt & pred).sum() / union) if union else 1.0)
    return ious


def failure_still(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, caption: str) -> np.ndarray:
    """Three panels side by side (RGB): ground truth outlined, prediction tinted, and the error map."""
    outline = image.copy()
    contours, _ = cv2.findContours(gt.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(outline, contours, -1, (60, 220, 60), 2)
    tinted = np.where(pred[..., None], (0.5 * image + 0.5 * np.array([60, 220, 60])).astype(np.uint8), image)
    errors = (image * 0.4).astype(np.uint8)
    errors[gt & ~pred] = MISSED
    errors[pred & ~gt] = FALSE
    still = np.concatenate([outline, tinted, errors], axis=1)
    cv2.putText(still, caption, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
    return still


def write_failures(root: Path, pred_root: Path, report: dict, out: Path, count: int) -> list[Path]:
    """One still per worst sequence under `out` (JPEG, half size); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, jf in worst_sequences(report, count):
        files = sequence_files(root, name)
        ious = frame_ious(pred_root, name, files.annotations)
        index = int(np.argmin(ious[1:])) + 1  # frame 0 is the given annotation
        image = read_frame(files.frames[index])
        gt = read_mask(files.annotations[index], image.shape[:2]) > 0
        pred = predicted_mask(pred_root, name, files.frames[index].stem, gt.shape)
        still = failure_still(image, gt, pred, f"{name}  J&F {jf:.1f}  frame {index}  IoU {100 * ious[index]:.0f}")
        small = cv2.resize(still, (still.shape[1] // 2, still.shape[0] // 2), interpolation=cv2.INTER_AREA)
        path = out / f"{name}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Write the stills of the worst sequences and print their paths."""
    parser = ToolParser(prog="python -m core.evaluation.failures", description=tool_description(__doc__))
    parser.add_argument("root", type=Path, help="DAVIS root (JPEGImages/480p, Annotations/480p)")
    parser.add_argument("predictions", type=Path, help="the --out folder of `python -m core.eval`")
    parser.add_argument("--json", type=Path, required=True, help="the --json report of the same run")
    parser.add_argument("--out", type=output_folder, default=Path("docs/failures"),
                        help="folder for the stills (default docs/failures)")
    parser.add_argument("--worst", type=whole_number(1), default=5,
                        help="one still for each of this many sequences of lowest J&F (default 5)")
    args = parser.parse_args(argv)
    for path in write_failures(args.root, args.predictions, read_report(args.json), args.out, args.worst):
        print(path)
    return 0


if __name__ == "__main__":
    run_tool(main)
