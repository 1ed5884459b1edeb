"""`python -m core.evaluation.interactive DAVIS_ROOT|CLIPS` — scores click-and-box annotation as papers do.

On every `--every`-th frame of some DAVIS sequences (default: the validation sequences the shipped annotator never
saw), or on every object of every annotated frame of a folder of clips (`CLIP/masks/*.png` palette masks, frames in
`CLIP/` or `CLIP/frames/`: the bundled samples, the demo clips, a user's own), a simulated user
(`core.annotate.clicks`) marks the object through `core.annotate.object_mask`, the code path the web app and the
OBS plugin use: a tight box alone, then clicks one by one (first at the most interior point, then at the centre of
the largest error). `--first-click random` puts the first click at a random pixel well inside the object instead
(the same one for every method and run), as users click: on a player's trousers, not at the centre of his chest.
Reported per method (the network, GrabCut): mean IoU from the box and after 1…5 clicks, and NoC@85 / NoC@90, the
mean number of clicks to reach that IoU, capped at `--max-clicks` (20), with the frames that never reach 85 % named
(each adds the cap to NoC@85); `--json` also gets every frame's box IoU and click curve.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.annotate import METHODS, Mark, object_mask
from core.annotate.clicks import Click, next_click, random_interior_click, tight_box
from core.annotate.network import load_annotator_checkpoint
from core.annotate.segmenter import BACKEND_HELP, BACKENDS, build_segmenter
from core.batch.inputs import FRAMES_FOLDER, MASK_FOLDER, numbered_frames
from core.io.command import ToolParser, output_file, run_tool, tool_description, whole_number
from core.evaluation.davis import EvalError, list_sequences, read_frame, sequence_frames, sequence_list
from core.evaluation.metrics import region_similarity
from core.io.davis import mask_path
from core.io.masks import object_ids, read_mask, resize_labels
from core.io.suffixes import FRAME_SUFFIXES

CURVE_CLICKS = 5
THRESHOLDS = (0.85, 0.90)
FIRST_CLICKS = ("interior", "random")

Segment = Callable[[tuple[Mark, ...]], np.ndarray]  # one object's marks → (H, W) bool mask


@dataclass(frozen=True)
class FrameCurve:
    """One frame's (or clip object's) result: IoU (0–1) from the box and after each click until the user stopped."""

    name: str
    box_iou: float
    click_ious: list[float]


@dataclass(frozen=True)
class InteractiveScores:
    """One method's scores over the frames (IoU in %, NoC in clicks), its mean time per call, the frames that never
    reached THRESHOLDS[0] within the cap, and every frame's curve."""

    method: str
    frames: int
    box_iou: float
    click_iou: list[float]  # mean IoU after 1 … CURVE_CLICKS clicks
    noc85: float
    noc90: float
    ms_per_call: float
    unreached85: list[str]
    curves: list[FrameCurve]


def click_ious(target: np.ndarray, segment: Segment, max_clicks: int, min_clicks: int = CURVE_CLICKS,
               stop_iou: float = max(THRESHOLDS), first: Click | None = None) -> list[float]:
    """Play the simulated user against `segment` on `target` (H, W) bool: the IoU after each click, stopping
    after `max_clicks`, at an exact mask, or once `stop_iou` is reached with at least `min_clicks` clicks. The
    first click is `first` when given, else the object's interior point (as every later one, `next_click`)."""
    marks: tuple[Mark, ...] = ()
    prediction = np.zeros_like(target)
    ious: list[float] = []
    while len(ious) < max_clicks:
        click = first if first is not None and not marks else next_click(target, prediction)
        if click is None:
            break
        marks += (click_mark(click),)
        prediction = segment(marks)
        ious.append(region_similarity(prediction, target))
        if len(ious) >= min_clicks and ious[-1] >= stop_iou:
            break
    return ious


def click_mark(click: Click) -> Mark:
    """A simulated click as the user's mark on object 1."""
    return Mark("positive" if click.positive else "negative", 1, click.x, click.y)


def first_click(name: str, target: np.ndarray, how: str) -> Click | None:
    """The simulated user's first click on `target` (H, W) bool, named `name`: None for "interior" (the papers'
    most interior point, which `click_ious` picks), or for "random" a positive click at a random pixel at least a
    quarter of the object's depth inside it (`random_interior_click`), drawn from a generator seeded by `name`."""
    if how == "interior":
        return None
    return random_interior_click(target, np.random.default_rng(zlib.crc32(name.encode())))


def clicks_to_reach(ious: list[float], threshold: float, cap: int) -> int:
    """NoC: the number of clicks after which IoU first reaches `threshold`, else `cap`."""
    return next((k + 1 for k, iou in enumerate(ious) if iou >= threshold), cap)


def iou_after(ious: list[float], clicks: int) -> float:
    """IoU after `clicks` clicks; a run that stopped early (goal reached, exact mask) keeps its last IoU."""
    if not ious:
        return 1.0
    return ious[min(clicks, len(ious)) - 1]


def davis_frames(root: str | Path, sequences: list[str], every: int,
                 first: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image (H, W, 3) RGB, target (H, W) bool) for frames first, first + every, … of each sequence with
    an object; EvalError or MaskError naming a sequence, frame or mask that cannot be read."""
    for name in sequences:
        for path in sequence_frames(root, name)[first::every]:
            image = read_frame(path)
            target = read_mask(mask_path(root, name, path), image.shape[:2]) > 0
            if target.any():
                yield f"{name}/{path.stem}", image, target


def clip_objects(root: str | Path, clips: list[str]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name "clip/frame/id", image (H, W, 3) RGB, target (H, W) bool) for every object of every annotated frame
    of the `clips` folders under `root`: each mask `CLIP/masks/NAME.png` and its frame `NAME` in `CLIP/frames/` or
    `CLIP/` (a mask of another size is resized to the frame's); EvalError naming a clip that is not there, or
    has no masks, or a mask without its frame."""
    for clip in clips:
        folder = Path(root) / clip
        if not folder.is_dir():
            raise EvalError(f"{folder}: no such clip; pick from the clips with masks/ in {root}: "
                            f"{', '.join(annotated_clips(root))}")
        frames = folder / FRAMES_FOLDER if (folder / FRAMES_FOLDER).is_dir() else folder
        masks = sorted((folder / MASK_FOLDER).glob("*.png"))
        if not masks:
            raise EvalError(f"{folder / MASK_FOLDER}: no masks; pass a folder of clips, each with masks/NAME.png")
        for mask_file in masks:
            found = [p for p in sorted(frames.glob(f"{mask_file.stem}.*")) if p.suffix.lower() in FRAME_SUFFIXES]
            if not found:
                raise EvalError(f"{mask_file}: no frame {mask_file.stem} beside it in {frames}; add that frame")
            image = read_frame(found[0])
            labels = resize_labels(read_mask(mask_file), image.shape[:2])
            for object_id in object_ids(labels):
                yield f"{clip}/{mask_file.stem}/{object_id}", image, labels == object_id


def score(frames: list[tuple[str, np.ndarray, np.ndarray]], method: str, segment_for: Callable[[np.ndarray], Segment],
          max_clicks: int, first: str = "interior") -> InteractiveScores:
    """Box IoU, the click curve and NoC of one method over `frames`; `segment_for(image)` segments on one; `first`
    says where the first click goes (`first_click`)."""
    box_ious, curves, calls, seconds = [], [], 0, 0.0
    names = [name for name, _, _ in frames]
    for name, image, target in tqdm(frames, desc=method, unit="frame", leave=False):
        segment = segment_for(image)
        start = time.perf_counter()
        x0, y0, x1, y1 = tight_box(target)
        box_ious.append(region_similarity(segment((Mark("box", 1, x0, y0, x1, y1),)), target))
        curves.append(click_ious(target, segment, max_clicks, first=first_click(name, target, first)))
        seconds += time.perf_counter() - start
        calls += 1 + len(curves[-1])
    return InteractiveScores(
        method, len(frames), round(100 * float(np.mean(box_ious)), 1),
        [round(100 * float(np.mean([iou_after(c, k) for c in curves])), 1) for k in range(1, CURVE_CLICKS + 1)],
        round(float(np.mean([clicks_to_reach(c, THRESHOLDS[0], max_clicks) for c in curves])), 2),
        round(float(np.mean([clicks_to_reach(c, THRESHOLDS[1], max_clicks) for c in curves])), 2),
        round(1000 * seconds / max(1, calls), 1),
        [name for name, c in zip(names, curves) if max(c, default=1.0) < THRESHOLDS[0]],
        [FrameCurve(name, float(b), [float(i) for i in c])
         for name, b, c in zip(names, box_ious, curves)])


def method_segment(method: str, weights: str | None, backend: str,
                   threads: int | None) -> Callable[[np.ndarray], Segment]:
    """For a method name, the per-frame segment function: the network as `core.annotate.object_mask` runs it
    (checkpoint, backend and threads as given), or `object_mask` with GrabCut."""
    if method == "network":
        segmenter = build_segmenter(weights, backend, threads)
        return lambda image: lambda marks: segmenter.mask(image, marks)
    return lambda image: lambda marks: object_mask(image, marks, method=method)


def default_sequences() -> list[str]:
    """The validation sequences recorded in the shipped annotator's checkpoint (held out of its training)."""
    return list(load_annotator_checkpoint()["meta"]["validation_sequences"])


def chosen_sequences(root: str | Path, given: list[str] | None) -> list[str]:
    """The DAVIS sequences named by --sequences, else `default_sequences`; EvalError naming --sequences when
    `root` lacks some of those."""
    if given:
        return given
    names = default_sequences()
    missing = sorted(set(names) - set(list_sequences(root)))
    if missing:
        raise EvalError(f"{root}: lacks {', '.join(missing)} of the annotator's validation sequences (the default); "
                        "name the sequences to score with --sequences")
    return names


def annotated_clips(root: str | Path) -> list[str]:
    """The clips of a folder of clips that have masks."""
    return sorted(folder.name for folder in Path(root).iterdir() if (folder / MASK_FOLDER).is_dir())


def is_davis(root: str | Path) -> bool:
    """Whether `root` is laid out as DAVIS (JPEGImages/, Annotations/) rather than as a folder of clips."""
    return (Path(root) / "JPEGImages").is_dir()


def misplaced_root(root: str | Path) -> str | None:
    """Why `root`, which is neither a DAVIS root nor a folder of annotated clips, is the wrong folder when it is
    one level too deep: inside a DAVIS root (a sequence's folder), or one clip's folder (its own masks/ or
    frames); None otherwise."""
    davis = next((folder for folder in Path(root).absolute().parents if is_davis(folder)), None)
    if davis is not None:
        return f"{root}: is inside the DAVIS root {davis}; pass that root"
    if (Path(root) / MASK_FOLDER).is_dir() or (Path(root) / FRAMES_FOLDER).is_dir() or numbered_frames(Path(root)):
        return (f"{root}: looks like one clip's folder; pass the folder that holds the clips (its parent, "
                f"{Path(root).absolute().parent})")
    return None


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Stop with argparse's one-line usage error on an unknown method, or on a root that is not a folder, is one
    clip's or sequence's folder (`misplaced_root`) or neither a DAVIS root nor a folder of clips, before any
    frame is read."""
    unknown = [method for method in args.methods.split(",") if method not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; use some of {', '.join(METHODS)}")
    layouts = "a DAVIS root (JPEGImages/480p, Annotations/480p) or a folder of clips (CLIP/masks/*.png)"
    if not Path(args.root).is_dir():
        parser.error(f"{args.root}: not a folder; pass {layouts}")
    if not (is_davis(args.root) or annotated_clips(args.root)):
        parser.error(misplaced_root(args.root)
                     or f"{args.root}: has no JPEGImages/ and no clip with masks/; pass {layouts}")


def main(argv: list[str] | None = None) -> None:
    """Score each method on the frames or clip objects of the root and print (and write) the scores."""
    parser = ToolParser(prog="python -m core.evaluation.interactive",
                                     description=tool_description(__doc__))
    parser.add_argument("root", help="DAVIS root (JPEGImages/480p, Annotations/480p), or a folder of clips "
                                     "(CLIP/masks/*.png, frames in CLIP/ or CLIP/frames/: every object scored)")
    parser.add_argument("--sequences", type=sequence_list,
                        help="comma-separated names (default: the annotator's validation sequences; for a folder of "
                             "clips, every clip with masks)")
    parser.add_argument("--every", type=whole_number(1), default=10,
                        help="score every N-th frame of each sequence (default 10)")
    parser.add_argument("--first", type=whole_number(0), default=0,
                        help="the first frame scored (default 0; the annotator's training validates on frames 0, 25, "
                             "50 …, so --every 25 --first 12 scores other frames than it chose its weights on)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--max-clicks", type=whole_number(1), default=20,
                        help="simulated clicks per object at most, the NoC cap (default 20)")
    parser.add_argument("--first-click", choices=FIRST_CLICKS, default="interior",
                        help="where the first click goes: the object's most interior point (default, as papers "
                             "score), or a random pixel well inside it, fixed per frame (as users click)")
    parser.add_argument("--weights", help="annotator checkpoint for the network method (default: shipped)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    parser.add_argument("--threads", type=whole_number(1), help="intra-op threads (ONNX Runtime and torch)")
    parser.add_argument("--json", type=output_file, help="also write the scores here")
    args = parser.parse_args(argv)
    check_args(parser, args)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    davis = is_davis(args.root)
    sequences = chosen_sequences(args.root, args.sequences) if davis else args.sequences or annotated_clips(args.root)
    frames = list(davis_frames(args.root, sequences, args.every, args.first) if davis
                  else clip_objects(args.root, sequences))
    if not frames:
        raise EvalError(f"{args.root}: nothing to score (no frame with an object in {', '.join(sequences) or 'it'});"
                        " pass a DAVIS root or a folder of clips with masks/, or other --sequences/--first")
    results = []
    what = ("frames", "sequences") if davis else ("objects", "clips")
    print(f"{len(frames)} {what[0]} of {len(sequences)} {what[1]}; first click: {args.first_click}; "
          f"NoC capped at {args.max_clicks}")
    print(f"{'method':<8} {'box':>5} " + " ".join(f"{k}-click".rjust(7) for k in range(1, CURVE_CLICKS + 1))
          + "  NoC@85  NoC@90  ms/call")
    for method in args.methods.split(","):
        segment_for = method_segment(method, args.weights, args.backend, args.threads)
        scores = score(frames, method, segment_for, args.max_clicks, args.first_click)
        results.append(scores)
        print(f"{method:<8} {scores.box_iou:5.1f} " + " ".join(f"{v:7.1f}" for v in scores.click_iou)
              + f"  {scores.noc85:6.2f}  {scores.noc90:6.2f}  {scores.ms_per_call:7.1f}")
        if scores.unreached85:
            print(f"{method}: {len(scores.unreached85)} of {scores.frames} never reached {THRESHOLDS[0]:.0%} in "
                  f"{args.max_clicks} clicks (NoC@85 counts {args.max_clicks} for each): "
                  + ", ".join(scores.unreached85))
    if args.json:
        args.json.write_text(json.dumps({"sequences": sequences, "every": args.every, "first": args.first,
                                         "first_click": args.first_click,
                                         "results": [asdict(r) for r in results]}, indent=2))


if __name__ == "__main__":
    run_tool(main)
