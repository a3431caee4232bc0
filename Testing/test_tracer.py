"""Tracer kinetics: bolus shape, residue functions, tissue curves against the map definitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import fftconvolve

from StrokePerfusionSegLib import tracer

from programmer_errors import raises_programmer_error

T_S = np.arange(0.0, 50.0, 1.0)
AIF = tracer.gamma_variate(T_S, t0_s=6.0, alpha=3.0, beta_s=1.5, peak=300.0)


def test_gamma_variate_peaks_where_and_as_high_as_asked():
    fine = np.arange(0.0, 30.0, 0.001)
    curve = tracer.gamma_variate(fine, t0_s=5.0, alpha=3.0, beta_s=1.5, peak=250.0)
    assert curve.max() == pytest.approx(250.0, rel=1e-6)
    assert fine[curve.argmax()] == pytest.approx(5.0 + 3.0 * 1.5, abs=2e-3)
    assert np.all(curve[fine <= 5.0] == 0.0)


@pytest.mark.parametrize("kind", tracer.RESIDUE_KINDS)
def test_residue_starts_at_one_and_has_area_mtt(kind):
    fine = np.arange(0.0, 80.0, 0.001)
    r = tracer.residue_function(fine, 4.0, kind)
    assert r[0] == 1.0
    assert np.all(tracer.residue_function(-fine[1:], 4.0, kind) == 0.0)
    assert r.sum() * 0.001 == pytest.approx(4.0, rel=1e-3)


@pytest.mark.parametrize("kind", tracer.RESIDUE_KINDS)
def test_tissue_curves_match_a_brute_force_convolution(kind):
    # Fine sampling so that the linear interpolation of the AIF is exact to well below 1 %.
    t = np.arange(0.0, 50.0, 0.1)
    aif = tracer.gamma_variate(t, t0_s=6.0, alpha=3.0, beta_s=1.5, peak=300.0)
    fine = np.arange(0.0, 60.0, 0.002)
    aif_fine = tracer.gamma_variate(fine, t0_s=6.0, alpha=3.0, beta_s=1.5, peak=300.0)
    cbf, cbv, delay, dispersion = 40.0, 3.0, 2.3, 1.5
    kernel = np.exp(-fine / dispersion) / dispersion * 0.002
    residue = tracer.residue_function(fine, 60.0 * cbv / cbf, kind)
    expected = fftconvolve(fftconvolve(aif_fine, kernel)[: fine.size], residue)[: fine.size] * 0.002
    expected = np.interp(t - delay, fine, expected) * tracer.flow_per_second(cbf)
    curve = tracer.tissue_curves(aif, t, [cbf], [cbv], [delay], [dispersion], kind=kind)[:, 0]
    assert np.abs(curve - expected).max() < 0.005 * expected.max()


@pytest.mark.parametrize("kind", tracer.RESIDUE_KINDS)
def test_area_ratio_gives_cbv_by_the_map_definition(kind):
    cbf = np.array([60.0, 25.0, 10.0])
    cbv = np.array([4.0, 2.0, 1.5])
    long_t = np.arange(0.0, 120.0, 1.0)  # long enough for the slowest washout (MTT 9 s)
    aif = tracer.gamma_variate(long_t, t0_s=6.0, alpha=3.0, beta_s=1.5, peak=300.0)
    curves = tracer.tissue_curves(aif, long_t, cbf, cbv, np.zeros(3), np.zeros(3), kind=kind)
    cbv_back = tracer.KH / tracer.RHO * curves.sum(axis=0) / aif.sum() * 100.0
    np.testing.assert_allclose(cbv_back, cbv, rtol=0.01)


def test_delay_shifts_and_unperfused_voxels_stay_flat():
    curves = tracer.tissue_curves(AIF, T_S, [50.0, 50.0, 0.0], [3.0, 3.0, 0.0], [0.0, 3.0, 0.0], 0.0)
    np.testing.assert_allclose(curves[3:, 1], curves[:-3, 0], atol=1e-9)
    assert np.all(curves[:, 2] == 0.0)


def test_vein_keeps_the_arterial_area():
    vein = tracer.delayed_dispersed(AIF, T_S, [6.0], [2.0])[:, 0]
    assert vein.sum() == pytest.approx(AIF.sum(), rel=0.01)
    assert T_S[vein.argmax()] > T_S[AIF.argmax()] + 6.0


def test_residue_peak_matches_the_closed_form_for_exponentials():
    mtt, tau = 6.0, 2.0
    time_s, height = tracer.residue_peak(mtt, tau)
    peak_time = mtt * tau * np.log(mtt / tau) / (mtt - tau)
    peak_height = mtt / (mtt - tau) * (np.exp(-peak_time / mtt) - np.exp(-peak_time / tau))
    assert float(time_s) == pytest.approx(peak_time, abs=0.02)
    assert float(height) == pytest.approx(peak_height, rel=1e-3)
    assert tracer.residue_peak(np.array([4.0]), np.array([0.0]))[1][0] == 1.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: tracer.tissue_curves(AIF, T_S, [-1.0], [3.0], [0.0], [0.0]),
        lambda: tracer.tissue_curves(AIF, T_S, [50.0], [np.nan], [0.0], [0.0]),
        lambda: tracer.tissue_curves(AIF, T_S[::-1], [50.0], [3.0], [0.0], [0.0]),
        lambda: tracer.tissue_curves(AIF, T_S, [50.0, 40.0], [3.0, 2.0, 1.0], 0.0, 0.0),
        lambda: tracer.tissue_curves(AIF, T_S, [50.0], [3.0], [0.0], [0.0], kind="weibull"),
        lambda: tracer.residue_function(T_S, 0.0),
        lambda: tracer.gamma_variate(T_S, t0_s=0.0, alpha=0.0, beta_s=1.0, peak=1.0),
    ],
)
def test_bad_parameters_are_value_errors(call):
    with raises_programmer_error(ValueError):
        call()


@pytest.mark.parametrize("shape", [(1, 3), (18, 800), (126, 161)])
def test_row_convolution_is_scipy_signals_value_for_value(shape):
    """The gamma and lognormal tissue curves (the phantom's, the model fit's dictionary) are unchanged."""
    rng = np.random.default_rng(4)
    a, b = rng.random(shape), rng.random(shape)
    assert np.array_equal(tracer._convolve_rows(a, b), fftconvolve(a, b, axes=1))
