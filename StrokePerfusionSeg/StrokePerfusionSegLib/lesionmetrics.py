"""The ISLES challenge metrics of one binary lesion mask against the truth, in 3D.

ISLES 2022 and 2024 rank teams by four numbers per patient (the challenge's ``eval_utils``,
built on the panoptica package):

* Dice of the two masks (1 when both are empty);
* absolute volume difference ``|Vtruth - Vpred|`` in ml;
* lesion-wise F1: lesions are the connected components of each mask (26-connectivity, the
  default of the cc3d labelling panoptica calls); a predicted and a true lesion match when
  their intersection over union is at least 0.5 (panoptica's ``NaiveThresholdMatching``
  defaults, one-to-one); ``F1 = TP / (TP + (FP + FN) / 2)``, 1 when both masks are empty;
* absolute lesion count difference ``|N_truth - N_pred|``.

Components come from :func:`scipy.ndimage.label`, the overlaps from one contingency count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .metrics import check_masks, dice, volume_ml
from .volumes import check_spacing

#: Lowest intersection over union at which a predicted lesion matches a true one.
MATCH_IOU = 0.5
#: Keys of :func:`isles_metrics`.
ISLES_KEYS = ("dice", "abs_volume_difference_ml", "lesion_f1", "abs_lesion_count_difference")
_FULL_CONNECTIVITY = ndimage.generate_binary_structure(3, 3)


def lesion_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected lesions of a ``(z, y, x)`` mask: label image (0 = none, 1..n) and n."""
    labelled, count = ndimage.label(np.asarray(mask, dtype=bool), structure=_FULL_CONNECTIVITY)
    return labelled, int(count)


def matched_lesions(pred_lesions: np.ndarray, truth_lesions: np.ndarray) -> int:
    """Number of (predicted, true) lesion pairs whose IoU is at least :data:`MATCH_IOU`.

    An IoU of 0.5 or more pairs a lesion with at most one partner, so the count is one-to-one.
    """
    n_pred, n_truth = int(pred_lesions.max(initial=0)), int(truth_lesions.max(initial=0))
    if n_pred == 0 or n_truth == 0:
        return 0
    overlap = np.zeros((n_pred + 1, n_truth + 1), dtype=np.int64)
    np.add.at(overlap, (pred_lesions.ravel(), truth_lesions.ravel()), 1)
    sizes_pred = overlap.sum(axis=1)[1:, None]
    sizes_truth = overlap.sum(axis=0)[None, 1:]
    intersection = overlap[1:, 1:]
    union = sizes_pred + sizes_truth - intersection
    return int(np.count_nonzero((intersection > 0) & (intersection >= MATCH_IOU * union)))


def isles_metrics(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """The four ISLES metrics of binary masks ``(z, y, x)`` with voxel ``spacing`` (z, y, x) mm.

    Returns
    -------
    dict
        ``dice``, ``abs_volume_difference_ml`` (ml), ``lesion_f1`` and
        ``abs_lesion_count_difference`` (see the module docstring).
    """
    pred, truth = check_masks(pred, truth)
    spacing = check_spacing(spacing)
    pred_lesions, n_pred = lesion_components(pred)
    truth_lesions, n_truth = lesion_components(truth)
    if n_pred == 0 and n_truth == 0:
        f1 = 1.0
    else:
        true_positive = matched_lesions(pred_lesions, truth_lesions)
        false_positive, false_negative = n_pred - true_positive, n_truth - true_positive
        f1 = true_positive / (true_positive + 0.5 * (false_positive + false_negative))
    return {
        "dice": dice(pred, truth),
        "abs_volume_difference_ml": abs(volume_ml(pred, spacing) - volume_ml(truth, spacing)),
        "lesion_f1": float(f1),
        "abs_lesion_count_difference": float(abs(n_truth - n_pred)),
    }
