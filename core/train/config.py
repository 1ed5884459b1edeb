"""Training configurations as small dataclasses, and the presets for each stage and variant."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from core.clips.sampler import DataConfig
from core.io.command import BadInput
from core.model.network import NetworkConfig
from core.model.variants import STUDENTS, TEACHER

# DAVIS-2016 train sequences kept out of training: our validation split. The first six were the split until
# stop 9; the last four were drawn by random.Random(0).sample from the other 24 (sorted) to make it 10.
VALIDATION_SEQUENCES = ("bmx-bumps", "dance-jump", "hike", "mallard-water", "scooter-gray", "tennis",
                        "lucia", "mallard-fly", "boat", "flamingo")


@dataclass(frozen=True)
class LossConfig:
    """Which terms of the unified loss are on, and their settings."""

    seg: float = 1.0               # bootstrapped cross-entropy + dice
    logit_kd: float = 0.0          # weight of logit distillation (KL at temperature tau)
    tau: float = 0.1
    rep: float = 0.0               # weight of representation distillation (Rényi MI on correlations)
    omega: float = 0.95            # target = ω·teacher correlation + (1 − ω)·label correlation
    boundary: bool = True          # sample pixels only in a band around the object boundary
    band: int = 2                  # band half-width in stride-4 pixels
    samples: int = 1024            # pixels per frame at most in the correlation matrices


@dataclass(frozen=True)
class TrainConfig:
    """One training run."""

    name: str
    network: NetworkConfig = field(default_factory=NetworkConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    memory: str = "first_previous"  # "infinite" for the teacher
    steps: int = 3000
    seconds: float | None = None    # stop early when this wall-clock budget is spent
    batch: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    imagenet: bool = True           # MobileNetV2 key-encoder trunks start from core/weights' ImageNet trunk
    init: str | None = None         # checkpoint to start from (after the ImageNet trunk; matching tensors)
    teacher: str | None = None      # checkpoint of the teacher (needed when logit_kd or rep > 0)
    val_every: int = 500
    seed: int = 0
    hold_out: bool = True           # keep VALIDATION_SEQUENCES out of training (False: the final model, on all)
    freeze_bn: bool = False         # batch norms keep their running statistics (fine-tuning at small batches)
    bf16: bool = False              # the forward passes in bfloat16 on the CPU too (AMX); always on CUDA


FULL_LOSS = LossConfig(logit_kd=1.0, rep=1.0, omega=0.95, boundary=True)
# the paper's ablation, each row adding one term to the one before: segmentation only; + logit distillation;
# + representation distillation on all pixels; + boundary sampling (the full loss); the full loss with ω = 0
ABLATION_LOSSES = {
    "seg": LossConfig(),
    "logit": LossConfig(logit_kd=1.0),
    "rep-all": replace(FULL_LOSS, boundary=False),
    "rep-boundary": FULL_LOSS,
    "omega0": replace(FULL_LOSS, omega=0.0),
}


def presets() -> dict[str, TrainConfig]:
    """Named configurations: stage 0 / 1 per variant, the teacher, and the ablation rows."""
    named = {
        "teacher": TrainConfig("teacher", TEACHER, DataConfig(clip_frames=5), memory="infinite", batch=16),
        **{f"s0-{v}": TrainConfig(f"s0-{v}", n, DataConfig(synthetic=True)) for v, n in STUDENTS.items()},
        **{f"s1-{v}": TrainConfig(f"s1-{v}", n, loss=FULL_LOSS) for v, n in STUDENTS.items()},
        # stage 2: a faster architecture, warm-started from a trained student (--init; matching tensors only),
        # segmentation loss (the best row of the ablation)
        "s2-fast": TrainConfig("s2-fast", STUDENTS["mnv2aspp-fast"]),
        "s2-light-value": TrainConfig("s2-light-value", STUDENTS["mnv2aspp-light-value"]),
        # stage 3: the fast student from the ImageNet trunk: static-image pseudo-clips, then real clips (--init)
        "static-fast": TrainConfig("static-fast", STUDENTS["mnv2aspp-fast"], DataConfig(static=True, clip_frames=3)),
        "s3-fast": TrainConfig("s3-fast", STUDENTS["mnv2aspp-fast"]),
        # the ablation rows, each with the first student (abl-ROW) and the fast one (abl-fast-ROW)
        **{f"abl-{row}": TrainConfig(f"abl-{row}", STUDENTS["mnv2aspp"], loss=loss)
           for row, loss in ABLATION_LOSSES.items()},
        **{f"abl-fast-{row}": TrainConfig(f"abl-fast-{row}", STUDENTS["mnv2aspp-fast"], loss=loss)
           for row, loss in ABLATION_LOSSES.items()},
    }
    named["s1-resnet18"] = replace(named["s1-resnet18"], loss=replace(FULL_LOSS, omega=0.0))
    return named


def preset(name: str) -> TrainConfig:
    """The configuration named `name` (`presets`); BadInput listing them for an unknown name."""
    named = presets()
    if name not in named:
        raise BadInput(f"--preset {name!r}: unknown; choose one of: {', '.join(sorted(named))}")
    return named[name]
