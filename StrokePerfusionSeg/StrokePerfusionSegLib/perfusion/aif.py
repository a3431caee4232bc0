"""Arterial input function (AIF) and venous output function (VOF).

Automatic AIF: among voxels that are neither air nor bone, take the :data:`POOL_SIZE` with the
highest concentration peak (at least :data:`MIN_VESSEL_PEAK_HU`), keep those that peak within
:data:`EARLY_WINDOW_S` of the earliest (arteries fill first; veins, and vessels cut off by the
end of the series, peak later) and average the :data:`AIF_VOXELS` highest of those. The
earliest time is that of the :data:`EARLIEST_RANK`-th earliest voxel, so a stray curve or two
cannot set it, and it does not depend on how many veins the pool holds: large sinuses are
purer than arteries and can fill most of it on a fine grid. The measured mean curve is the
AIF: fitting a gamma variate to it alone would drop its recirculation but not the tissue's and
so bias CBV upwards. The gamma-variate fit of the first pass still serves twice: it reports arrival and peak, and its
closed-form area (which a short acquisition cannot truncate) compares AIF and VOF.

VOF: the highest late curves (peak after the AIF's by :data:`VOF_MIN_LAG_S`). Arteries are
small and lose contrast to partial volume, the large sinuses do not, and both carry the same
tracer amount, so ``area(VOF) / area(AIF)`` (>= 1) rescales the AIF.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import exp, gamma, log

import numpy as np
from scipy.optimize import curve_fit

from ..errors import InputError
from ..tracer import gamma_variate

#: Voxels whose baseline lies outside this range (HU) are air or bone, never vessels.
VESSEL_BASELINE_RANGE_HU = (-100.0, 150.0)
#: Smallest concentration peak (HU above baseline) of an arterial or venous voxel.
MIN_VESSEL_PEAK_HU = 50.0
#: Highest-peak voxels examined for the AIF.
POOL_SIZE = 2000
#: A pool voxel peaking at most this long (s) after the earliest ones counts as arterial.
EARLY_WINDOW_S = 2.0
#: Rank (1 = earliest) of the pool voxel whose time to peak marks the arterial phase.
EARLIEST_RANK = 3
#: Voxels averaged into the AIF and into the VOF.
AIF_VOXELS = 8
#: The VOF peaks at least this long (s) after the AIF.
VOF_MIN_LAG_S = 2.0
#: VOF/AIF area ratios above this (partial volume beyond belief) are ignored.
MAX_VOF_SCALE = 4.0
#: First pass ends where the curve falls back below this fraction of its peak.
FIRST_PASS_END_FRACTION = 0.4
#: The VOF's gamma-variate fit extrapolates the washout a short series misses, but it needs
#: the peak passed: the last frame must lie at least this fraction below the VOF's peak.
VOF_MIN_FALL = 0.1


@dataclass(frozen=True)
class GammaFit:
    """Gamma-variate fit of a first-pass bolus (see :func:`StrokePerfusionSegLib.tracer.gamma_variate`).

    Attributes: ``t0_s`` arrival (s), ``alpha``, ``beta_s`` (s), ``peak`` (HU above baseline),
    ``relative_rmse`` (fit error / peak over the fitted frames).
    """

    t0_s: float
    alpha: float
    beta_s: float
    peak: float
    relative_rmse: float

    @property
    def time_to_peak_s(self) -> float:
        """Time of the fitted maximum, in s."""
        return self.t0_s + self.alpha * self.beta_s

    @property
    def area(self) -> float:
        """Area under the whole fitted curve, in HU*s (closed form)."""
        a = self.alpha
        return self.peak * self.beta_s * exp(a - a * log(a)) * gamma(a + 1.0)


def fit_gamma_variate(curve: np.ndarray, t_s: np.ndarray) -> GammaFit | None:
    """Fit a gamma variate to the first pass of a bolus curve.

    Parameters
    ----------
    curve : (t,) ndarray
        Concentration (HU above baseline).
    t_s : (t,) ndarray
        Frame times in s.

    Returns
    -------
    GammaFit, or None when the first pass has fewer than 4 frames or the fit does not converge.
    """
    curve = np.asarray(curve, dtype=np.float64)
    t_s = np.asarray(t_s, dtype=np.float64)
    top = int(np.argmax(curve))
    peak = float(curve[top])
    if peak <= 0:
        return None
    rising = np.flatnonzero(curve[: top + 1] < 0.1 * peak)
    start = int(rising[-1]) if rising.size else 0
    falling = np.flatnonzero(curve[top:] < FIRST_PASS_END_FRACTION * peak)
    stop = top + int(falling[0]) + 1 if falling.size else curve.size
    t, y = t_s[start:stop], curve[start:stop]
    if t.size < 4:
        return None

    def model(time, t0, alpha, beta):
        # The peak height is fitted through the amplitude of the unit-peak curve (linear).
        unit = gamma_variate(time, t0_s=t0, alpha=alpha, beta_s=beta, peak=1.0)
        height = unit @ y / max(unit @ unit, 1e-12)
        return height * unit

    rise = max(t_s[top] - t[0], t_s[1] - t_s[0])
    guess = (t[0], 3.0, rise / 3.0)
    bounds = ([t_s[0] - 10.0, 0.5, 0.05], [t_s[top], 20.0, 30.0])
    try:
        (t0, alpha, beta), _ = curve_fit(model, t, y, p0=guess, bounds=bounds, maxfev=2000)
    except (RuntimeError, ValueError):
        return None
    fitted = model(t, t0, alpha, beta)
    unit = gamma_variate(t, t0_s=t0, alpha=alpha, beta_s=beta, peak=1.0)
    height = float(unit @ y / max(unit @ unit, 1e-12))
    rmse = float(np.sqrt(np.mean((fitted - y) ** 2))) / peak
    return GammaFit(float(t0), float(alpha), float(beta), height, rmse)


def concentration_curves(ctp_hu: np.ndarray, baseline_hu: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    """Concentration curves (n, t), HU above baseline, of voxels (n, 3) ``(z, y, x)``."""
    z, y, x = voxels.T
    return (ctp_hu[:, z, y, x].astype(np.float64) - baseline_hu[z, y, x][None, :]).T


def vessel_candidates(
    ctp_hu: np.ndarray, baseline_hu: np.ndarray, peak_hu: np.ndarray
) -> np.ndarray:
    """Indices ``(n, 3)`` of possible vessel voxels, highest concentration peak first.

    Parameters
    ----------
    ctp_hu : (t, z, y, x) ndarray
    baseline_hu : (z, y, x) ndarray
        Unenhanced HU.
    peak_hu : (z, y, x) ndarray
        Peak concentration (HU above baseline).
    """
    low, high = VESSEL_BASELINE_RANGE_HU
    eligible = (baseline_hu > low) & (baseline_hu < high) & (peak_hu >= MIN_VESSEL_PEAK_HU)
    flat = np.flatnonzero(eligible)
    if flat.size > POOL_SIZE:
        flat = flat[np.argpartition(-peak_hu.ravel()[flat], POOL_SIZE)[:POOL_SIZE]]
    flat = flat[np.argsort(-peak_hu.ravel()[flat], kind="stable")]
    return np.stack(np.unravel_index(flat, peak_hu.shape), axis=1)


def automatic_aif(
    ctp_hu: np.ndarray, baseline_hu: np.ndarray, peak_hu: np.ndarray, t_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pick arterial voxels: high and early curves. Returns (voxels (k, 3), mean curve (t,)).

    Raises
    ------
    InputError
        When no voxel enhances by :data:`MIN_VESSEL_PEAK_HU`.
    """
    pool = vessel_candidates(ctp_hu, baseline_hu, peak_hu)
    if len(pool) == 0:
        raise InputError(
            f"no arterial input found: no voxel enhances by {MIN_VESSEL_PEAK_HU:.0f} HU or more; "
            "check the series covers the bolus or give the AIF voxel by hand (--aif-voxel z,y,x)"
        )
    curves = concentration_curves(ctp_hu, baseline_hu, pool)
    ttp = t_s[curves.argmax(axis=1)]
    rank = min(EARLIEST_RANK, ttp.size) - 1
    earliest = np.partition(ttp, rank)[rank]
    early = ttp <= earliest + EARLY_WINDOW_S
    chosen = np.flatnonzero(early)[:AIF_VOXELS]  # pool is sorted by peak, highest first
    return pool[chosen], curves[chosen].mean(axis=0)


def manual_aif(
    ctp_hu: np.ndarray, baseline_hu: np.ndarray, aif_voxel
) -> tuple[np.ndarray, np.ndarray]:
    """AIF from a ``(z, y, x)`` index or a boolean ``(z, y, x)`` mask. Returns (voxels, curve)."""
    shape = baseline_hu.shape
    if isinstance(aif_voxel, np.ndarray) and aif_voxel.shape == shape:
        voxels = np.argwhere(aif_voxel.astype(bool))
        if len(voxels) == 0:
            raise InputError("the AIF mask is empty: mark at least one arterial voxel")
    else:
        index = tuple(int(i) for i in np.ravel(aif_voxel))
        if len(index) != 3 or not all(0 <= i < n for i, n in zip(index, shape)):
            raise InputError(
                f"AIF voxel {aif_voxel} is outside the image of shape (z, y, x) = {shape}: "
                "give a z,y,x index inside it"
            )
        voxels = np.array([index])
    curve = concentration_curves(ctp_hu, baseline_hu, voxels).mean(axis=0)
    if curve.max() < MIN_VESSEL_PEAK_HU:
        raise InputError(
            f"the AIF voxel enhances by only {curve.max():.1f} HU (an artery enhances by "
            f"{MIN_VESSEL_PEAK_HU:.0f} HU or more): pick a voxel inside an artery"
        )
    return voxels, curve


def venous_scale(
    ctp_hu: np.ndarray,
    baseline_hu: np.ndarray,
    peak_hu: np.ndarray,
    t_s: np.ndarray,
    aif_fit: GammaFit | None,
) -> tuple[float, np.ndarray, list]:
    """Partial-volume scale of the AIF from the venous output function.

    Returns
    -------
    scale : float
        ``area(VOF fit) / area(AIF fit)`` clipped below at 1; 1 when no VOF is found.
    voxels : (m, 3) ndarray of int
    notes : list of str
    """
    none = np.zeros((0, 3), int)
    if aif_fit is None:
        return 1.0, none, ["no VOF scaling: the AIF's gamma-variate fit failed"]
    pool = vessel_candidates(ctp_hu, baseline_hu, peak_hu)
    if len(pool) == 0:
        return 1.0, none, ["no VOF found; AIF not rescaled"]
    curves = concentration_curves(ctp_hu, baseline_hu, pool)
    ttp = t_s[curves.argmax(axis=1)]
    late = np.flatnonzero(ttp >= aif_fit.time_to_peak_s + VOF_MIN_LAG_S)[:AIF_VOXELS]
    if late.size == 0:
        return 1.0, none, ["no VOF found; AIF not rescaled"]
    vof = curves[late].mean(axis=0)
    if vof[-1] > (1.0 - VOF_MIN_FALL) * vof.max():
        return 1.0, pool[late], ["the series ends before the venous peak has passed; AIF not rescaled"]
    vof_fit = fit_gamma_variate(vof, t_s)
    if vof_fit is None:
        return 1.0, pool[late], ["VOF gamma-variate fit failed; AIF not rescaled"]
    scale = vof_fit.area / aif_fit.area
    if scale > MAX_VOF_SCALE:
        return 1.0, pool[late], [f"VOF/AIF area ratio {scale:.2f} is implausible; AIF not rescaled"]
    return max(1.0, float(scale)), pool[late], []
