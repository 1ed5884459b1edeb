"""Soft edges: an alpha matte from the tracker's probabilities, refined at full resolution along the image's edges.

The objects' probability (1 − the background's: a ramp several pixels wide, since the network sees a 240-pixel
frame at stride 4) is grown or shrunk by `shift` pixels and steepened around 0.5, then refined twice by a guided
filter (He et al., TPAMI 2013) with the frame's grey image as guide, each pass followed by a contrast stretch
around 0.5: within each window the matte becomes a linear function of the image, so an edge within a few pixels
of an image edge snaps to it, and elsewhere stays a smooth, anti-aliased ramp. `feather` softens the result by a
Gaussian of that many pixels.

From a 540-pixel short side up the work is done at a whole fraction of the frame (a short side of 270 to 539
pixels) and only the last pass is applied at full resolution, as the fast guided filter does (He & Sun, 2015):
its per-window linear coefficients are upsampled and applied to the full-resolution guide, so the edge still
follows full-resolution image detail at about a quarter of the cost at 1080p. `StableMatte` adds a light
temporal filter at the work scale, before the last pass: each matte is blended with the previous one, carried
to the frame by optical flow (DIS), where the two nearly agree and the flow explains the image, so the edge stops
shimmering without lagging behind motion. The label maps are never changed; only cut-out, blur and replace use
the matte.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

_REFERENCE_SHORT_SIDE = 480  # the settings are given in pixels at this short side
_WORK_SHORT_SIDE = 270  # from twice this up, the matte is worked out at a whole fraction of the frame
_FLOW_SHORT_SIDE = 240  # the temporal filter's optical flow runs at most at this short side
_AGREEMENT = 0.3  # matte difference at which the previous matte stops counting
_PHOTOMETRIC = 12.0  # grey-level difference at which the flow stops being trusted


@dataclass(frozen=True)
class EdgeSettings:
    """How the matte's edge is drawn; all lengths in pixels at a 480-pixel short side, scaled with the frame."""

    feather: float = 0.5  # Gaussian softening of the edge (0 = none)
    shift: float = 0.0  # > 0 grows the objects, < 0 shrinks them
    radius: int = 6  # guided-filter window radius
    eps: float = 1e-3  # guided-filter regularisation (larger: smoother, follows the image less)


_STEEPEN = 4.0  # the probability ramp's slope is multiplied by this before the first pass
_STRETCH = 2.0  # and the guided filter's output by this after each pass


def object_probability(probabilities: np.ndarray) -> np.ndarray:
    """`(H, W)` float32: the probability of any object, from the tracker's `(1 + K, H, W)` probabilities."""
    return np.clip(1.0 - probabilities[0], 0.0, 1.0).astype(np.float32)


def guided_coefficients(guide: np.ndarray, source: np.ndarray, radius: int,
                        eps: float) -> tuple[np.ndarray, np.ndarray]:
    """He et al.'s guided filter with a grey guide, as the window-averaged linear coefficients `(slope, offset)`,
    each (H, W) float32: the filtered `source` is `slope * guide + offset`. `guide` is (H, W) float32 in [0, 1],
    the window `(2 radius + 1)²`."""
    size = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT)

    mean_guide, mean_source = box(guide), box(source)
    variance = box(guide * guide) - mean_guide * mean_guide
    covariance = box(guide * source) - mean_guide * mean_source
    slope = covariance / (variance + eps)
    offset = mean_source - slope * mean_guide
    return box(slope), box(offset)


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """`source` (H, W) float32 filtered along `guide` (see `guided_coefficients`)."""
    slope, offset = guided_coefficients(guide, source, radius, eps)
    return slope * guide + offset


@dataclass
class _Work:
    """One frame at the matte's work scale: the grey guides and the matte before its last pass."""

    grey: np.ndarray  # (H, W) uint8, full resolution
    small_grey: np.ndarray  # (h, w) float32 in [0, 1] at the work scale
    matte: np.ndarray  # (h, w) float32


def work_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """(h, w) at which the matte of a frame of `shape` (H, W, …) is worked out: the frame shrunk by the whole
    factor that keeps its short side at _WORK_SHORT_SIDE pixels or more (a whole factor keeps OpenCV's area resize
    on its fast path). The size to hand `StableMatte` the objects' probability at, when it can be had there."""
    step = max(1, min(shape[:2]) // _WORK_SHORT_SIDE)
    return round(shape[0] / step), round(shape[1] / step)


def _prepare(image: np.ndarray, objects: np.ndarray, settings: EdgeSettings) -> _Work:
    """Everything but the last guided-filter pass, at the work scale; `objects` is `object_probability`'s map (at
    the frame's size or at the work scale)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    height, width = work_shape(grey.shape)
    small, alpha = grey, objects
    if small.shape != (height, width):
        small = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
    if alpha.shape != (height, width):
        alpha = cv2.resize(objects, (width, height), interpolation=cv2.INTER_AREA)
    small_grey = small.astype(np.float32) / 255.0
    scale = min(small.shape) / _REFERENCE_SHORT_SIDE  # the settings' pixels at the work scale
    alpha = _contrast(_shifted(alpha, settings.shift * scale), _STEEPEN)
    alpha = _contrast(guided_filter(small_grey, alpha, _radius(settings, scale), settings.eps), _STRETCH)
    return _Work(grey, small_grey, alpha)


def _radius(settings: EdgeSettings, scale: float) -> int:
    return max(1, round(settings.radius * scale))


def _finish(work: _Work, settings: EdgeSettings) -> np.ndarray:
    """The last pass: coefficients at the work scale (the contrast stretch folded in), applied to the
    full-resolution guide; then the feather."""
    scale = min(work.small_grey.shape) / _REFERENCE_SHORT_SIDE
    slope, offset = guided_coefficients(work.small_grey, work.matte, _radius(settings, scale), settings.eps)
    slope *= _STRETCH
    offset = (offset - 0.5) * _STRETCH + 0.5
    height, width = work.grey.shape
    if slope.shape != (height, width):
        slope = cv2.resize(slope, (width, height), interpolation=cv2.INTER_LINEAR)
        offset = cv2.resize(offset, (width, height), interpolation=cv2.INTER_LINEAR)
    alpha = cv2.multiply(slope, work.grey, scale=1.0 / 255.0, dtype=cv2.CV_32F)
    alpha = np.clip(cv2.add(alpha, offset, dst=alpha), 0.0, 1.0, out=alpha)
    sigma = settings.feather * min(height, width) / _REFERENCE_SHORT_SIDE
    if sigma > 0:
        alpha = np.clip(cv2.GaussianBlur(alpha, (0, 0), sigma, dst=offset), 0.0, 1.0, out=offset)  # spent: reused
    return alpha


def soft_alpha(image: np.ndarray, probabilities: np.ndarray, settings: EdgeSettings = EdgeSettings()) -> np.ndarray:
    """`(H, W)` float32 alpha in [0, 1] for `image` (H, W, 3) RGB from the tracker's `(1 + K, H, W)`
    probabilities (see the module docstring)."""
    return _finish(_prepare(image, object_probability(probabilities), settings), settings)


def _contrast(alpha: np.ndarray, gain: float) -> np.ndarray:
    """The matte's slope around 0.5 multiplied by `gain`, clipped to [0, 1]."""
    return np.clip((alpha - 0.5) * gain + 0.5, 0.0, 1.0)


def _shifted(alpha: np.ndarray, pixels: float) -> np.ndarray:
    """The matte grown (`pixels` > 0) or shrunk (< 0) by a grey-level dilation or erosion with a disk."""
    size = round(abs(pixels))
    if size == 0:
        return alpha
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * size + 1, 2 * size + 1))
    return cv2.dilate(alpha, disk) if pixels > 0 else cv2.erode(alpha, disk)


class StableMatte:
    """Soft mattes of one video with less flicker (see the module docstring); `strength` in [0, 1) is the
    previous matte's weight where it fully agrees. Call `reset` between videos."""

    def __init__(self, settings: EdgeSettings = EdgeSettings(), strength: float = 0.5):
        self.settings = settings
        self.strength = strength
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self.reset()

    def reset(self) -> None:
        self._previous: tuple[np.ndarray, np.ndarray] | None = None  # (work-scale matte (h, w), flow grey)

    def __call__(self, image: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """The `(H, W)` float32 matte of the next frame, from the tracker's `(1 + K, H, W)` probabilities."""
        return self.of_objects(image, object_probability(probabilities))

    def of_objects(self, image: np.ndarray, objects: np.ndarray) -> np.ndarray:
        """The `(H, W)` float32 matte of the next frame, from `object_probability`'s map at the frame's size or at
        `work_shape`."""
        work = _prepare(image, objects, self.settings)
        grey = _flow_grey(work.small_grey)
        if self._previous is not None and self._previous[0].shape == work.matte.shape:
            work.matte = self._blend(work.matte, grey, *self._previous)
        self._previous = (work.matte, grey)
        return _finish(work, self.settings)

    def _blend(self, alpha: np.ndarray, grey: np.ndarray, previous: np.ndarray,
               previous_grey: np.ndarray) -> np.ndarray:
        """`alpha` blended with `previous` carried along the flow, where they agree and the flow is reliable."""
        flow = self._flow.calc(grey, previous_grey, None)  # (h, w, 2): grey(p) ≈ previous_grey(p + flow)
        small = pixel_grid(grey.shape) + flow
        reliable = np.abs(cv2.remap(previous_grey, small, None, cv2.INTER_LINEAR).astype(np.float32)
                          - grey.astype(np.float32)) < _PHOTOMETRIC  # (h, w)
        height, width = alpha.shape
        scale = width / grey.shape[1]
        coords = pixel_grid(alpha.shape) + cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR) * scale
        carried = cv2.remap(previous, coords, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        trust = cv2.resize(reliable.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        weight = self.strength * trust * np.clip(1.0 - np.abs(alpha - carried) / _AGREEMENT, 0.0, 1.0)
        return alpha + weight * (carried - alpha)


def _flow_grey(grey: np.ndarray) -> np.ndarray:
    """The work-scale grey guide as uint8 at most _FLOW_SHORT_SIDE on its short side."""
    factor = min(1.0, _FLOW_SHORT_SIDE / min(grey.shape))
    small = grey
    if factor < 1.0:
        size = (round(grey.shape[1] * factor), round(grey.shape[0] * factor))
        small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return np.clip(small * 255.0 + 0.5, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def pixel_grid(shape: tuple[int, int]) -> np.ndarray:
    """`(H, W, 2)` float32 (x, y) coordinates of every pixel, read-only: made once per shape (a video's frames
    share it)."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    grid = np.dstack([xs, ys])
    grid.setflags(write=False)
    return grid
