"""Parametric maps (CBF, CBV, MTT, TTP, Tmax, MIP) from a raw 4D CT perfusion series.

Steps: validate; MIP and brain mask; bolus and baseline on the mean brain curve; AIF
(automatic or given) and its VOF partial-volume scale; optional in-plane smoothing and
deconvolution of the brain voxels, slice by slice, by :mod:`.curves` (the code path of
:func:`~StrokePerfusionSegLib.perfusion.deconvolve_curves`), which gives the maps by the
definitions of docs/perfusion.md, "Method" (see :mod:`..tracer`).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.ndimage import gaussian_filter
from threadpoolctl import threadpool_limits

from ..brainmask import BRAIN_MIP_RANGE_HU, brain_mask_from_mip
from ..cpufeatures import usable_cores
from ..errors import CancelledError, InputError
from ..perfusionmethods import DEFAULT_METHOD
from ..tracer import KH, RHO
from .aif import GammaFit, automatic_aif, concentration_curves, fit_gamma_variate, manual_aif, venous_scale
from .bolus import Bolus, baseline_image, before_arterial_arrival, find_bolus
from .curves import CORRECTABLE, build_estimator, check_options

#: Fewest frames a series must have for baseline, bolus and deconvolution.
MIN_FRAMES = 10
#: In-plane Gaussian sigma (mm) of the default noise smoothing before deconvolution.
DEFAULT_SMOOTHING_MM = 1.5
#: The Gaussian kernel is cut at this many sigmas (2 keeps 95 % of its weight, at half the cost of 4).
SMOOTHING_TRUNCATE = 2.0
#: The CBF and CBV corrections extrapolate the washout the series missed: above this fraction
#: of the brain's enhancement left at the last frame that is guesswork, and only Tmax is corrected.
MAX_REMAINING_FOR_CORRECTION = 0.5


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


def _validate(ctp_hu, dt_s, spacing, method, kh, rho) -> None:
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
    check_options(method, dt_s, kh, rho)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"spacing must be three positive sizes in mm (z, y, x), got {spacing}")
    # max and min propagate NaN, so two reductions check every value without a 4D mask.
    if np.issubdtype(ctp_hu.dtype, np.floating) and not (np.isfinite(ctp_hu.max()) and np.isfinite(ctp_hu.min())):
        raise InputError("the CT perfusion series holds NaN or infinite values: check the export")


def _mean_curve(ctp_hu: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean HU of ``mask`` in every frame, one frame at a time (no 4D copy)."""
    count = int(mask.sum())
    return np.array([frame.sum(where=mask, dtype=np.float64) / count for frame in ctp_hu])


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
    method: str = DEFAULT_METHOD,
    aif_voxel=None,
    brain_mask: np.ndarray | None = None,
    correct_bias: bool = True,
    smoothing_mm: float = DEFAULT_SMOOTHING_MM,
    kh: float = KH,
    rho: float = RHO,
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
    method : {"bcsvd", "osvd", "tikhonov", "model"}
        Block-circulant SVD with a fixed truncation (fast), oscillation-limited SVD, Tikhonov
        with GCV, or the model fit of :mod:`.modelfit`; default
        :data:`~StrokePerfusionSegLib.perfusionmethods.DEFAULT_METHOD`.
    aif_voxel : (3,) index or (z, y, x) bool mask, optional
        Arterial voxel(s) to use instead of the automatic AIF.
    brain_mask : (z, y, x) bool, optional
        Voxels to analyse; by default :func:`~StrokePerfusionSegLib.brainmask.brain_mask_from_mip`.
    correct_bias : bool
        SVD methods: undo the truncation's CBF loss and Tmax lag and the CBV lost to the end of
        the series, measured on this study's AIF and frames for exponential residues
        (:mod:`.calibration`); CBF and CBV are left uncorrected, with a note, when the series
        ends long before the brain washes out. False gives the plain ``max(R)``, its time and
        the plain area ratio. No effect on ``model``.
    smoothing_mm : float
        Gaussian sigma (mm) of the in-plane smoothing of the concentration inside the brain
        mask before deconvolution (normalised, so air and bone never leak in); 0 = none.
    kh : float
        Ratio of small- to large-vessel haematocrit factors (dimensionless; 1 = none).
    rho : float
        Brain tissue density in g/ml (1 = per ml of tissue).
    progress : callable(done, total), optional
        Called after each slice's brain voxels are done.
    cancel : callable() -> bool, optional
        Polled between slices; True stops with :class:`~StrokePerfusionSegLib.errors.CancelledError`.

    Returns
    -------
    PerfusionResult
    """
    ctp_hu = np.asarray(ctp_hu)
    _validate(ctp_hu, dt_s, spacing, method, kh, rho)
    dt_s = float(dt_s)
    timings: dict = {}
    clock = time.perf_counter()
    mip = ctp_hu.max(axis=0).astype(np.float32)
    brain_mask = _brain_mask(mip, spacing, brain_mask)
    bolus = find_bolus(_mean_curve(ctp_hu, brain_mask))
    timings["mask_and_bolus_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    arterial = _arterial_input(ctp_hu, mip, bolus, dt_s, aif_voxel)
    timings["aif_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    correct_flow = arterial.bolus.remaining_fraction <= MAX_REMAINING_FOR_CORRECTION
    notes = list(arterial.notes)
    if correct_bias and method in CORRECTABLE and not correct_flow:
        notes.append(
            f"the series ends before the brain washes out ({100 * arterial.bolus.remaining_fraction:.0f} % of the "
            "enhancement left): CBF and CBV are the plain readings (Tmax is still corrected)"
        )
    estimate = build_estimator(
        arterial.curve, dt_s, method, correct_bias=correct_bias, correct_flow=correct_flow, kh=kh, rho=rho
    )
    values = _analyse_slices(ctp_hu, arterial.baseline, brain_mask, spacing, smoothing_mm, estimate, progress, cancel)
    timings["deconvolution_s"] = time.perf_counter() - clock
    return PerfusionResult(
        maps=dict(values, mip=mip),
        brain_mask=brain_mask,
        aif_curve=arterial.curve,
        aif_voxels=arterial.voxels,
        vof_scale=arterial.vof_scale,
        dt_s=dt_s,
        method=method,
        bolus=arterial.bolus,
        aif_fit=arterial.fit,
        vof_voxels=arterial.vof_voxels,
        timings=timings,
        notes=notes,
    )


def _brain_mask(mip: np.ndarray, spacing, brain_mask: np.ndarray | None) -> np.ndarray:
    """The given brain mask, checked, or one from the MIP."""
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
    return brain_mask


@dataclass(frozen=True)
class _ArterialInput:
    curve: np.ndarray
    baseline: np.ndarray
    voxels: np.ndarray
    bolus: Bolus
    fit: GammaFit | None
    vof_scale: float
    vof_voxels: np.ndarray
    notes: list


def _arterial_input(ctp_hu, mip, bolus: Bolus, dt_s: float, aif_voxel) -> _ArterialInput:
    """AIF (automatic or given), the baseline image (z, y, x) ending before it arrives, its fit and VOF scale."""
    t_s = dt_s * np.arange(ctp_hu.shape[0])
    baseline = baseline_image(ctp_hu, bolus)
    if aif_voxel is None:
        voxels, curve = automatic_aif(ctp_hu, baseline, mip - baseline, t_s)
    else:
        voxels, curve = manual_aif(ctp_hu, baseline, aif_voxel)
    bolus = before_arterial_arrival(bolus, curve)
    baseline = baseline_image(ctp_hu, bolus)
    curve = concentration_curves(ctp_hu, baseline, voxels).mean(axis=0)
    fit = fit_gamma_variate(curve, t_s)
    notes = [] if fit else ["the AIF is not a clean bolus (gamma-variate fit failed): check its location"]
    vof_scale, vof_voxels, vof_notes = venous_scale(ctp_hu, baseline, mip - baseline, t_s, fit)
    return _ArterialInput(curve * vof_scale, baseline, voxels, bolus, fit, vof_scale, vof_voxels, notes + vof_notes)


def _analyse_slices(ctp_hu, baseline, brain_mask, spacing, smoothing_mm, estimate, progress, cancel) -> dict:
    """Maps (z, y, x) float32 of every brain voxel, slice by slice on every core.

    Smoothing is in-plane and a slice bounds the working memory; numpy and scipy release the
    GIL in the heavy loops, so threads run in parallel. The slices already use every core, so the
    BLAS library runs one thread per product: its own threads on top oversubscribe the cores and
    spin (on 2 loaded cores that made the model fit 5-10x and bcSVD ~2x slower).
    """
    values = {name: np.zeros(brain_mask.shape, np.float32) for name in ("cbf", "cbv", "mtt", "ttp", "tmax")}

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
        maps = estimate(np.ascontiguousarray(concentration[:, inside].T))  # curves in rows
        for name, value in maps.items():
            values[name][z][box][inside] = value
        return int(inside.sum())

    brain_count, done = int(brain_mask.sum()), 0
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=usable_cores()) as pool:
        jobs = [pool.submit(analyse_slice, z) for z in range(brain_mask.shape[0])]
        try:
            for job in jobs:
                done += job.result()
                if progress is not None:
                    progress(done, brain_count)
        except BaseException:
            for job in jobs:
                job.cancel()
            raise
    return values
