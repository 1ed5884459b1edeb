"""Marks → mask with the annotation network: `predict` runs `ClickNet` once on a frame of any size, and
`ClickSegmenter` replays an object's clicks and box in order, each step refining the previous mask (cached, so
a new click costs one network run).

A step zooms: with a box, or once there is a mask, the network sees a square around it (the box or the mask and the
positive clicks spanning FOCUS of its side) resized to its `size`, as it saw objects in training; a first click
without a box is answered on the whole frame (resized so its short side is the network's `size`, padded to a
multiple of 16) and then once more zoomed on that answer; when that whole-frame answer is a speck (a click where two
look-alikes touch), the click is asked again in a square around it (`second_view`) first. After each click the
network also looks closely around that click (`close_look`: a square half the side of the object's view, at twice
its scale) and that answer replaces the mask in the square, away from its edges. Each run is averaged with a run on
the mirror image (`mirror_averaged`). A negative click inside the last mask clears a disk around it in the mask the
network is given (`cleared_around`), so that it redraws that part instead of copying it. After clicks without a box,
only the connected parts of the mask that a positive click touches are kept (`clicked_parts`: a click marks one
object); a box alone has GrabCut finish the answer (`polish_box_answer`). The mask comes back at full size.
`build_segmenter` runs the network through ONNX Runtime when it is installed. With a box and no positive click
outside it, nothing outside the box is taken. The network only ever saw clicks well inside objects: when a positive
click on the frame's edge gets almost nothing (an object in a corner clicked at the corner pixel gave a few pixels),
the marks are answered again on the frame mirrored out on every side (`edge_clicked`), where the object goes on past
the edge and the click is inside it.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import OrderedDict
from dataclasses import replace
from functools import lru_cache
from typing import Protocol

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from core.annotate.clicks import Box, Click, guidance_maps, tight_box, touched_parts
from core.annotate.grabcut import polish_box_answer
from core.annotate.marks import Mark
from core.annotate.network import AnnotatorConfig, load_annotator

GUIDING_KINDS = ("positive", "negative", "box")
FOCUS = 0.6           # a zoomed view is a square whose side the box (or previous mask) spans this fraction of
MIN_FOCUS_SIDE = 48   # frame pixels: the smallest zoomed view
BACKENDS = ("auto", "onnx", "torch")
BACKEND_HELP = "the annotation network's runtime (default auto: ONNX Runtime when installed, as core.annotate uses it)"
CLICK_REACH = 5       # pixels: a part of the mask this close to a positive click is the clicked object's
MAX_ASPECT = 2.5      # the network's input is at most this many times its size on the long side
CLOSE_SHARE = 0.5     # a click's close look: a square this share of the object's zoomed view, around the click
CLOSE_MIN_SIDE = 64   # frame pixels: the smallest close look
CLOSE_MARGIN = 0.1    # share of the close look's side, on each edge, where the wider answer is kept
EDGE_MIRROR = 0.75    # share of the frame's short side mirrored out on every side for a click on its edge
SMALL_ANSWER = 0.05   # a first click's whole-frame answer under (this share of the short side)² pixels is asked again
SECOND_VIEW = 0.6     # that second ask: a square this share of the frame's short side, centred on the click
CLEAR_SHARE = 0.5     # a negative click inside the last mask: a disk of this share of its √area cleared around it
Window = tuple[int, int, int]  # x0, y0, side: a square of the frame, in its pixels (it may reach outside)


class Network(Protocol):
    """`ClickNet` or its ONNX Runtime twin: (image, guidance) → logits, with the network's config."""

    config: AnnotatorConfig

    def __call__(self, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor: ...


def predict(network: Network, image: np.ndarray, clicks: tuple[Click, ...], box: Box | None,
            previous: np.ndarray | None, window: Window | None = None) -> np.ndarray:
    """Object probability (H, W) float32 for `image` (H, W, 3) uint8 RGB, clicks and box in its pixels, and the
    previous mask (H, W) bool or None. Without a `window` the whole image is resized so its short side is the
    network's size (its long side at most MAX_ASPECT times that), padded to a multiple of 16; with one, that
    square of the image (zero outside it) is resized to the network's size, and the probability is 0 outside it.
    The probabilities come back at full size."""
    values, (top, left) = predict_region(network, image, clicks, box, previous, window)
    if values.shape == image.shape[:2]:
        return values
    out = np.zeros(image.shape[:2], np.float32)
    out[top : top + values.shape[0], left : left + values.shape[1]] = values
    return out


def predict_region(network: Network, image: np.ndarray, clicks: tuple[Click, ...], box: Box | None,
                   previous: np.ndarray | None, window: Window | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """`predict` over the part of the frame the network saw (the whole frame, or `window`'s square cut to the
    frame), and that part's top-left corner (y, x): the probability is 0 elsewhere, so a caller that works on
    that part alone saves the full-size arrays."""
    height, width = image.shape[:2]
    if window is None:
        scale = whole_frame_scale((height, width), network.config.size)
        h, w = max(16, round(height * scale)), max(16, round(width * scale))
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        origin, sy, sx = (0, 0), h / height, w / width
    else:
        small = _crop(image, window, network.config.size)
        h = w = network.config.size
        origin, sy, sx = window[:2], h / window[2], w / window[2]
    scaled_clicks = [Click(int((c.x - origin[0]) * sx), int((c.y - origin[1]) * sy), c.positive) for c in clicks]
    scaled_clicks = [c for c in scaled_clicks if 0 <= c.x < w and 0 <= c.y < h]
    scaled_box = None if box is None else (
        max(0, int((box[0] - origin[0]) * sx)), max(0, int((box[1] - origin[1]) * sy)),
        min(w - 1, int((box[2] - origin[0]) * sx)), min(h - 1, int((box[3] - origin[1]) * sy)))
    scaled_previous = None
    if previous is not None:
        scaled_previous = (cv2.resize(previous.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
                           if window is None else _crop(previous, window, h))
    guidance = guidance_maps((h, w), scaled_clicks, scaled_box, scaled_previous, network.config.click_radius)
    pad_h, pad_w = -h % 16, -w % 16
    pixels = torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1)[None].float() / 255
    inputs = (F.pad(pixels, (0, pad_w, 0, pad_h), mode="replicate"),
              F.pad(torch.from_numpy(guidance)[None], (0, pad_w, 0, pad_h)))
    probabilities = torch.sigmoid(mirror_averaged(network, *inputs)[0, 0, :h, :w]).numpy()
    if window is None:
        return cv2.resize(probabilities, (width, height), interpolation=cv2.INTER_LINEAR), (0, 0)
    return _uncrop(probabilities, window, (height, width))


def whole_frame_scale(shape: tuple[int, int], size: int) -> float:
    """Network pixels per frame pixel when an (H, W) frame is seen whole: its short side `size`, its long side at
    most MAX_ASPECT times that."""
    height, width = shape
    return min(size / min(height, width), MAX_ASPECT * size / max(height, width))


def edge_clicked(shape: tuple[int, int], clicks: tuple[Click, ...], reach: float) -> bool:
    """Whether a positive click lies within `reach` pixels of the (H, W) frame's edge."""
    height, width = shape
    return any(c.positive and not (reach <= c.x < width - reach and reach <= c.y < height - reach) for c in clicks)


def shifted(mark: Mark, dx: int, dy: int) -> Mark:
    """`mark` moved by (dx, dy) pixels (a box's both corners)."""
    if mark.kind == "box":
        return replace(mark, x=mark.x + dx, y=mark.y + dy, x2=mark.x2 + dx, y2=mark.y2 + dy)
    return replace(mark, x=mark.x + dx, y=mark.y + dy)


def mirror_averaged(network: Network, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
    """The network's logits averaged over the input and its mirror image (left-right), mirrored back: two runs
    per step, steadier masks (docs/RESULTS.md, issue #13)."""
    with torch.inference_mode():
        mirrored = network(image.flip(-1), guidance.flip(-1)).flip(-1)
        return (network(image, guidance) + mirrored) / 2


def focus_window(shape: tuple[int, int], clicks: tuple[Click, ...], box: Box | None,
                 previous: np.ndarray | None) -> Window | None:
    """The square to zoom on for an (H, W) frame: around the box, else the previous mask (H, W) bool, grown to
    take the positive clicks, so that it spans FOCUS of the square's side (at most the frame's long side; beyond
    the frame the square is black, as in training); None (the whole frame) when there is neither."""
    region = box if box is not None else (tight_box(previous) if previous is not None else None)
    if region is None:
        return None
    x0, y0, x1, y1 = region
    for click in clicks:
        if click.positive:
            x0, y0, x1, y1 = min(x0, click.x), min(y0, click.y), max(x1, click.x), max(y1, click.y)
    side = min(max(shape), max(MIN_FOCUS_SIDE, round(max(x1 - x0 + 1, y1 - y0 + 1) / FOCUS)))
    return round((x0 + x1 + 1 - side) / 2), round((y0 + y1 + 1 - side) / 2), side


def _crop(image: np.ndarray, window: Window, size: int) -> np.ndarray:
    """The `window` square of `image` (zero outside the image) resized to (size, size); a bool mask comes back as
    float32 (converted after cutting, so only the window's pixels are)."""
    x0, y0, side = window
    height, width = image.shape[:2]
    region = image[max(0, y0) : max(0, min(height, y0 + side)), max(0, x0) : max(0, min(width, x0 + side))]
    if region.dtype == bool:
        region = region.astype(np.float32)
    region = cv2.copyMakeBorder(region, max(0, -y0), side - region.shape[0] - max(0, -y0), max(0, -x0),
                                side - region.shape[1] - max(0, -x0), cv2.BORDER_CONSTANT, value=0)
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)


def _uncrop(values: np.ndarray, window: Window, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """(size, size) `values` of a `window` square brought back to the square's size and cut to an (H, W) frame:
    the part inside the frame and its top-left corner (y, x)."""
    x0, y0, side = window
    height, width = shape
    square = cv2.resize(values, (side, side), interpolation=cv2.INTER_LINEAR)
    top, left = max(0, y0), max(0, x0)
    bottom, right = min(height, y0 + side), min(width, x0 + side)
    return square[top - y0 : bottom - y0, left - x0 : right - x0], (top, left)


def second_view(shape: tuple[int, int], click: Click) -> Window:
    """The square around a first `click` for its second ask: SECOND_VIEW of the (H, W) frame's short side, centred
    on the click."""
    side = round(SECOND_VIEW * min(shape))
    return round(click.x - side / 2), round(click.y - side / 2), side


def close_window(shape: tuple[int, int], click: Click, mask: np.ndarray) -> Window:
    """The square around `click` for its close look: CLOSE_SHARE of the side of `mask`'s zoomed view (at least
    CLOSE_MIN_SIDE pixels), centred on the click."""
    view = focus_window(shape, (), None, mask)
    side = max(CLOSE_MIN_SIDE, round(CLOSE_SHARE * (view[2] if view is not None else min(shape))))
    return round(click.x - side / 2), round(click.y - side / 2), side


def close_look(network: Network, image: np.ndarray, clicks: tuple[Click, ...], box: Box | None,
               mask: np.ndarray) -> np.ndarray:
    """`mask` (H, W) bool after the network has looked again, at a larger scale, around the last click
    (`close_window`; `mask` is its previous mask): its answer replaces `mask` inside that square but for a margin
    of CLOSE_MARGIN of the side on each edge, where the square's view is cut off (NoC@90 12.1 → 10.1 on the
    validation frames, docs/RESULTS.md)."""
    window = close_window(image.shape[:2], clicks[-1], mask)
    values, (top, left) = predict_region(network, image, clicks, box, mask, window)
    inset = round(window[2] * CLOSE_MARGIN)
    y0, x0 = max(top, window[1] + inset), max(left, window[0] + inset)
    y1 = min(top + values.shape[0], window[1] + window[2] - inset)
    x1 = min(left + values.shape[1], window[0] + window[2] - inset)
    looked = mask.copy()
    if y1 > y0 and x1 > x0:
        looked[y0:y1, x0:x1] = values[y0 - top : y1 - top, x0 - left : x1 - left] > 0.5
    return looked


def cleared_around(previous: np.ndarray, click: Click) -> np.ndarray | None:
    """`previous` (H, W) bool with a disk cleared around `click`, of radius CLEAR_SHARE of the square root of its
    area (at least 3 pixels); None when nothing is left."""
    radius = max(3, round(CLEAR_SHARE * math.sqrt(previous.sum())))
    cleared = previous.astype(np.uint8)
    cv2.circle(cleared, (click.x, click.y), radius, 0, thickness=-1)
    return cleared.astype(bool) if cleared.any() else None


def inside_box(mask: np.ndarray, box: Box, clicks: tuple[Click, ...]) -> np.ndarray:
    """`mask` (H, W) bool cut to `box`, unless a positive click lies outside the box (the user wants more)."""
    x0, y0, x1, y1 = box
    if any(c.positive and not (x0 <= c.x <= x1 and y0 <= c.y <= y1) for c in clicks):
        return mask
    cut = np.zeros_like(mask)
    cut[y0 : y1 + 1, x0 : x1 + 1] = mask[y0 : y1 + 1, x0 : x1 + 1]
    return cut


def clicked_parts(mask: np.ndarray, clicks: tuple[Click, ...]) -> np.ndarray:
    """The connected parts of `mask` (H, W) bool that a positive click touches (within CLICK_REACH pixels): a click
    marks one object, so blobs elsewhere in the frame are dropped; `mask` as it is when no part is touched."""
    return touched_parts(mask, [(c.x, c.y) for c in clicks if c.positive], CLICK_REACH)


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
        """(H, W) bool mask of one object's guiding marks (points and boxes; other kinds are ignored). When a
        positive click lies on the frame's edge (its disk, `click_radius` network pixels in the whole-frame view,
        cut by it) and the mask is smaller than that disk, the marks are answered again on the frame
        mirrored out by EDGE_MIRROR of its short side on every side (24 shapes painted into a corner of DAVIS
        frames, clicked at the corner pixel: mean IoU 1.2 → 50.4 %, 12 better, none worse; the simulated user's
        curve on the 64 validation frames of docs/RESULTS.md is unchanged, as the retry never runs there)."""
        guiding = tuple(m for m in marks if m.kind in GUIDING_KINDS)
        mask = self._replay(image, guiding)
        height, width = image.shape[:2]
        reach = self.network.config.click_radius / whole_frame_scale((height, width), self.network.config.size)
        clicks = clicks_and_box(guiding)[0]
        if mask.sum() >= math.pi * reach ** 2 or not edge_clicked((height, width), clicks, reach):
            return mask
        border = round(EDGE_MIRROR * min(height, width))
        wider = cv2.copyMakeBorder(image, border, border, border, border, cv2.BORDER_REFLECT_101)
        mirrored = self._replay(wider, tuple(shifted(m, border, border) for m in guiding))
        return mirrored[border : border + height, border : border + width]

    def _replay(self, image: np.ndarray, guiding: tuple[Mark, ...]) -> np.ndarray:
        """The mask after every one of the `guiding` marks, step by step (each step cached)."""
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
            mask = self._predict(image, clicks, box, previous if previous.any() else None)
            if box is not None:
                mask = inside_box(mask, box, clicks)
            if box is not None and not clicks:
                mask = polish_box_answer(image, box, mask)
        with self._lock:
            self._cache[key] = mask
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return mask

    def _predict(self, image: np.ndarray, clicks: tuple[Click, ...], box: Box | None,
                 previous: np.ndarray | None) -> np.ndarray:
        """One step's mask: zoomed on the box or the previous mask; without a box, cut to the parts a positive
        click touches (1-click IoU +5 on the validation frames); a box alone is answered twice, the second time
        with the first answer as the previous mask (box IoU +1.6 to +1.8 on the validation frames; after
        clicks a second answer did not help); a first click without a box is answered on the whole frame, then
        again zoomed on that answer, and when that answer's clicked part is a speck (under SMALL_ANSWER of the
        short side, squared) asked in `second_view` first (docs/RESULTS.md, stop 45); a negative click inside the
        previous mask has a disk around it cleared from it first (`cleared_around`: clicks 2–5 up to +0.8 and NoC@85
        −0.1 to −0.3 on three of four validation sets, stop 45); after a click, the close look around it
        (`close_look`)."""
        last = clicks[-1] if clicks else None
        if (previous is not None and last is not None and not last.positive
                and 0 <= last.y < previous.shape[0] and 0 <= last.x < previous.shape[1] and previous[last.y, last.x]):
            previous = cleared_around(previous, last)
        window = focus_window(image.shape[:2], clicks, box, previous)
        mask = predict(self.network, image, clicks, box, previous, window) > 0.5
        if box is None:  # within a box every part of the answer may be the object's
            mask = clicked_parts(mask, clicks)
        if window is None and box is None and mask.sum() < (SMALL_ANSWER * min(image.shape[:2])) ** 2:
            last = [c for c in clicks if c.positive][-1]
            view = second_view(image.shape[:2], last)
            mask = clicked_parts(predict(self.network, image, clicks, None, None, view) > 0.5, clicks)
        if box is not None and not clicks and mask.any():
            mask = predict(self.network, image, clicks, box, mask, window) > 0.5
        if window is None and box is None and previous is None and mask.any():
            window = focus_window(image.shape[:2], clicks, None, mask)
            if window is not None:
                mask = clicked_parts(predict(self.network, image, clicks, None, mask, window) > 0.5, clicks)
        if clicks and mask.any():
            mask = close_look(self.network, image, clicks, box, mask)
            if box is None:
                mask = clicked_parts(mask, clicks)
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
