"""Object removal that uses the whole clip: each hole filled from past and future frames aligned to it.

For a frame t, reference frames up to `radius` frames away (t±1, t±2, t±4, t±7, … first, then the rest) are
aligned to t by a global homography (ORB features on the background of both frames, RANSAC) and, where it lowers
the error on a band around the hole, a residual optical flow (OpenCV DIS between t and the homography-warped
reference, each frame's objects replaced by the other's pixels; inside the hole and a band around it the flow
is interpolated from the background further out). A reference is kept when its mean colour error on the band is
small; each hole pixel takes the kept reference with the smallest band error whose aligned pixel was background
there, shifted by a smooth colour offset interpolated from the band (so the seam blends). The previous output
frame is the last reference (so what had to be invented stays put); only pixels no frame ever saw are inpainted
spatially.

The remover sees the frames as a stream and answers with a delay of `radius` frames (`push` returns the frames
that are done, `finish` the rest), so memory holds 2 × radius + 1 frames whatever the video's length. Frames
larger than `max_short_side` (4K) are worked on shrunk to it; only their holes take the upsampled fill, and the
rest of each output frame is the original (kept as 4:2:0 YUV while it waits, radius + 1 frames of them).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from core.effects.matting import pixel_grid
from core.effects.removal import grow_mask, inpaint_spatially

_WORK_SHORT_SIDE = 480  # features and flow are computed at most at this short side
_BAND = 15  # width in pixels of the band around a hole that alignment is judged on
_MIN_INLIERS = 20
_MAX_BAND_ERROR = 20.0  # mean absolute colour error on the band above which a reference is not used
_MAX_OFFSET = 40.0  # the largest colour correction a seam gets
_SCHEDULE = (1, 2, 4, 7, 11, 16, 22, 30, 40)  # frame steps tried first: near and far before the rest
_MIN_CANDIDATES = 4  # references aligned before a covered hole stops the search (the best fill first)

_Candidate = tuple[float, np.ndarray, np.ndarray]  # band error, aligned (H, W, 3) uint8, valid (H, W) bool


@dataclass
class _Frame:
    """A buffered frame with what aligning to it needs."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    hole: np.ndarray  # (H, W) bool: the objects grown by the margin
    grey: np.ndarray  # (h, w) uint8 at the work scale
    points: np.ndarray  # (N, 2) float32 keypoints in full-resolution pixels
    descriptors: np.ndarray | None  # (N, 32) uint8 ORB descriptors


class ClipRemover:
    """Removes the objects from a video using past and future frames (see the module docstring).

    `push(image, labels)` one frame at a time returns the finished frames so far (in order, each `(H, W, 3)`
    uint8 RGB, delayed by `radius` frames); `finish()` returns the rest and makes the remover ready for the next
    video.
    """

    def __init__(self, radius: int = 24, margin: int = 3, max_references: int = 10, inpaint_radius: int = 5,
                 max_short_side: int = 1080):
        self.radius = radius
        self.max_short_side = max_short_side
        self.margin = margin
        self.max_references = max_references
        self.inpaint_radius = inpaint_radius
        self._orb = cv2.ORB_create(nfeatures=1500)
        self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.reset()

    def reset(self) -> None:
        """Forget every buffered frame (call between videos; `finish` does it too)."""
        self._frames: dict[int, _Frame] = {}
        # Frames worked on shrunk wait at full size as 4:2:0 YUV (their video is 4:2:0 anyway) with a bit-packed
        # hole: half the memory of RGB and a bool mask.
        self._originals: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._pushed = 0
        self._done = 0
        self._previous: _Frame | None = None  # the last output, as a reference without holes

    def push(self, image: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
        """Add the next frame and its label map; returns the frames that no longer wait for later ones."""
        factor = self.max_short_side / min(labels.shape)
        if factor < 1.0:
            hole = grow_mask(labels > 0, math.ceil(self.margin / factor))
            self._originals[self._pushed] = (_to_yuv(image), np.packbits(hole))
            size = (round(labels.shape[1] * factor), round(labels.shape[0] * factor))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        self._frames[self._pushed] = self._describe(image, grow_mask(labels > 0, self.margin))
        self._pushed += 1
        return list(self._drain(self._pushed - 1 - self.radius))

    def finish(self) -> Iterator[np.ndarray]:
        """The remaining frames of the video, each made as it is asked for; the remover is reset after the last."""
        yield from self._drain(self._pushed - 1)
        self.reset()

    def _drain(self, last: int) -> Iterator[np.ndarray]:
        """Finish every frame up to index `last`, dropping frames no later one can use."""
        while self._done <= last:
            out = self._remove(self._done)
            target = self._frames[self._done]
            self._previous = _Frame(out, np.zeros_like(target.hole), target.grey, target.points, target.descriptors)
            self._frames.pop(self._done - self.radius, None)
            self._done += 1
            yield self._full_size(self._done - 1, out)

    def _full_size(self, index: int, out: np.ndarray) -> np.ndarray:
        """A frame worked on shrunk: the original with the upsampled fill in its holes; other frames as they are."""
        original = self._originals.pop(index, None)
        if original is None:
            return out
        yuv, packed = original
        result = _from_yuv(yuv)
        hole = np.unpackbits(packed, count=result.shape[0] * result.shape[1]).reshape(result.shape[:2]).view(bool)
        filled = cv2.resize(out, (result.shape[1], result.shape[0]), interpolation=cv2.INTER_LINEAR)
        np.copyto(result, filled, where=hole[..., None])
        return result

    def _describe(self, image: np.ndarray, hole: np.ndarray) -> _Frame:
        """Grey image at the work scale and ORB features on the background."""
        scale = _work_scale(hole.shape)
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        background = (~hole).astype(np.uint8) * 255
        if scale < 1.0:
            size = (round(hole.shape[1] * scale), round(hole.shape[0] * scale))
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
            background = cv2.resize(background, size, interpolation=cv2.INTER_NEAREST)
        keypoints, descriptors = self._orb.detectAndCompute(grey, background)
        points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2) / scale
        return _Frame(image, hole, grey, points, descriptors)

    def _references(self, index: int) -> Iterator[_Frame]:
        """Buffered frames at the steps of _SCHEDULE first (after, then before), then the rest nearest first."""
        steps = [step for step in _SCHEDULE if step <= self.radius]
        steps += [step for step in range(1, self.radius + 1) if step not in _SCHEDULE]
        for step in steps:
            for other in (index + step, index - step):
                if other in self._frames:
                    yield self._frames[other]

    def _remove(self, index: int) -> np.ndarray:
        """Frame `index` with its holes filled."""
        target = self._frames[index]
        if not target.hole.any():
            return target.image
        band = grow_mask(target.hole, _BAND) & ~target.hole
        candidates = self._candidates(target, self._references(index), band)
        if self._previous is not None:  # last: keeps what had to be invented where it was
            candidates += [c for c in [self._fill_from(target, self._previous, band)] if c is not None]
        out = target.image.copy()
        todo = target.hole.copy()
        for _, pixels, valid in candidates:
            take = todo & valid
            out[take] = pixels[take]
            todo &= ~take
        if todo.any():
            np.copyto(out, inpaint_spatially(out, todo, self.inpaint_radius), where=todo[..., None])
        return out

    def _candidates(self, target: _Frame, references: Iterator[_Frame], band: np.ndarray) -> list[_Candidate]:
        """Aligned references, best first: tried until `max_references` align and, after _MIN_CANDIDATES, until
        their background covers the hole (or 2 × `max_references` were tried)."""
        candidates: list[_Candidate] = []
        covered = ~target.hole
        for tried, reference in enumerate(references):
            enough = len(candidates) >= _MIN_CANDIDATES and covered.all()
            if enough or len(candidates) >= self.max_references or tried >= 2 * self.max_references:
                break
            candidate = self._fill_from(target, reference, band)
            if candidate is not None:
                candidates.append(candidate)
                covered = covered | candidate[2]
        return sorted(candidates, key=lambda candidate: candidate[0])

    def _fill_from(self, target: _Frame, reference: _Frame, band: np.ndarray) -> _Candidate | None:
        """The band error, the reference aligned to the target with its seam offset, and where its pixels are
        background; None when it cannot be aligned well."""
        homography = _homography(target, reference, self._matcher)
        if homography is None:
            return None
        best: tuple[float, np.ndarray, np.ndarray] | None = None
        for coords in self._candidate_maps(target, reference, homography):
            aligned = cv2.remap(reference.image, coords, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            valid = _valid_source(reference.hole, coords)
            error = _band_error(target.image, aligned, band & valid)
            if error is not None and (best is None or error < best[0]):
                best = (error, aligned, valid)
        if best is None or best[0] > _MAX_BAND_ERROR:
            return None
        error, aligned, valid = best
        return error, _offset_corrected(target.image, aligned, band & valid, target.hole), valid

    def _candidate_maps(self, target: _Frame, reference: _Frame, homography: np.ndarray) -> Iterator[np.ndarray]:
        """Source coordinates `(H, W, 2)` in the reference for every target pixel: the homography alone, then
        the homography with the residual flow."""
        grid = pixel_grid(target.hole.shape)  # (H, W, 2) float32 pixel coordinates
        plain = cv2.perspectiveTransform(grid.reshape(-1, 1, 2), homography).reshape(grid.shape)
        yield plain
        height, width = target.grey.shape
        warped = cv2.resize(cv2.remap(cv2.cvtColor(reference.image, cv2.COLOR_RGB2GRAY), plain, None,
                                      cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), (width, height),
                            interpolation=cv2.INTER_AREA)
        # The flow is measured outside the hole and its band and interpolated into both, so the band error that
        # judges it is measured where it was not fitted, as in the hole.
        measured = ~grow_mask(target.hole, _BAND) & _valid_source(reference.hole, plain)
        known = cv2.resize(measured.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
        if known.mean() < 0.2:
            return
        # Each frame's objects replaced by the other frame's pixels, so no object motion bleeds into the flow.
        flow = self._flow.calc(np.where(known, target.grey, warped), np.where(known, warped, target.grey), None)
        flow = push_pull(flow, known)
        scale = target.hole.shape[1] / width
        flow = cv2.resize(flow, target.hole.shape[::-1], interpolation=cv2.INTER_LINEAR) * scale
        yield cv2.perspectiveTransform((grid + flow).reshape(-1, 1, 2), homography).reshape(grid.shape)


def _to_yuv(image: np.ndarray) -> np.ndarray:
    """An RGB frame as 4:2:0 YUV (OpenCV's I420 layout); a frame of odd size stays RGB."""
    if image.shape[0] % 2 or image.shape[1] % 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420)


def _from_yuv(frame: np.ndarray) -> np.ndarray:
    """The RGB frame `_to_yuv` kept."""
    return frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_YUV2RGB_I420)


def _work_scale(shape: tuple[int, int]) -> float:
    """The factor (≤ 1) that brings the short side down to _WORK_SHORT_SIDE."""
    return min(1.0, _WORK_SHORT_SIDE / min(shape))


def _homography(target: _Frame, reference: _Frame, matcher: cv2.BFMatcher) -> np.ndarray | None:
    """The 3×3 homography from target pixels to reference pixels (ORB matches, ratio test, RANSAC), or None."""
    if target.descriptors is None or reference.descriptors is None or len(reference.points) < _MIN_INLIERS:
        return None
    pairs = matcher.knnMatch(target.descriptors, reference.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    if len(good) < _MIN_INLIERS:
        return None
    source = target.points[[m.queryIdx for m in good]]
    destination = reference.points[[m.trainIdx for m in good]]
    homography, inliers = cv2.findHomography(source, destination, cv2.RANSAC, 3.0)
    if homography is None or int(inliers.sum()) < _MIN_INLIERS:
        return None
    return homography


def _valid_source(hole: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """`(H, W)` bool: the target pixels whose source lies inside the reference and outside its holes."""
    blocked = cv2.remap(hole.astype(np.uint8), coords, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                        borderValue=1)
    return blocked == 0


def _band_error(image: np.ndarray, aligned: np.ndarray, band: np.ndarray) -> float | None:
    """Mean absolute colour difference on the band; None when too little of the band is usable."""
    if np.count_nonzero(band) < 50:
        return None
    return float(np.abs(image[band].astype(np.int16) - aligned[band].astype(np.int16)).mean())


def _offset_corrected(image: np.ndarray, aligned: np.ndarray, band: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """`aligned` plus the colour difference to `image` on the band, interpolated smoothly into the hole."""
    difference = image.astype(np.float32) - aligned.astype(np.float32)  # (H, W, 3)
    offset = np.clip(push_pull(difference, band), -_MAX_OFFSET, _MAX_OFFSET)
    corrected = aligned.astype(np.float32) + offset * hole[..., None]
    return np.clip(corrected + 0.5, 0, 255).astype(np.uint8)


def push_pull(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """`values` (H, W, C) float32 kept where `known`, smoothly interpolated elsewhere (pull-push over a Gaussian
    pyramid: known values are averaged down until every pixel has some, then filled back up)."""
    weights = known.astype(np.float32)
    sums = values.astype(np.float32) * weights[..., None]
    levels: list[tuple[np.ndarray, np.ndarray]] = []
    while True:
        levels.append((sums, weights))
        if min(weights.shape) <= 2 or weights.min() > 0.0:
            break
        sums = _pyr_down(sums)
        weights = cv2.pyrDown(weights)
    estimate = sums / np.maximum(weights, 1e-6)[..., None]
    for sums, weights in reversed(levels[:-1]):
        upsampled = cv2.pyrUp(estimate, dstsize=weights.shape[::-1]).reshape(sums.shape)
        missing = np.clip(1.0 - weights, 0.0, 1.0)[..., None]
        estimate = (sums + missing * upsampled) / (weights[..., None] + missing)
    return estimate


def _pyr_down(image: np.ndarray) -> np.ndarray:
    """cv2.pyrDown that keeps a channel axis even for one channel."""
    out = cv2.pyrDown(image)
    return out.reshape(*out.shape[:2], image.shape[2])
