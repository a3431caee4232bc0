"""Lesion volumes, mismatch figures and target-mismatch flags."""

from __future__ import annotations

import json

import numpy as np
import pytest

from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.volumes import (
    DECISION_SUPPORT_CAVEAT,
    DEFUSE3,
    MismatchCriteria,
    lesion_volumes,
)

SPACING = (5.0, 0.5, 0.5)  # 1.25 mm^3 = 0.00125 ml per voxel


def _labels(core_voxels: int, penumbra_voxels: int) -> np.ndarray:
    labels = np.ones((4, 100, 100), dtype=np.uint8)
    flat = labels.reshape(-1)
    flat[:core_voxels] = 3
    flat[core_voxels : core_voxels + penumbra_voxels] = 2
    flat[-10:] = 0
    return labels


def test_volumes_in_ml_and_target_mismatch():
    volumes = lesion_volumes(_labels(8000, 24000), SPACING)  # 10 ml core, 30 ml penumbra
    assert volumes.core_ml == pytest.approx(10.0)
    assert volumes.penumbra_ml == pytest.approx(30.0)
    assert volumes.hypoperfused_ml == pytest.approx(40.0)
    assert volumes.mismatch_ratio == pytest.approx(4.0)
    assert volumes.mismatch_volume_ml == pytest.approx(30.0)
    assert volumes.target_mismatch == {
        "core_below_max": True,
        "ratio_at_least_min": True,
        "mismatch_volume_at_least_min": True,
        "target_mismatch": True,
    }


@pytest.mark.parametrize(
    "core_ml, penumbra_ml, failing",
    [
        (70.0, 200.0, "core_below_max"),  # core must be strictly below 70 ml
        (20.0, 15.0, "ratio_at_least_min"),  # ratio 1.75
        (10.0, 14.0, "mismatch_volume_at_least_min"),  # ratio 2.4, mismatch 14 ml
    ],
)
def test_each_defuse3_criterion_can_fail_alone(core_ml, penumbra_ml, failing):
    voxel_ml = 0.00125
    labels = np.ones((16, 200, 200), dtype=np.uint8)
    flat = labels.reshape(-1)
    core, penumbra = round(core_ml / voxel_ml), round(penumbra_ml / voxel_ml)
    flat[:core] = 3
    flat[core : core + penumbra] = 2
    flags = lesion_volumes(labels, SPACING).target_mismatch
    assert [name for name, ok in flags.items() if not ok] == [failing, "target_mismatch"]


def test_ratio_criterion_exactly_at_threshold_passes():
    volumes = lesion_volumes(_labels(10000, 8000), SPACING)  # ratio 1.8 exactly
    assert volumes.mismatch_ratio == pytest.approx(1.8)
    assert volumes.target_mismatch["ratio_at_least_min"]


def test_zero_core_has_no_ratio_but_meets_the_ratio_criterion():
    volumes = lesion_volumes(_labels(0, 16000), SPACING)
    assert volumes.mismatch_ratio is None
    assert volumes.target_mismatch["target_mismatch"]
    empty = lesion_volumes(_labels(0, 0), SPACING)
    assert empty.mismatch_ratio is None and empty.hypoperfused_ml == 0.0
    assert not empty.target_mismatch["ratio_at_least_min"]
    assert not empty.target_mismatch["target_mismatch"]


def test_custom_criteria_and_json_with_caveat():
    strict = MismatchCriteria(max_core_ml=5.0, min_ratio=1.8, min_mismatch_ml=15.0)
    volumes = lesion_volumes(_labels(8000, 24000), SPACING, strict)
    assert not volumes.target_mismatch["core_below_max"]
    document = json.loads(json.dumps(volumes.to_dict()))
    assert document["caveat"] == DECISION_SUPPORT_CAVEAT
    assert document["criteria"]["max_core_ml"] == 5.0
    assert DEFUSE3 == MismatchCriteria(70.0, 1.8, 15.0)


@pytest.mark.parametrize(
    "labels, spacing, message",
    [
        (np.zeros((8, 8), np.uint8), SPACING, "3D label map"),
        (np.zeros((2, 8, 8), np.float32), SPACING, "integer labels"),
        (np.full((2, 8, 8), 4, np.uint8), SPACING, "outside 0..3"),
        (np.zeros((2, 8, 8), np.uint8), (1.0, 1.0), "spacing"),
        (np.zeros((2, 8, 8), np.uint8), (1.0, 0.0, 1.0), "spacing"),
    ],
)
def test_bad_input(labels, spacing, message):
    with pytest.raises(InputError, match=message):
        lesion_volumes(labels, spacing)
