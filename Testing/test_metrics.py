"""Metrics: known geometric cases, agreement with SimpleITK, empty masks, group tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("monai")

from StrokePerfusionSegLib.errors import InputError  # noqa: E402
from StrokePerfusionSegLib.metrics import (  # noqa: E402
    METRIC_KEYS,
    assd_mm,
    case_metrics,
    dice,
    format_group_table,
    group_table,
    hausdorff_mm,
    hd95_mm,
)

from programmer_errors import raises_programmer_error  # noqa: E402

SPACING = (2.0, 0.7, 0.5)  # (z, y, x) mm, anisotropic
SHAPE = (24, 48, 64)


def _ball(centre_mm, radius_mm, spacing=SPACING, shape=SHAPE) -> np.ndarray:
    grid = np.indices(shape).astype(float) * np.asarray(spacing)[:, None, None, None]
    distance = np.sqrt(sum((grid[i] - centre_mm[i]) ** 2 for i in range(3)))
    return distance <= radius_mm


def _sitk_image(mask: np.ndarray, spacing=SPACING) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in reversed(spacing)))
    return image


def _sitk_hausdorff(a: np.ndarray, b: np.ndarray, spacing=SPACING) -> float:
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(_sitk_image(a, spacing), _sitk_image(b, spacing))
    return hausdorff.GetHausdorffDistance()


def _sitk_dice(a: np.ndarray, b: np.ndarray) -> float:
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(_sitk_image(a), _sitk_image(b))
    return overlap.GetDiceCoefficient()


def _sitk_assd(a: np.ndarray, b: np.ndarray, spacing=SPACING) -> float:
    """Mean distance between the face-connected contours of a and b, both ways pooled."""
    contours = [sitk.BinaryContour(_sitk_image(m, spacing), fullyConnected=False) for m in (a, b)]
    distances = [
        np.maximum(
            sitk.GetArrayFromImage(
                sitk.SignedMaurerDistanceMap(other, squaredDistance=False, useImageSpacing=True)
            ),
            0.0,
        )[sitk.GetArrayFromImage(own).astype(bool)]
        for own, other in ((contours[0], contours[1]), (contours[1], contours[0]))
    ]
    return float(np.concatenate(distances).mean())


@pytest.mark.parametrize("axis, shift_voxels", [(0, 2), (1, 3), (2, 5)])
def test_shifted_ball_hausdorff_is_the_shift_in_mm(axis, shift_voxels):
    a = _ball((24.0, 16.0, 16.0), 9.0)
    b = np.roll(a, shift_voxels, axis=axis)
    expected = shift_voxels * SPACING[axis]
    assert hausdorff_mm(a, b, SPACING) == pytest.approx(expected, abs=1e-4)
    assert _sitk_hausdorff(a, b) == pytest.approx(expected, abs=1e-4)
    assert 0 < hd95_mm(a, b, SPACING) <= expected + 1e-4
    assert dice(a, b) == pytest.approx(_sitk_dice(a, b), abs=1e-6)


def test_two_balls_apart_hausdorff_is_the_centre_distance():
    # Equal balls with centres d apart: the farthest point of one lies d from the other.
    a = _ball((24.0, 16.0, 8.0), 5.0)
    b = _ball((24.0, 16.0, 20.0), 5.0)  # 12 mm apart along x, disjoint
    assert hausdorff_mm(a, b, SPACING) == pytest.approx(12.0, abs=0.5)
    assert hausdorff_mm(a, b, SPACING) == pytest.approx(_sitk_hausdorff(a, b), abs=1e-4)
    assert dice(a, b) == 0.0


def test_nested_balls_agree_with_simpleitk():
    outer = _ball((24.0, 16.0, 16.0), 10.0)
    inner = _ball((22.0, 17.5, 15.0), 5.0)
    assert hausdorff_mm(inner, outer, SPACING) == pytest.approx(_sitk_hausdorff(inner, outer), abs=1e-4)
    assert dice(inner, outer) == pytest.approx(_sitk_dice(inner, outer), abs=1e-6)
    assert assd_mm(inner, outer, SPACING) == pytest.approx(_sitk_assd(inner, outer), rel=1e-4)


def test_parallel_slabs_all_surface_distances_equal_their_gap():
    a = np.zeros(SHAPE, bool)
    b = np.zeros(SHAPE, bool)
    a[5, 10:30, 10:40] = True
    b[10, 10:30, 10:40] = True  # 5 slices x 2 mm = 10 mm straight below every voxel of a
    for metric in (hausdorff_mm, hd95_mm, assd_mm):
        assert metric(a, b, SPACING) == pytest.approx(10.0, abs=1e-4)


def test_irregular_masks_agree_with_simpleitk():
    from scipy import ndimage

    rng = np.random.default_rng(7)
    a = ndimage.gaussian_filter(rng.random(SHAPE), 2.0) > 0.52
    b = ndimage.gaussian_filter(rng.random(SHAPE), 2.0) > 0.52
    for mask in (a, b):  # away from the image border, where contour conventions differ
        mask[[0, -1]] = mask[:, [0, -1]] = mask[:, :, [0, -1]] = False
    assert dice(a, b) == pytest.approx(_sitk_dice(a, b), abs=1e-6)
    assert assd_mm(a, b, SPACING) == pytest.approx(_sitk_assd(a, b), rel=1e-4)


def test_empty_mask_conventions():
    empty = np.zeros(SHAPE, bool)
    ball = _ball((24.0, 16.0, 16.0), 5.0)
    assert dice(empty, empty) == 1.0
    assert hausdorff_mm(empty, empty, SPACING) == 0.0 and assd_mm(empty, empty, SPACING) == 0.0
    assert dice(empty, ball) == 0.0 and dice(ball, empty) == 0.0
    for metric in (hausdorff_mm, hd95_mm, assd_mm):
        assert math.isnan(metric(empty, ball, SPACING)) and math.isnan(metric(ball, empty, SPACING))


def test_case_metrics_per_region_and_volumes():
    truth = np.ones(SHAPE, np.uint8)
    truth[_ball((24.0, 16.0, 16.0), 8.0)] = 2
    truth[_ball((24.0, 16.0, 16.0), 4.0)] = 3
    pred = truth.copy()
    pred[pred == 3] = 2  # the prediction misses the core entirely
    row = case_metrics(pred, truth, SPACING, regions=("penumbra", "core", "hypoperfused"))
    assert set(row) == {f"{r}_{k}" for r in ("penumbra", "core", "hypoperfused") for k in METRIC_KEYS}
    voxel_ml = np.prod(SPACING) / 1000
    core_ml = np.count_nonzero(truth == 3) * voxel_ml
    assert row["core_dice"] == 0.0 and math.isnan(row["core_hd_mm"])
    assert row["core_volume_truth_ml"] == pytest.approx(core_ml)
    assert row["core_volume_difference_ml"] == pytest.approx(-core_ml)
    assert row["core_abs_volume_difference_ml"] == pytest.approx(core_ml)
    assert row["hypoperfused_dice"] == 1.0 and row["hypoperfused_hd_mm"] == 0.0
    assert 0.0 < row["penumbra_dice"] < 1.0


def test_group_table_mean_sd_skips_undefined_values():
    rows = [
        {"group": "LVO", "core_dice": 0.5, "core_hd_mm": 4.0},
        {"group": "LVO", "core_dice": 0.7, "core_hd_mm": math.nan},
        {"group": "WIS", "core_dice": 1.0, "core_hd_mm": 0.0},
    ]
    table = group_table(rows)
    assert list(table) == ["LVO", "WIS", "all"]
    lvo = table["LVO"]["core_dice"]
    assert lvo.mean == pytest.approx(0.6) and lvo.sd == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert table["LVO"]["core_hd_mm"].n == 1 and table["LVO"]["core_hd_mm"].missing == 1
    assert math.isnan(table["WIS"]["core_dice"].sd)  # one patient: SD undefined
    assert table["all"]["core_dice"].mean == pytest.approx(np.mean([0.5, 0.7, 1.0]))
    text = format_group_table(table)
    assert "| LVO | 2 | 0.6 ± 0.141 |" in text and "(1 undefined)" in text


def test_bad_input():
    labels = np.zeros(SHAPE, np.uint8)
    with raises_programmer_error(ValueError, match="one shape"):
        case_metrics(labels, labels[:-1], SPACING)
    with raises_programmer_error(ValueError, match="3D"):
        case_metrics(labels[0], labels[0], SPACING)
    with pytest.raises(InputError, match="spacing"):
        case_metrics(labels, labels, (1.0, -1.0, 1.0))
    with raises_programmer_error(ValueError, match="unknown region"):
        case_metrics(labels, labels, SPACING, regions=("lesion",))
    with raises_programmer_error(ValueError, match="no patient rows"):
        group_table([])
