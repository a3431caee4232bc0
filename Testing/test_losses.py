"""Focal Tversky and Dice+CE losses: hand computation, perfect prediction, weights, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from StrokePerfusionSegLib.losses import DiceCELoss, FocalTverskyLoss, group_sample_weights

from programmer_errors import raises_programmer_error


def _logits_from_probabilities(probabilities):
    return torch.log(torch.tensor(probabilities, dtype=torch.float32))


def test_focal_tversky_equals_hand_computation():
    # One image, 2 classes, 2 voxels; softmax probabilities p(class 0) = 0.8, 0.3.
    logits = _logits_from_probabilities([[[[0.8, 0.3]], [[0.2, 0.7]]]])
    targets = torch.tensor([[[0, 1]]])
    # Class 0: TP 0.8, FN 0.2, FP 0.3. Class 1: TP 0.7, FN 0.3, FP 0.2. Weights 1 and 2.
    # TI = (0.8 + 2*0.7) / ((0.8 + 0.7*0.2 + 0.3*0.3) + 2*(0.7 + 0.7*0.3 + 0.3*0.2)) = 2.2/2.97 = 20/27
    loss = FocalTverskyLoss(class_weights=(1.0, 2.0), eps=0.0)(logits, targets)
    assert loss.item() == pytest.approx((7 / 27) ** 0.75, rel=1e-5)


def test_focal_tversky_is_minimal_for_a_perfect_prediction():
    torch.manual_seed(0)
    targets = torch.randint(0, 4, (2, 8, 8))
    perfect = 40.0 * torch.nn.functional.one_hot(targets, 4).permute(0, 3, 1, 2).float()
    loss = FocalTverskyLoss()
    assert loss(perfect, targets).item() < 1e-3
    assert loss(torch.randn(2, 4, 8, 8), targets).item() > 0.1


def test_gradients_finite_with_empty_lesion_classes():
    targets = torch.ones(2, 8, 8, dtype=torch.long)  # brain only: no penumbra, no core
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    FocalTverskyLoss()(logits, targets).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0

    # All background (weight 0): TI is defined as 1, loss and gradient stay finite.
    logits = torch.randn(1, 4, 8, 8, requires_grad=True)
    loss = FocalTverskyLoss()(logits, torch.zeros(1, 8, 8, dtype=torch.long))
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(logits.grad).all()

    # A perfect prediction: TI = 1 is where the power's derivative blows up without the clamp.
    targets = torch.randint(0, 4, (1, 8, 8))
    logits = (60.0 * torch.nn.functional.one_hot(targets, 4).permute(0, 3, 1, 2).float()).requires_grad_()
    FocalTverskyLoss()(logits, targets).backward()
    assert torch.isfinite(logits.grad).all()


def test_sample_weights_zero_removes_a_sample_from_the_batch_sums():
    torch.manual_seed(1)
    logits, targets = torch.randn(2, 4, 6, 6), torch.randint(0, 4, (2, 6, 6))
    loss = FocalTverskyLoss()
    only_first = loss(logits, targets, torch.tensor([1.0, 0.0]))
    assert only_first.item() == pytest.approx(loss(logits[:1], targets[:1]).item(), rel=1e-6)
    # (B, C) factors equal to the class-independent (B,) factor give the same loss.
    per_class = torch.tensor([[1.0] * 4, [0.0] * 4])
    assert loss(logits, targets, per_class).item() == pytest.approx(only_first.item(), rel=1e-6)


def test_image_reduction_is_the_mean_of_single_image_losses():
    torch.manual_seed(2)
    logits, targets = torch.randn(3, 4, 6, 6), torch.randint(0, 4, (3, 6, 6))
    per_image = FocalTverskyLoss(reduction="image")(logits, targets)
    singles = [FocalTverskyLoss()(logits[i : i + 1], targets[i : i + 1]) for i in range(3)]
    assert per_image.item() == pytest.approx(torch.stack(singles).mean().item(), rel=1e-6)


def test_group_sample_weights_multiply_nonlvo_lesion_classes():
    weights = group_sample_weights(["LVO", "NonLVO", "WIS", None])
    expected = torch.ones(4, 4)
    expected[1, 2:] = 6.0
    torch.testing.assert_close(weights, expected)


def test_nonlvo_multiplier_raises_the_loss_of_a_missed_lesion():
    targets = torch.ones(1, 8, 8, dtype=torch.long)
    targets[0, 2:4, 2:4] = 3  # a small core the prediction misses (predicts brain everywhere)
    logits = 5.0 * torch.nn.functional.one_hot(torch.ones_like(targets), 4).permute(0, 3, 1, 2).float()
    loss = FocalTverskyLoss()
    lvo = loss(logits, targets, group_sample_weights(["LVO"]))
    nonlvo = loss(logits, targets, group_sample_weights(["NonLVO"]))
    assert nonlvo.item() > lvo.item()


def test_dice_ce_agrees_with_monai():
    monai_losses = pytest.importorskip("monai.losses")
    torch.manual_seed(3)
    logits, targets = torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 8, 8))
    reference = monai_losses.DiceCELoss(
        include_background=False, to_onehot_y=True, softmax=True, batch=True
    )(logits, targets[:, None])
    assert DiceCELoss()(logits, targets).item() == pytest.approx(reference.item(), rel=1e-5)


def test_dice_ce_is_small_for_a_perfect_prediction_and_has_gradients():
    targets = torch.randint(0, 4, (2, 8, 8))
    perfect = 30.0 * torch.nn.functional.one_hot(targets, 4).permute(0, 3, 1, 2).float()
    assert DiceCELoss()(perfect, targets).item() < 1e-3
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    DiceCELoss(class_weights=(0.0, 0.1, 50.0, 440.0))(logits, targets, torch.tensor([1.0, 6.0])).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("loss", [FocalTverskyLoss(), DiceCELoss()])
def test_bad_input(loss):
    logits = torch.randn(2, 4, 8, 8)
    with raises_programmer_error(ValueError, match="targets have shape"):
        loss(logits, torch.zeros(2, 8, 7, dtype=torch.long))
    with raises_programmer_error(ValueError, match="outside 0..3"):
        loss(logits, torch.full((2, 8, 8), 4))
    with raises_programmer_error(ValueError, match="sample_weights"):
        loss(logits, torch.zeros(2, 8, 8, dtype=torch.long), torch.ones(3))
    with raises_programmer_error(ValueError, match="class weights for 4 classes"):
        type(loss)(class_weights=(1.0, 1.0))(logits, torch.zeros(2, 8, 8, dtype=torch.long))


def test_bad_settings():
    with raises_programmer_error(ValueError, match="gamma must be positive"):
        FocalTverskyLoss(gamma=0.0)
    with raises_programmer_error(ValueError, match="unknown reduction"):
        FocalTverskyLoss(reduction="sum")
