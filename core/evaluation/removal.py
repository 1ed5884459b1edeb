"""`python -m core.evaluation.removal DAVIS_ROOT` — object removal scored where the true background is known.

The synthetic protocol: the object of another sequence (its pixels and mask, frame by frame, at its own place and
size) is pasted over a background clip, and each remover gets the pasted mask as its labels. The clip's own
frames are the truth. Per remover: PSNR and SSIM inside the holes and over the whole frame (per frame, then the
mean over all frames of all clips), a temporal-consistency figure (warping error: the mean squared difference,
×10⁻³ on a 0–1 scale, between an output frame and the next output frame warped back by the true background's
optical flow, over the holes' pixels where the flow is consistent forwards and backwards; the truth's own value
is the floor), and the seconds per frame. Background clips default to six of the validation sequences, the
objects to six training sequences.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from core.effects.clip_removal import ClipRemover
from core.effects.matting import pixel_grid
from core.effects.removal import ObjectRemover
from core.evaluation.davis import EvalError, read_frame, sequence_files, sequence_list, write_json
from core.io.command import ToolParser, output_folder, run_tool, tool_description, whole_number
from core.io.davis import MASKS
from core.io.masks import read_mask
from core.pipeline.outputs import LARGE_REMOVAL_RADIUS, REMOVAL_RADIUS

# The first six of core.train.config.VALIDATION_SEQUENCES (evaluation never imports training), and the objects
# pasted over them: training sequences whose object covers 5-12 % of the frame.
BACKGROUNDS = ("bmx-bumps", "dance-jump", "hike", "mallard-water", "scooter-gray", "tennis")
OBJECTS = ("bear", "breakdance-flare", "horsejump-low", "stroller", "swing", "kite-walk")
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2


@dataclass
class SyntheticClip:
    """A background clip with another clip's object pasted over it."""

    name: str  # "<background>+<object>"
    truth: list[np.ndarray]  # (H, W, 3) uint8 RGB frames of the background clip
    composite: list[np.ndarray]  # the same frames with the object pasted
    holes: list[np.ndarray]  # (H, W) uint8 labels: 1 where the object was pasted


def remove_streaming(clip: SyntheticClip) -> list[np.ndarray]:
    """The live face's remover (`ObjectRemover`: a clean plate of the background seen so far)."""
    remover = ObjectRemover()
    return [remover(image, labels) for image, labels in zip(clip.composite, clip.holes)]


def remove_whole_clip(clip: SyntheticClip, radius: int = REMOVAL_RADIUS) -> list[np.ndarray]:
    """The batch and web faces' remover (`ClipRemover`: past and future frames aligned to each frame, up to
    `radius` frames away)."""
    remover = ClipRemover(radius=radius)
    outputs: list[np.ndarray] = []
    for image, labels in zip(clip.composite, clip.holes):
        outputs += remover.push(image, labels)
    return outputs + list(remover.finish())


REMOVERS: dict[str, Callable[[SyntheticClip], list[np.ndarray]]] = {
    "streaming": remove_streaming,
    "whole-clip": remove_whole_clip,
    "whole-clip-large": functools.partial(remove_whole_clip, radius=LARGE_REMOVAL_RADIUS),  # as for 4K frames
}


def davis_frames(root: Path, sequence: str, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The first `count` frames of a DAVIS sequence and their (H, W) uint8 masks (1 = object); MaskError naming a
    mask of another size than its frame."""
    files = sequence_files(root, sequence)
    images = [read_frame(path) for path in files.frames[:count]]
    masks = [(read_mask(path, image.shape[:2]) > 0).astype(np.uint8) for path, image in zip(files.annotations, images)]
    return images, masks


def paste_clip(root: Path, background: str, source: str, count: int) -> SyntheticClip:
    """`source`'s object pasted, frame by frame, over the first `count` frames of `background`; EvalError when
    `source`'s masks mark no object in those frames."""
    truth, _ = davis_frames(root, background, count)
    objects, masks = davis_frames(root, source, len(truth))
    if not any(mask.any() for mask in masks):
        raise EvalError(f"{root / MASKS / source}: no object in its first {len(masks)} masks to paste; name another "
                        "sequence in --objects")
    size = truth[0].shape[1::-1]
    composite, holes = [], []
    for image, pixels, mask in zip(truth, objects, masks):
        if pixels.shape != image.shape:
            pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        composite.append(np.where(mask[..., None] > 0, pixels, image))
        holes.append(mask)
    return SyntheticClip(f"{background}+{source}", truth[:len(holes)], composite, holes)


def psnr(output: np.ndarray, truth: np.ndarray, region: np.ndarray | None = None) -> float:
    """PSNR in dB over the pixels of `region` (all pixels when None); 100 for identical pixels."""
    difference = output.astype(np.float64) - truth.astype(np.float64)
    squared = difference[region] if region is not None else difference
    mse = float(np.mean(squared ** 2))
    return 100.0 if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def ssim_map(output: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """`(H, W)` SSIM (Wang et al. 2004: 11×11 Gaussian window, σ = 1.5), the mean over the colour channels."""
    a, b = output.astype(np.float64), truth.astype(np.float64)

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    mean_a, mean_b = blur(a), blur(b)
    var_a = blur(a * a) - mean_a ** 2
    var_b = blur(b * b) - mean_b ** 2
    covariance = blur(a * b) - mean_a * mean_b
    ssim = ((2 * mean_a * mean_b + _SSIM_C1) * (2 * covariance + _SSIM_C2)
            / ((mean_a ** 2 + mean_b ** 2 + _SSIM_C1) * (var_a + var_b + _SSIM_C2)))
    return ssim.mean(axis=2)


def consistent_flow(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DIS flow from `first` to `second` (RGB frames) as absolute sampling coordinates `(H, W, 2)` into
    `second`, and where it is consistent forwards and backwards (`(H, W)` bool, within 1 pixel)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey_a, grey_b = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (first, second))
    forward = dis.calc(grey_a, grey_b, None)
    backward = dis.calc(grey_b, grey_a, None)
    coords = pixel_grid(forward.shape[:2]) + forward
    back = cv2.remap(backward, coords, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=1e3)
    return coords, np.linalg.norm(forward + back, axis=2) < 1.0


def warp_error(frames: list[np.ndarray], flows: list[tuple[np.ndarray, np.ndarray]],
               holes: list[np.ndarray]) -> float:
    """Mean squared difference (0–1 scale, ×10⁻³) between each frame and the next warped back, over the hole
    pixels with a consistent flow."""
    total, count = 0.0, 0
    for t, (coords, consistent) in enumerate(flows):
        region = (holes[t] > 0) & consistent
        if not region.any():
            continue
        warped = cv2.remap(frames[t + 1], coords, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        difference = (frames[t].astype(np.float64) - warped.astype(np.float64))[region] / 255.0
        total += float(np.sum(difference ** 2)) / 3.0
        count += int(region.sum())
    return 1e3 * total / max(count, 1)


def frame_scores(output: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> dict[str, float]:
    """PSNR and SSIM of one frame, inside the hole and over the whole frame."""
    region = hole > 0
    ssim = ssim_map(output, truth)
    return {"psnr_hole": psnr(output, truth, region), "psnr_frame": psnr(output, truth),
            "ssim_hole": float(ssim[region].mean()), "ssim_frame": float(ssim.mean())}


def score_clip(clip: SyntheticClip, outputs: list[np.ndarray], flows: list[tuple[np.ndarray, np.ndarray]],
               seconds: float) -> dict[str, float]:
    """A remover's scores on one clip: the means over its frames with a hole."""
    rows = [frame_scores(o, t, h) for o, t, h in zip(outputs, clip.truth, clip.holes) if h.any()]
    scores = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
    scores["warp_error"] = warp_error(outputs, flows, clip.holes)
    scores["seconds_per_frame"] = seconds / len(outputs)
    scores["frames"] = len(rows)
    return scores


def overall(per_clip: dict[str, dict[str, float]]) -> dict[str, float]:
    """Means over all frames of all clips (warping error and speed: means over clips)."""
    frames = np.array([scores["frames"] for scores in per_clip.values()], np.float64)
    result = {}
    for key in next(iter(per_clip.values())):
        values = np.array([scores[key] for scores in per_clip.values()], np.float64)
        weighted = key.startswith(("psnr", "ssim"))
        result[key] = float((values * frames).sum() / frames.sum()) if weighted else float(values.mean())
    result["frames"] = int(frames.sum())
    return result


def save_still(path: Path, clip: SyntheticClip, outputs: dict[str, list[np.ndarray]], index: int) -> None:
    """One JPEG: the pasted frame, each remover's output and the truth side by side, at half size."""
    panels = [clip.composite[index], *(frames[index] for frames in outputs.values()), clip.truth[index]]
    row = np.hstack([cv2.resize(p, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA) for p in panels])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.jpg")
    cv2.imwrite(str(tmp), cv2.cvtColor(row, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    tmp.replace(path)


def evaluate(root: Path, pairs: list[tuple[str, str]], frames: int, removers: list[str],
             stills: Path | None = None) -> dict:
    """Every remover on every (background, object) pair; per-clip and overall scores."""
    per_remover: dict[str, dict[str, dict[str, float]]] = {name: {} for name in removers}
    truth_floor: dict[str, float] = {}
    for background, source in tqdm(pairs, desc="clips", unit="clip"):
        clip = paste_clip(root, background, source, frames)
        flows = [consistent_flow(a, b) for a, b in zip(clip.truth, clip.truth[1:])]
        truth_floor[clip.name] = warp_error(clip.truth, flows, clip.holes)
        outputs = {}
        for name in removers:
            started = time.perf_counter()
            outputs[name] = REMOVERS[name](clip)
            per_remover[name][clip.name] = score_clip(clip, outputs[name], flows, time.perf_counter() - started)
        if stills is not None:
            save_still(stills / f"{clip.name}.jpg", clip, outputs, len(clip.truth) // 2)
    return {"frames_per_clip": frames, "pairs": pairs,
            "truth_warp_error": float(np.mean(list(truth_floor.values()))),
            "removers": {name: {"overall": overall(clips), "clips": clips} for name, clips in per_remover.items()}}


def print_table(report: dict) -> None:
    """One line per remover."""
    print(f"{'remover':<12} {'PSNR hole':>9} {'PSNR frame':>10} {'SSIM hole':>9} {'SSIM frame':>10} "
          f"{'warp err':>8} {'s/frame':>7}")
    for name, result in report["removers"].items():
        o = result["overall"]
        print(f"{name:<12} {o['psnr_hole']:>9.2f} {o['psnr_frame']:>10.2f} {o['ssim_hole']:>9.4f} "
              f"{o['ssim_frame']:>10.4f} {o['warp_error']:>8.3f} {o['seconds_per_frame']:>7.3f}")
    print(f"{'truth':<12} {'':>9} {'':>10} {'':>9} {'':>10} {report['truth_warp_error']:>8.3f}")


def main(argv: list[str] | None = None) -> int:
    """Score every remover on the pasted clips, print the table (and write the report and stills); bad input ends
    in one line through `run_tool`."""
    parser = ToolParser(prog="python -m core.evaluation.removal", description=tool_description(__doc__))
    parser.add_argument("root", type=Path, help="DAVIS folder with JPEGImages/480p and Annotations/480p")
    parser.add_argument("--backgrounds", type=sequence_list, default=",".join(BACKGROUNDS),
                        help="comma-separated sequences")
    parser.add_argument("--objects", type=sequence_list, default=",".join(OBJECTS),
                        help="comma-separated sequences whose objects are pasted, one per background")
    parser.add_argument("--frames", type=whole_number(1), default=40, help="frames per clip (from the start)")
    parser.add_argument("--removers", default=",".join(REMOVERS), help=f"comma-separated: {', '.join(REMOVERS)}")
    parser.add_argument("--out", type=output_folder, help="write removal.json and one still per clip into this folder")
    args = parser.parse_args(argv)
    backgrounds, objects = args.backgrounds, args.objects
    removers = args.removers.split(",")
    if len(objects) < len(backgrounds):
        parser.error(f"--objects names {len(objects)} sequences for {len(backgrounds)} backgrounds; name one each")
    if set(removers) - set(REMOVERS):
        parser.error(f"--removers {args.removers}: choose from {', '.join(REMOVERS)}")
    for sequence in [*backgrounds, *objects]:  # every sequence checked before the long work starts
        sequence_files(args.root, sequence)
    report = evaluate(args.root, list(zip(backgrounds, objects)), args.frames, removers,
                      args.out / "stills" if args.out else None)
    print_table(report)
    if args.out:
        write_json(args.out / "removal.json", report)
        print(args.out / "removal.json")
    return 0


if __name__ == "__main__":
    run_tool(main)
