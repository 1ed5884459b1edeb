"""Image files read with OpenCV, quietly: a file that is missing or cannot be decoded gives None, for the caller's
own one-line error naming it and the fix, without OpenCV's warning printed on the line before."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np


def load_image(path: str | os.PathLike, flag: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """`cv2.imread(path, flag)` (BGR), or None when `path` is no file (OpenCV would warn of it) or OpenCV cannot
    decode it."""
    if not Path(path).is_file():
        return None
    return cv2.imread(str(path), flag)
