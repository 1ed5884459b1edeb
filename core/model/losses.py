"""The unified MobileVOS loss: segmentation, logit distillation, and representation distillation / contrast.

Representation term, from the definitions. For L2-normalised pixel features Z (N × C) the correlation
S = Z Zᵀ has a unit diagonal, so tr S = N. The order-2 matrix Rényi entropy of A = S / N is
H₂(A) = −log₂ ‖A‖²_F, and the joint entropy of two such matrices uses their Hadamard product
(S ∘ T) / N (again trace 1). The mutual information I(S; T) = H₂(S) + H₂(T) − H₂(S, T) then equals
log₂ ‖S ∘ T‖²_F − log₂ ‖S‖²_F − log₂ ‖T‖²_F + 2 log₂ N. With the target T fixed, maximising it over the
student means minimising

    L_rep = log₂ Σᵢⱼ Sᵢⱼ² − log₂ Σᵢⱼ (Sᵢⱼ Tᵢⱼ)²      (≥ 0 whenever |Tᵢⱼ| ≤ 1),

which is zero exactly when S vanishes wherever |Tᵢⱼ| < 1: pixels the target calls identical may stay aligned,
all others must become orthogonal. With the unified target T = ω·T_teacher + (1 − ω)·Y Yᵀ (Y one-hot labels),
ω = 0 gives a supervised contrastive loss whose optimum is S = Y Yᵀ (same class aligned, classes orthogonal);
a student identical to a teacher whose correlations are such a 0/1 pattern is at the optimum. For a general
teacher correlation the optimum is *not* S = T (the loss also rewards decorrelating pixels the teacher finds
only partly similar) — a property of this form, recorded in docs/RESULTS.md.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, top_fraction: float = 1.0) -> torch.Tensor:
    """Bootstrapped binary cross-entropy (mean of the hardest `top_fraction` pixels) + soft dice.

    logits, target (B, 1, H, W).
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1)
    k = max(1, int(bce.shape[1] * top_fraction))
    hard = bce.topk(k, dim=1).values.mean()
    probs = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (probs * t).sum(1) + 1) / (probs.sum(1) + t.sum(1) + 1)
    return hard + dice.mean()


def logit_distillation(student: torch.Tensor, teacher: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Mean per-pixel KL(p_teacher ‖ p_student) of the binary object probabilities at temperature `tau`."""
    p_t = torch.sigmoid(teacher / tau)
    log_s1, log_s0 = F.logsigmoid(student / tau), F.logsigmoid(-student / tau)
    log_t1, log_t0 = F.logsigmoid(teacher / tau), F.logsigmoid(-teacher / tau)
    kl = p_t * (log_t1 - log_s1) + (1 - p_t) * (log_t0 - log_s0)
    return kl.mean()


def correlation(features: torch.Tensor) -> torch.Tensor:
    """(…, N, C) pixel features → (…, N, N) correlation of their L2-normalised rows."""
    z = F.normalize(features, dim=-1)
    return z @ z.transpose(-1, -2)


def renyi_loss(student: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """L_rep = log₂ Σ S² − log₂ Σ (S ∘ T)² over the last two dimensions of correlations S (student) and T (target);
    `weights` (same shape, 0/1) leave padded pairs out. Both sums are held above 1e-12, so a matrix weighted out
    entirely gives a finite loss and zero gradients (not NaN) when the caller drops it."""
    num, den = student.pow(2), (student * target).pow(2)
    if weights is not None:
        num, den = num * weights, den * weights
    return torch.log2(num.sum(dim=(-2, -1)).clamp_min(1e-12)) - torch.log2(den.sum(dim=(-2, -1)).clamp_min(1e-12))


def unified_target(teacher: torch.Tensor | None, labels: torch.Tensor, omega: float) -> torch.Tensor:
    """ω·T_teacher + (1 − ω)·Y Yᵀ for labels (…, N) in {0, 1}; the teacher may be None when ω = 0."""
    y = F.one_hot(labels.long(), 2).float()
    label_corr = y @ y.transpose(-1, -2)
    if omega == 0 or teacher is None:
        return label_corr
    return omega * teacher + (1 - omega) * label_corr


def boundary_band(mask: torch.Tensor, width: int) -> torch.Tensor:
    """(B, 1, h, w) binary mask → bool band of pixels within `width` of its boundary (dilation − erosion)."""
    k = 2 * width + 1
    dilated = F.max_pool2d(mask, k, stride=1, padding=width)
    eroded = -F.max_pool2d(-mask, k, stride=1, padding=width)
    return (dilated - eroded) > 0.5


def _gather_pixels(features: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
    """features (B, C, h, w), picked (B, K) flat pixel indices → (B, K, C) float."""
    flat = features.flatten(2).float()
    return flat.gather(2, picked[:, None].expand(-1, flat.shape[1], -1)).transpose(1, 2)


def representation_loss(student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor,
                        omega: float, boundary: bool, width: int, samples: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean over the batch of L_rep on sampled pixels, all frames at once.

    student (B, Cs, h, w), teacher (B, Ct, h, w) or None, labels (B, 1, h, w) in {0, 1}. Pixels are those of the
    boundary band (when `boundary`) or all, at most `samples` per frame drawn at random; each frame is its own
    correlation matrix (frames with fewer pixels are padded and the padding weighted out), so small and large
    objects weigh the same. Frames with fewer than two pixels are left out.
    """
    region = (boundary_band(labels, width) if boundary else torch.ones_like(labels, dtype=torch.bool)).flatten(1)
    k = int(min(samples, int(region.sum(dim=1).max())))
    if k < 2:
        return student.sum() * 0
    scores = torch.rand(region.shape, generator=generator).to(region.device).masked_fill(~region, -1.0)
    picked = scores.topk(k, dim=1).indices  # (B, K): region pixels first, in random order
    valid = region.gather(1, picked).float()  # (B, K)
    weights = valid[:, :, None] * valid[:, None, :]
    y = labels.flatten(1).gather(1, picked)
    t = correlation(_gather_pixels(teacher, picked)) if teacher is not None else None
    losses = renyi_loss(correlation(_gather_pixels(student, picked)), unified_target(t, y, omega), weights)
    keep = valid.sum(dim=1) >= 2
    return losses[keep].mean()
