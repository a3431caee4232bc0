"""compute_perfusion_maps on the digital reference object: truth recovery, delay insensitivity,
dt scaling, linearity, AIF/VOF, brain mask, progress and cancel."""

from __future__ import annotations

import numpy as np
import pytest

from StrokePerfusionSegLib import tracer
from StrokePerfusionSegLib.brainmask import brain_mask_from_mip
from StrokePerfusionSegLib.errors import CancelledError
from StrokePerfusionSegLib.perfusion import (
    CirculantDeconvolver,
    compute_perfusion_maps,
    make_reference_study,
    oscillation_index,
)
from StrokePerfusionSegLib.perfusion.calibration import DeconvolutionBias
from StrokePerfusionSegLib.perfusion.deconvolution import peak_and_time

#: (cbf ml/100g/min, cbv ml/100g, delay s, dispersion s): grey, white, penumbra-like, core-like.
TISSUES = [(60.0, 4.0, 0.0, 0.0), (25.0, 2.0, 1.0, 0.0), (20.0, 3.5, 4.0, 0.0), (8.0, 1.2, 2.5, 0.0)]


@pytest.fixture(scope="module")
def study():
    # 60 s: long enough that the slowest washout (MTT 10.5 s after 4 s delay) is not cut off.
    return make_reference_study(TISSUES, block=6, slices=2, dt_s=1.0, frames=60)


def _median_errors(result, study):
    """Median relative CBF/CBV error and median absolute Tmax error (s) over tissue voxels."""
    inside = result.brain_mask & study.tissue
    truth, maps = study.truth, result.maps
    return {
        "cbf": np.median(np.abs(maps["cbf"][inside] / truth["cbf"][inside] - 1.0)),
        "cbv": np.median(np.abs(maps["cbv"][inside] / truth["cbv"][inside] - 1.0)),
        "tmax": np.median(np.abs(maps["tmax"][inside] - truth["tmax"][inside])),
    }


@pytest.mark.parametrize("method", ["bcsvd", "osvd"])
def test_noise_free_truth_is_recovered(study, method):
    # No smoothing: it would mix neighbouring blocks (it is tested on noisy data below).
    result = compute_perfusion_maps(study.ctp_hu, study.dt_s, study.spacing, method=method, smoothing_mm=0)
    errors = _median_errors(result, study)
    assert errors["cbf"] <= 0.10 and errors["cbv"] <= 0.05 and errors["tmax"] <= 1.0, errors
    assert set(result.maps) == {"cbf", "cbv", "mtt", "ttp", "tmax", "mip"}
    for name, volume in result.maps.items():
        assert volume.shape == study.ctp_hu.shape[1:] and volume.dtype == np.float32
        assert np.all(np.isfinite(volume)), name
    np.testing.assert_array_equal(result.maps["mip"], study.ctp_hu.max(axis=0))
    # MTT is CBV / CBF by definition, and nothing is reported outside the brain.
    inside = result.brain_mask
    np.testing.assert_allclose(
        result.maps["mtt"][inside], 60 * result.maps["cbv"][inside] / result.maps["cbf"][inside], rtol=1e-4
    )
    assert not np.any(result.maps["cbf"][~inside])


def test_automatic_aif_is_the_artery_and_the_vein_is_found(study):
    result = compute_perfusion_maps(study.ctp_hu, study.dt_s, study.spacing)
    assert all(study.artery[tuple(v)] for v in result.aif_voxels)
    assert len(result.vof_voxels) > 0 and result.vof_scale == pytest.approx(1.0, abs=0.05)
    assert result.aif_fit is not None and result.aif_fit.time_to_peak_s == pytest.approx(12.5, abs=0.5)
    # The baseline ends before the artery enhances (arrival at 8 s), not at the tissue's arrival.
    assert result.bolus.baseline_frames <= 8


def test_partial_volume_aif_is_rescaled_by_the_vein():
    thin_artery = make_reference_study(TISSUES, block=6, slices=2, frames=60, artery_partial_volume=0.5)
    result = compute_perfusion_maps(thin_artery.ctp_hu, 1.0, thin_artery.spacing, smoothing_mm=0)
    assert result.vof_scale == pytest.approx(2.0, rel=0.05)
    assert _median_errors(result, thin_artery)["cbv"] <= 0.05


def test_vein_still_rescales_a_series_that_ends_half_way_down_its_washout():
    # 26 s: the vein has passed its peak but is still at half of it at the last frame.
    short = make_reference_study(TISSUES, block=6, slices=2, frames=26, artery_partial_volume=0.5)
    vein = short.ctp_hu[:, 0, 2, -2]
    assert 0.4 < (vein[-1] - vein[0]) / (vein.max() - vein[0]) < 0.6
    result = compute_perfusion_maps(short.ctp_hu, 1.0, short.spacing, smoothing_mm=0)
    assert result.vof_scale == pytest.approx(2.0, rel=0.05)


def test_automatic_aif_skips_a_sinus_that_outshines_and_outnumbers_the_arteries():
    # As on fine 512 px grids: small arteries lose contrast to partial volume, a large pure
    # sinus does not, and it fills most of the brightest voxels. The early arteries must
    # still be the AIF (and the sinus then rescales it).
    thin_artery = make_reference_study(TISSUES, block=6, slices=2, frames=60, artery_partial_volume=0.6)
    ctp = thin_artery.ctp_hu
    sinus = np.zeros(ctp.shape[1:], bool)
    sinus[:, 1:4, 4:-4] = True
    ctp[:, sinus] = ctp[:, 0, 2, -2][:, None]  # the vein's curve
    assert ctp[:, 0, 2, -2].max() > ctp[:, 0, 1, 1].max()
    result = compute_perfusion_maps(ctp, 1.0, thin_artery.spacing, smoothing_mm=0)
    assert all(thin_artery.artery[tuple(v)] for v in result.aif_voxels)
    assert _median_errors(result, thin_artery)["cbf"] <= 0.05


def test_washout_missed_by_a_short_series_is_restored():
    # 35 s: a tissue with MTT 9.6 s arriving 6 s late is cut off, so its plain CBV reads 30 % low.
    late_and_slow = [(25.0, 4.0, 6.0, 0.0), (50.0, 3.5, 3.0, 0.0)]
    short = make_reference_study(late_and_slow, block=6, slices=1, frames=35)
    corrected, plain = (compute_perfusion_maps(short.ctp_hu, 1.0, short.spacing, method="bcsvd", smoothing_mm=0,
                                               correct_bias=c) for c in (True, False))
    assert not corrected.notes
    plain_errors = short.block_errors(plain.maps, margin=0, within=plain.brain_mask)
    assert plain_errors["cbv"][0] < -0.25 and plain_errors["cbf"][0] < -0.15
    errors = short.block_errors(corrected.maps, margin=0, within=corrected.brain_mask)
    np.testing.assert_allclose(errors["cbf"], 0.0, atol=0.03)
    np.testing.assert_allclose(errors["cbv"], 0.0, atol=0.03)
    np.testing.assert_allclose(errors["tmax"], 0.0, atol=0.1)


def test_manual_aif_voxel_and_mask_override_the_search(study):
    artery_voxel = tuple(int(i) for i in np.argwhere(study.artery)[0])
    by_index = compute_perfusion_maps(study.ctp_hu, 1.0, study.spacing, aif_voxel=artery_voxel)
    by_mask = compute_perfusion_maps(study.ctp_hu, 1.0, study.spacing, aif_voxel=study.artery)
    assert by_index.aif_voxels.tolist() == [list(artery_voxel)]
    assert len(by_mask.aif_voxels) == study.artery.sum()
    np.testing.assert_allclose(by_index.maps["cbf"], by_mask.maps["cbf"], rtol=1e-3, atol=1e-3)
    assert _median_errors(by_index, study)["cbf"] <= 0.10


def test_bcsvd_flow_does_not_drift_with_delay():
    delays = np.arange(0.0, 5.5, 0.5)
    t_s = np.arange(45.0)
    aif = tracer.gamma_variate(t_s, t0_s=8.0, alpha=3.0, beta_s=1.5, peak=300.0)
    tissue = tracer.tissue_curves(aif, t_s, 50.0, 3.5, delays, 0.0).T
    deconvolve = CirculantDeconvolver.bcsvd(aif, 1.0)
    residues, choice = deconvolve(tissue)
    peak, tmax = peak_and_time(residues, 1.0, circular=True)
    raw_cbf = tracer.KH / tracer.RHO * peak * 6000.0
    assert raw_cbf.max() / raw_cbf.min() - 1.0 <= 0.05
    cbv = tracer.KH / tracer.RHO * tissue.sum(axis=1) / aif.sum() * 100.0
    cbf, _, _, tmax = DeconvolutionBias.measure(deconvolve).correct(raw_cbf, cbv, tmax, choice)
    assert np.abs(cbf / 50.0 - 1.0).max() <= 0.05
    np.testing.assert_allclose(tmax, delays, atol=0.5)


def test_same_study_sampled_at_1_and_1_5_s_gives_the_same_maps():
    fine = make_reference_study(TISSUES, block=6, slices=2, dt_s=1.0, frames=45)
    coarse = make_reference_study(TISSUES, block=6, slices=2, dt_s=1.5, frames=30)
    a = compute_perfusion_maps(fine.ctp_hu, 1.0, fine.spacing)
    b = compute_perfusion_maps(coarse.ctp_hu, 1.5, coarse.spacing)
    inside = a.brain_mask & b.brain_mask & fine.tissue
    for name, tolerance in (("cbf", 0.10), ("cbv", 0.05)):
        ratio = np.median(b.maps[name][inside] / a.maps[name][inside])
        assert abs(ratio - 1.0) <= tolerance, (name, ratio)
    assert np.median(np.abs(b.maps["tmax"][inside] - a.maps["tmax"][inside])) <= 0.75


def test_scaling_the_tissue_curve_scales_cbf_and_cbv():
    t_s = np.arange(45.0)
    aif = tracer.gamma_variate(t_s, t0_s=8.0, alpha=3.0, beta_s=1.5, peak=300.0)
    tissue = tracer.tissue_curves(aif, t_s, [50.0, 20.0], [3.5, 3.0], [0.0, 2.0], 0.0).T
    for deconvolve in (CirculantDeconvolver.bcsvd(aif, 1.0), CirculantDeconvolver.osvd(aif, 1.0)):
        bias = DeconvolutionBias.measure(deconvolve)
        maps = []
        for scale in (1.0, 2.0):
            residues, choice = deconvolve(scale * tissue)
            peak, tmax = peak_and_time(residues, 1.0, circular=True)
            cbv = tracer.KH / tracer.RHO * scale * tissue.sum(axis=1) / aif.sum() * 100.0
            maps.append(bias.correct(tracer.KH / tracer.RHO * peak * 6000.0, cbv, tmax, choice))
        (cbf1, cbv1, mtt1, tmax1), (cbf2, cbv2, mtt2, tmax2) = maps
        np.testing.assert_allclose(cbf2, 2.0 * cbf1, rtol=1e-3)
        np.testing.assert_allclose(cbv2, 2.0 * cbv1, rtol=1e-6)
        np.testing.assert_allclose(tmax2, tmax1, atol=1e-3)


def test_osvd_picks_calmer_residues_than_bcsvd_on_noisy_curves():
    rng = np.random.default_rng(1)
    t_s = np.arange(45.0)
    aif = tracer.gamma_variate(t_s, t0_s=8.0, alpha=3.0, beta_s=1.5, peak=300.0)
    tissue = tracer.tissue_curves(aif, t_s, np.full(200, 40.0), 3.0, 0.0, 0.0).T + rng.normal(0, 3.0, (200, 45))
    careful = CirculantDeconvolver.osvd(aif, 1.0)
    residues, choice = careful(tissue)
    assert np.median(oscillation_index(residues)) <= careful.oscillation_limit
    assert len(np.unique(choice)) > 1  # the truncation really is chosen per voxel


def test_noisy_study_stays_accurate_per_tissue_block():
    noisy = make_reference_study(TISSUES, block=16, slices=1, frames=60, noise_hu=3.0, seed=4)
    result = compute_perfusion_maps(noisy.ctp_hu, 1.0, noisy.spacing, method="osvd")
    errors = noisy.block_errors(result.maps, margin=3, within=result.brain_mask)
    assert np.nanmedian(np.abs(errors["cbf"])) <= 0.15
    assert np.nanmedian(np.abs(errors["cbv"])) <= 0.10
    assert np.nanmedian(np.abs(errors["tmax"])) <= 1.0


def test_brain_mask_strips_air_vessels_csf_and_scalp():
    shape = (2, 48, 48)
    yy, xx = np.mgrid[:48, :48]
    radius = np.hypot(yy - 24, xx - 24)
    mip = np.full(shape, -1000.0, np.float32)
    mip[:, radius < 22] = 45.0  # scalp
    mip[:, radius < 20] = 1200.0  # skull
    mip[:, radius < 18] = 45.0  # brain
    mip[:, np.hypot(yy - 24, xx - 18) < 3] = 14.0  # ventricle (CSF)
    mip[:, 24, 28:30] = 300.0  # an opacified artery
    mask = brain_mask_from_mip(mip, (5.0, 1.0, 1.0))
    assert mask[:, 24, 24 + 10] .all()  # parenchyma kept
    assert not mask[:, radius >= 18].any()  # skull, scalp and air gone
    assert not mask[:, 24, 18].any() and not mask[:, 24, 28].any()  # CSF and the vessel gone
    assert mask.sum() > 0.8 * (radius < 18).sum() * 2 - 200


def test_progress_is_reported_and_cancel_stops(study):
    calls = []
    compute_perfusion_maps(study.ctp_hu, 1.0, study.spacing, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1] and [c[0] for c in calls] == sorted(c[0] for c in calls)
    with pytest.raises(CancelledError):
        compute_perfusion_maps(study.ctp_hu, 1.0, study.spacing, cancel=lambda: True)
