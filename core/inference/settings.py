"""The tracker's settings (`TrackerConfig`) and the command-line flags that set them, without importing PyTorch: a
tool that only parses them (the OBS plugin's --list, --annotate, --restore) starts in a second, not in seven.
`core.inference.tracker` imports these names too."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

from core.io.command import bounded, whole_number

DEFAULT_SIZE = 240  # the short side the shipped weights were trained at


@dataclass(frozen=True)
class TrackerConfig:
    """How the tracker runs: weights, device, CPU threads, memory kind, inference size (hashable, so worker
    processes can cache one tracker per configuration)."""

    weights: str | None = None         # None = the shipped default (core/weights)
    device: str = "auto"               # "cpu", "cuda" or "auto" (CUDA when present)
    threads: int | None = None         # torch intra-op threads on the CPU
    memory: str = "first_previous"     # or "infinite" (every `every`-th frame kept)
    every: int = 5
    size: int | None = None            # inference short side in pixels; None = DEFAULT_SIZE (never upscaled)
    backend: str = "torch"             # "torch", "onnx", "onnx-int8" (ONNX Runtime on the CPU) or "auto"
                                       # (resolve_backend)
    adapt_steps: int = 0               # first-frame online adaptation steps (torch backend; core.inference.adapt)
    box_prior: float | None = 0.5      # each object's box on the previous frame (`expected_box`), grown by this
                                       # fraction of its side on every edge, bounds where it is expected; None: off
    near_parts: bool = True            # each object keeps only the parts of its mask within NEAR_CELLS of where
                                       # it was on the previous frame (`far_parts`); False: every part


BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
PRIOR_PENALTY = 5.0  # logits subtracted outside an object's expected box (TrackerConfig.box_prior)
FAR_LOGIT = -20.0    # an object's logits on the parts of its mask far from where it was (TrackerConfig.near_parts)
NEAR_CELLS = 8       # a part within this many decoder cells of where the object was is near


def add_tracker_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, size_flag: str = "--size",
                          backend: str = "torch", adapt: bool = True, threads_help: str | None = None) -> None:
    """Declare the tracker's options (read back by `tracker_config`) on a parser or an argument group:
    --weights, --device, --threads, the inference short side as `size_flag`, --backend, and --adapt-steps."""
    parser.add_argument("--weights", type=tracker_weights, metavar="PATH",
                        help="tracker checkpoint (default: the shipped weights)")
    parser.add_argument("--device", type=device_setting, choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto (default: CUDA when present), cpu or cuda")
    parser.add_argument("--threads", type=whole_number(1), metavar="N",
                        help=threads_help or "CPU threads for the tracker (default: the available cores)")
    parser.add_argument(size_flag, dest="tracker_size", type=whole_number(16), metavar="PIXELS",
                        help=f"inference short side (default {DEFAULT_SIZE}, the training scale; never upscaled: a "
                             "frame smaller than that is tracked at its own size); masks come back at full size")
    parser.add_argument("--backend", choices=BACKENDS, default=backend,
                        help=f"default {backend}. onnx: ONNX Runtime on the CPU (same masks as torch, about 2x "
                             "faster there); onnx-int8: its int8 quantisation; torch: also runs on CUDA; auto: onnx "
                             "on the CPU, torch on CUDA or with --adapt-steps")
    parser.add_argument("--box-prior", type=box_prior_setting, default=TrackerConfig.box_prior, metavar="G|off",
                        help=f"lower each object's logits by {PRIOR_PENALTY:g} outside its previous box, stretched as "
                             "far again as it moved and grown by G times its side on every edge (default "
                             "%(default)s; off: no prior)")
    parser.add_argument("--parts", choices=("near", "all"), default="near",
                        help=f"near (default): each object keeps only the parts of its mask within {NEAR_CELLS} cells "
                             "of the network's stride-4 grid of where it was on the previous frame (look-alikes "
                             "elsewhere are dropped); all: every part")
    if adapt:
        parser.add_argument("--adapt-steps", type=whole_number(0), default=0, metavar="N",
                            help="first-frame online adaptation steps (default 0: off; see docs/RESULTS.md)")


def tracker_config(args: argparse.Namespace, **overrides) -> TrackerConfig:
    """The `TrackerConfig` of options declared by `add_tracker_arguments`, with `overrides` applied."""
    config = TrackerConfig(weights=args.weights, device=args.device, threads=args.threads, size=args.tracker_size,
                           backend=args.backend, adapt_steps=getattr(args, "adapt_steps", 0),
                           box_prior=args.box_prior, near_parts=getattr(args, "parts", "near") == "near")
    return replace(config, **overrides)


def tracker_weights(text: str) -> str:
    """--weights's value: a tracker checkpoint that loads, read and verified as the flags are parsed (a missing or
    corrupt file is argparse's usage error naming it and the fix, before any work)."""
    from core.weights import WeightsError, load_checkpoint  # PyTorch: only when the flag is given

    try:
        load_checkpoint(text)
    except WeightsError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def device_setting(text: str) -> str:
    """--device's value, refused at once when it names a CUDA device this machine lacks (`cuda_shortfall`)."""
    if text.partition(":")[0] != "cuda":
        return text
    from core.inference.tracker import cuda_shortfall  # PyTorch: only for a CUDA device

    shortfall = cuda_shortfall(text)
    if shortfall:
        raise argparse.ArgumentTypeError(shortfall)
    return text


def box_prior_setting(text: str) -> float | None:
    """--box-prior's value: a growth fraction ≥ 0, or "off"."""
    if text == "off":
        return None
    try:
        return bounded(0)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a fraction of 0 or more (0.5: half the box's side), "
                                         "or off") from None


