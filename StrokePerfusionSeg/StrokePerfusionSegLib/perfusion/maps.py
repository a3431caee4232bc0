"""Parametric maps (CBF, CBV, MTT, TTP, Tmax, MIP) from a raw 4D CT perfusion series.

Steps: validate; MIP and brain mask; bolus and baseline on the mean brain curve; AIF
(automatic or given) and its VOF partial-volume scale; optional in-plane smoothing and
deconvolution of the brain voxels, slice by slice; the maps by the definitions of DESIGN.md
section 5 (see :mod:`..tracer`), with the biases of the truncated SVD and of the series' end
measured on the study's AIF and frames and removed (:mod:`.calibration`).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

from ..brainmask import BRAIN_MIP_RANGE_HU, brain_mask_from_mip
from ..errors import CancelledError, InputError
from ..tracer import KH, RHO
from .aif import GammaFit, automatic_aif, concentration_curves, fit_gamma_variate, manual_aif, venous_scale
from .bolus import Bolus, baseline_image, before_arterial_arrival, find_bolus
from .calibration import DeconvolutionBias
from .deconvolution import CirculantDeconvolver, peak_and_time

#: Fewest frames a series must have for baseline, bolus and deconvolution.
MIN_FRAMES = 10
#: In-plane Gaussian sigma (mm) of the default noise smoothing before deconvolution.
DEFAULT_SMOOTHING_MM = 1.5
#: The Gaussian kernel is cut at this many sigmas (2 keeps 95 % of its weight, at half the cost of 4).
SMOOTHING_TRUNCATE = 2.0
#: The CBF and CBV corrections extrapolate the washout the series missed: above this fraction
#: of the brain's enhancement left at the last frame that is guesswork, and only Tmax is corrected.
MAX_REMAINING_FOR_CORRECTION = 0.5
METHODS = ("bcsvd", "osvd")


@dataclass
class PerfusionResult:
    """Parametric maps of one study and how they were obtained.

    Attributes
    ----------
    maps : dict of str to (z, y, x) float32
        ``cbf`` ml/100g/min, ``cbv`` ml/100g, ``mtt`` s, ``ttp`` s (from the first frame),
        ``tmax`` s, ``mip`` HU; NaN-free, 0 outside the brain mask (except ``mip``).
    brain_mask : (z, y, x) bool
    aif_curve : (t,) float64
        AIF concentration (HU above baseline) used, VOF scale included.
    aif_voxels : (k, 3) int
        ``(z, y, x)`` voxels averaged into the AIF.
    vof_scale : float
        Partial-volume factor the AIF was multiplied by (1 = none).
    dt_s : float
    method : str
    bolus : Bolus
    aif_fit : GammaFit or None
    vof_voxels : (m, 3) int
    timings : dict of str to float
        Seconds per stage.
    notes : list of str
        Things the user should know (no VOF found, fit failed, ...).
    """

    maps: dict
    brain_mask: np.ndarray
    aif_curve: np.ndarray
    aif_voxels: np.ndarray
    vof_scale: float
    dt_s: float
    method: str
    bolus: Bolus
    aif_fit: GammaFit | None = None
    vof_voxels: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), int))
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def _validate(ctp_hu, dt_s, spacing, method) -> None:
    if ctp_hu.ndim != 4:
        raise InputError(
            f"CT perfusion must be a 4D series (t, z, y, x), got a {ctp_hu.ndim}D array of shape "
            f"{ctp_hu.shape}: give the dynamic series, not a single volume"
        )
    if ctp_hu.shape[0] < MIN_FRAMES:
        raise InputError(
            f"the series has {ctp_hu.shape[0]} frames; perfusion analysis needs at least "
            f"{MIN_FRAMES}: give the whole dynamic acquisition"
        )
    if dt_s is None or not np.isfinite(dt_s) or dt_s <= 0:
        raise InputError(f"frame interval dt must be a positive number of seconds, got {dt_s}: pass --dt")
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"spacing must be three positive sizes in mm (z, y, x), got {spacing}")
    if method not in METHODS:
        raise InputError(f"unknown deconvolution method '{method}': use one of {', '.join(METHODS)}")
    # max and min propagate NaN, so two reductions check every value without a 4D mask.
    if np.issubdtype(ctp_hu.dtype, np.floating) and not (np.isfinite(ctp_hu.max()) and np.isfinite(ctp_hu.min())):
        raise InputError("the CT perfusion series holds NaN or infinite values: check the export")


def _mean_curve(ctp_hu: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean HU of ``mask`` in every frame, one frame at a time (no 4D copy)."""
    count = int(mask.sum())
    return np.array([frame.sum(where=mask, dtype=np.float64) / count for frame in ctp_hu])


def _smooth_in_time(curves: np.ndarray) -> np.ndarray:
    """Curves (n, t) filtered by ``[1, 2, 1]`` in time (ends doubled), to steady their peak time.

    Left unnormalised (4 times the curve): only the peak's position is read from it.
    """
    smooth = 2.0 * curves
    smooth[:, 1:-1] += curves[:, :-2]
    smooth[:, 1:-1] += curves[:, 2:]
    smooth[:, [0, -1]] *= 2.0
    return smooth


def smooth_in_plane(
    concentration: np.ndarray, inside: np.ndarray, sigma_mm: float, spacing_yx
) -> np.ndarray:
    """Gaussian-smooth each frame (t, y, x) within the mask ``inside`` (y, x) only.

    Normalised convolution: ``G * (c m) / G * m``, so values outside the mask never mix in.
    """
    sigma = tuple(sigma_mm / s for s in spacing_yx)
    weight = gaussian_filter(inside.astype(np.float32), sigma, truncate=SMOOTHING_TRUNCATE)
    weight = np.where(inside, np.maximum(weight, 1e-6), 1.0)
    masked = np.where(inside[None], concentration, np.float32(0.0))
    return gaussian_filter(masked, (0.0,) + sigma, truncate=SMOOTHING_TRUNCATE) / weight[None]


def compute_perfusion_maps(
    ctp_hu: np.ndarray,
    dt_s: float,
    spacing: tuple[float, float, float],
    *,
    method: str = "bcsvd",
    aif_voxel=None,
    brain_mask: np.ndarray | None = None,
    correct_bias: bool = True,
    smoothing_mm: float = DEFAULT_SMOOTHING_MM,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> PerfusionResult:
    """Compute perfusion maps from a 4D CT perfusion series.

    Parameters
    ----------
    ctp_hu : (t, z, y, x) ndarray
        The dynamic series in HU (any real dtype; not copied as a whole).
    dt_s : float
        Frame interval in s (non-integer values are honoured everywhere).
    spacing : (3,) tuple of float
        Voxel size in mm, ``(z, y, x)``.
    method : {"bcsvd", "osvd"}
        Block-circulant SVD with a fixed truncation (fast) or oscillation-limited (careful).
    aif_voxel : (3,) index or (z, y, x) bool mask, optional
        Arterial voxel(s) to use instead of the automatic AIF.
    brain_mask : (z, y, x) bool, optional
        Voxels to analyse; by default :func:`~StrokePerfusionSegLib.brainmask.brain_mask_from_mip`.
    correct_bias : bool
        Undo the truncation's CBF loss and Tmax lag and the CBV lost to the end of the series,
        measured on this study's AIF and frames (:mod:`.calibration`); CBF and CBV are left
        uncorrected, with a note, when the series ends long before the brain washes out. False
        gives the plain ``max(R)``, its time and the plain area ratio.
    smoothing_mm : float
        Gaussian sigma (mm) of the in-plane smoothing of the concentration inside the brain
        mask before deconvolution (normalised, so air and bone never leak in); 0 = none.
    progress : callable(done, total), optional
        Called after each chunk of deconvolved voxels.
    cancel : callable() -> bool, optional
        Polled between chunks; True stops with :class:`~StrokePerfusionSegLib.errors.CancelledError`.

    Returns
    -------
    PerfusionResult
    """
    ctp_hu = np.asarray(ctp_hu)
    _validate(ctp_hu, dt_s, spacing, method)
    dt_s = float(dt_s)
    timings: dict = {}
    clock = time.perf_counter()
    t_s = dt_s * np.arange(ctp_hu.shape[0])

    mip = ctp_hu.max(axis=0).astype(np.float32)
    if brain_mask is None:
        brain_mask = brain_mask_from_mip(mip, spacing)
    brain_mask = np.asarray(brain_mask, dtype=bool)
    if brain_mask.shape != mip.shape:
        raise InputError(f"brain mask shape {brain_mask.shape} differs from the image's {mip.shape}")
    if not brain_mask.any():
        low, high = BRAIN_MIP_RANGE_HU
        raise InputError(
            f"no brain tissue found (MIP between {low:g} and {high:g} HU): is the series in HU and of the head?"
        )
    bolus = find_bolus(_mean_curve(ctp_hu, brain_mask))
    baseline = baseline_image(ctp_hu, bolus)
    timings["mask_and_bolus_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    if aif_voxel is None:
        aif_voxels, aif_curve = automatic_aif(ctp_hu, baseline, mip - baseline, t_s)
    else:
        aif_voxels, aif_curve = manual_aif(ctp_hu, baseline, aif_voxel)
    bolus = before_arterial_arrival(bolus, aif_curve)
    baseline = baseline_image(ctp_hu, bolus)
    aif_curve = concentration_curves(ctp_hu, baseline, aif_voxels).mean(axis=0)
    aif_fit = fit_gamma_variate(aif_curve, t_s)
    notes = [] if aif_fit else ["the AIF is not a clean bolus (gamma-variate fit failed): check its location"]
    vof_scale, vof_voxels, vof_notes = venous_scale(ctp_hu, baseline, mip - baseline, t_s, aif_fit)
    notes += vof_notes
    aif_curve = aif_curve * vof_scale
    timings["aif_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    build = CirculantDeconvolver.bcsvd if method == "bcsvd" else CirculantDeconvolver.osvd
    deconvolve = build(aif_curve, dt_s)
    bias = DeconvolutionBias.measure(deconvolve) if correct_bias else None
    correct_flow = bolus.remaining_fraction <= MAX_REMAINING_FOR_CORRECTION
    if correct_bias and not correct_flow:
        notes.append(
            f"the series ends before the brain washes out ({100 * bolus.remaining_fraction:.0f} % of the "
            "enhancement left): CBF and CBV are the plain readings (Tmax is still corrected)"
        )
    aif_area = float(aif_curve.sum() * dt_s)
    values = {name: np.zeros(mip.shape, np.float32) for name in ("cbf", "cbv", "mtt", "ttp", "tmax")}

    def analyse_slice(z: int) -> int:
        """Fill ``values`` on slice ``z``; returns the number of brain voxels done."""
        if cancel is not None and cancel():
            raise CancelledError("perfusion analysis cancelled")
        inside = brain_mask[z]
        if not inside.any():
            return 0
        rows, columns = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        box = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))  # the brain's bounding box
        inside = inside[box]
        concentration = ctp_hu[(slice(None), z) + box].astype(np.float32) - baseline[z][box][None]
        if smoothing_mm > 0:
            concentration = smooth_in_plane(concentration, inside, smoothing_mm, spacing[1:])
        tissue = np.ascontiguousarray(concentration[:, inside].T)  # (voxels, t): curves in rows
        residues, choice = deconvolve(tissue)
        peak, tmax = peak_and_time(residues, dt_s, circular=True)
        cbf = KH / RHO * np.clip(peak, 0.0, None) * 6000.0
        cbv = KH / RHO * np.clip(tissue.sum(axis=1) * dt_s / aif_area, 0.0, None) * 100.0
        if bias is not None:
            cbf, cbv, mtt, tmax = bias.correct(cbf, cbv, tmax, choice, flow=correct_flow)
        else:
            mtt = 60.0 * cbv / np.where(cbf > 0, cbf, np.inf)
        _, ttp = peak_and_time(_smooth_in_time(tissue), dt_s, circular=False)
        for name, value in (("cbf", cbf), ("cbv", cbv), ("mtt", mtt), ("ttp", ttp), ("tmax", tmax)):
            values[name][z][box][inside] = np.nan_to_num(value, nan=0.0, posinf=0.0, neginf=0.0)
        return int(inside.sum())

    # Slice by slice (smoothing is in-plane; a slice bounds the working memory), on every core:
    # numpy and scipy release the GIL in the heavy loops, so threads run in parallel.
    brain_count, done = int(brain_mask.sum()), 0
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        jobs = [pool.submit(analyse_slice, z) for z in range(mip.shape[0])]
        try:
            for job in jobs:
                done += job.result()
                if progress is not None:
                    progress(done, brain_count)
        except BaseException:
            for job in jobs:
                job.cancel()
            raise
    maps = dict(values, mip=mip)
    timings["deconvolution_s"] = time.perf_counter() - clock
    return PerfusionResult(
        maps=maps,
        brain_mask=brain_mask,
        aif_curve=aif_curve,
        aif_voxels=aif_voxels,
        vof_scale=vof_scale,
        dt_s=dt_s,
        method=method,
        bolus=bolus,
        aif_fit=aif_fit,
        vof_voxels=vof_voxels,
        timings=timings,
        notes=notes,
    )
