"""`python -m core.train.annotator --out DIR` — train the click-and-box annotation network (`core.annotate`).

Samples: single frames of the DAVIS training sequences (the validation sequences held out, frames at 480p) through
the static-image stage's augmentation (`ClipSampler`, static: affine + elastic warp, a pasted distractor half of the
time, colour jitter), each crop scaled so that the object spans 15-90 % of it (the whole frame's context and the
zoomed views `core.annotate.segmenter` works on); the target is the object's mask, or in a fifth of the samples a
painted shape (`paint_shape`); with `--paste-odds P`, a share P of them shows instead a DAVIS object cut from
another training frame and pasted, warped, onto a third sequence's frame (the stage-0 clips' last frame): the same
objects in scenes the training sequences never show, beside those scenes' own unlabelled objects; with
`--recolour-odds P`, a share P has one side of its object recoloured (`recolour_part`). Each sample starts
from a jittered box (±10 %), clicks (the first at the interior point or a random object pixel), or both; then 0–3
rounds of the current network's own prediction and the simulated user's next click (the largest error's centre) make
the previous-mask input, as RITM trains.
With `--redraw-odds P`, a share P of the samples instead gets no click and no box and a tracker-like mistaken
mask as the previous mask (`tracked_guess`): the task of `core.annotate.refine`, which redraws tracked masks.
Loss: binary cross-entropy + soft IoU. Resumable from `DIR/state.pt`; logs to `DIR/log.jsonl`; validates box /
1-click / 3-click IoU on every `--val-every`-th frame of the validation sequences at full size (and, with
`--tracked`, the redrawing of a tracker's saved masks, `core.evaluation.refinement`) and keeps the best weights in
`DIR/best.pt` (with `--ema D`, the weights' exponential moving average of decay D is what is validated and saved).
`--hold-out` names the sequences kept out and validated on (default the project's validation split); `--hold-out ""`
trains the final model on every sequence, with nothing to validate on (its recipe is chosen on a twin that held
them out).
`--device cuda` trains the network on a GPU, where the frames are kept and the samples drawn too (drawing them on
the CPU held a GPU run to about 3 steps a second); the simulated clicks stay on the CPU, and validation runs there, as
users run it. `--bf16` runs the network's training passes in bfloat16 autocast (on a CPU with AMX about 1.2× faster
a step with two threads, more on one loaded thread); the weights, optimiser, loss and validation stay in fp32.
`--trunk-lr S` trains the ImageNet trunk at S times the learning rate (0 freezes its weights).
`--fine C` gives the network a stride-2 head of C channels (`core.annotate.network.FineHead`; an `--init` without one
gets it zero-initialised, so the run starts from that network's answers), and `--fine-only` trains that head alone:
the rest keeps its weights and batch-norm statistics, and a step costs little more than the passes themselves.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from core.annotate.clicks import (Box, Click, guidance_maps, interior_point, jittered_box, next_click,
                                  random_interior_click, tight_box)
from core.annotate.network import (ANNOTATOR_MANIFEST, AnnotatorConfig, ClickNet, annotator_from_checkpoint,
                                   default_annotator, default_annotator_entry, load_annotator,
                                   load_annotator_checkpoint, save_annotator)
from core.annotate.refine import MaskRefiner
from core.annotate.segmenter import ClickSegmenter
from core.clips.sampler import ClipSampler, DataConfig, FrameStore
from core.model.network import training_mode
from core.evaluation.interactive import davis_frames, score
from core.evaluation.refinement import refined_ious, tracked_frames
from core.io.command import BadInput, ToolParser, bounded, output_folder, run_tool, tool_description, whole_number
from core.train.config import VALIDATION_SEQUENCES
from core.train.data import davis_sequences, load_frames
from core.train.flags import MIN_CROP, crop_side, seed_number, training_device
from core.train.interrupt import stop_after_saving, stop_after_step
from core.weights import (WEIGHTS_DIR, WeightsError, changed_settings, load_trunk, restore_training_state,
                          save_atomically, sha256)

MIN_OBJECT_PIXELS = 30
SHAPE_ODDS = 0.2  # samples whose object is a painted shape instead (the network must not need a DAVIS object)
ROUNDS = (0, 1, 2, 3)
ROUND_ODDS = (0.4, 0.25, 0.2, 0.15)
MIN_GUESS_IOU = 0.3  # a tracker-like guess (`tracked_guess`) at least this close to the object
SHIPPED_NAME = "annotator-mnv2"
DEFAULT_HOLD_OUT = ",".join(VALIDATION_SEQUENCES)


@dataclass(frozen=True)
class AnnotatorTraining:
    """One run's settings."""

    data: str = "../shared/data/davis2016-train"
    steps: int = 5000
    seconds: float = 3200.0   # wall-clock budget; the learning rate follows whichever runs out first
    batch: int = 8
    crop: int = 224
    load_short_side: int = 480  # frames are loaded at this short side (DAVIS' own: zoomed crops stay sharp)
    object_min: float = 0.15    # the object's bounding box spans between these fractions of a crop (log-uniform):
    object_max: float = 0.9     # from the whole frame's context to the zoomed views the segmenter works on
    lr: float = 3e-4
    val_every: int = 300      # steps between validations
    val_frames_every: int = 25  # validate on every N-th frame of each validation sequence
    seed: int = 0
    device: str = "cpu"         # where the network trains and samples are drawn ("cuda" on a GPU machine)
    freeze_bn: bool = False     # batch norms keep their running statistics (fine-tuning at the CPU's small batches)
    ema: float = 0.0            # > 0: validate and save an exponential moving average of the weights (this decay)
    redraw_odds: float = 0.0    # samples that redraw a tracker-like guess: no click, no box (`core.annotate.refine`)
    tracked: str = ""           # a tracker's saved masks of the validation sequences (`core.eval --out`), whose
    tracked_every: int = 5      # redrawing is validated too, on every N-th frame
    hold_out: str = DEFAULT_HOLD_OUT  # comma-separated sequences kept out of training and validated on; "" holds
    # none out (the final model, trained on every sequence: nothing to validate, best.pt is the last)
    bf16: bool = False          # the network's passes in bfloat16 autocast (CPUs with AMX, GPUs); weights, optimiser,
    # loss and validation stay in fp32
    trunk_lr: float = 1.0       # the ImageNet trunk's learning rate as a share of `lr` (< 1 keeps its features
    # closer to ImageNet's on DAVIS' few objects; 0 freezes its weights)
    paste_odds: float = 0.0     # samples whose object is pasted onto another sequence's frame (`draw_batch`)
    fine: int = 0               # channels of the stride-2 head (`FineHead`); 0: none
    fine_only: bool = False     # train that head alone; the rest keeps its weights and batch-norm statistics
    recolour_odds: float = 0.0  # samples with one side of their object recoloured (`recolour_part`)


@dataclass
class Interaction:
    """A sample's simulated user input so far."""

    clicks: list[Click]
    box: Box | None


def first_interaction(target: np.ndarray, rng: np.random.Generator) -> Interaction:
    """A box alone (30 %), clicks alone (55 %) or both (15 %); the first click at the interior point or (half
    of the time) at a random pixel of the object's inner part, sometimes with a second positive click."""
    if target.sum() < MIN_OBJECT_PIXELS:
        return Interaction([], None)
    draw = rng.random()
    box = jittered_box(target, rng) if draw < 0.45 else None
    if draw < 0.3:
        return Interaction([], box)
    clicks = [Click(*interior_point(target), True)]
    if rng.random() < 0.5:
        clicks = [random_interior_click(target, rng)]
    if rng.random() < 0.2:
        clicks.append(random_interior_click(target, rng))
    return Interaction(clicks, box)


def _disk(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    """(H, W) bool: a filled circle."""
    disk = np.zeros(shape, np.uint8)
    cv2.circle(disk, (int(centre[0]), int(centre[1])), max(1, int(radius)), 1, thickness=-1)
    return disk.astype(bool)


def tracked_guess(target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A tracker's kind of mistaken mask of `target` (H, W) bool, for the redrawing samples: seen at a fraction
    of the resolution (coarse edges, thin parts lost), shifted, grown or shrunk, a part missed, a blob of
    background taken; the target itself if the guess ends up too far from it (IoU < MIN_GUESS_IOU)."""
    height, width = target.shape
    x0, y0, x1, y1 = tight_box(target)
    side = max(x1 - x0, y1 - y0) + 1
    scale = rng.uniform(0.1, 0.6)
    small = cv2.resize(target.astype(np.float32), (max(2, round(width * scale)), max(2, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    guess = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR) > rng.uniform(0.3, 0.7)
    shift = rng.normal(0, 0.04 * side, 2)
    guess = cv2.warpAffine(guess.view(np.uint8), np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]),
                           (width, height), flags=cv2.INTER_NEAREST).astype(bool)
    radius = int(rng.uniform(0, 0.06) * side)
    if radius:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        change = cv2.dilate if rng.random() < 0.5 else cv2.erode
        guess = change(guess.view(np.uint8), kernel).astype(bool)
    if rng.random() < 0.3:
        ys, xs = np.nonzero(target)
        pick = rng.integers(len(xs))
        guess &= ~_disk(target.shape, (xs[pick], ys[pick]), rng.uniform(0.1, 0.35) * side)
    if rng.random() < 0.3:
        centre = rng.uniform((x0 - side / 2, y0 - side / 2), (x1 + side / 2, y1 + side / 2))
        guess |= _disk(target.shape, centre, rng.uniform(0.1, 0.3) * side)
    union = np.count_nonzero(guess | target)
    return guess if np.count_nonzero(guess & target) >= MIN_GUESS_IOU * union else target.copy()


def guidance_batch(interactions: list[Interaction], previous: np.ndarray | None, radius: int,
                   hw: tuple[int, int]) -> torch.Tensor:
    """(B, G, H, W) guidance maps of a batch; `previous` (B, H, W) bool or None."""
    maps = [guidance_maps(hw, it.clicks, it.box, None if previous is None else previous[i], radius)
            for i, it in enumerate(interactions)]
    return torch.from_numpy(np.stack(maps))


def add_error_clicks(interactions: list[Interaction], targets: np.ndarray, predictions: np.ndarray) -> None:
    """Append the simulated user's next click to each sample that has an object, in place."""
    for interaction, target, prediction in zip(interactions, targets, predictions):
        if target.sum() >= MIN_OBJECT_PIXELS and (click := next_click(target, prediction)) is not None:
            interaction.clicks.append(click)


def segmentation_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy + soft IoU per sample (logits, targets (B, 1, H, W)), averaged with `weights` (B,)."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=(1, 2, 3))
    probabilities = torch.sigmoid(logits)
    intersection = (probabilities * targets).sum(dim=(1, 2, 3))
    union = (probabilities + targets - probabilities * targets).sum(dim=(1, 2, 3))
    soft_iou = 1 - (intersection + 1) / (union + 1)
    return ((bce + soft_iou) * weights).sum() / weights.sum().clamp(min=1)


def paint_shape(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paint a random shape (ellipse, square at an angle, or polygon; a solid colour with noise of random strength)
    over `image` (3, S, S) float in [0, 1], in place, a third of the time over a flat or noisy background instead
    of the picture; returns the shape's (S, S) bool mask. Teaches the network that a clicked or boxed region that
    stands out is an object even when it looks like nothing in DAVIS (screen graphics, logos, test patterns)."""
    size = image.shape[-1]
    mask = np.zeros((size, size), np.uint8)
    centre = rng.uniform(0.25, 0.75, 2) * size
    radius = rng.uniform(0.08, 0.35) * size
    kind = rng.integers(3)
    if kind == 0:
        axes = (int(radius), int(radius * rng.uniform(0.4, 1.0)))
        cv2.ellipse(mask, (int(centre[0]), int(centre[1])), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    else:
        if kind == 1:  # a square at a random angle
            angles, radii = np.arange(4) * np.pi / 2 + rng.uniform(0, np.pi), np.full(4, radius)
        else:  # a polygon of 3-8 corners at random angles and distances
            corners = int(rng.integers(3, 9))
            angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
            radii = radius * rng.uniform(0.5, 1.0, corners)
        points = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
        cv2.fillPoly(mask, [points.astype(np.int32)], 1)
    if rng.random() < 1 / 3:
        background = rng.uniform(0, 1, (3, 1, 1)) + rng.normal(0, rng.uniform(0, 0.2), image.shape)
        image[:] = np.clip(background, 0, 1)
    colour = rng.uniform(0, 1, (3, 1, 1)) + rng.normal(0, rng.uniform(0, 0.2), image.shape)
    inside = mask.astype(bool)
    image[:, inside] = np.clip(colour, 0, 1)[:, inside]
    return inside


def recolour_part(image: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> bool:
    """Recolour one side of the object in `image` (3, S, S) float in [0, 1], in place: the object (S, S) bool is cut
    by a straight line at a random angle through a random pixel of it, and the pixels of one side are mixed with a
    random colour, their channels shuffled, or their brightness turned over. The target stays the whole object, so
    the network learns that a colour edge inside an object does not end it (one click on a dancer's top took her
    top without her skirt, docs/RESULTS.md, stop 48). False, with nothing changed, when the object is under
    MIN_OBJECT_PIXELS or the cut leaves one side under a fifth of it."""
    ys, xs = np.nonzero(target)
    if len(ys) < MIN_OBJECT_PIXELS:
        return False
    pick, angle = int(rng.integers(len(ys))), rng.uniform(0, np.pi)
    rows, cols = np.mgrid[: target.shape[0], : target.shape[1]]
    side = target & ((cols - xs[pick]) * np.sin(angle) - (rows - ys[pick]) * np.cos(angle) > 0)
    if not 0.2 <= side.sum() / len(ys) <= 0.8:
        return False
    part = image[:, side]  # (3, N)
    kind = rng.integers(3)
    if kind == 0:
        mix = rng.uniform(0.4, 0.8)
        part = (1 - mix) * part + mix * rng.uniform(0, 1, (3, 1))
    elif kind == 1:
        part = part[rng.permutation(3)] * rng.uniform(0.7, 1.3, (3, 1))
    else:
        part = 1 - part
    image[:, side] = np.clip(part, 0, 1)
    return True


@dataclass(frozen=True)
class Samplers:
    """Where a step's samples come from: static-image pseudo-clips, and (with `--paste-odds`) stage-0 clips of an
    object pasted onto another sequence's frame, both over the same frames."""

    static: ClipSampler
    pasted: ClipSampler | None


def make_samplers(store: FrameStore, run: AnnotatorTraining, seed: int) -> Samplers:
    """The run's samplers over `store` (the pasting one only when `run.paste_odds` > 0)."""
    config = DataConfig(root=run.data, crop=run.crop, clip_frames=2, static=True,
                        object_fraction=(run.object_min, run.object_max))
    pasting = replace(config, static=False, synthetic=True)
    return Samplers(ClipSampler(store, config, seed), ClipSampler(store, pasting, seed + 1) if run.paste_odds else None)


def draw_batch(samplers: Samplers, run: AnnotatorTraining,
               rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 3, S, S) and targets (B, 1, S, S): the pseudo-clips' last frames (a distractor over the object
    half of the time), a share `run.paste_odds` of them replaced by pasted objects."""
    frames, masks = samplers.static.sample(run.batch, 0.0)
    images, targets = frames[:, -1].contiguous(), masks[:, -1].contiguous()
    if samplers.pasted is not None and (pasted := torch.from_numpy(rng.random(run.batch) < run.paste_odds)).any():
        frames, masks = samplers.pasted.sample(int(pasted.sum()), 0.0)  # only as many as replace static ones
        chosen = pasted.to(images.device)
        images[chosen], targets[chosen] = frames[:, -1], masks[:, -1]
    return images, targets


def training_step(network: ClickNet, optimiser: torch.optim.Optimizer, samplers: Samplers, run: AnnotatorTraining,
                  rng: np.random.Generator) -> float:
    """One optimiser step on a batch drawn where the samplers' frames are (`run.device`), with interaction
    simulated on the CPU; returns the loss."""
    device = torch.device(run.device)
    images, targets = draw_batch(samplers, run, rng)
    painted = rng.random(run.batch) < SHAPE_ODDS
    for i in np.nonzero(painted)[0]:
        image = images[i].cpu().numpy()  # painted in place, then copied back (a no-op on the CPU)
        targets[i, 0].copy_(torch.from_numpy(paint_shape(image, rng)))
        images[i].copy_(torch.from_numpy(image))
    binary = targets[:, 0].cpu().numpy() > 0.5
    for i in np.nonzero(~painted & (rng.random(run.batch) < run.recolour_odds))[0]:
        image = images[i].cpu().numpy()
        if recolour_part(image, binary[i], rng):
            images[i].copy_(torch.from_numpy(image))
    hw = binary.shape[1:]
    radius = network.config.click_radius
    interactions = [first_interaction(t, rng) for t in binary]
    images = images.to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.bf16)
    previous = None
    for _ in range(rng.choice(ROUNDS, p=ROUND_ODDS)):
        with torch.no_grad(), autocast:
            guidance = guidance_batch(interactions, previous, radius, hw).to(device)
            predictions = (network(images, guidance)[:, 0] > 0).cpu().numpy()
        add_error_clicks(interactions, binary, predictions)
        previous = predictions
    if previous is not None and rng.random() < 0.1:
        previous = None
    redraw = [i for i in np.nonzero(rng.random(run.batch) < run.redraw_odds)[0] if binary[i].sum() >= MIN_OBJECT_PIXELS]
    if redraw:
        previous = np.zeros_like(binary) if previous is None else previous
        for i in redraw:
            interactions[i] = Interaction([], None)
            previous[i] = tracked_guess(binary[i], rng)
    weights = torch.tensor([float(t.sum() >= MIN_OBJECT_PIXELS) for t in binary], device=device)
    with autocast:
        logits = network(images, guidance_batch(interactions, previous, radius, hw).to(device))
    loss = segmentation_loss(logits.float(), targets.to(device), weights)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss.item()


def validate(network: ClickNet, frames: list, tracked: list) -> dict:
    """Box, 1-click and 3-click IoU (%) on the validation frames at full size, as `core.evaluation.interactive`,
    and with `tracked` frames (`core.evaluation.refinement`) the IoU of the tracker's masks redrawn; "mean" is
    the mean of those (on the CPU, as users run it; the network goes back to its device afterwards)."""
    device = next(network.parameters()).device
    network.cpu().eval()
    segmenter = ClickSegmenter(network)
    scores = score(frames, "network", lambda image: lambda marks: segmenter.mask(image, marks), max_clicks=3)
    result = {"box": scores.box_iou, "click1": scores.click_iou[0], "click3": scores.click_iou[2]}
    if tracked:
        result["redraw"] = refined_ious(MaskRefiner(network), tracked)[1]
    network.to(device)
    return {**result, "mean": round(sum(result.values()) / len(result), 1)}


def held_out_sequences(names: str, available: list[str]) -> list[str]:
    """The sequences of a comma-separated `--hold-out` list ("": none) among `available`. A name not among them is
    refused (a typo would silently train on that sequence), except in the default list: a DAVIS folder may hold
    part of the validation split, or none of it (the user's own data: then nothing is validated, as it says).
    Holding out every sequence is refused too: nothing would be left to train on."""
    named = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in named if name not in available]
    if unknown and names != DEFAULT_HOLD_OUT:
        raise BadInput(f"--hold-out: no sequence {', '.join(unknown)} in the data folder; name sequences of its "
                       "JPEGImages/480p, comma-separated")
    held_out = [name for name in named if name in available]
    if len(held_out) == len(available):
        raise BadInput(f"--hold-out: holds out every sequence of the data folder ({', '.join(available)}); leave "
                       "some to train on")
    if named and not held_out:
        print(f"none of the validation sequences ({names}) is in the data folder: nothing is validated and best.pt "
              "is the last weights saved; name some of its sequences with --hold-out A,B to validate on them")
    elif unknown:
        print(f"validating on {len(held_out)} of the {len(named)} validation sequences, the others not being in the "
              f"data folder ({', '.join(unknown)}): scores are not comparable with the full split's")
    return held_out


def update_average(average: ClickNet, network: ClickNet, decay: float) -> None:
    """average <- decay * average + (1 - decay) * network, weights and floating-point buffers alike (others copied)."""
    with torch.no_grad():
        for kept, current in zip(average.state_dict().values(), network.state_dict().values()):
            if kept.is_floating_point():
                kept.mul_(decay).add_(current, alpha=1 - decay)
            else:
                kept.copy_(current)


def learning_rate(peak: float, progress: float) -> float:
    """Linear warm-up over the first 3 % of training, then cosine decay to zero; `progress` in [0, 1]."""
    if progress < 0.03:
        return peak * (0.1 + 0.9 * progress / 0.03)
    return peak * 0.5 * (1 + math.cos(math.pi * (progress - 0.03) / 0.97))


def parameter_groups(network: ClickNet) -> list[dict]:
    """The optimiser's groups: the trunk's parameters, then the rest (`group_scales` gives their rates)."""
    trunk = list(network.trunk.parameters())
    inside = {id(parameter) for parameter in trunk}
    rest = [parameter for parameter in network.parameters() if id(parameter) not in inside]
    return [{"params": trunk}, {"params": rest}]


def group_scales(run: AnnotatorTraining) -> tuple[float, float]:
    """Each of `parameter_groups`' learning rates as a share of the run's (read from the run's settings on every
    step, so a resumed run follows its command line, as it does for `--lr`)."""
    return run.trunk_lr, 1.0


def build(run: AnnotatorTraining = AnnotatorTraining(), init: Path | None = None) -> ClickNet:
    """The run's network (with its `--fine` head) from the ImageNet trunk, or from the annotator checkpoint `init`
    (which may lack the head: then it starts at zero); with `--fine-only`, only the head's weights train."""
    network = ClickNet(AnnotatorConfig(fine=run.fine))
    network.trunk.load_state_dict(load_trunk())
    if init is not None:
        start = load_annotator(init)
        if start.config.fine not in (0, run.fine):
            raise BadInput(f"--init {init}: its network has a stride-2 head of {start.config.fine} channels; pass "
                           f"--fine {start.config.fine} to continue it")
        missing, unexpected = network.load_state_dict(start.state_dict(), strict=False)
        assert not unexpected and all(key.startswith("fine.") for key in missing), (missing, unexpected)
    if run.fine_only:
        network.requires_grad_(False)
        network.fine.requires_grad_(True)
    return network


def set_training(network: ClickNet, run: AnnotatorTraining) -> None:
    """`network` in training mode as the run trains it (`training_mode`); with `--fine-only`, all but the head in
    eval mode, so that the frozen part's batch norms keep their statistics."""
    if run.fine_only:
        network.eval()
    training_mode(network.fine if run.fine_only else network, run.freeze_bn)


def save_state(out: Path, network: ClickNet, optimiser: torch.optim.Optimizer, average: ClickNet | None,
               counters: dict) -> None:
    """The run's training state in `out/state.pt`: weights, optimiser, the weights' average (`--ema`) and
    `counters` (step, best, elapsed, the settings the run began with: `changed_settings`, and the sha256 of the
    network it began from)."""
    kept = {} if average is None else {"average": average.state_dict()}
    save_atomically({"network": network.state_dict(), "optimiser": optimiser.state_dict(), **counters, **kept},
                    out / "state.pt")


def train(run: AnnotatorTraining, out: Path, init: Path | None = None) -> None:
    """Train (or resume) into `out`; a new run starts from the ImageNet trunk, or from the annotator checkpoint
    `init`. The data are checked and loaded before `out` is made; Ctrl-C (`stop_after_step`) saves the state of the
    last whole step and ends with KeyboardInterrupt."""
    available = davis_sequences(run.data)
    held_out = held_out_sequences(run.hold_out, available)
    train_names = [name for name in available if name not in held_out]
    store = load_frames(run.data, train_names, run.load_short_side).to(run.device)
    val_frames = list(davis_frames(run.data, held_out, run.val_frames_every))
    if held_out and not val_frames:
        raise BadInput(f"--hold-out {','.join(held_out)}: no object in any validated frame (every "
                       f"{run.val_frames_every}th); hold out sequences whose masks mark objects, or lower "
                       "--val-frames-every")
    tracked = tracked_frames(run.data, run.tracked, held_out, run.tracked_every) if run.tracked else []
    torch.manual_seed(run.seed)
    network = build(run, init)  # before `out` is made: an --init that does not fit writes nothing
    out.mkdir(parents=True, exist_ok=True)
    init_digest = None if init is None else sha256(init)  # which network it was, should its file change later
    network.to(run.device)
    optimiser = torch.optim.AdamW(parameter_groups(network), lr=run.lr, weight_decay=1e-4)
    step, best, elapsed = 0, -1.0, 0.0
    started_with = asdict(run)  # the settings the run began with (a resume's may differ), kept in its state
    average = copy.deepcopy(network).eval() if run.ema > 0 else None  # on the network's device
    if (out / "state.pt").exists():
        state = restore_training_state(out / "state.pt", {"network": network, "optimiser": optimiser})
        step, best, elapsed = state["step"], state["best"], state["elapsed"]
        if average is not None:
            average.load_state_dict(state.get("average", state["network"]))
        changed = changed_settings(state, asdict(run))
        if init is not None:  # as core.train's resume says of its --init
            changed = ", ".join(filter(None, [changed, f"init {init} (not taken: it sets up a new run only)"]))
        started_with = state.get("settings", started_with)
        init_digest = state.get("init_sha256", init_digest)
        print(f"resumed {out} at step {step}" + (f"; changed since the run began: {changed}" if changed else ""))
    if max(step / run.steps, elapsed / run.seconds) >= 1:
        print(f"{out}: already finished at step {step}; raise --steps (or --seconds) to train on")
        return
    judged = network if average is None else average

    def counters() -> dict:
        """What state.pt keeps beside the weights, as of now."""
        return {"step": step, "best": best, "elapsed": elapsed, "settings": started_with, "init_sha256": init_digest}
    rng = np.random.default_rng(run.seed + step)
    samplers = make_samplers(store, run, run.seed + step)
    started = time.time() - elapsed
    set_training(network, run)
    bar = tqdm(total=run.steps, initial=step, desc="annotator", unit="step", mininterval=5)
    with open(out / "log.jsonl", "a") as log, stop_after_step() as stop:
        while (progress := max(step / run.steps, (time.time() - started) / run.seconds)) < 1 and not stop.asked:
            for group, scale in zip(optimiser.param_groups, group_scales(run)):
                group["lr"] = learning_rate(run.lr, progress) * scale
            loss = training_step(network, optimiser, samplers, run, rng)
            if average is not None:
                update_average(average, network, run.ema)
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            elapsed = time.time() - started
            record: dict = {"step": step, "loss": round(loss, 4), "seconds": round(elapsed, 1)}
            last = max(step / run.steps, elapsed / run.seconds) >= 1
            if step % run.val_every == 0 or last:
                if held_out:
                    record["val"] = validate(judged, val_frames, tracked)
                    set_training(network, run)
                    bar.write(f"step {step}: validation IoU " + ", ".join(
                        f"{name} {value:.1f}" for name, value in record["val"].items()))
                meta = {"steps": step, "init": None if init is None else str(init),
                        "init_sha256": init_digest, "training_sequences": train_names,
                        "validation_sequences": held_out, "validation": record.get("val"), "run": asdict(run)}
                save_annotator(judged, out / "last.pt", meta)
                if not held_out:  # nothing to validate on: the last is the best
                    save_annotator(judged, out / "best.pt", meta)
                elif record["val"]["mean"] > best:
                    best = record["val"]["mean"]
                    save_annotator(judged, out / "best.pt", meta)
            if step % 25 == 0 or "val" in record or last:
                save_state(out, network, optimiser, average, counters())
            log.write(json.dumps(record) + "\n")
            log.flush()
    bar.close()
    if stop.asked:  # Ctrl-C: the state of the last whole step is kept
        save_state(out, network, optimiser, average, counters())
        stop_after_saving(step, out / "state.pt")


def weight_soup(networks: list[ClickNet]) -> ClickNet:
    """The mean of the networks' weights and floating-point buffers, in the first (a "model soup": runs continued
    from one network stay near it, and their mean is often better than each); a single network as it is."""
    soup = networks[0]
    for count, network in enumerate(networks[1:], start=2):
        update_average(soup, network, (count - 1) / count)
    return soup


def recipe(checkpoint: Path, meta: dict) -> str:
    """How the run that wrote `checkpoint` (its `meta`) trained, in words; for the shipped file, the manifest's
    words (its history is longer than its last run), and so for a run that continued the shipped file (the same
    sha256) before the words of its own run."""
    shipped = default_annotator_entry()
    if checkpoint.resolve() == default_annotator().resolve():
        return shipped["recipe"]
    run = meta["run"]
    start = f"continued from {meta['init']}: " if meta.get("init") else ""
    if meta.get("init_sha256") == shipped["sha256"]:
        start = f"{shipped['recipe']}; then {start}"
    return (f"{start}{meta['steps']} steps, batch {run['batch']}, crop {run['crop']}, lr {run['lr']} "
            f"(the trunk's ×{run.get('trunk_lr', 1.0)}); static-image augmentation, the object spanning "
            f"{run.get('object_min', 0):.0%}-{run.get('object_max', 0):.0%} of each crop, a painted shape as the "
            f"object in {SHAPE_ODDS:.0%} of the samples and a DAVIS object pasted onto another sequence's frame in "
            f"{run.get('paste_odds', 0.0):.0%}, simulated box/clicks with 0-3 rounds of the network's own errors"
            + (f"; one side of the object recoloured in {run['recolour_odds']:.0%} of the samples"
               if run.get("recolour_odds") else "")
            + (f"; a stride-2 head of {run['fine']} channels added{', trained alone' if run.get('fine_only') else ''}"
               if run.get("fine") else ""))


def ship(checkpoints: list[Path], name: str = SHIPPED_NAME) -> Path:
    """Write `checkpoints` (several: the mean of their weights, `weight_soup`) in fp16 as core/weights/<name>.pt
    and make it the default of core/weights/annotator.json, with its sha256 and provenance (data, steps, validation
    IoU; each checkpoint's for a mean, which must all have held out the same sequences). Every checkpoint is read
    before the file is written: the shipped one may be among them."""
    loaded = [load_annotator_checkpoint(checkpoint) for checkpoint in checkpoints]
    metas = [checkpoint["meta"] for checkpoint in loaded]
    recipes = [recipe(checkpoint, meta) for checkpoint, meta in zip(checkpoints, metas)]
    if any(m["validation_sequences"] != metas[0]["validation_sequences"] for m in metas):
        raise BadInput("--ship: these checkpoints held out different validation sequences; average only runs "
                       "that kept the same ones out (their mean would have trained on the other's validation)")
    network = weight_soup([annotator_from_checkpoint(checkpoint) for checkpoint in loaded])
    meta = metas[-1]
    if len(checkpoints) > 1:
        meta = {**meta, "averaged": [{"file": str(c), "steps": m["steps"], "validation": m["validation"]}
                                     for c, m in zip(checkpoints, metas)]}
    target = WEIGHTS_DIR / f"{name}.pt"
    digest = save_annotator(network, target, meta, half=True)
    described = recipes[0] if len(checkpoints) == 1 else "the mean of the weights of " + "; ".join(
        f"{checkpoint} ({words})" for checkpoint, words in zip(checkpoints, recipes))
    entry = {"file": target.name, "sha256": digest,
             "variant": "ClickNet: MobileNetV2 trunk (ImageNet init) + guidance conv on the stem + FPN decoder"
                        + (f" + a stride-2 head of {network.config.fine} channels" if network.config.fine else ""),
             "training_data": f"{meta['run']['data']}: {len(meta['training_sequences'])} sequences (validation held "
                              f"out), frames at {meta['run']['load_short_side']}p",
             "recipe": described, "steps": [m["steps"] for m in metas] if len(metas) > 1 else meta["steps"],
             "validation_sequences": meta["validation_sequences"],
             "validation_iou": meta["validation"] if len(metas) == 1 else None}  # a mean: measured in docs/RESULTS.md
    manifest = {"default": name, "checkpoints": {name: entry}}
    ANNOTATOR_MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return target


def annotator_weights(text: str) -> Path:
    """An argparse type for --init: an annotator checkpoint that loads, checked as the flags are parsed (before the
    data are loaded and the run folder made)."""
    try:
        load_annotator_checkpoint(text)
    except WeightsError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return Path(text)


def ship_source(text: str) -> Path:
    """An argparse type for --ship: a checkpoint, or a run folder (its best.pt); a run's best.pt it has not written
    yet is refused, naming the fix."""
    path = Path(text)
    if path.is_dir():
        path = path / "best.pt"
    if not path.exists() and (path.parent / "state.pt").exists():
        raise argparse.ArgumentTypeError(f"{path}: not written yet (a run writes it every --val-every steps and at "
                                         "its end); resume the run (its command again) until it has")
    return path


# the argparse types of the run's settings that are numbers or a device (the others: their default's type)
SETTING_TYPES: dict[str, Callable[[str], object]] = {
    "steps": whole_number(1), "seconds": bounded(1), "batch": whole_number(1), "crop": crop_side,
    "load_short_side": whole_number(MIN_CROP), "object_min": bounded(0.01, 1), "object_max": bounded(0.01, 1),
    "lr": bounded(0), "val_every": whole_number(1), "val_frames_every": whole_number(1), "seed": seed_number,
    "device": training_device, "ema": bounded(0, 0.9999), "redraw_odds": bounded(0, 1),
    "tracked_every": whole_number(1), "trunk_lr": bounded(0), "paste_odds": bounded(0, 1), "fine": whole_number(0),
    "recolour_odds": bounded(0, 1),
}


# what each of the run's settings is for, in --help (the default is added there)
SETTING_HELP: dict[str, str] = {
    "data": "DAVIS root to train on", "steps": "training steps",
    "seconds": "wall-clock budget; the learning rate follows whichever of it and --steps runs out first",
    "batch": "samples per step", "crop": "side of the square training crops, a multiple of 16",
    "load_short_side": "frames are loaded at this short side", "object_min": "the object's box spans at least this "
    "fraction of a crop", "object_max": "the object's box spans at most this fraction of a crop",
    "lr": "peak learning rate", "val_every": "steps between validations",
    "val_frames_every": "validate on every N-th frame of each validation sequence", "seed": "random seed",
    "device": "where the network trains and samples are drawn: cpu, cuda or cuda:N",
    "freeze_bn": "batch norms keep their running statistics (small batches)",
    "ema": "validate and save the weights' moving average of this decay, 0 for the weights themselves",
    "redraw_odds": "share of samples that redraw a tracker-like guess, with no click or box",
    "tracked": "a tracker's saved masks of the validation sequences (core.eval --out), whose redrawing is "
    "validated too", "tracked_every": "validate the redrawing on every N-th of those frames",
    "hold_out": "comma-separated sequences kept out and validated on; \"\" for none, to train the final model",
    "bf16": "training passes in bfloat16 autocast (CPUs with AMX, GPUs)",
    "trunk_lr": "the ImageNet trunk's learning rate as a share of --lr (0 freezes it)",
    "paste_odds": "share of samples whose object is pasted onto another sequence's frame",
    "fine": "channels of a stride-2 head that corrects the network's stride-4 answer (0: none)",
    "fine_only": "train only the stride-2 head (--fine); the rest keeps its weights",
    "recolour_odds": "share of samples with one side of their object recoloured (a colour edge inside an object)",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ToolParser(prog="python -m core.train.annotator", description=tool_description(__doc__))
    parser.add_argument("--out", type=output_folder, help="run folder (resumes when it holds state.pt)")
    parser.add_argument("--ship", type=ship_source, nargs="+",
                        help="instead of training: ship this checkpoint (e.g. RUN/best.pt, or RUN), or the mean of "
                             "these checkpoints' weights, as core/weights' annotator, fp16, with its provenance")
    for field, value in asdict(AnnotatorTraining()).items():
        if isinstance(value, bool):
            parser.add_argument(f"--{field.replace('_', '-')}", action="store_true", help=SETTING_HELP[field])
        else:
            parser.add_argument(f"--{field.replace('_', '-')}", type=SETTING_TYPES.get(field, type(value)),
                                default=value, help=f"{SETTING_HELP[field]} (default: {value!r})")
    parser.add_argument("--threads", type=whole_number(1), default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--init", type=annotator_weights,
                        help="start a new run from this annotator checkpoint's weights")
    args = parser.parse_args(argv)
    if args.ship and args.out:
        parser.error("--ship ships checkpoints and --out trains: give one of them")
    if not args.ship and args.out is None:
        parser.error("--out is required to train")
    if args.tracked and not args.hold_out.strip():
        parser.error("--tracked: its masks are validated on the held-out sequences, and --hold-out \"\" holds none "
                     "out; give one of them")
    if args.fine_only and not args.fine:
        parser.error("--fine-only trains the stride-2 head: give its channels with --fine C")
    if args.object_min > args.object_max:
        parser.error(f"--object-min {args.object_min:g} is above --object-max {args.object_max:g}; swap them")
    return args


def main(argv: list[str] | None = None) -> None:
    """Ship checkpoints (--ship) or train (--out); bad input ends in one line (`run_tool`: status 2)."""
    args = parse_args(argv)
    if args.ship:
        print(f"shipped {ship(args.ship)}, in place of the one before (`git checkout -- core/weights` brings it "
              "back)")
        return
    torch.set_num_threads(args.threads)
    train(AnnotatorTraining(**{k: getattr(args, k) for k in asdict(AnnotatorTraining())}), args.out, args.init)


if __name__ == "__main__":
    run_tool(main)
