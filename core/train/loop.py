"""The training loop: the unified loss over unrolled clips, validation (core.evaluation), resumable checkpoints."""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from core.clips.sampler import ClipSampler
from core.evaluation.davis import evaluate
from core.inference.tracker import Tracker
from core.inference.settings import TrackerConfig
from core.inference.unroll import Prediction, unroll
from core.io.command import BadInput
from core.model.losses import logit_distillation, representation_loss, segmentation_loss
from core.model.network import VOSNetwork, build_network, training_mode
from core.train.config import VALIDATION_SEQUENCES, TrainConfig
from core.train.data import davis_sequences, load_frames
from core.train.interrupt import stop_after_saving, stop_after_step
from core.weights import (TRUNK, changed_settings, load_checkpoint, load_network, load_trunk, restore_training_state,
                          save_atomically, save_checkpoint)


def clip_loss(config: TrainConfig, student: list[Prediction], teacher: list[Prediction] | None,
              masks: torch.Tensor, progress: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The weighted terms of the unified loss over the predicted frames; masks (B, T, 1, S, S)."""
    cfg = config.loss
    top = 1.0 if progress < 0.1 else max(0.15, 1.0 - (progress - 0.1) / 0.4 * 0.85)
    terms: dict[str, torch.Tensor] = {}
    for i, pred in enumerate(student, start=1):
        target = masks[:, i]
        parts = {"seg": cfg.seg * segmentation_loss(pred.logits.float(), target, top)}
        if cfg.logit_kd and teacher is not None:
            parts["kd"] = cfg.logit_kd * logit_distillation(pred.logits.float(), teacher[i - 1].logits.float(), cfg.tau)
        if cfg.rep:
            small = (F.avg_pool2d(target, 4) > 0.5).float()
            t_feat = teacher[i - 1].features if teacher is not None and cfg.omega > 0 else None
            parts["rep"] = cfg.rep * representation_loss(pred.features, t_feat, small, cfg.omega, cfg.boundary,
                                                         cfg.band, cfg.samples, generator)
        for k, v in parts.items():
            terms[k] = terms.get(k, 0) + v / len(student)
    terms["total"] = sum(terms.values())
    return terms


def validate(network: VOSNetwork, root: str, device: torch.device, memory: str = TrackerConfig.memory) -> float:
    """Mean J&F (points) on the validation split, tracking at the frames' own size with the `memory` the network
    trains with (the teacher's is "infinite"); leaves `network` in eval mode."""
    config = TrackerConfig(device=device.type, memory=memory)
    return evaluate(root, list(VALIDATION_SEQUENCES), lambda: Tracker(config, network), progress=False).jf


def load_matching(network: VOSNetwork, state_dict: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Copy the tensors of `state_dict` whose name and shape match `network`'s (a warm start across
    architectures that share parts); returns (copied, tensors in the network)."""
    own = network.state_dict()
    matching = {k: v.float() for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    network.load_state_dict(matching, strict=False)
    return len(matching), len(own)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


START_ONLY = ("init", "imagenet", "seed")  # settings a resumed run does not take: they set up a new run (its first
# weights, its random numbers' start; a resume continues from its state's)


class Trainer:
    """One resumable run: `out/state.pt` (training state), `out/best.pt`, `out/last.pt`, `out/log.jsonl`."""

    def __init__(self, config: TrainConfig, out: Path, device: torch.device, val_root: str | None):
        self.config, self.out, self.device, self.val_root = config, out, device, val_root
        seed_everything(config.seed)
        out.mkdir(parents=True, exist_ok=True)
        self.network = build_network(config.network).to(device)
        if not (out / "state.pt").exists():  # a new run; a resumed one gets its weights from its state
            self._initialise()
        self.teacher = self._load_teacher()
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.step, self.best, self.seconds = 0, -1.0, 0.0
        self.checkpointed = 0  # the step last validated and saved as last.pt (the run's end is one)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.started_with = asdict(config)  # the settings the run began with (a resume's may differ)
        self._resume()

    def _initialise(self) -> None:
        """A new run's first weights: the ImageNet trunk (MobileNetV2), then `init`'s matching tensors."""
        config = self.config
        if config.imagenet and config.network.backbone == "mobilenetv2":
            self.network.backbone.load_state_dict(load_trunk())
            print(f"{config.name}: key-encoder trunk initialised from ImageNet ({TRUNK.name})")
        if config.init:
            loaded, total = load_matching(self.network, load_checkpoint(config.init)["state_dict"])
            print(f"{config.name}: {loaded} of {total} tensors initialised from {config.init}")

    def _load_teacher(self) -> VOSNetwork | None:
        if not needs_teacher(self.config):
            return None
        teacher = load_network(self.config.teacher).to(self.device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    def _resume(self) -> None:
        state_path = self.out / "state.pt"
        if not state_path.exists():
            return
        state = restore_training_state(state_path, {"network": self.network, "optimizer": self.optimizer},
                                       self.device)
        self.step, self.best, self.seconds = state["step"], state["best"], state["seconds"]
        self.checkpointed = state.get("checkpointed", self.step)  # a state from before it was kept: saved at its end
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        changed = changed_settings(state, asdict(self.config), START_ONLY)
        self.started_with = state.get("settings", self.started_with)
        print(f"resumed {self.config.name} at step {self.step}"
              + (f"; changed since the run began: {changed}" if changed else ""))

    def _save_state(self) -> None:
        save_atomically({"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                         "step": self.step, "best": self.best, "seconds": self.seconds,
                         "checkpointed": self.checkpointed, "settings": self.started_with,
                         "generator": self.generator.get_state(),
                         "torch_rng": torch.get_rng_state()},
                        self.out / "state.pt")

    def progress(self) -> float:
        """Fraction of the run done: steps, or the wall-clock budget when that runs out first."""
        done = self.step / self.config.steps
        if self.config.seconds:
            done = max(done, self.seconds / self.config.seconds)
        return min(1.0, done)

    def _lr(self) -> float:
        """Linear warm-up over the first 3 % of the run, then cosine decay to zero."""
        progress = self.progress()
        if progress < 0.03:
            return self.config.lr * (0.1 + 0.9 * progress / 0.03)
        return self.config.lr * 0.5 * (1 + math.cos(math.pi * progress))

    def _meta(self, jf: float | None) -> dict:
        return {"name": self.config.name, "steps": self.step, "seconds": round(self.seconds, 1),
                "validation_jf": jf, "validation_sequences": list(VALIDATION_SEQUENCES),
                "config": json.loads(json.dumps(asdict(self.config))),
                "training_data": f"DAVIS-2016 train{' minus validation' if self.config.hold_out else ', all'} "
                                 f"({self.config.data.root})"}

    def _checkpoint(self, log) -> None:
        """Validate (unless the run has no validation), save last.pt and best.pt (last.pt's copy when nothing is
        validated), then the state, and say the J&F."""
        jf = validate(self.network, self.val_root, self.device, self.config.memory) if self.val_root else None
        save_checkpoint(self.network, self.out / "last.pt", self._meta(jf), half=True)
        if jf is None:
            shutil.copyfile(self.out / "last.pt", self.out / "best.pt")
        elif jf > self.best:
            self.best = jf
            save_checkpoint(self.network, self.out / "best.pt", self._meta(jf), half=True)
        self.checkpointed = self.step
        self._save_state()
        log({"step": self.step, "validation_jf": jf, "best_jf": self.best, "seconds": round(self.seconds, 1)})
        if jf is not None:
            tqdm.write(f"{self.config.name} step {self.step}: validation J&F {jf:.1f} (best {self.best:.1f})")

    def _train_step(self, sampler: ClipSampler, autocast: torch.autocast) -> dict[str, torch.Tensor]:
        """One optimiser step on a sampled batch of clips; returns the loss terms."""
        cfg = self.config
        progress = self.progress()
        frames, masks = sampler.sample(cfg.batch, progress)
        with autocast:
            student = unroll(self.network, frames, masks[:, 0], "first_previous")
            teacher = None
            if self.teacher is not None:
                with torch.no_grad():
                    teacher = unroll(self.teacher, frames, masks[:, 0], "infinite")
        terms = clip_loss(cfg, student, teacher, masks, progress, self.generator)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr()
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), 5.0)
        self.optimizer.step()
        self.step += 1
        return terms

    def fit(self, sampler: ClipSampler) -> None:
        """Train until the run's steps or seconds are done, validating and saving every `val_every` steps and at
        the end; a finished run only says so."""
        cfg = self.config
        if self.progress() >= 1.0 and self.checkpointed == self.step:
            print(f"{cfg.name}: already finished at step {self.step}; raise --steps (or --seconds) to train on")
            return
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16,
                                  enabled=self.device.type == "cuda" or cfg.bf16)
        with open(self.out / "log.jsonl", "a") as log_file:
            def log(record: dict) -> None:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()

            bar = tqdm(total=cfg.steps, initial=self.step, desc=cfg.name, unit="step", mininterval=5)
            training_mode(self.network, cfg.freeze_bn)
            started = time.perf_counter()
            with stop_after_step() as stop:
                while self.progress() < 1.0 and not stop.asked:
                    terms = self._train_step(sampler, autocast)
                    bar.update()
                    if self.step % 25 == 0:
                        log({"step": self.step, **{k: round(v.item(), 5) for k, v in terms.items()}})
                        bar.set_postfix(loss=f"{terms['total'].item():.3f}")
                    if self.step % cfg.val_every == 0:
                        self._checkpoint(log)
                        training_mode(self.network, cfg.freeze_bn)
                    now = time.perf_counter()
                    self.seconds += now - started  # wall clock, validation included
                    started = now
            bar.close()
            if stop.asked or self.checkpointed != self.step:  # every step kept before the last validation, which
                self._save_state()                            # a Ctrl-C may cut short
            if stop.asked:  # Ctrl-C: the state of the last whole step is kept
                stop_after_saving(self.step, self.out / "state.pt")
            if self.checkpointed != self.step:
                self._checkpoint(log)


def needs_teacher(config: TrainConfig) -> bool:
    """Whether the run's loss distils a teacher (logit or representation distillation with ω > 0)."""
    return bool(config.loss.logit_kd or (config.loss.rep and config.loss.omega > 0))


def check_validation_root(val_root: str) -> None:
    """BadInput unless `val_root` is a DAVIS root holding every validation sequence (checked before any work: a run
    would otherwise fail at its first validation, its steps unsaved)."""
    missing = [name for name in VALIDATION_SEQUENCES if name not in davis_sequences(val_root)]
    if missing:
        raise BadInput(f"{val_root}: lacks the validation sequence{'s' * (len(missing) > 1)} {', '.join(missing)} "
                       "(J&F is measured on DAVIS-2016's); pass --no-val to train on your own data without "
                       "validating, or --val-root a DAVIS root that holds them")


def train(config: TrainConfig, out: Path, device: torch.device, val_root: str | None) -> Path:
    """Run (or resume) `config`; returns the path of the best checkpoint. The data (and the validation root) are
    checked and loaded before `out` is made."""
    if needs_teacher(config) and not config.teacher:
        raise BadInput(f"--preset {config.name}: distils a teacher; pass --teacher PATH (a checkpoint, e.g. a "
                       "teacher run's best.pt)")
    if val_root is not None:
        check_validation_root(val_root)
    names = davis_sequences(config.data.root, exclude=VALIDATION_SEQUENCES if config.hold_out else ())
    store = load_frames(config.data.root, names, config.data.load_short_side).to(device)
    trainer = Trainer(config, out, device, val_root)
    trainer.fit(ClipSampler(store, config.data, config.seed))
    return out / "best.pt"
