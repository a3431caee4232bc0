"""lesionmetrics: the ISLES challenge metrics on lesions with known answers.

Checked once against panoptica 2.1.7 (the package the ISLES'24 evaluation calls) on 40 random
mask pairs: identical lesion F1 and counts, Dice within 3e-8 (see the closing note of issue 15).
"""

from __future__ import annotations

import numpy as np
import pytest

from StrokePerfusionSegLib.lesionmetrics import isles_metrics
from programmer_errors import raises_programmer_error


def test_isles_metrics_on_known_lesions():
    truth = np.zeros((4, 20, 20), bool)
    truth[1:3, 2:6, 2:6] = True  # lesion A, 32 voxels
    truth[1:3, 12:16, 12:16] = True  # lesion B, 32 voxels
    pred = np.zeros_like(truth)
    pred[1:3, 2:6, 2:5] = True  # 24 of A: IoU 0.75, a match
    pred[1:3, 12:13, 12:16] = True  # 8 of B: IoU 0.25, no match
    pred[0, 18:20, 18:20] = True  # a false lesion, 4 voxels
    spacing = (5.0, 1.0, 1.0)  # 0.005 ml per voxel
    scores = isles_metrics(pred, truth, spacing)
    assert scores["dice"] == pytest.approx(2 * 32 / (36 + 64))
    assert scores["abs_volume_difference_ml"] == pytest.approx((64 - 36) * 0.005)
    assert scores["lesion_f1"] == pytest.approx(1 / (1 + 0.5 * (2 + 1)))  # 1 TP, 2 FP, 1 FN
    assert scores["abs_lesion_count_difference"] == 1.0
    diagonal = np.zeros_like(truth)
    diagonal[1, 8, 8] = diagonal[2, 9, 9] = True  # touching at a corner: one lesion (26-connected)
    assert isles_metrics(diagonal, diagonal, spacing)["abs_lesion_count_difference"] == 0.0
    assert isles_metrics(diagonal, np.zeros_like(truth), spacing)["lesion_f1"] == 0.0
    empty = isles_metrics(np.zeros_like(truth), np.zeros_like(truth), spacing)
    assert empty["lesion_f1"] == 1.0 and empty["dice"] == 1.0
    with raises_programmer_error():
        isles_metrics(pred[0], truth, spacing)
