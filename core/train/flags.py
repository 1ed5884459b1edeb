"""The argparse types the training commands share beyond core.io.command's: the crop side, the seed and the device,
each refused as its flag is parsed (argparse's usage error, status 2) instead of failing inside the first step."""

from __future__ import annotations

import argparse

from core.inference.tracker import resolve_device
from core.inference.settings import device_setting
from core.io.command import bounded

MIN_CROP = 32  # the networks' sides are multiples of 16; a 16-pixel crop leaves a batch norm one value per channel


def crop_side(text: str) -> int:
    """An argparse type: a square crop's side, a multiple of 16 of at least MIN_CROP."""
    side = int(bounded(MIN_CROP, whole=True)(text))
    if side % 16:
        raise argparse.ArgumentTypeError(f"{text!r}: give a multiple of 16 (the networks' stride), e.g. "
                                         f"{max(MIN_CROP, side // 16 * 16)} or {side // 16 * 16 + 16}")
    return side


def seed_number(text: str) -> int:
    """An argparse type: a random seed, 0 to 2**32 - 1 (NumPy's seeds)."""
    seed = int(bounded(0, whole=True)(text))
    if seed >= 2**32:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from 0 to {2**32 - 1}")
    return seed


def training_device(text: str) -> str:
    """An argparse type: "auto", "cpu", "cuda" or "cuda:N", refused when this machine has no CUDA
    (`device_setting`) or torch knows no such device; returns the device's name ("auto" resolved)."""
    try:
        return str(resolve_device(device_setting(text)))
    except RuntimeError:  # a name torch does not know ("gpu")
        raise argparse.ArgumentTypeError(f"{text!r}: give auto, cpu or cuda") from None
