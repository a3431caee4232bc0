"""Maps from tissue curves and one arterial input: the step the volume analysis runs per slice.

:func:`deconvolve_curves` is the curve-level entry point; :func:`build_estimator` prepares a
method once per AIF so that :func:`~StrokePerfusionSegLib.perfusion.compute_perfusion_maps`
can apply it to every slice. Both give the maps defined in docs/perfusion.md ("Method"):

* ``cbf = kh / rho * 6000 * F`` (ml/100g/min), ``F`` the flow-scaled residue's height (1/s);
* ``cbv = kh / rho * 100 * area(conc) / area(aif)`` (ml/100g); the model fit uses ``F * MTT``;
* ``mtt = 60 * cbv / cbf`` (s), ``tmax`` the time of the residue's peak (s), ``ttp`` the time
  of the tissue curve's peak (s, from the first frame).

``kh`` (ratio of small- to large-vessel haematocrit factors) and ``rho`` (tissue density,
g/ml) only scale CBF and CBV; third-party references that leave them out are compared with
``kh=1, rho=1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import InputError
from ..perfusionmethods import DEFAULT_METHOD, METHODS, check_factors
from ..tracer import KH, RHO
from .calibration import DeconvolutionBias
from .deconvolution import CirculantDeconvolver, peak_and_time
from .modelfit import ModelFit

#: Methods whose readings the exponential-residue bias correction (:mod:`.calibration`) applies to.
CORRECTABLE = ("bcsvd", "osvd", "tikhonov")


@dataclass(frozen=True)
class CurveEstimator:
    """One method prepared for one AIF and frame interval; call it on tissue curves (n, t).

    Attributes
    ----------
    method : str
    dt_s : float
    kh, rho : float
        Haematocrit factor ratio and tissue density (g/ml).
    deconvolver : CirculantDeconvolver or ModelFit
    bias : DeconvolutionBias or None
        Exponential-residue correction of the SVD readings (None = plain readings).
    correct_flow : bool
        With ``bias``: False corrects Tmax only (a series that ends long before the washout).
    aif_area : float
        Area of the AIF, HU s.
    """

    method: str
    dt_s: float
    kh: float
    rho: float
    deconvolver: object
    bias: DeconvolutionBias | None
    correct_flow: bool
    aif_area: float

    def __call__(self, tissue: np.ndarray) -> dict[str, np.ndarray]:
        """Maps (``cbf``, ``cbv``, ``mtt``, ``tmax``, ``ttp``; each (n,) float64) of curves (n, t), HU above baseline."""
        tissue = np.asarray(tissue, dtype=np.float32)
        scale = self.kh / self.rho
        if self.method == "model":
            fit = self.deconvolver(tissue)
            cbf = scale * 6000.0 * fit["flow"]
            cbv = scale * 100.0 * fit["flow"] * fit["mtt_s"]
            mtt, tmax = fit["mtt_s"], fit["tmax_s"]
        else:
            residues, choice = self.deconvolver(tissue)
            peak, tmax = peak_and_time(residues, self.dt_s, circular=True)
            cbf = scale * np.clip(peak, 0.0, None) * 6000.0
            cbv = scale * np.clip(tissue.sum(axis=1) * self.dt_s / self.aif_area, 0.0, None) * 100.0
            if self.bias is not None:
                cbf, cbv, mtt, tmax = self.bias.correct(cbf, cbv, tmax, choice, flow=self.correct_flow)
            else:
                mtt = 60.0 * cbv / np.where(cbf > 0, cbf, np.inf)
        _, ttp = peak_and_time(_smooth_in_time(tissue), self.dt_s, circular=False)
        maps = {"cbf": cbf, "cbv": cbv, "mtt": mtt, "tmax": tmax, "ttp": ttp}
        return {name: np.nan_to_num(np.asarray(v, np.float64), nan=0.0, posinf=0.0, neginf=0.0) for name, v in maps.items()}


def build_estimator(
    aif: np.ndarray,
    dt_s: float,
    method: str = DEFAULT_METHOD,
    *,
    correct_bias: bool = True,
    correct_flow: bool = True,
    kh: float = KH,
    rho: float = RHO,
) -> CurveEstimator:
    """Prepare ``method`` for the AIF ``(t,)`` (HU above baseline) sampled every ``dt_s`` s.

    ``correct_bias`` applies to the SVD methods only (the model fit has no truncation bias);
    see :func:`deconvolve_curves` for the parameters.
    """
    check_options(method, dt_s, kh, rho)
    aif = np.asarray(aif, dtype=np.float64)
    if method == "model":
        return CurveEstimator(method, float(dt_s), kh, rho, ModelFit.build(aif, dt_s), None, True, 1.0)
    build = {"bcsvd": CirculantDeconvolver.bcsvd, "osvd": CirculantDeconvolver.osvd,
             "tikhonov": CirculantDeconvolver.tikhonov}[method]
    deconvolver = build(aif, dt_s)
    bias = DeconvolutionBias.measure(deconvolver) if correct_bias else None
    return CurveEstimator(method, float(dt_s), kh, rho, deconvolver, bias, correct_flow, float(aif.sum() * dt_s))


def deconvolve_curves(
    conc: np.ndarray,
    aif: np.ndarray,
    dt_s: float,
    *,
    method: str = DEFAULT_METHOD,
    correct_bias: bool = True,
    kh: float = KH,
    rho: float = RHO,
) -> dict[str, np.ndarray]:
    """Perfusion maps of tissue concentration curves against one arterial input.

    The same computation as :func:`~StrokePerfusionSegLib.perfusion.compute_perfusion_maps`
    runs on each slice's brain voxels, without the volume's steps (mask, baseline, AIF
    search, in-plane smoothing).

    Parameters
    ----------
    conc : (n, t) ndarray
        Tissue concentration curves (HU above baseline, or any unit shared with ``aif``);
        frame 0 at t = 0.
    aif : (t,) ndarray
        Arterial concentration, same unit and frames.
    dt_s : float
        Frame interval in s.
    method : {"bcsvd", "osvd", "tikhonov", "model"}
        See :data:`~StrokePerfusionSegLib.perfusionmethods.METHODS` and docs/perfusion.md;
        default :data:`~StrokePerfusionSegLib.perfusionmethods.DEFAULT_METHOD`.
    correct_bias : bool
        SVD methods: undo the truncation's CBF loss and Tmax lag and the CBV lost to the end of
        the series as measured on exponential-residue curves (:mod:`.calibration`).
    kh : float
        ``(1 - Hct_small) / (1 - Hct_large)``, dimensionless (default 0.73; 1 = none).
    rho : float
        Brain tissue density in g/ml (default 1.04; 1 = per ml of tissue).

    Returns
    -------
    dict of str to (n,) float64
        ``cbf`` ml/100g/min, ``cbv`` ml/100g, ``mtt`` s, ``tmax`` s, ``ttp`` s.
    """
    conc = np.asarray(conc)
    aif = np.asarray(aif)
    if conc.ndim != 2 or aif.ndim != 1 or conc.shape[1] != aif.size:
        raise ValueError(f"conc must be (n, t) and aif (t,) with the same t, got {conc.shape} and {aif.shape}")
    if not (np.all(np.isfinite(conc)) and np.all(np.isfinite(aif))):
        raise InputError("the concentration curves or the AIF hold NaN or infinite values")
    estimate = build_estimator(aif, dt_s, method, correct_bias=correct_bias, kh=kh, rho=rho)
    if method != "model":  # one large product per call, which BLAS threads speed up
        return estimate(conc)
    with threadpool_limits(limits=1, user_api="blas"):  # see ModelFit.__call__
        return estimate(conc)


def check_options(method: str, dt_s: float, kh: float, rho: float) -> None:
    """InputError for an unknown method or a non-positive frame interval, kh or rho."""
    if method not in METHODS:
        raise InputError(f"unknown deconvolution method '{method}': use one of {', '.join(METHODS)}")
    if dt_s is None or not np.isfinite(dt_s) or dt_s <= 0:
        raise InputError(f"frame interval dt must be a positive number of seconds, got {dt_s}: pass --dt")
    check_factors(kh=kh, rho=rho)


def _smooth_in_time(curves: np.ndarray) -> np.ndarray:
    """Curves (n, t) filtered by ``[1, 2, 1]`` in time (ends doubled), to steady their peak time.

    Left unnormalised (4 times the curve): only the peak's position is read from it.
    """
    smooth = 2.0 * curves
    smooth[:, 1:-1] += curves[:, :-2]
    smooth[:, 1:-1] += curves[:, 2:]
    smooth[:, [0, -1]] *= 2.0
    return smooth
