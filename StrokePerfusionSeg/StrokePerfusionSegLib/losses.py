"""Segmentation losses: the paper's focal Tversky loss and a Dice + cross-entropy baseline.

Both take raw logits ``(B, C, H, W)`` (softmax is applied here, not in the model), integer
targets ``(B, H, W)`` with labels 0..C-1, and optional per-sample weights.

Per-sample weights are either ``(B,)`` (one factor for every class of a sample) or ``(B, C)``
(one factor per class of a sample). :func:`group_sample_weights` builds the paper's
``(B, C)`` weights: core and penumbra x6 for Non-LVO patients, so that their small lesions
are not drowned by the large LVO ones.

Partly labelled datasets (:mod:`.labelschemes`) go through
:func:`marginal_log_probabilities` first: it turns the network's logits over the four classes
into log-probabilities of the stored label values, which either loss then takes as its logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .labels import CORE, NUM_CLASSES, PENUMBRA

#: Class weights of the paper: background 0, brain 0.1, penumbra 50, core 440.
PAPER_CLASS_WEIGHTS = (0.0, 0.1, 50.0, 440.0)
#: Factor on the core and penumbra weights of Non-LVO patients during training (paper).
NONLVO_LESION_MULTIPLIER = 6.0
REDUCTIONS = ("batch", "image")


def group_sample_weights(
    groups: Sequence[str | None],
    *,
    num_classes: int = NUM_CLASSES,
    nonlvo_multiplier: float = NONLVO_LESION_MULTIPLIER,
) -> torch.Tensor:
    """Per-sample, per-class weight factors from the patients' groups.

    Parameters
    ----------
    groups : sequence of str or None, length B
        ``"LVO"``, ``"NonLVO"``, ``"WIS"`` (or None when unknown) for each sample of a batch.
    num_classes : int
        C; the lesion classes are :data:`labels.PENUMBRA` and :data:`labels.CORE`.
    nonlvo_multiplier : float
        Factor on the penumbra and core weights of Non-LVO samples.

    Returns
    -------
    Tensor of float32, shape ``(B, C)``
        1 everywhere except ``nonlvo_multiplier`` on the lesion classes of Non-LVO samples;
        pass it as ``sample_weights`` to a loss of this module.
    """
    weights = torch.ones(len(groups), num_classes, dtype=torch.float32)
    lesion = [label for label in (PENUMBRA, CORE) if label < num_classes]
    for row, group in enumerate(groups):
        if group == "NonLVO":
            weights[row, lesion] = nonlvo_multiplier
    return weights


#: Log-probability given to a stored value whose class set is empty (finite, unlike log 0,
#: so gradients stay finite; its probability is e**-1e4, i.e. 0).
_EMPTY_LOG_PROBABILITY = -1e4


def marginal_log_probabilities(logits: torch.Tensor, class_sets: torch.Tensor) -> torch.Tensor:
    """Log of the summed class probabilities behind each stored label value.

    Parameters
    ----------
    logits : Tensor, shape ``(B, C, H, W)``
        The network's raw output over its C classes.
    class_sets : Tensor, shape ``(B, V, C)``
        1 where stored value ``v`` of sample ``b`` may be class ``c`` (a label scheme's
        :meth:`~StrokePerfusionSegLib.labelschemes.LabelScheme.class_sets`), else 0.

    Returns
    -------
    Tensor of float32, shape ``(B, V, H, W)``
        ``log(sum_c class_sets[b, v, c] * softmax(logits)[b, c])``. Its softmax over V is that
        marginal probability again, so it can stand for the logits of a loss whose targets are
        stored values: a value allowed to be penumbra or brain is then matched by either.
    """
    if logits.ndim != 4 or class_sets.ndim != 3 or class_sets.shape[0] != logits.shape[0] \
            or class_sets.shape[2] != logits.shape[1]:
        raise ValueError(
            f"class sets {tuple(class_sets.shape)} do not fit logits {tuple(logits.shape)}: "
            "expected (B, V, C) for logits (B, C, H, W)"
        )
    log_p = torch.log_softmax(logits.float(), dim=1)[:, None]  # (B, 1, C, H, W)
    allowed = class_sets.to(device=logits.device, dtype=torch.bool)[:, :, :, None, None]
    masked = log_p.masked_fill(~allowed, _EMPTY_LOG_PROBABILITY)
    return torch.logsumexp(masked, dim=2)


def _expand_sample_weights(sample_weights, batch: int, classes: int, like: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` weight factors from None, ``(B,)`` or ``(B, C)``."""
    if sample_weights is None:
        return torch.ones(batch, classes, dtype=like.dtype, device=like.device)
    weights = torch.as_tensor(sample_weights, dtype=like.dtype, device=like.device)
    if weights.shape == (batch,):
        return weights[:, None].expand(batch, classes)
    if weights.shape == (batch, classes):
        return weights
    raise ValueError(
        f"sample_weights has shape {tuple(weights.shape)}: give ({batch},) or ({batch}, {classes})"
    )


def _probabilities_and_one_hot(logits: torch.Tensor, targets: torch.Tensor):
    if logits.ndim != 4:
        raise ValueError(f"logits have shape {tuple(logits.shape)}: expected (B, C, H, W)")
    batch, classes, height, width = logits.shape
    if tuple(targets.shape) != (batch, height, width):
        raise ValueError(
            f"targets have shape {tuple(targets.shape)}: expected ({batch}, {height}, {width}) labels"
        )
    targets = targets.long()
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= classes):
        raise ValueError(f"targets hold labels outside 0..{classes - 1}")
    probabilities = torch.softmax(logits.float(), dim=1)
    one_hot = F.one_hot(targets, classes).permute(0, 3, 1, 2).to(probabilities.dtype)
    return probabilities, one_hot


def _check_class_count(class_weights: torch.Tensor, classes: int) -> None:
    if class_weights.numel() != classes:
        raise ValueError(
            f"{class_weights.numel()} class weights for {classes} classes: give one per class"
        )


class FocalTverskyLoss(nn.Module):
    """Class-weighted focal Tversky loss (Abraham & Khan 2019, as weighted by Tomasetti et al.).

    ``loss = (1 - TI) ** (1 / gamma)`` with
    ``TI = sum(w * TP) / sum(w * (TP + alpha * FN + beta * FP))``, where for each voxel and
    class ``TP = p * g``, ``FN = (1 - p) * g``, ``FP = p * (1 - g)`` (``p`` the softmax
    probability, ``g`` the one-hot target) and ``w`` is the class weight times the sample's
    weight factor. The sums run over classes and voxels.

    Parameters
    ----------
    alpha, beta : float
        Weights of false negatives and false positives (alpha > beta favours recall).
    gamma : float
        Focal exponent; ``1 / gamma < 1`` raises the loss of hard examples.
    class_weights : sequence of float, length C
        Paper defaults: background 0, brain 0.1, penumbra 50, core 440.
    reduction : {"batch", "image"}
        ``"batch"`` (default, as the paper's reference code): one TI over the whole batch.
        ``"image"``: one TI and loss per image, then their mean; a lesion-free slice then
        weighs as much as a slice full of lesion.
    eps : float
        Added to numerator and denominator: a batch whose weights are all zero gets TI = 1
        (loss 0, zero gradient) instead of 0/0.

    Forward: ``loss(logits (B, C, H, W), targets (B, H, W) int, sample_weights=None)``
    -> scalar tensor.
    """

    def __init__(
        self,
        alpha: float = 0.7,
        beta: float = 0.3,
        gamma: float = 4.0 / 3.0,
        class_weights: Sequence[float] = PAPER_CLASS_WEIGHTS,
        reduction: str = "batch",
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction '{reduction}': use one of {', '.join(REDUCTIONS)}")
        if gamma <= 0:
            raise ValueError(f"gamma must be positive, got {gamma}")
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.reduction, self.eps = reduction, float(eps)
        self.register_buffer("class_weights", torch.tensor(class_weights, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, sample_weights=None) -> torch.Tensor:
        probabilities, one_hot = _probabilities_and_one_hot(logits, targets)
        batch, classes = probabilities.shape[:2]
        _check_class_count(self.class_weights, classes)
        weights = self.class_weights.to(probabilities) * _expand_sample_weights(
            sample_weights, batch, classes, probabilities
        )
        true_positive = (probabilities * one_hot).sum(dim=(2, 3))
        false_negative = ((1.0 - probabilities) * one_hot).sum(dim=(2, 3))
        false_positive = (probabilities * (1.0 - one_hot)).sum(dim=(2, 3))
        numerator = weights * true_positive
        denominator = weights * (true_positive + self.alpha * false_negative + self.beta * false_positive)
        summed = (0, 1) if self.reduction == "batch" else (1,)
        tversky = (numerator.sum(dim=summed) + self.eps) / (denominator.sum(dim=summed) + self.eps)
        # Clamping keeps the power's gradient finite when TI reaches 1.
        return ((1.0 - tversky).clamp_min(self.eps) ** (1.0 / self.gamma)).mean()


class DiceCELoss(nn.Module):
    """Baseline: soft Dice (mean over classes) plus class-weighted cross-entropy.

    Dice per class ``1 - (2 sum(p g) + eps) / (sum(p) + sum(g) + eps)`` summed over the batch
    and voxels; cross-entropy per voxel weighted by ``class_weights`` (None: all 1) and by the
    sample's weight factor for the voxel's true class, averaged over voxels.

    Forward: ``loss(logits (B, C, H, W), targets (B, H, W) int, sample_weights=None)``
    -> scalar tensor.
    """

    def __init__(
        self,
        class_weights: Sequence[float] | None = None,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        include_background: bool = False,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.dice_weight, self.ce_weight, self.eps = float(dice_weight), float(ce_weight), float(eps)
        self.include_background = include_background
        self.register_buffer(
            "class_weights",
            None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32),
        )

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, sample_weights=None) -> torch.Tensor:
        probabilities, one_hot = _probabilities_and_one_hot(logits, targets)
        batch, classes = probabilities.shape[:2]
        first = 0 if self.include_background else 1
        overlap = (probabilities * one_hot).sum(dim=(0, 2, 3))[first:]
        sizes = (probabilities + one_hot).sum(dim=(0, 2, 3))[first:]
        dice_loss = (1.0 - (2.0 * overlap + self.eps) / (sizes + self.eps)).mean()

        factors = _expand_sample_weights(sample_weights, batch, classes, probabilities)
        targets = targets.long()
        voxel_weights = torch.gather(factors, 1, targets.flatten(1)).view_as(targets)
        if self.class_weights is not None:
            _check_class_count(self.class_weights, classes)
            voxel_weights = voxel_weights * self.class_weights.to(probabilities)[targets]
        cross_entropy = F.cross_entropy(logits.float(), targets, reduction="none")
        ce_loss = (voxel_weights * cross_entropy).mean()
        return self.dice_weight * dice_loss + self.ce_weight * ce_loss
