"""`python -m core.train --preset NAME` — train a teacher or a student (resumable; see core/train/config.py).

Bad input (a flag out of range, data not in the DAVIS layout, a frame or mask it cannot use) ends it in one line,
status 2; Ctrl-C saves the state of the last whole step and ends it, status 130: the same command resumes."""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from core.inference.settings import tracker_weights
from core.io.command import ToolParser, bounded, output_folder, run_tool, tool_description, whole_number
from core.train.config import preset, presets
from core.train.flags import crop_side, seed_number, training_device
from core.train.loop import train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ToolParser(prog="python -m core.train", description=tool_description(__doc__))
    parser.add_argument("--preset", required=True, metavar="NAME",
                        help=f"the configuration to train: {', '.join(sorted(presets()))}")
    parser.add_argument("--out", required=True, type=output_folder, help="run folder (resumes when it holds state.pt)")
    parser.add_argument("--data", help="DAVIS root for training clips (default ../shared/data/davis2016-train)")
    parser.add_argument("--val-root", help="DAVIS root holding the validation sequences (default: --data)")
    parser.add_argument("--no-val", action="store_true", help="skip validation (checkpoints still saved)")
    parser.add_argument("--all-sequences", action="store_true",
                        help="train on every sequence, the validation split too (the shipped model, once the recipe "
                             "is chosen on the split); implies --no-val")
    parser.add_argument("--steps", type=whole_number(1), help="training steps (default: the preset's)")
    parser.add_argument("--seconds", type=bounded(1), help="wall-clock budget for the run")
    parser.add_argument("--batch", type=whole_number(1), help="clips per step (default: the preset's)")
    parser.add_argument("--lr", type=bounded(0), help="peak learning rate (default: the preset's)")
    parser.add_argument("--crop", type=crop_side, help="side of the square training crops (a multiple of 16)")
    parser.add_argument("--val-every", type=whole_number(1), help="steps between validations (default: the preset's)")
    parser.add_argument("--init", type=tracker_weights, help="checkpoint to start from")
    parser.add_argument("--no-imagenet", action="store_true", help="MobileNetV2 trunk from scratch, not ImageNet")
    parser.add_argument("--teacher", type=tracker_weights, help="teacher checkpoint for distillation")
    parser.add_argument("--device", default="auto", type=training_device,
                        help="auto (default: CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=whole_number(1), help="CPU threads")
    parser.add_argument("--seed", type=seed_number, help="random seed of the samples and the initial weights")
    parser.add_argument("--freeze-bn", action="store_true",
                        help="batch norms normalise with their running statistics and keep them (small batches)")
    parser.add_argument("--bf16", action="store_true",
                        help="forward passes in bfloat16 on the CPU too (faster on CPUs with AMX; always on CUDA)")
    args = parser.parse_args(argv)
    if args.val_root and (args.no_val or args.all_sequences):
        parser.error(f"--val-root: nothing is validated with {'--no-val' if args.no_val else '--all-sequences'}; "
                     "give one of them")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = preset(args.preset)
    overrides = {k: getattr(args, k) for k in ("steps", "seconds", "batch", "lr", "init", "teacher", "seed")
                 if getattr(args, k) is not None}
    if args.val_every is not None:
        overrides["val_every"] = args.val_every
    if args.no_imagenet:
        overrides["imagenet"] = False
    if args.all_sequences:
        overrides["hold_out"] = False
    if args.freeze_bn:
        overrides["freeze_bn"] = True
    if args.bf16:
        overrides["bf16"] = True
    data = config.data
    if args.data:
        data = replace(data, root=args.data)
    if args.crop is not None:
        data = replace(data, crop=args.crop)
    config = replace(config, data=data, **overrides)
    if args.threads:
        torch.set_num_threads(args.threads)
    val_root = None if args.no_val or not config.hold_out else (args.val_root or data.root)
    best = train(config, args.out, torch.device(args.device), val_root)
    print(f"best checkpoint: {best}")


if __name__ == "__main__":
    run_tool(main)
