"""One still per effect (JPEG, PNG for the RGBA cut-out) for a frame of a sample and its mask: the pictures in
docs/effects."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from core.effects.compositing import blur_background, cutout, mask_image, overlay, replace_background
from core.effects.removal import ObjectRemover
from core.io.command import BadInput
from core.io.images import load_image
from core.io.masks import read_mask


def render_stills(out_dir: Path, sample: Path, frame: str = "00000") -> list[Path]:
    """Write one still per effect (JPEG, PNG for the RGBA cut-out) for `sample/<frame>.jpg` and its mask;
    BadInput (MaskError for the mask) naming the file when either cannot be read."""
    frame_path = sample / f"{frame}.jpg"
    bgr = load_image(frame_path)
    if bgr is None:
        raise BadInput(f"{frame_path}: no readable frame; pass --sample a folder with FRAME.jpg and "
                        "masks/FRAME.png (like samples/judo), or --frame another name")
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    labels = read_mask(sample / "masks" / f"{frame}.png", image.shape[:2])
    stills = {
        "overlay": overlay(image, labels),
        "mask": mask_image(labels),
        "cutout": cutout(image, labels),
        "blur": blur_background(image, labels),
        "replace": replace_background(image, labels, (0, 177, 64)),
        "remove": ObjectRemover()(image, labels),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, still in stills.items():
        if still.shape[2] == 4:
            path = out_dir / f"{name}.png"
            _write_image(path, cv2.cvtColor(still, cv2.COLOR_RGBA2BGRA), [])
        else:
            path = out_dir / f"{name}.jpg"
            _write_image(path, cv2.cvtColor(still, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        written.append(path)
    return written


def _write_image(path: Path, image: np.ndarray, params: list[int]) -> None:
    """Encode a BGR(A) image by `path`'s suffix and write it atomically (a temporary name, then a rename); an
    OSError when it cannot be written (cv2.imwrite only returns False)."""
    encoded = cv2.imencode(path.suffix, image, params)[1]
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(encoded.tobytes())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
