"""`python -m core.bench` — latency, FPS and peak memory of the tracker against video length.

Owns the synthetic benchmark clip (a textured object moving over a textured background, each frame made when
it is needed) and the measurement: for each memory variant — the shipped student ("first_previous", constant
memory) and the same network with an infinite memory — and each length, one fresh subprocess tracks the clip
from its first-frame mask and reports the median milliseconds per frame (after 3 warm-up frames), FPS and its
own peak resident memory, so the numbers of one run never include another's. Each result also splits the
mean step into the network's calls (key encoder, value encoder, memory read + decoder, aggregation, upsampling)
and the tracker's glue (resizing, normalisation, full-size labels).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from core.io.command import BAD_INPUT, BadInput, ToolParser, output_file, tool_description
from core.evaluation.davis import write_json
from core.inference.tracker import Tracker
from core.inference.settings import TrackerConfig, add_tracker_arguments

VARIANTS = {"student": "first_previous", "infinite": "infinite"}  # variant name → TrackerConfig.memory
WARMUP_FRAMES = 3


class BenchError(BadInput, RuntimeError):
    """A benchmark run that failed; the message is one line saying which run and what to do."""


class SyntheticClip:
    """A textured ellipse moving along a Lissajous path over a textured background, frame by frame."""

    def __init__(self, height: int, width: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.height, self.width = height, width
        self.background = _texture(rng, height, width, tint=(0.6, 0.9, 0.7))  # (H, W, 3)
        self.side = max(8, min(height, width) // 4)
        stripes = (np.arange(self.side)[:, None] + np.arange(self.side)[None, :]) // 4 % 2  # (S, S)
        self.object = _texture(rng, self.side, self.side, tint=(1.0, 0.5, 0.3))  # (S, S, 3)
        self.object[stripes == 1] //= 2
        shape = np.zeros((self.side, self.side), np.uint8)
        half = self.side // 2
        cv2.ellipse(shape, (half, half), (half - 1, max(1, half * 3 // 4)), 30.0, 0, 360, 1, -1)
        self.shape = shape.astype(bool)  # (S, S)

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame `index` as an `(H, W, 3)` uint8 RGB image and its `(H, W)` uint8 labels (object id 1)."""
        top = round((self.height - self.side) * (0.5 + 0.4 * math.sin(2 * math.pi * index / 97)))
        left = round((self.width - self.side) * (0.5 + 0.45 * math.sin(2 * math.pi * index / 61)))
        image = self.background.copy()
        labels = np.zeros((self.height, self.width), np.uint8)
        window = (slice(top, top + self.side), slice(left, left + self.side))
        image[window][self.shape] = self.object[self.shape]
        labels[window][self.shape] = 1
        return image, labels


PARTS = ("encode_key", "encode_value", "segment", "aggregate", "upsample")  # the network's calls in a step


def instrument(network: object, seconds: dict[str, float], names: Sequence[str] = PARTS,
               clock: Callable[[], float] = time.perf_counter) -> None:
    """Wrap the methods `names` of `network` (the inference methods by default; on this instance only) so each
    call adds its duration on `clock` to `seconds[name]`."""
    for name in names:
        def timed(*args, _method=getattr(network, name), _name=name, **kwargs):
            start = clock()
            result = _method(*args, **kwargs)
            seconds[_name] = seconds.get(_name, 0.0) + clock() - start
            return result
        setattr(network, name, timed)


def measure(variant: str, frames: int, hw: tuple[int, int], weights: str | None, device: str,
            threads: int | None, backend: str = "torch", infer_size: int | None = None,
            box_prior: float | None = TrackerConfig.box_prior, near_parts: bool = TrackerConfig.near_parts) -> dict:
    """Track `frames` synthetic frames in this process; median ms per frame, FPS, this process's peak RSS, and
    the mean ms per frame of each network call after the warm-up (`parts_ms`; the rest is the tracker's glue)."""
    if frames <= WARMUP_FRAMES:
        raise BenchError(f"--frames {frames}: need more than {WARMUP_FRAMES} frames (the warm-up frames)")
    config = TrackerConfig(weights=weights, device=device, threads=threads, memory=VARIANTS[variant],
                           backend=backend, size=infer_size, box_prior=box_prior, near_parts=near_parts)
    tracker = Tracker(config)
    clip = SyntheticClip(*hw)
    seconds, parts = [], {}
    for index in tqdm(range(frames), desc=f"{variant} {frames}", unit="frame", file=sys.stderr):
        if index == WARMUP_FRAMES:
            instrument(tracker.network, parts)
        image, labels = clip.frame(index)
        start = time.perf_counter()
        tracker.step(image, labels if index == 0 else None)
        seconds.append(time.perf_counter() - start)
    timed = seconds[WARMUP_FRAMES:]
    ms = 1000 * statistics.median(timed)
    parts_ms = {name: 1000 * total / len(timed) for name, total in parts.items()}
    parts_ms["glue"] = 1000 * sum(timed) / len(timed) - sum(parts_ms.values())
    result = {"ms_per_frame": ms, "fps": 1000 / ms, "peak_rss_mb": _peak_rss_mb(), "frames": frames,
              "device": str(tracker.device), "backend": tracker.backend, "box_prior": config.box_prior,
              "near_parts": config.near_parts, "parts_ms": parts_ms}
    if tracker.device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def run_in_subprocess(variant: str, frames: int, args: argparse.Namespace) -> dict:
    """`measure` in a fresh Python process (its progress bar and any one-line error show on stderr); its JSON
    result. A worker that ended with its own one-line error (status 2) ends this command with that status and
    nothing more said; any other failure is a BenchError."""
    command = [sys.executable, "-m", "core.bench", "--worker", variant, "--frames", str(frames),
               "--size", f"{args.size[0]}x{args.size[1]}", "--device", args.device,
               "--backend", args.backend, "--parts", args.parts,
               "--box-prior", "off" if args.box_prior is None else str(args.box_prior)]
    if args.weights:
        command += ["--weights", args.weights]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.tracker_size:
        command += ["--infer-size", str(args.tracker_size)]
    repo = Path(__file__).resolve().parents[2]
    # A session of its own: Ctrl-C reaches this process alone, which ends the worker and says so once.
    process = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=repo, start_new_session=True)
    if process.returncode == BAD_INPUT:  # the worker has said why in one line: end as it did
        raise SystemExit(process.returncode)
    if process.returncode != 0:
        raise BenchError(f"{variant} × {frames} frames failed (exit {process.returncode}); see its error above")
    return json.loads(process.stdout.strip().splitlines()[-1])


def run_and_report(variant: str, frames: int, args: argparse.Namespace) -> dict:
    """`run_in_subprocess`, then one line on stderr so a long benchmark shows each result as it comes."""
    result = run_in_subprocess(variant, frames, args)
    parts = ", ".join(f"{name} {ms:.1f}" for name, ms in result["parts_ms"].items())
    print(f"{variant} × {frames} frames: {result['ms_per_frame']:.1f} ms/frame, {result['fps']:.2f} FPS, "
          f"peak {result['peak_rss_mb']:.0f} MB; mean ms per frame: {parts}", file=sys.stderr, flush=True)
    return result


def format_table(results: dict[str, dict[str, dict]], lengths: list[int]) -> str:
    """Lengths as rows, variants side by side: ms per frame, FPS, peak RSS in MB."""
    variants = list(results)
    header = f"{'frames':>6}" + "".join(f" | {v + ' ms/frame':>18} {'FPS':>6} {'peak MB':>8}" for v in variants)
    lines = [header, "-" * len(header)]
    for length in lengths:
        row = f"{length:>6}"
        for variant in variants:
            r = results[variant][str(length)]
            row += f" | {r['ms_per_frame']:>18.1f} {r['fps']:>6.2f} {r['peak_rss_mb']:>8.0f}"
        lines.append(row)
    return "\n".join(lines)


def parse_size(text: str) -> tuple[int, int]:
    """"480x854" → (480, 854): height × width."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r}: write HEIGHTxWIDTH, e.g. 480x854") from None
    if height < 16 or width < 16:
        raise argparse.ArgumentTypeError(f"--size {text!r}: both sides must be at least 16 pixels")
    return height, width


def parse_lengths(text: str) -> list[int]:
    """"50,500" → [50, 500]."""
    try:
        lengths = [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--frames {text!r}: write comma-separated counts, e.g. 50,500") from None
    if not lengths or min(lengths) <= WARMUP_FRAMES:
        raise argparse.ArgumentTypeError(f"--frames {text!r}: each length must exceed {WARMUP_FRAMES} frames")
    return lengths


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ToolParser(prog="python -m core.bench", description=tool_description(__doc__))
    parser.add_argument("--size", type=parse_size, default=(480, 854), help="HEIGHTxWIDTH (default 480x854)")
    parser.add_argument("--frames", type=parse_lengths, default=[50, 500], help="lengths (default 50,500)")
    parser.add_argument("--variants", default="student,infinite", help="student and/or infinite")
    parser.add_argument("--json", type=output_file, help="also write the numbers to this JSON file")
    add_tracker_arguments(parser, size_flag="--infer-size", adapt=False)
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every variant and length in its own worker (or, as `--worker`, measure one) and print the table; bad
    input, here or in a worker, ends in one line with status 2 through `run_tool`."""
    args = parse_args(argv)
    if args.worker:
        [frames] = args.frames
        print(json.dumps(measure(args.worker, frames, args.size, args.weights, args.device, args.threads,
                                 args.backend, args.tracker_size, args.box_prior, args.parts == "near")))
        return 0
    variants = [v for v in args.variants.split(",") if v]
    if not variants:
        raise BenchError(f"--variants {args.variants!r}: name at least one of {', '.join(VARIANTS)}")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise BenchError(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    results = {v: {str(n): run_and_report(v, n, args) for n in args.frames} for v in variants}
    print(format_table(results, args.frames))
    if args.json:
        setup = {"size": list(args.size), "frames": args.frames, "weights": args.weights, "device": args.device,
                 "threads": args.threads, "backend": args.backend, "infer_size": args.tracker_size,
                 "box_prior": args.box_prior, "parts": args.parts,
                 "warmup_frames": WARMUP_FRAMES, "cpu_count": os.cpu_count(),
                 "machine": platform.platform()}
        write_json(args.json, {**setup, "results": results})
    return 0


def _texture(rng: np.random.Generator, height: int, width: int, tint: tuple[float, float, float]) -> np.ndarray:
    """`(H, W, 3)` uint8: smooth random blobs plus fine grain, tinted per channel."""
    coarse = rng.uniform(0, 255, (max(2, height // 16), max(2, width // 16), 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)  # (H, W, 3)
    grain = rng.normal(0, 18, (height, width, 3)).astype(np.float32)
    return np.clip((smooth + grain) * np.asarray(tint, np.float32), 0, 255).astype(np.uint8)


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MiB (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
