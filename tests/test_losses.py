"""Each term of the unified loss on tiny tensors whose value can be worked out by hand."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from core.model.losses import (boundary_band, correlation, logit_distillation, renyi_loss,
                               representation_loss, segmentation_loss, unified_target)


def _one_hot_features(labels: list[int]) -> torch.Tensor:
    return F.one_hot(torch.tensor(labels), 2).float()


def test_renyi_loss_by_hand() -> None:
    s = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # Σ S² = 2.5; Σ (S∘T)² = 2  →  log₂ 1.25
    assert math.isclose(renyi_loss(s, t).item(), math.log2(1.25), rel_tol=1e-6)


def test_omega_zero_is_supervised_contrastive_with_optimum_at_the_label_pattern() -> None:
    labels = torch.tensor([0, 0, 1, 1, 0])
    target = unified_target(None, labels, omega=0.0)
    assert torch.equal(target, _one_hot_features([0, 0, 1, 1, 0]) @ _one_hot_features([0, 0, 1, 1, 0]).T)
    perfect = correlation(_one_hot_features([0, 0, 1, 1, 0]))  # classes orthogonal, same class aligned
    assert abs(renyi_loss(perfect, target).item()) < 1e-6
    torch.manual_seed(0)
    assert renyi_loss(correlation(torch.randn(5, 8)), target).item() > 0.05


def test_identical_student_and_teacher_give_the_optimum() -> None:
    teacher = correlation(_one_hot_features([1, 0, 1, 0]))
    labels = torch.tensor([1, 0, 1, 0])
    target = unified_target(teacher, labels, omega=0.95)
    assert abs(renyi_loss(teacher.clone(), target).item()) < 1e-6  # S = T: minimum 0
    torch.manual_seed(1)
    assert renyi_loss(correlation(torch.randn(4, 3)), target).item() > 0


def test_unified_target_interpolates() -> None:
    teacher = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    target = unified_target(teacher, torch.tensor([0, 1]), omega=0.95)
    # diagonal: 0.95·1 + 0.05·1; across the two classes: 0.95·0.5 + 0.05·0
    assert torch.allclose(target, torch.tensor([[1.0, 0.475], [0.475, 1.0]]))


def test_boundary_band_is_dilation_minus_erosion() -> None:
    mask = torch.zeros(1, 1, 9, 9)
    mask[..., 2:7, 2:7] = 1
    band = boundary_band(mask, 1)[0, 0]
    expected = torch.zeros(9, 9, dtype=torch.bool)
    expected[1:8, 1:8] = True
    expected[3:6, 3:6] = False
    assert torch.equal(band, expected)


def test_representation_loss_uses_only_band_pixels() -> None:
    labels = torch.zeros(1, 1, 8, 8)
    labels[..., :, 4:] = 1
    feats = torch.randn(1, 6, 8, 8)
    far = feats.clone()
    far[..., :, 0] = torch.randn(6, 8)  # column 0 is outside the band (width 1 around column 3/4)
    a = representation_loss(feats, None, labels, 0.0, True, 1, 1000)
    b = representation_loss(far, None, labels, 0.0, True, 1, 1000)
    assert torch.isclose(a, b)
    c = representation_loss(far, None, labels, 0.0, False, 1, 1000)
    assert not torch.isclose(a, c)


def test_a_frame_without_its_object_leaves_the_band_loss_and_its_gradients_finite() -> None:
    labels = torch.zeros(2, 1, 8, 8)
    labels[0, :, :, 4:] = 1  # the second frame has no object, so no boundary band: it is left out
    student = torch.randn(2, 6, 8, 8, requires_grad=True)
    teacher = torch.randn(2, 5, 8, 8)
    loss = representation_loss(student, teacher, labels, 0.95, True, 1, 1000)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()
    assert torch.isclose(loss, representation_loss(student[:1], teacher[:1], labels[:1], 0.95, True, 1, 1000))


def test_logit_distillation_zero_for_identical_and_positive_otherwise() -> None:
    z = torch.randn(2, 1, 4, 4)
    assert logit_distillation(z, z, 0.1).abs().item() < 1e-6
    assert logit_distillation(z, -z, 0.1).item() > 0


def test_segmentation_loss_prefers_the_right_mask() -> None:
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    good = segmentation_loss(target * 20 - 10, target)
    bad = segmentation_loss(10 - target * 20, target)
    assert good.item() < 0.01 < bad.item()


def test_bootstrapping_averages_only_the_hardest_pixels() -> None:
    target = torch.zeros(1, 1, 2, 2)
    logits = torch.tensor([[[[0.0, -20.0], [-20.0, -20.0]]]])  # one uncertain pixel, three confident ones
    hardest = segmentation_loss(logits, target, 0.25) - segmentation_loss(logits, target, 1.0)
    assert math.isclose(hardest.item(), math.log(2) * 0.75, rel_tol=1e-3)


def test_batched_frames_equal_the_mean_of_single_frames() -> None:
    torch.manual_seed(2)
    labels = torch.zeros(2, 1, 10, 10)
    labels[0, :, 2:8, 2:8] = 1  # a large object …
    labels[1, :, 4:6, 4:6] = 1  # … and a small one: bands of different sizes, so padding is needed
    student, teacher = torch.randn(2, 5, 10, 10), torch.randn(2, 7, 10, 10)
    both = representation_loss(student, teacher, labels, 0.95, True, 1, 1000)
    single = [representation_loss(student[i:i + 1], teacher[i:i + 1], labels[i:i + 1], 0.95, True, 1, 1000)
              for i in range(2)]
    assert torch.isclose(both, torch.stack(single).mean(), atol=1e-5)
