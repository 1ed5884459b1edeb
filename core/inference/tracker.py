"""The MobileVOS tracker: `Tracker.step(frame, mask)` → label map, at a constant cost per frame.

Objects annotated on the same frame form a group that shares one memory (its annotated frame + the previous
frame). A mask on a later frame starts a new group for the ids it holds (an id already tracked moves to the new
group: the newer annotation wins). Groups are decoded separately and merged by soft aggregation.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from core.inference.adapt import AdaptConfig, adapt
from core.inference.settings import BACKENDS, DEFAULT_SIZE, FAR_LOGIT, NEAR_CELLS, PRIOR_PENALTY, TrackerConfig
from core.io.masks import MaskError, check_mask, object_ids, read_mask, resize_labels
from core.inference.memory import FirstPreviousMemory, make_memory
from core.model.network import IMAGE_MEAN, IMAGE_STD, KeyFeatures, VOSNetwork
from core.weights import default_checkpoint, load_network


def resolve_backend(config: TrackerConfig) -> str:
    """The backend a tracker runs: `config.backend`, where "auto" is ONNX Runtime on the CPU (same masks, about 2×
    torch's speed there) and torch on CUDA, for online adaptation (it trains the torch network) or when
    onnxruntime is not installed."""
    if config.backend != "auto":
        return config.backend
    if (config.adapt_steps or resolve_device(config.device).type == "cuda"
            or importlib.util.find_spec("onnxruntime") is None):
        return "torch"
    return "onnx"


def cuda_shortfall(name: str) -> str | None:
    """Why the device `name` cannot run on this machine: CUDA ("cuda" or "cuda:N") where there is none, or a
    CUDA index this machine lacks; None for any other name, or when it can."""
    kind, colon, index = name.partition(":")
    if kind != "cuda":
        return None
    if colon and not index.isdigit():
        return f"{name!r}: give cuda, or cuda:N for the N-th CUDA device"
    if not torch.cuda.is_available():
        return f"{name!r}: no CUDA device is available here; use --device cpu or auto"
    count = torch.cuda.device_count()
    if colon and int(index) >= count:
        return f"{name!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}; pick one of them"
    return None


@dataclass
class _Group:
    """Objects annotated on the same frame and their shared memory."""

    ids: list[int]
    memory: FirstPreviousMemory = field(repr=False)


def resolve_device(name: str) -> torch.device:
    """"auto" → CUDA when available, else CPU; other names as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shortfall = cuda_shortfall(name)
    if shortfall:
        raise RuntimeError(f"--device {shortfall}")
    return torch.device(name)


def resolved_config(config: TrackerConfig) -> TrackerConfig:
    """`config` with its defaults spelt out as a tracker would run it here: the shipped weights' path, the device
    and backend that "auto" picks, and the inference size (for records such as the batch's summary.json)."""
    return replace(config, weights=config.weights or str(default_checkpoint()),
                   device=str(resolve_device(config.device)), backend=resolve_backend(config),
                   size=config.size or DEFAULT_SIZE)


# uint8 RGB value → normalised network input, per channel (one table lookup instead of float arithmetic)
NORMALISE_LUT = ((np.arange(256, dtype=np.float32)[:, None] / 255 - np.float32(IMAGE_MEAN))
                 / np.float32(IMAGE_STD)).astype(np.float32).reshape(1, 256, 3)

SAMPLES = Path(__file__).resolve().parents[2] / "samples"  # int8 calibration clips: <clip>/*.jpg, <clip>/masks/*.png


def inference_shape(height: int, width: int, size: int | None) -> tuple[int, int]:
    """(h, w) the network sees: the short side scaled to `size`, aspect kept. None = DEFAULT_SIZE. A frame already
    smaller than the size is never upscaled: it is seen at its own size."""
    size = min(DEFAULT_SIZE if size is None else size, height, width)
    if min(height, width) == size:
        return height, width
    scale = size / min(height, width)
    return max(16, round(height * scale)), max(16, round(width * scale))


Box = tuple[float, float, float, float]  # (y0, y1, x0, x1), end-exclusive, on the decoder's grid
Prepared = tuple[torch.Tensor, tuple[int, int]]  # the network's input (1, 3, H16, W16), the frame's (h, w) in it


def as_annotated(labels: np.ndarray, annotation: np.ndarray) -> np.ndarray:
    """`labels` (H, W) with the objects of `annotation` (H, W) exactly as it draws them: the network works at its
    smaller size, where an annotation's finest detail is lost. Other objects keep their pixels outside them."""
    kept = np.arange(256, dtype=np.uint8)
    kept[object_ids(annotation)] = 0  # the annotated objects' tracked pixels go
    out = cv2.LUT(labels, kept)
    np.copyto(out, annotation, where=annotation > 0)
    return out


@dataclass(frozen=True)
class CoarseStep:
    """One tracked frame at the network's resolution, and how to bring it to the frame's size."""

    planes: np.ndarray  # (1 + K, h, w) float32 probabilities at `stride` of the padded inference frame
    stride: int
    crop: tuple[int, int]  # (h, w) of the frame inside the padding, at the inference size
    size: tuple[int, int]  # (H, W) of the frame
    ids: tuple[int, ...]  # the object id of each plane after the background
    annotation: np.ndarray | None = None  # (H, W) ids the frame was annotated with: they stand in the labels as given

    def full_size(self) -> tuple[np.ndarray, np.ndarray]:
        """The (H, W) uint8 label map and the (1 + K, H, W) float32 probabilities it is the argmax of, but on an
        annotated frame, where the labels are the annotation's objects as drawn (`as_annotated`) and the
        probabilities (and the matte's `objects`) the network's, at its size."""
        probabilities = resample_planes(self.planes, self.stride, self.crop, self.size)
        ids = np.zeros(256, np.uint8)  # plane index → object id
        ids[1:len(self.ids) + 1] = self.ids
        labels = cv2.LUT(argmax_planes(probabilities), ids)
        return (labels if self.annotation is None else as_annotated(labels, self.annotation)), probabilities

    def labels(self) -> np.ndarray:
        """The (H, W) uint8 label map alone: the full-size probabilities (130 MB at 4K) are not kept."""
        return self.full_size()[0]

    def objects(self, size: tuple[int, int]) -> np.ndarray:
        """(h, w) float32 probability of any object at `size` (h, w), resampled from the network's resolution."""
        background = resample_planes(self.planes[:1], self.stride, self.crop, size)[0]
        return np.clip(1.0 - background, 0.0, 1.0)


class Tracker:
    """Semi-supervised video object segmentation of any number of objects, frame by frame."""

    def __init__(self, config: TrackerConfig | None = None, network: VOSNetwork | None = None):
        self.config = config or TrackerConfig()
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        network = network or load_network(self.config.weights)
        self.backend = resolve_backend(self.config)
        if self.backend in ("onnx", "onnx-int8"):
            from core.inference.onnx_backend import load_onnx_network  # onnxruntime is needed by this backend only

            self.network = load_onnx_network(network, self.config.threads, self.config.device,
                                             int8=self.backend == "onnx-int8", calibrate=calibration_feeds)
            self.device = torch.device("cpu")
        elif self.backend == "torch":
            self.device = resolve_device(self.config.device)
            self.network = network.to(self.device, memory_format=torch.channels_last).eval()
        else:
            raise ValueError(f"unknown backend {self.backend!r}: use one of {', '.join(BACKENDS)}")
        if self.config.adapt_steps and self.backend != "torch":
            raise ValueError("online adaptation (adapt_steps) needs the torch backend")
        self._base_network = self.network
        self.groups: list[_Group] = []
        self.probabilities = np.zeros((1, 0, 0), np.float32)
        self._index = 0
        self._prior: torch.Tensor | None = None  # (1, K, h, w) added to the next frame's object logits
        self._boxes: dict[int, Box] = {}  # each object's box on the last frame (`object_boxes`)
        self._regions: np.ndarray | None = None  # the last frame's labels on the decoder's grid (plane indices)

    @property
    def object_ids(self) -> list[int]:
        """Ids tracked so far, in the order of the probability channels after the background."""
        return [i for g in self.groups for i in g.ids]

    def reset(self) -> None:
        """Forget every object, the memory and any adaptation: the next step needs a mask again."""
        self.network = self._base_network
        self.groups = []
        self.probabilities = np.zeros((1, 0, 0), np.float32)
        self._index = 0
        self._prior = None
        self._boxes = {}
        self._regions = None

    def step(self, frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """frame (H, W, 3) uint8 RGB; mask (H, W) ids for objects annotated on this frame → labels (H, W) uint8.
        The full-size probabilities are kept in `probabilities`."""
        labels, self.probabilities = self.step_coarse(frame, mask).full_size()
        return labels

    def step_coarse(self, frame: np.ndarray, mask: np.ndarray | None = None, prepared: Prepared | None = None,
                    features: KeyFeatures | None = None) -> CoarseStep:
        """`step` up to the network's own resolution: the memory is updated, and the returned `CoarseStep` makes
        the full-size labels later, in any thread (a pipeline upsamples one frame while the next is tracked).
        `prepared` is `prepare(frame)` and `features` is `features(prepared)` when another thread already made
        them (`features` only where `features_ahead`)."""
        if mask is not None:
            check_mask(mask, frame.shape[:2], "annotation mask")
        elif not self.groups:
            raise MaskError("the first frame needs an annotation mask: mark at least one object")
        if mask is not None and not self.groups and self.config.adapt_steps:
            self._adapt(frame, mask)
        return self._step(frame, mask, prepared or self.prepare(frame), features)

    @property
    def features_ahead(self) -> bool:
        """Whether `features` may run ahead of tracking, in another thread: the key encoder sees the frame alone,
        unless the network is fine-tuned on the first annotated frame (`adapt_steps`)."""
        return not self.config.adapt_steps

    @torch.inference_mode()
    def features(self, prepared: Prepared) -> KeyFeatures:
        """The key encoder's output for a prepared frame, the step's first and largest network call, made in a
        thread of its own (ONNX Runtime: `OnnxNetwork.encode_key_aside`, one intra-op thread)."""
        if self.backend == "torch":
            return self.network.encode_key(prepared[0])
        return self.network.encode_key_aside(prepared[0])

    def _adapt(self, frame: np.ndarray, mask: np.ndarray) -> None:
        """Fine-tune a copy of the network on the first annotated frame, at the inference size."""
        h, w = inference_shape(*frame.shape[:2], self.config.size)
        small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        labels = shrink_keeping_ids(mask.astype(np.uint8), (h, w))
        self.network = adapt(self._base_network, small, labels, AdaptConfig(steps=self.config.adapt_steps))

    @torch.inference_mode()
    def _step(self, frame: np.ndarray, mask: np.ndarray | None, prepared: Prepared,
              features: KeyFeatures | None) -> CoarseStep:
        """`step_coarse` after the mask was checked (and the network adapted)."""
        height, width = frame.shape[:2]
        image, crop = prepared
        shape = image.shape[-2:]
        feats = self.network.encode_key(image) if features is None else features
        logits = self._predict(feats)  # (1, K, H16/4, W16/4): the decoder's stride 4
        stride = 4
        if mask is not None:  # the annotation is exact at the inference size: work there on this frame
            upsampled = self.network.upsample(logits, shape) if self.groups else logits.new_zeros((1, 0, *shape))
            logits = self._annotate(upsampled, mask, shape, crop)
            stride = 1
        probs = self.network.aggregate(logits)  # aggregated at the decoder's resolution, upsampled after
        labels = plane_labels(probs)  # shared by the near parts and the box prior
        if mask is None and self.config.near_parts and self._regions is not None:
            logits, probs, labels = self._drop_far_parts(logits, probs, labels)
        full = probs if stride == 1 else self.network.upsample(probs, shape)
        self._memorise(image, feats, full[:, 1:])
        if self.config.box_prior is not None:
            grid, ids = feats.f4.shape[-2:], self.object_ids
            boxes = object_boxes(labels, grid, ids)
            self._prior = box_prior(boxes, self._boxes, ids, grid, self.config.box_prior).to(probs)
            self._boxes = boxes
        if self.config.near_parts:
            self._regions = on_grid(labels, feats.f4.shape[-2:])
        self._index += 1
        return CoarseStep(probs[0].float().cpu().numpy(), stride, crop, (height, width), tuple(self.object_ids),
                          mask)

    def _drop_far_parts(self, logits: torch.Tensor, probs: torch.Tensor,
                        labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Each object's logits set to FAR_LOGIT on its `far_parts`, aggregated again, until no object has a far
        part: a part dropped by one object and won by another that was not near it either ends as background (at
        most one pass per object). `labels` is `plane_labels(probs)`; all three come back updated."""
        for _ in range(logits.shape[1]):
            far = far_parts(labels, self._regions, logits.shape[1])
            if not far.any():
                break
            logits = logits.masked_fill(torch.from_numpy(far)[None].to(logits.device), FAR_LOGIT)
            probs = self.network.aggregate(logits)
            labels = plane_labels(probs)
        return logits, probs, labels

    def prepare(self, frame: np.ndarray) -> Prepared:
        """Resize to the inference size, pad to a multiple of 16 (edge pixels repeated), normalise → (1, 3, H16,
        W16) in channels-last memory, and the (h, w) of the frame inside the padding. Depends on the frame and the
        configuration only, so a pipeline runs it in its decoding thread."""
        h, w = inference_shape(*frame.shape[:2], self.config.size)
        if (h, w) != frame.shape[:2]:
            frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        pad_h, pad_w = (-h) % 16, (-w) % 16
        if pad_h or pad_w:
            frame = cv2.copyMakeBorder(frame, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        x = torch.from_numpy(cv2.LUT(np.ascontiguousarray(frame), NORMALISE_LUT))  # (H16, W16, 3) float32
        x = x.permute(2, 0, 1).unsqueeze(0)  # a channels-last view: no copy
        return (x if self.backend == "torch" else x.contiguous()).to(self.device), (h, w)

    def _predict(self, feats: KeyFeatures) -> torch.Tensor:
        """Logits (1, K, H16/4, W16/4) of every tracked object, read from each group's memory."""
        if not self.groups:
            return feats.key.new_zeros((1, 0, *feats.f4.shape[-2:]))
        logits = torch.cat([self.network.segment(feats, *g.memory.tensors())[0] for g in self.groups], dim=1)
        return logits if self._prior is None else logits + self._prior

    def _annotate(self, logits: torch.Tensor, mask: np.ndarray, shape: tuple[int, int],
                  crop: tuple[int, int]) -> torch.Tensor:
        """Start a group for the annotated ids; their logits become the mask's (±large), others are
        suppressed where the mask names an object. Returns the logits in the new order of `object_ids`."""
        ids = self.object_ids
        given = object_ids(mask)
        small = shrink_keeping_ids(mask.astype(np.uint8), crop)
        labels = torch.from_numpy(small).to(self.device)
        labels = F.pad(labels, (0, shape[1] - crop[1], 0, shape[0] - crop[0]))  # (H16, W16)
        keep = [k for k, i in enumerate(ids) if i not in given]
        for group in self.groups:
            group_keep = [k for k, i in enumerate(group.ids) if i not in given]
            if len(group_keep) != len(group.ids):
                group.memory.select_objects(group_keep)
                group.ids = [group.ids[k] for k in group_keep]
        self.groups = [g for g in self.groups if g.ids]
        old = logits[:, keep].masked_fill((labels > 0)[None, None], -20.0)
        new = torch.stack([(labels == i).float() * 40 - 20 for i in given]).unsqueeze(0)
        self.groups.append(_Group(list(given), make_memory(self.config.memory, self.config.every)))
        return torch.cat([old, new], dim=1)

    def _memorise(self, image: torch.Tensor, feats: KeyFeatures, probs: torch.Tensor) -> None:
        """Encode this frame's values per group and store them (annotated entry or previous frame)."""
        start = 0
        for group in self.groups:
            k = len(group.ids)
            masks = probs[:, start:start + k]
            outside = probs.sum(dim=1, keepdim=True) - masks.sum(dim=1, keepdim=True)
            values = self.network.encode_value(image, feats, masks, outside)
            group.memory.add(feats.key, values, self._index)
            start += k


def object_boxes(labels: np.ndarray, grid: tuple[int, int], ids: list[int]) -> dict[int, Box]:
    """Each object's box where it wins this frame's argmax (`plane_labels`, (h, w)), in units of the decoder's
    `grid` over the same padded frame; objects not seen are left out."""
    scale = grid[0] / labels.shape[0]
    boxes = {}
    for k, object_id in enumerate(ids):
        ys, xs = np.nonzero(labels == k + 1)
        if len(ys):
            boxes[object_id] = (int(ys.min()) * scale, (int(ys.max()) + 1) * scale,
                                int(xs.min()) * scale, (int(xs.max()) + 1) * scale)
    return boxes


def shrink_keeping_ids(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """`resize_labels` to the inference size, where an object too small for nearest-neighbour sampling to keep
    (a few pixels of a 4K frame) takes the pixel its area covers most, instead of vanishing from the tracking."""
    small = resize_labels(mask, hw)
    for lost in sorted(set(object_ids(mask)) - set(object_ids(small))):
        cover = cv2.resize((mask == lost).astype(np.float32), hw[::-1], interpolation=cv2.INTER_AREA)
        small.flat[int(np.argmax(cover))] = lost
    return small


def plane_labels(probs: torch.Tensor) -> np.ndarray:
    """The argmax plane index (h, w) uint8 (0 = background) of probabilities (1, 1 + K, h, w), first on ties as
    torch's argmax (`argmax_planes`: OpenCV, about 20× faster than torch's on the decoder's grid)."""
    return argmax_planes(probs[0].float().cpu().numpy())


def on_grid(labels: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """`plane_labels` on the decoder's `grid` (h, w): the nearest sample where they are finer (an annotated frame)."""
    if labels.shape == tuple(grid):
        return labels
    return cv2.resize(labels, (grid[1], grid[0]), interpolation=cv2.INTER_NEAREST)


def far_parts(labels: np.ndarray, before: np.ndarray, planes: int) -> np.ndarray:
    """(planes, h, w) bool: for each object plane k (1 … `planes` of `labels`, this frame's argmax on the decoder's
    grid), the connected parts where it wins that do not touch where it won on the previous frame (`before`, grown
    by NEAR_CELLS). An object not seen on the previous frame, or none of whose parts touch, keeps every part: there
    the tracker cannot tell which part is the object. The parts dropped are distractors away from the object."""
    far = np.zeros((planes, *labels.shape), bool)
    if before.shape != labels.shape:
        return far
    for k in range(1, planes + 1):
        count, parts = cv2.connectedComponents((labels == k).view(np.uint8), connectivity=8)
        near = cv2.dilate((before == k).view(np.uint8), np.ones((2 * NEAR_CELLS + 1,) * 2, np.uint8)).view(bool)
        if count <= 2 or not near.any():
            continue
        touching = np.unique(parts[near & (parts > 0)])
        if len(touching):
            far[k - 1] = (parts > 0) & ~np.isin(parts, touching)
    return far


def expected_box(box: Box, before: Box | None, grow: float) -> Box:
    """Where an object is expected on the next frame: its `box`, stretched to where the same motion as since the
    box `before` would take it, then grown by `grow` times the box's side on every edge."""
    y0, y1, x0, x1 = box
    if before is not None:
        dy, dx = (y0 + y1 - before[0] - before[1]) / 2, (x0 + x1 - before[2] - before[3]) / 2
        y0, y1, x0, x1 = min(y0, y0 + dy), max(y1, y1 + dy), min(x0, x0 + dx), max(x1, x1 + dx)
    gy, gx = grow * (box[1] - box[0]), grow * (box[3] - box[2])
    return y0 - gy, y1 + gy, x0 - gx, x1 + gx


def box_prior(boxes: dict[int, Box], before: dict[int, Box], ids: list[int], grid: tuple[int, int],
              grow: float) -> torch.Tensor:
    """Additive object logits (1, K, *grid) for the next frame: 0 inside each object's `expected_box`, −PRIOR_PENALTY
    outside; 0 everywhere for an object not in `boxes` (not seen on this frame)."""
    prior = torch.full((1, len(ids), *grid), -PRIOR_PENALTY)
    for k, object_id in enumerate(ids):
        if object_id not in boxes:
            prior[0, k] = 0.0
            continue
        y0, y1, x0, x1 = expected_box(boxes[object_id], before.get(object_id), grow)
        prior[0, k, max(0, math.floor(y0)):math.ceil(y1), max(0, math.floor(x0)):math.ceil(x1)] = 0.0
    return prior


def calibration_feeds(network: VOSNetwork, graphs: dict[str, Path]) -> dict[str, list[dict[str, np.ndarray]]]:
    """The inputs each quantised graph receives while `graphs` (the float export of `network`) track every clip
    in `samples/` at the default inference size: the int8 export's calibration data."""
    from core.inference.graphs import QUANTISED, ExportError
    from core.inference.onnx_backend import OnnxNetwork
    from core.io.video import open_video  # PyAV: the tracker itself runs without it (evaluation does)

    clips = sorted(p for p in SAMPLES.glob("*") if (p / "masks").is_dir())
    if not clips:
        raise ExportError(f"{SAMPLES}: no calibration clips (<clip>/*.jpg + <clip>/masks/*.png) for int8; "
                          "run from a clone of the repository or use the float graphs (--backend onnx)")
    recorder = OnnxNetwork(graphs, record=QUANTISED)
    for clip in clips:
        tracker = Tracker(TrackerConfig(device="cpu"), network)
        tracker.network = recorder
        masks = {int(p.stem): read_mask(p) for p in (clip / "masks").glob("*.png")}
        with open_video(clip) as reader:
            for frame in reader:
                tracker.step(frame.image, masks.get(frame.index))
    return recorder.recorded


def resample_planes(planes: np.ndarray, stride: int, crop: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) maps at `stride` of a padded frame whose valid part is `crop` (H, W) → (C, *size) float32, by
    bilinear interpolation (pixel centres aligned, as `F.interpolate(align_corners=False)`): OpenCV's warpAffine
    of each plane written straight into its place in the output (at 1080p 3 ms for four planes, where warping
    them as the channels of one image and splitting those took 12–29 ms)."""
    (crop_h, crop_w), (height, width) = crop, size
    if stride == 1 and (crop_h, crop_w) == (height, width):
        return np.ascontiguousarray(planes[:, :height, :width], dtype=np.float32)
    sx, sy = crop_w / (stride * width), crop_h / (stride * height)  # output pixel → map pixel
    inverse = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]], np.float64)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = np.empty((len(planes), height, width), np.float32)
    for plane, warped in zip(planes, out):
        cv2.warpAffine(np.ascontiguousarray(plane, dtype=np.float32), inverse, (width, height), dst=warped,
                       flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return out


def argmax_planes(planes: np.ndarray) -> np.ndarray:
    """Index (H, W) uint8 of the largest of (C, H, W) float32 planes, first one on ties (OpenCV comparisons plane by
    plane: several times faster than `argmax(axis=0)` for a few planes). A plane strictly larger than every one
    before it takes the pixel, and its index is larger than theirs, so a running maximum of indices does it."""
    labels = np.zeros(planes.shape[1:], np.uint8)
    best = np.ascontiguousarray(planes[0], dtype=np.float32)  # read only: the running maximum is a new array
    for index in range(1, len(planes)):
        plane = np.ascontiguousarray(planes[index], dtype=np.float32)
        better = cv2.compare(plane, best, cv2.CMP_GT)  # 255 where this plane is strictly larger
        cv2.max(labels, cv2.bitwise_and(better, index), dst=labels)
        if index + 1 < len(planes):  # the last plane's maximum is never read
            best = cv2.max(best, plane, dst=None if index == 1 else best)
    return labels
