"""`python -m core.evaluation.annotate_bench DAVIS_ROOT` — how long one click takes to answer.

On the first frame of each sequence (854×480 in DAVIS), the simulated user of `core.evaluation.interactive`
clicks `--clicks` times; each click is one call of `core.annotate.object_mask` as the web app makes it (all the
object's marks so far; earlier steps come from the segmenter's cache, so each click is one network run). A
warm-up click per method first (it loads the network and, with ONNX Runtime, exports its graph once). Reports
the median, mean and 90th percentile milliseconds per click for the network and for GrabCut, and the median
process CPU time per click (with `--threads 1`, what a click costs on a quiet core when the machine is busy);
then the same for one box per frame (the object's tight box: the network's answer and GrabCut's polish).
"""

from __future__ import annotations

import os
import time

import cv2
import numpy as np

from core.annotate import METHODS, Mark
from core.annotate.clicks import tight_box
from core.annotate.segmenter import BACKEND_HELP, BACKENDS
from core.io.command import ToolParser, output_file, run_tool, tool_description, whole_number
from core.evaluation.davis import sequence_list, write_json
from core.evaluation.interactive import Segment, chosen_sequences, click_ious, davis_frames, method_segment
from core.io.masks import MaskError


def timing(segment: Segment, times: list[tuple[float, float]]) -> Segment:
    """`segment`, appending the (wall, process CPU) milliseconds of each call to `times`. On a busy machine the
    CPU time of a 1-thread run is what the call costs a quiet core."""
    def timed(marks: tuple[Mark, ...]) -> np.ndarray:
        wall, cpu = time.perf_counter(), time.process_time()
        mask = segment(marks)
        times.append((1000 * (time.perf_counter() - wall), 1000 * (time.process_time() - cpu)))
        return mask

    return timed


def timed_clicks(segment: Segment, target: np.ndarray, clicks: int) -> list[tuple[float, float]]:
    """(wall, process CPU) milliseconds of each of the simulated user's `clicks` calls of `segment` on `target`."""
    times: list[tuple[float, float]] = []
    click_ious(target, timing(segment, times), max_clicks=clicks, min_clicks=clicks)
    return times


def timed_box(segment: Segment, target: np.ndarray) -> tuple[float, float]:
    """(wall, process CPU) milliseconds of one call of `segment` with the tight box around `target` alone."""
    times: list[tuple[float, float]] = []
    timing(segment, times)((Mark("box", 1, *tight_box(target)),))
    return times[0]


def summary(times: list[tuple[float, float]]) -> dict:
    """Median, mean and 90th percentile of the wall times, median of the CPU times (ms)."""
    wall = [t[0] for t in times]
    return {"calls": len(times), "median_ms": round(float(np.median(wall)), 1),
            "mean_ms": round(float(np.mean(wall)), 1), "p90_ms": round(float(np.percentile(wall, 90)), 1),
            "median_cpu_ms": round(float(np.median([t[1] for t in times])), 1)}


def first_object_frame(root: str, sequence: str) -> tuple[str, np.ndarray, np.ndarray]:
    """The first frame of a DAVIS sequence with an object in its mask (MaskError when it has none)."""
    found = next(davis_frames(root, [sequence], every=10 ** 6), None)
    if found is None:
        raise MaskError(f"{root}: sequence {sequence} has no frame with an object in its mask; pass other "
                        "--sequences or fix its masks")
    return found


def main(argv: list[str] | None = None) -> None:
    """Time each method's clicks and boxes on the sequences' first object frames and print (and write) them."""
    parser = ToolParser(prog="python -m core.evaluation.annotate_bench",
                                     description=tool_description(__doc__))
    parser.add_argument("root", help="DAVIS root (JPEGImages/480p, Annotations/480p)")
    parser.add_argument("--sequences", type=sequence_list,
                        help="comma-separated names (default: the annotator's validation sequences)")
    parser.add_argument("--clicks", type=whole_number(1), default=5, help="clicks per frame (default 5)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    parser.add_argument("--threads", type=whole_number(1), default=2, help="intra-op threads (default 2)")
    parser.add_argument("--json", type=output_file, help="also write the numbers here")
    args = parser.parse_args(argv)
    unknown = [method for method in args.methods.split(",") if method not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; use some of {', '.join(METHODS)}")
    cv2.setNumThreads(args.threads)
    frames = [first_object_frame(args.root, name) for name in chosen_sequences(args.root, args.sequences)]
    print(f"{len(frames)} frames ({frames[0][1].shape[1]}×{frames[0][1].shape[0]}), {args.clicks} clicks each, "
          f"{args.threads} threads, {len(os.sched_getaffinity(0))} cores available, load {os.getloadavg()[0]:.1f}")
    results = {}
    for method in args.methods.split(","):
        segment_for = method_segment(method, None, args.backend, args.threads)
        warm_up = np.ascontiguousarray(frames[0][1][:, ::-1])  # a frame not timed: the cache must not answer
        timed_clicks(segment_for(warm_up), frames[0][2][:, ::-1], 1)  # loads (and exports) the network
        times = [t for _, image, target in frames for t in timed_clicks(segment_for(image), target, args.clicks)]
        boxes = [timed_box(segment_for(image), target) for _, image, target in frames]
        results[method] = {"click": summary(times), "box": summary(boxes)}
        print(f"{method:<8} click {results[method]['click']}\n{'':<8} box   {results[method]['box']}")
    if args.json:
        write_json(args.json, {"threads": args.threads, "backend": args.backend, "results": results})


if __name__ == "__main__":
    run_tool(main)
