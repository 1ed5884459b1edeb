"""Marks → mask with the annotation network: `predict` runs `ClickNet` once on a frame of any size, and
`ClickSegmenter` replays an object's clicks and box in order, each step refining the previous mask (cached, so
a new click costs one network run).

The frame is resized so its short side is the network's `size` and padded to a multiple of 16; the mask comes
back at full size. `build_segmenter` runs the network through ONNX Runtime when it is installed. With a box
and no positive click outside it, nothing outside the box is taken.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Protocol

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from core.annotate.clicks import Box, Click, guidance_maps
from core.annotate.marks import Mark
from core.annotate.network import AnnotatorConfig, load_annotator

GUIDING_KINDS = ("positive", "negative", "box")
BACKENDS = ("auto", "onnx", "torch")
MAX_ASPECT = 2.5      # the network's input is at most this many times its size on the long side


class Network(Protocol):
    """`ClickNet` or its ONNX Runtime twin: (image, guidance) → logits, with the network's config."""

    config: AnnotatorConfig

    def __call__(self, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor: ...


def predict(network: Network, image: np.ndarray, clicks: tuple[Click, ...], box: Box | None,
            previous: np.ndarray | None) -> np.ndarray:
    """Object probability (H, W) float32 for `image` (H, W, 3) uint8 RGB, clicks and box in its pixels, and the
    previous mask (H, W) bool or None. The image is resized so its short side is the network's size (its long
    side at most MAX_ASPECT times that), padded to a multiple of 16; the probabilities are resized back."""
    height, width = image.shape[:2]
    size = network.config.size
    scale = min(size / min(height, width), MAX_ASPECT * size / max(height, width))
    h, w = max(16, round(height * scale)), max(16, round(width * scale))
    sy, sx = h / height, w / width
    small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    scaled_clicks = [Click(min(w - 1, int(c.x * sx)), min(h - 1, int(c.y * sy)), c.positive) for c in clicks]
    scaled_box = None if box is None else (int(box[0] * sx), int(box[1] * sy), min(w - 1, int(box[2] * sx)),
                                           min(h - 1, int(box[3] * sy)))
    scaled_previous = None if previous is None else cv2.resize(
        previous.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    guidance = guidance_maps((h, w), scaled_clicks, scaled_box, scaled_previous, network.config.click_radius)
    pad_h, pad_w = -h % 16, -w % 16
    pixels = torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        logits = network(F.pad(pixels, (0, pad_w, 0, pad_h), mode="replicate"),
                         F.pad(torch.from_numpy(guidance)[None], (0, pad_w, 0, pad_h)))[0, 0, :h, :w]
    probabilities = torch.sigmoid(logits).numpy()
    return cv2.resize(probabilities, (width, height), interpolation=cv2.INTER_LINEAR)


def inside_box(mask: np.ndarray, box: Box, clicks: tuple[Click, ...]) -> np.ndarray:
    """`mask` (H, W) bool cut to `box`, unless a positive click lies outside the box (the user wants more)."""
    x0, y0, x1, y1 = box
    if any(c.positive and not (x0 <= c.x <= x1 and y0 <= c.y <= y1) for c in clicks):
        return mask
    cut = np.zeros_like(mask)
    cut[y0 : y1 + 1, x0 : x1 + 1] = mask[y0 : y1 + 1, x0 : x1 + 1]
    return cut


def clicks_and_box(marks: tuple[Mark, ...]) -> tuple[tuple[Click, ...], Box | None]:
    """The point marks as clicks and the last box mark (or None)."""
    clicks = tuple(Click(m.x, m.y, m.kind == "positive") for m in marks if m.kind in ("positive", "negative"))
    boxes = [(m.x, m.y, m.x2, m.y2) for m in marks if m.kind == "box"]
    return clicks, boxes[-1] if boxes else None


class ClickSegmenter:
    """One object's clicks and box → mask, replayed in order; results cached per (frame, marks so far)."""

    def __init__(self, network: Network, cache_size: int = 64):
        self.network = network
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def mask(self, image: np.ndarray, marks: tuple[Mark, ...]) -> np.ndarray:
        """(H, W) bool mask of one object's guiding marks (points and boxes; other kinds are ignored)."""
        guiding = tuple(m for m in marks if m.kind in GUIDING_KINDS)
        digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).hexdigest()
        previous = np.zeros(image.shape[:2], dtype=bool)
        for end in range(1, len(guiding) + 1):
            previous = self._step(image, (digest, image.shape, guiding[:end]), previous)
        return previous

    def _step(self, image: np.ndarray, key: tuple, previous: np.ndarray) -> np.ndarray:
        """The mask after the last mark of `key`'s marks, refining `previous` (cached)."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        clicks, box = clicks_and_box(key[2])
        if box is None and not any(c.positive for c in clicks):
            mask = np.zeros(image.shape[:2], dtype=bool)
        else:
            mask = predict(self.network, image, clicks, box, previous if previous.any() else None) > 0.5
            if box is not None:
                mask = inside_box(mask, box, clicks)
        with self._lock:
            self._cache[key] = mask
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return mask


def build_segmenter(path: str | os.PathLike | None = None, backend: str = "auto",
                    threads: int | None = None) -> ClickSegmenter:
    """A segmenter for the annotator checkpoint at `path` (None: the shipped one). `backend`: "onnx" (ONNX
    Runtime), "torch", or "auto" (ONNX Runtime when installed); `threads`: ONNX Runtime's intra-op threads."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown annotator backend {backend!r}; use one of {', '.join(BACKENDS)}")
    network = load_annotator(path)
    if backend == "torch":
        return ClickSegmenter(network)
    try:
        from core.annotate.onnx_runtime import OnnxClickNet  # onnxruntime is an optional extra
    except ImportError:
        if backend == "onnx":
            raise
        return ClickSegmenter(network)
    return ClickSegmenter(OnnxClickNet(network, threads))


@lru_cache(maxsize=1)
def default_segmenter() -> ClickSegmenter:
    """The shipped annotator, loaded on first use (ONNX Runtime when installed)."""
    return build_segmenter()
