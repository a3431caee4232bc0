"""RAPID-like thresholding on synthetic brains with known lesions, midline, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.thresholding import (
    ThresholdParams,
    find_midline,
    threshold_analysis,
    threshold_segmentation,
)

SPACING = (5.0, 2.0, 2.0)
SHAPE = (4, 64, 64)


def _ellipse(tilt_deg: float = 0.0, semi_axes_mm=(55.0, 40.0)) -> np.ndarray:
    """An axial ellipse, long axis along y tilted by ``tilt_deg``, centred at (64, 62) mm."""
    y = (np.arange(SHAPE[1]) * SPACING[1] - 64.0)[:, None]
    x = (np.arange(SHAPE[2]) * SPACING[2] - 62.0)[None, :]
    angle = np.radians(tilt_deg)
    along = y * np.cos(angle) + x * np.sin(angle)
    across = -y * np.sin(angle) + x * np.cos(angle)
    inside = (along / semi_axes_mm[0]) ** 2 + (across / semi_axes_mm[1]) ** 2 <= 1.0
    return np.broadcast_to(inside, SHAPE).copy()


def _study(seed: int = 0):
    """Brain with a right-side (+x) lesion: core CBF 5, penumbra CBF 30, normal CBF 50."""
    rng = np.random.default_rng(seed)
    brain = _ellipse()
    cbf = np.where(brain, 50.0 + rng.normal(0, 2, SHAPE), 0.0).astype(np.float32)
    tmax = np.where(brain, 1.5, 0.0).astype(np.float32)
    truth = brain.astype(np.uint8)
    penumbra = brain.copy()
    penumbra[:, 15:50, :] &= True
    penumbra[:, :15] = penumbra[:, 50:] = False
    penumbra[:, :, :40] = False  # x >= 80 mm, right of the 62 mm midline
    core = penumbra.copy()
    core[:, :, :46] = False
    core[:, :25] = core[:, 40:] = False
    tmax[penumbra] = 9.0
    cbf[penumbra] = 30.0
    cbf[core] = 5.0
    truth[penumbra] = 2
    truth[core] = 3
    return cbf, tmax, brain, truth


def test_known_lesion_is_found_exactly():
    cbf, tmax, brain, truth = _study()
    result = threshold_analysis(cbf, tmax, brain, SPACING)
    np.testing.assert_array_equal(result.labels, truth)
    assert result.labels.dtype == np.uint8
    assert result.affected_side == "+x"
    assert result.reference_cbf == pytest.approx(50.0, abs=0.5)


def test_affected_side_follows_the_lesion_and_reference_is_contralateral():
    cbf, tmax, brain, truth = _study()
    flipped = threshold_analysis(cbf[..., ::-1], tmax[..., ::-1], brain[..., ::-1], SPACING)
    np.testing.assert_array_equal(flipped.labels, truth[..., ::-1])
    assert flipped.affected_side == "-x"
    # Lowering the healthy hemisphere's CBF lowers the reference: rCBF is contralateral.
    left = np.zeros(SHAPE, bool)
    left[..., :31] = True
    reference = threshold_analysis(np.where(left, cbf * 0.5, cbf), tmax, brain, SPACING).reference_cbf
    assert reference == pytest.approx(25.0, abs=0.5)


def test_thresholds_are_configurable():
    cbf, tmax, brain, truth = _study()
    wide_core = threshold_segmentation(cbf, tmax, brain, SPACING, ThresholdParams(core_rcbf=0.7))
    assert np.count_nonzero(wide_core == 3) == np.count_nonzero(truth >= 2)  # CBF 30 < 35
    no_lesion = threshold_segmentation(cbf, tmax, brain, SPACING, ThresholdParams(tmax_s=10.0))
    np.testing.assert_array_equal(no_lesion, brain.astype(np.uint8))


def test_small_islands_are_removed_in_ml():
    cbf, tmax, brain, truth = _study()
    tmax[1, 32, 16] = 8.0  # one voxel: 0.02 ml
    cbf[1, 32, 16] = 1.0
    labels = threshold_segmentation(cbf, tmax, brain, SPACING)
    np.testing.assert_array_equal(labels, truth)
    kept = threshold_segmentation(cbf, tmax, brain, SPACING, ThresholdParams(min_island_ml=0.0))
    assert kept[1, 32, 16] == 3


def test_midline_principal_axis_corrects_head_tilt():
    midline = find_midline(_ellipse(tilt_deg=12.0), SPACING)
    assert midline.method == "principal_axis"
    tilt = np.degrees(np.arctan2(midline.direction[1], midline.direction[0]))
    assert abs(abs(tilt) - 12.0) < 1.5
    assert midline.centre_mm == pytest.approx((64.0, 62.0), abs=0.5)
    round_brain = find_midline(_ellipse(semi_axes_mm=(40.0, 40.0)), SPACING)
    assert round_brain.method == "centre_of_mass" and round_brain.direction == (1.0, 0.0)
    image = find_midline(_ellipse(), SPACING, method="image_centre")
    assert image.centre_mm == pytest.approx((63.0, 63.0))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c, t, b: (c[0], t, b), "cbf has shape"),
        (lambda c, t, b: (c, np.repeat(t[..., None], 3, axis=-1).astype(np.uint8), b), "tmax is colour-coded"),
        (lambda c, t, b: (c, t[:, :-1], b), "differ in shape"),
        (lambda c, t, b: (np.where(b, np.nan, c), t, b), "cbf holds NaN"),
        (lambda c, t, b: (c, np.full_like(t, np.inf), b), "tmax holds NaN"),
        (lambda c, t, b: (c, t, np.zeros_like(b)), "brain mask is empty"),
        (lambda c, t, b: (c, np.full_like(t, 20.0), b), "no normally perfused brain"),
        (lambda c, t, b: (np.zeros_like(c), t, b), "ml/100g/min"),
    ],
)
def test_bad_input(change, message):
    cbf, tmax, brain, _ = _study()
    with pytest.raises(InputError, match=message):
        threshold_segmentation(*change(cbf, tmax, brain), SPACING)


def test_bad_params():
    with pytest.raises(InputError, match="core_rcbf"):
        ThresholdParams(core_rcbf=30)
    with pytest.raises(InputError, match="tmax_s"):
        ThresholdParams(tmax_s=-1)
    with pytest.raises(InputError, match="midline"):
        ThresholdParams(midline="guess")
    with pytest.raises(InputError, match="spacing"):
        threshold_segmentation(*_study()[:3], (5.0, 2.0))


def test_finds_the_lesion_of_a_phantom_lvo_case(tiny_cohort, lvo_case):
    """On the phantom's simulated (truth) CBF and Tmax, with the MIP brain mask."""
    from StrokePerfusionSegLib.brainmask import brain_mask_from_mip
    from StrokePerfusionSegLib.casefolder import load_cohort
    from StrokePerfusionSegLib.phantom import load_truth

    truth_maps = load_truth(load_cohort(tiny_cohort).case_folder(lvo_case.case_id))
    spacing = lvo_case.geometry.spacing_zyx
    brain = brain_mask_from_mip(lvo_case.maps["mip"], spacing)
    labels = threshold_segmentation(truth_maps["cbf"], truth_maps["tmax"], brain, spacing)

    def dice(a, b):
        return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))

    truth = lvo_case.label
    # A random guess of the right size scores the lesion's share of the brain on average.
    chance = np.count_nonzero(truth >= 2) / np.count_nonzero(truth >= 1)
    hypoperfused = dice(labels >= 2, truth >= 2)
    assert hypoperfused > max(0.7, 1.5 * chance), (hypoperfused, chance)
    assert dice(labels == 3, truth == 3) > 0.5


@pytest.mark.parametrize("spacing_yx", [(0.43, 0.43), (1.0, 0.7), (0.3, 0.5), (2.5, 2.5)])
def test_brain_mask_opening_equals_scipy_binary_opening(spacing_yx):
    """The run-length disk opening is scipy's, voxel for voxel, on blobs touching the edges."""
    from scipy import ndimage

    from StrokePerfusionSegLib.brainmask import OPENING_RADIUS_MM, _disk, _opening

    rng = np.random.default_rng(1)
    mask = ndimage.uniform_filter(rng.random((3, 48, 56)), size=(1, 7, 7)) > 0.49
    disk = _disk(OPENING_RADIUS_MM, spacing_yx)
    expected = ndimage.binary_opening(mask, structure=disk)
    assert 0 < np.count_nonzero(expected) < np.count_nonzero(mask) or disk.size == 1
    np.testing.assert_array_equal(_opening(mask, disk), expected)


@pytest.mark.parametrize("border", [False, True])
@pytest.mark.parametrize("spacing_yx", [(0.43, 0.43), (0.1, 0.15)])
def test_brain_mask_erosion_equals_scipy_at_either_border_value(spacing_yx, border):
    """Erosion by the disk with the grid's outside False or True, also for a disk larger than
    the grid (0.1 mm pixels: 41 rows over 12) and runs that span whole rows."""
    from scipy import ndimage

    from StrokePerfusionSegLib.brainmask import OPENING_RADIUS_MM, _disk, _erode

    rng = np.random.default_rng(2)
    mask = ndimage.uniform_filter(rng.random((2, 12, 30)), size=(1, 5, 5)) > 0.45
    mask[0, 3] = True  # a full row
    disk = _disk(OPENING_RADIUS_MM, spacing_yx)
    expected = ndimage.binary_erosion(mask, structure=disk, border_value=int(border))
    np.testing.assert_array_equal(_erode(mask, disk, border), expected)


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_brain_mask_equals_its_definition_in_scipy_operations(workers):
    """The fast mask is, voxel for voxel, scipy's 3 x 3 mean, range, 3 x 3 vessel dilation,
    disk opening and largest component, on a head with skull, vessels and a thin bridge, in
    one slab or in slabs of slices computed by several threads."""
    from scipy import ndimage

    from StrokePerfusionSegLib.brainmask import (
        BRAIN_MIP_RANGE_HU, OPENING_RADIUS_MM, VESSEL_MIP_HU, _disk, brain_mask_from_mip,
    )

    spacing = (5.0, 0.43, 0.43)
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:96, :96]
    radius = np.hypot((yy - 48) / 40, (xx - 48) / 34)
    head = np.where(radius < 0.85, 35.0, np.where(radius < 1.0, 700.0, -1000.0))
    mip = np.repeat(head[None], 5, axis=0) + rng.normal(0, 4, (5, 96, 96))
    mip[1:4, 30:33, 20:70] = 300.0  # a vessel
    mip[:3, 5:10, 47:49] = 35.0  # a two-pixel soft-tissue bridge through the skull
    mip[4, 60:90, 40:60] = -1000.0  # air in the last slice only
    smooth = ndimage.uniform_filter(mip.astype(np.float32), size=(1, 3, 3), mode="nearest")
    tissue = (smooth >= BRAIN_MIP_RANGE_HU[0]) & (smooth <= BRAIN_MIP_RANGE_HU[1])
    tissue &= ~ndimage.binary_dilation(mip > VESSEL_MIP_HU, structure=np.ones((1, 3, 3), bool))
    tissue = ndimage.binary_opening(tissue, structure=_disk(OPENING_RADIUS_MM, spacing[1:]))
    labels, _ = ndimage.label(tissue)
    expected = labels == 1 + np.argmax(np.bincount(labels.ravel())[1:])
    assert expected.sum() > 5000 and not expected[1:4, 29:34, 20:70].any()  # brain kept, vessel with margin out
    np.testing.assert_array_equal(brain_mask_from_mip(mip, spacing, workers=workers), expected)


def test_midline_moments_equal_those_of_the_voxel_coordinates():
    """The column-count moments give the centre and principal axis of every voxel's position."""
    spacing = (5.0, 0.7, 0.9)
    rng = np.random.default_rng(3)
    mask = np.zeros((3, 60, 50), bool)
    mask[:, 10:50, 12:40] = rng.random((3, 40, 28)) > 0.3
    _, ys, xs = np.nonzero(mask)
    points = np.stack([ys * spacing[1], xs * spacing[2]], axis=1)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(points, rowvar=False))
    axis = eigenvectors[:, np.argmax(np.abs(eigenvectors[0]))]
    midline = find_midline(mask, spacing, "principal_axis", max_tilt_deg=90.0)
    assert midline.method == "principal_axis"
    np.testing.assert_allclose(midline.centre_mm, points.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(np.abs(midline.direction), np.abs(axis), rtol=1e-9)
