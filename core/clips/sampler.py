"""Augmented clips made on the device from frames in memory: for training and for first-frame adaptation.

A `FrameStore` holds frames and masks as uint8 tensors (every training frame, loaded by core.train.data, or
the one annotated frame of an adaptation). `ClipSampler` draws batches of clips from it with one random affine
per clip plus a small per-frame jitter, random crops, flips, time reversal and colour jitter, all with
`grid_sample` on the device. Static-image clips (the first stage, as STCN's) turn one frame into a clip by
warping it differently per frame and pasting distractors. Stage-0 clips paste an object cut from one frame onto
another sequence's frame, move it with random affine steps and a smooth random warp (a low-resolution random
displacement field, upsampled: a cheap stand-in for thin-plate splines) and sometimes occlude it with a
distractor object cut from a third sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class DataConfig:
    """Where clips come from and how they are augmented."""

    root: str = "../shared/data/davis2016-train"
    load_short_side: int = 240     # frames are resized to this short side when loaded
    crop: int = 224                # square training crops
    clip_frames: int = 4           # annotated frame + 3 frames to predict
    max_gap_start: int = 4         # maximum frame gap at the start of training …
    max_gap_end: int = 20          # … growing linearly to this at the end
    synthetic: bool = False        # stage 0: cut-and-paste clips with affine + smooth warps
    static: bool = False           # static-image stage: one frame warped per frame, distractors pasted over it
    # static crops scaled so that the object's bounding box spans a log-uniform fraction in this range of the crop
    # (the annotation network's zoomed views); None: 0.7-1.4 crop pixels per loaded pixel, as the tracker trains
    object_fraction: tuple[float, float] | None = None


@dataclass
class FrameStore:
    """All frames and binary masks of some sequences, stacked: frames (N, 3, H, W), masks (N, 1, H, W) uint8."""

    frames: torch.Tensor
    masks: torch.Tensor
    starts: torch.Tensor   # (S,) index of each sequence's first frame
    lengths: torch.Tensor  # (S,) frames per sequence
    centres: torch.Tensor  # (N, 2) object centroid (x, y) in pixels; frame centre when empty
    extents: torch.Tensor  # (N,) object bounding-box size (max side) in pixels; 0 when empty
    names: list[str]

    def to(self, device: torch.device) -> "FrameStore":
        return FrameStore(self.frames.to(device), self.masks.to(device), self.starts.to(device),
                          self.lengths.to(device), self.centres.to(device), self.extents.to(device), self.names)


def object_geometry(masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per mask (N, H, W): centroid (x, y) and bounding-box max side, in pixels."""
    n, h, w = masks.shape
    centres = np.tile([w / 2, h / 2], (n, 1)).astype(np.float32)
    extents = np.zeros(n, np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(xs):
            centres[i] = xs.mean(), ys.mean()
            extents[i] = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
    return torch.from_numpy(centres), torch.from_numpy(extents)


class ClipSampler:
    """Batches of augmented clips: frames (B, T, 3, S, S) in [0, 1] and masks (B, T, 1, S, S) in {0, 1}."""

    def __init__(self, store: FrameStore, config: DataConfig, seed: int = 0):
        self.store = store
        self.config = config
        self.device = store.frames.device
        self.gen = torch.Generator(device="cpu").manual_seed(seed)

    def sample(self, batch: int, progress: float) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of clips; `progress` in [0, 1] grows the maximum frame gap (curriculum)."""
        if self.config.synthetic:
            return self._synthetic(batch)
        if self.config.static:
            return self._static(batch)
        return self._real(batch, progress)

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen)

    def _randint(self, high: torch.Tensor) -> torch.Tensor:
        """Uniform integers in [0, high) elementwise (high ≥ 1)."""
        return (self._rand(*high.shape) * high.float()).long().clamp(max=high - 1)

    def _frame_indices(self, batch: int, progress: float) -> torch.Tensor:
        """(B, T) global frame indices: T increasing frames of one sequence with bounded gaps, maybe reversed."""
        t = self.config.clip_frames
        gap = round(self.config.max_gap_start + progress * (self.config.max_gap_end - self.config.max_gap_start))
        seq = self._randint(torch.full((batch,), len(self.store.names)))
        lengths = self.store.lengths.cpu()[seq]
        window = torch.minimum(lengths, torch.tensor((t - 1) * gap + 1))
        start = self._randint(lengths - window + 1)
        offsets = torch.sort(self._offsets(window, t), dim=1)[0]
        indices = self.store.starts.cpu()[seq, None] + start[:, None] + offsets.long()
        reverse = self._rand(batch) < 0.5
        indices[reverse] = indices[reverse].flip(1)
        return indices

    def _offsets(self, window: torch.Tensor, t: int) -> torch.Tensor:
        """(B, T) distinct offsets in [0, window) (repeats allowed only when the window is shorter than T)."""
        scores = self._rand(len(window), max(int(window.max()), t))
        scores[torch.arange(scores.shape[1])[None] >= window[:, None]] = 2.0  # never pick outside the window
        picked = scores.argsort(dim=1)[:, :t]
        return torch.minimum(picked, window[:, None] - 1).float()

    def _real(self, batch: int, progress: float) -> tuple[torch.Tensor, torch.Tensor]:
        t, s = self.config.clip_frames, self.config.crop
        idx = self._frame_indices(batch, progress).to(self.device)
        centre = self.store.centres[idx[:, 0]]
        h, w = self.store.frames.shape[-2:]
        jitter = (self._rand(batch, 2).to(self.device) - 0.5) * torch.tensor([w, h], device=self.device) * 0.5
        centre = torch.where((self._rand(batch, 1) < 0.8).to(self.device), centre + jitter * 0.4,
                             torch.tensor([w / 2, h / 2], device=self.device) + jitter)
        scale = 0.8 + 0.5 * self._rand(batch)
        angle = (self._rand(batch) - 0.5) * math.radians(20)
        flip = self._rand(batch) < 0.5
        theta = self._clip_affines(centre, scale, angle, flip, t, (h, w), s, walk=0.04)
        frames = self._warp(self.store.frames[idx.flatten()].float() / 255, theta, s)
        masks = self._warp(self.store.masks[idx.flatten()].float(), theta, s, nearest=True)
        frames = self._colour_jitter(frames.view(batch, t, 3, s, s))
        return frames, masks.view(batch, t, 1, s, s)

    def _synthetic(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        t, s = self.config.clip_frames, self.config.crop
        h, w = self.store.frames.shape[-2:]
        n = len(self.store.frames)
        with_object = torch.nonzero(self.store.extents.cpu() > 8).flatten()
        fg = with_object[self._randint(torch.full((batch,), len(with_object)))].to(self.device)
        bg = self._randint(torch.full((batch,), n)).to(self.device)
        distractor = with_object[self._randint(torch.full((batch,), len(with_object)))].to(self.device)
        size = self.store.extents[fg].clamp(min=1)
        fg_scale = (s * (0.3 + 0.4 * self._rand(batch).to(self.device))) / size
        fg_theta = self._clip_affines(self.store.centres[fg], fg_scale.cpu(), (self._rand(batch) - 0.5) * 0.6,
                                      self._rand(batch) < 0.5, t, (h, w), s, walk=0.15)
        bg_centre = torch.stack([self._rand(batch) * w, self._rand(batch) * h], 1).to(self.device)
        bg_theta = self._clip_affines(bg_centre, 0.9 + 0.3 * self._rand(batch), torch.zeros(batch),
                                      self._rand(batch) < 0.5, t, (h, w), s, walk=0.03)
        d_scale = (s * (0.2 + 0.3 * self._rand(batch).to(self.device))) / self.store.extents[distractor].clamp(min=1)
        d_theta = self._clip_affines(self.store.centres[distractor] + 40 * (self._rand(batch, 2).to(self.device) - 0.5),
                                     d_scale.cpu(), (self._rand(batch) - 0.5) * 0.6, self._rand(batch) < 0.5, t,
                                     (h, w), s, walk=0.2)
        def rep(i: torch.Tensor) -> torch.Tensor:  # (B,) → (B*T,)
            return i.repeat_interleave(t)

        warp = self._smooth_warp(batch * t, s)
        fg_img = self._warp(self.store.frames[rep(fg)].float() / 255, fg_theta, s, warp)
        fg_mask = self._warp(self.store.masks[rep(fg)].float(), fg_theta, s, warp, nearest=True)
        background = self._warp(self.store.frames[rep(bg)].float() / 255, bg_theta, s)
        d_img, d_mask = self._occluders(rep(distractor), d_theta, batch)
        frames = fg_img * fg_mask + background * (1 - fg_mask)
        frames = d_img * d_mask + frames * (1 - d_mask)
        masks = fg_mask * (1 - d_mask)
        frames = self._colour_jitter(frames.view(batch, t, 3, s, s))
        return frames, masks.view(batch, t, 1, s, s)

    def _static(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pseudo-clips from single frames: each frame of a clip is the same image under its own affine (a
        random walk in position, scale and angle) and elastic warp; from the second frame on, a distractor
        object cut from another frame is pasted over it half of the time (occluding the target)."""
        t, s = self.config.clip_frames, self.config.crop
        h, w = self.store.frames.shape[-2:]
        with_object = torch.nonzero(self.store.extents.cpu() > 8).flatten()
        image = with_object[self._randint(torch.full((batch,), len(with_object)))].to(self.device)
        distractor = with_object[self._randint(torch.full((batch,), len(with_object)))].to(self.device)
        scale, jitter = self._static_scale(image, batch, (h, w))
        theta = self._clip_affines(self.store.centres[image] + jitter, scale,
                                   (self._rand(batch) - 0.5) * math.radians(30), self._rand(batch) < 0.5, t,
                                   (h, w), s, walk=0.08)
        size = self.store.extents[distractor].clamp(min=1)
        d_scale = (s * (0.2 + 0.4 * self._rand(batch).to(self.device))) / size
        d_centre = self.store.centres[distractor] + size[:, None] * (self._rand(batch, 2).to(self.device) - 0.5)
        d_theta = self._clip_affines(d_centre, d_scale.cpu(), (self._rand(batch) - 0.5) * 0.6,
                                     self._rand(batch) < 0.5, t, (h, w), s, walk=0.2)
        each = torch.arange(batch, device=self.device).repeat_interleave(t)
        warp = self._smooth_warp(batch * t, s)
        frames = self._warp(self.store.frames[image[each]].float() / 255, theta, s, warp)
        masks = self._warp(self.store.masks[image[each]].float(), theta, s, warp, nearest=True)
        d_img, d_mask = self._occluders(distractor[each], d_theta, batch)
        frames = d_img * d_mask + frames * (1 - d_mask)
        masks = masks * (1 - d_mask)
        return self._colour_jitter(frames.view(batch, t, 3, s, s)), masks.view(batch, t, 1, s, s)

    def _static_scale(self, image: torch.Tensor, batch: int, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop pixels per loaded pixel (B,) and the crop centre's offset from the object's centroid (B, 2)."""
        h, w = hw
        if self.config.object_fraction is None:
            jitter = (self._rand(batch, 2).to(self.device) - 0.5) * torch.tensor([w, h], device=self.device) * 0.2
            return 0.7 + 0.7 * self._rand(batch), jitter
        low, high = map(math.log, self.config.object_fraction)
        fraction = torch.exp(low + (high - low) * self._rand(batch))
        widest = self.config.crop / max(h, w)  # a crop at most as wide as the frame: wide objects fit in whole
        scale = (self.config.crop * fraction / self.store.extents[image].cpu().clamp(min=1)).clamp(widest, 2.0)
        span = (self.config.crop / scale).to(self.device)[:, None]  # the crop's side in loaded pixels
        return scale, (self._rand(batch, 2).to(self.device) - 0.5) * span * 0.3

    def _occluders(self, indices: torch.Tensor, theta: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Distractor images and masks (B*T, C, S, S) of the frames `indices` warped by `theta`, kept in half the
        clips and never over a clip's annotated frame."""
        t, s = self.config.clip_frames, self.config.crop
        image = self._warp(self.store.frames[indices].float() / 255, theta, s)
        mask = self._warp(self.store.masks[indices].float(), theta, s, nearest=True)
        mask = mask * (self._rand(batch) < 0.5).float().to(self.device).repeat_interleave(t).view(-1, 1, 1, 1)
        mask[::t] = 0
        return image, mask

    def _clip_affines(self, centre: torch.Tensor, scale: torch.Tensor, angle: torch.Tensor, flip: torch.Tensor,
                      t: int, hw: tuple[int, int], s: int, walk: float) -> torch.Tensor:
        """(B*T, 2, 3) affine_grid matrices: a clip's base affine plus a random walk over its T frames."""
        b = len(centre)
        steps = (self._rand(b, t, 4) - 0.5) * 2 * walk
        steps[:, 0] = 0
        drift = steps.cumsum(dim=1).to(self.device)  # (B, T, 4): dx, dy, dscale, dangle
        h, w = hw
        c = centre[:, None].to(self.device) + drift[..., :2] * s
        sc = scale.to(self.device)[:, None] * (1 + drift[..., 2])
        an = angle.to(self.device)[:, None] + drift[..., 3]
        half = s / 2 / sc
        cos, sin = torch.cos(an) * half, torch.sin(an) * half
        sign = torch.where(flip.to(self.device), -1.0, 1.0)[:, None]
        theta = torch.stack([
            torch.stack([sign * cos / (w / 2), -sin / (w / 2), c[..., 0] / (w / 2) - 1], -1),
            torch.stack([sign * sin / (h / 2), cos / (h / 2), c[..., 1] / (h / 2) - 1], -1),
        ], dim=-2)
        return theta.view(b * t, 2, 3)

    def _smooth_warp(self, n: int, s: int) -> torch.Tensor:
        """(N, S, S, 2) smooth random displacement in normalised coordinates (thin-plate-like)."""
        coarse = (self._rand(n, 2, 4, 4) - 0.5) * 0.12
        fine = F.interpolate(coarse.to(self.device), size=(s, s), mode="bicubic", align_corners=True)
        return fine.permute(0, 2, 3, 1)

    def _warp(self, images: torch.Tensor, theta: torch.Tensor, s: int, displacement: torch.Tensor | None = None,
              nearest: bool = False) -> torch.Tensor:
        """Sample (N, C, H, W) through affines (N, 2, 3) (+ displacement) into (N, C, S, S)."""
        grid = F.affine_grid(theta, [len(images), images.shape[1], s, s], align_corners=False)
        if displacement is not None:
            grid = grid + displacement
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return (out > 0.5).float() if nearest else out

    def _colour_jitter(self, frames: torch.Tensor) -> torch.Tensor:
        """Per-clip brightness / contrast / saturation jitter plus a small per-frame change; (B, T, 3, S, S)."""
        b, t = frames.shape[:2]

        def factor(spread: float, per_frame: float) -> torch.Tensor:
            clip = 1 + (self._rand(b, 1, 1, 1, 1) - 0.5) * 2 * spread
            return (clip + (self._rand(b, t, 1, 1, 1) - 0.5) * 2 * per_frame).to(self.device)

        grey = frames.mean(dim=2, keepdim=True)
        frames = grey + (frames - grey) * factor(0.3, 0.05)
        mean = frames.mean(dim=(2, 3, 4), keepdim=True)
        frames = mean + (frames - mean) * factor(0.25, 0.05)
        frames = frames + (factor(0.15, 0.03) - 1)
        return frames.clamp(0, 1)
