"""Tracer kinetics shared by the phantom (forward model) and the perfusion analysis (inverse).

The indicator-dilution model used throughout::

    C_tissue(t) = F * (C_art * h_disp * R)(t - delay)        (* = convolution in time)

with concentrations in HU above baseline, ``F`` the flow in 1/s seen in HU units, ``h_disp``
a unit-area exponential dispersion kernel ``exp(-t/tau)/tau`` and ``R`` the residue function
(``R(0) = 1``, area = MTT). The map definitions (``docs/perfusion.md``, Method) fix ``F``:

* ``CBF = KH / RHO * F * 6000``                       (ml/100g/min), so ``F = CBF * RHO / (KH * 6000)``
* ``CBV = KH / RHO * area(C_tissue) / area(C_art) * 100 = CBF * MTT / 60``   (ml/100g)

so :func:`tissue_curves` with a delay but no dispersion is recovered exactly (up to sampling)
by :func:`StrokePerfusionSegLib.perfusion.compute_perfusion_maps`: CBF, CBV, and Tmax = delay.
Dispersion lowers the apparent CBF and moves Tmax later, as in patients; :func:`residue_peak`
gives both effects so a phantom can store the values a deconvolution should find.
"""

from __future__ import annotations

import numpy as np
from scipy import fft
from scipy.special import erfc, gammaincc


#: Ratio of small-vessel to large-vessel haematocrit factors ((1 - Hct_small) / (1 - Hct_large)).
KH = 0.73
#: Brain tissue density in g/ml.
RHO = 1.04

#: Residue function shapes understood by :func:`residue_function` and :func:`tissue_curves`.
RESIDUE_KINDS = ("exponential", "box", "linear", "gamma", "lognormal")
#: Shape parameter of the kinds that take one when none is given: gamma ``lambda`` (1 is the
#: exponential, large values approach the box) and the lognormal's SD of ``log t``.
DEFAULT_SHAPE = {"gamma": 5.0, "lognormal": 0.5}

# Step of the internal fine time grid of the forward model, as a fraction of the sampling
# interval, and its upper bound in s; 0.05 s keeps the model error far below 1 %.
_FINE_STEP_FRACTION = 0.1
_FINE_STEP_MAX_S = 0.05
# Voxels simulated at once (bounds memory of the fine-grid work arrays).
_CHUNK = 8192


def flow_per_second(cbf: np.ndarray) -> np.ndarray:
    """Flow ``F`` in 1/s (HU units) for CBF in ml/100g/min; the inverse of the CBF definition."""
    return np.asarray(cbf, dtype=np.float64) * RHO / (KH * 6000.0)


def gamma_variate(
    t_s: np.ndarray, *, t0_s: float, alpha: float, beta_s: float, peak: float
) -> np.ndarray:
    """Peak-normalised gamma-variate bolus curve.

    ``peak * (u / (alpha * beta))**alpha * exp(alpha - u / beta)`` with ``u = t - t0``, zero
    before ``t0``; its maximum, ``peak``, lies at ``t0 + alpha * beta``.

    Parameters
    ----------
    t_s : ndarray
        Times in s.
    t0_s : float
        Bolus arrival time in s.
    alpha : float
        Shape (dimensionless, > 0).
    beta_s : float
        Scale in s (> 0).
    peak : float
        Height of the maximum (e.g. HU above baseline).

    Returns
    -------
    ndarray of float64, shape of ``t_s``.
    """
    if alpha <= 0 or beta_s <= 0:
        raise ValueError(f"gamma variate needs alpha > 0 and beta > 0 s, got {alpha}, {beta_s}")
    u = np.clip(np.asarray(t_s, dtype=np.float64) - t0_s, 0.0, None)
    x = u / (alpha * beta_s)
    with np.errstate(divide="ignore"):
        curve = np.exp(alpha * (1.0 + np.log(x)) - u / beta_s)
    return peak * np.where(u > 0, curve, 0.0)


def residue_function(
    t_s: np.ndarray, mtt_s: float | np.ndarray, kind: str = "exponential", shape: float | None = None
) -> np.ndarray:
    """Residue function ``R(t)``: fraction of tracer still in the tissue ``t`` s after a unit input.

    ``R(0) = 1``, ``R = 0`` before 0 and ``integral R dt = MTT``; ``R = 1 - H`` where ``H`` is
    the cumulative transit-time distribution of mean MTT.

    Parameters
    ----------
    t_s : ndarray
        Times in s.
    mtt_s : float or ndarray
        Mean transit time in s (> 0); broadcast against ``t_s``.
    kind : {"exponential", "box", "linear", "gamma", "lognormal"}
        ``exp(-t/MTT)`` (well-mixed compartment), ``1`` until MTT (plug flow), a straight line
        from 1 to 0 at ``2 * MTT``, a gamma transit-time distribution of shape ``lambda``
        (Mouridsen et al. 2006: 1 is the exponential, 100 nearly a box) or a lognormal one
        whose ``log t`` has SD ``shape``.
    shape : float, optional
        The gamma's ``lambda`` or the lognormal's SD (> 0); :data:`DEFAULT_SHAPE` when None.

    Returns
    -------
    ndarray of float64, the broadcast shape of ``t_s`` and ``mtt_s``.
    """
    t = np.asarray(t_s, dtype=np.float64)
    mtt = np.asarray(mtt_s, dtype=np.float64)
    if np.any(mtt <= 0):
        raise ValueError("mean transit time must be positive (s)")
    shape = _shape(kind, shape)
    positive = np.clip(t, 0.0, None)
    if kind == "exponential":
        r = np.exp(-positive / mtt)
    elif kind == "box":
        r = (t < mtt).astype(np.float64)
    elif kind == "linear":
        r = np.clip(1.0 - t / (2.0 * mtt), 0.0, None)
    elif kind == "gamma":
        r = gammaincc(shape, shape * positive / mtt)
    else:  # lognormal of mean MTT: log t ~ N(log MTT - shape^2 / 2, shape^2)
        with np.errstate(divide="ignore"):
            z = (np.log(positive) - np.log(mtt) + 0.5 * shape**2) / (shape * np.sqrt(2.0))
        r = 0.5 * erfc(z)
    return np.where(t >= 0, r, 0.0)


def _shape(kind: str, shape: float | None) -> float | None:
    """Validated shape parameter of ``kind`` (None for the kinds without one)."""
    if kind not in RESIDUE_KINDS:
        raise ValueError(f"unknown residue kind '{kind}': use one of {', '.join(RESIDUE_KINDS)}")
    if kind not in DEFAULT_SHAPE:
        return None
    shape = DEFAULT_SHAPE[kind] if shape is None else float(shape)
    if not (np.isfinite(shape) and shape > 0):
        raise ValueError(f"the {kind} residue needs a positive shape parameter, got {shape}")
    return shape


def residue_peak(
    mtt_s: np.ndarray, dispersion_s: np.ndarray, kind: str = "exponential", shape: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Where and how high the dispersed residue ``h_disp * R`` peaks.

    This is what a deconvolution against the undispersed arterial input sees: Tmax is
    ``delay + time`` and the apparent CBF is ``CBF * height``. Without dispersion the answer
    is ``(0, 1)``.

    Parameters
    ----------
    mtt_s, dispersion_s : ndarray
        Mean transit time (> 0) and dispersion time constant (>= 0), in s; broadcast together.
    kind, shape
        Residue function, see :func:`residue_function`.

    Returns
    -------
    time_s, height : ndarray of float64
        Time of the peak after the (delayed) arrival, in s, and the peak height (<= 1).
    """
    mtt, tau = np.broadcast_arrays(
        np.asarray(mtt_s, dtype=np.float64), np.asarray(dispersion_s, dtype=np.float64)
    )
    pairs, inverse = np.unique(np.stack([mtt.ravel(), tau.ravel()], axis=1), axis=0, return_inverse=True)
    times = np.zeros(len(pairs))
    heights = np.ones(len(pairs))
    for i, (m, d) in enumerate(pairs):
        if d <= 0:
            continue
        step = min(m, d) / 200.0
        grid = np.arange(0.0, 6.0 * (m + d), step)
        kernel = np.exp(-grid / d) / d
        residue = residue_function(grid, m, kind, shape)
        # Trapezoid rule: the rectangle sum less half of each end point.
        curve = (np.convolve(kernel, residue)[: grid.size] - 0.5 * (kernel[0] * residue + residue[0] * kernel)) * step
        best = int(np.argmax(curve))
        times[i], heights[i] = grid[best], curve[best]
    shape = mtt.shape
    return times[inverse.ravel()].reshape(shape), heights[inverse.ravel()].reshape(shape)


def _first_order_lowpass(signal: np.ndarray, tau_s: np.ndarray, step_s: float) -> np.ndarray:
    """Unit-gain response of ``y' = (x - y) / tau`` to ``signal`` (n, T) sampled every ``step_s``.

    The update is exact for an input that is linear between grid points; rows with
    ``tau = 0`` pass through unchanged.
    """
    out = signal.copy()
    active = tau_s > 0
    if not np.any(active):
        return out
    x = signal[active]
    decay = np.exp(-step_s / tau_s[active])
    lag = tau_s[active] / step_s  # tau / h: the slope term of the exact update
    y = np.empty_like(x)
    y[:, 0] = x[:, 0]
    for k in range(1, x.shape[1]):
        slope_tau = (x[:, k] - x[:, k - 1]) * lag
        y[:, k] = x[:, k] - slope_tau + (y[:, k - 1] - x[:, k - 1] + slope_tau) * decay
    out[active] = y
    return out


def _sample(fine: np.ndarray, start_s: float, step_s: float, times_s: np.ndarray) -> np.ndarray:
    """Linear interpolation of each row of ``fine`` (n, Tf) at its own times ``times_s`` (n, T).

    Times before the grid give 0 (no tracer yet); times after it hold the last value.
    """
    position = (times_s - start_s) / step_s
    before = position < 0
    position = np.clip(position, 0.0, fine.shape[1] - 1)
    index = np.minimum(np.floor(position).astype(np.intp), fine.shape[1] - 2)
    weight = position - index
    low = np.take_along_axis(fine, index, axis=1)
    high = np.take_along_axis(fine, index + 1, axis=1)
    return np.where(before, 0.0, low + weight * (high - low))


def _unit_flow_curves(
    aif_fine: np.ndarray,
    step_s: float,
    start_s: float,
    t_s: np.ndarray,
    mtt_s: np.ndarray,
    delay_s: np.ndarray,
    dispersion_s: np.ndarray,
    kind: str | None,
    shape: float | None = None,
) -> np.ndarray:
    """``(C_art * h_disp * R)(t - delay)`` for ``n`` voxels at times ``t_s``; returns (n, T).

    ``kind=None`` leaves out the residue function (a transport-only curve, e.g. a vein).
    """
    n = mtt_s.size
    dispersed = _first_order_lowpass(np.broadcast_to(aif_fine, (n, aif_fine.size)).copy(), dispersion_s, step_s)
    if kind is None:
        fine = dispersed
    elif kind == "exponential":
        fine = mtt_s[:, None] * _first_order_lowpass(dispersed, mtt_s, step_s)
    elif kind in ("gamma", "lognormal"):
        # Smooth residues: midpoint rule, the curve linear between grid points and R taken
        # half a step into each interval (second order in the step).
        middle = 0.5 * (dispersed[:, 1:] + dispersed[:, :-1])
        residue = residue_function(step_s * (np.arange(middle.shape[1]) + 0.5), mtt_s[:, None], kind, shape)
        fine = np.zeros_like(dispersed)
        fine[:, 1:] = _convolve_rows(middle, residue)[:, : middle.shape[1]] * step_s
    else:
        # Box and linear residues from running integrals: I1 = int C, I2 = int I1.
        integral = np.concatenate(
            [np.zeros((n, 1)), np.cumsum((dispersed[:, 1:] + dispersed[:, :-1]) * (step_s / 2), axis=1)],
            axis=1,
        )
        grid = start_s + step_s * np.arange(aif_fine.size)
        if kind == "box":
            earlier = _sample(integral, start_s, step_s, grid[None, :] - mtt_s[:, None])
            fine = integral - earlier
        else:  # linear, falling to 0 at L = 2 MTT: I1(t) - (I2(t) - I2(t - L)) / L
            length = 2.0 * mtt_s[:, None]
            double = np.concatenate(
                [np.zeros((n, 1)), np.cumsum((integral[:, 1:] + integral[:, :-1]) * (step_s / 2), axis=1)],
                axis=1,
            )
            fine = integral - (double - _sample(double, start_s, step_s, grid[None, :] - length)) / length
    return _sample(fine, start_s, step_s, t_s[None, :] - delay_s[:, None])


def _simulate(aif, t_s, mtt_s, delay_s, dispersion_s, kind, shape=None) -> np.ndarray:
    """Validated inputs (N,) -> curves (N, T) of :func:`_unit_flow_curves` on a fine grid."""
    step = min(_FINE_STEP_MAX_S, _FINE_STEP_FRACTION * float(np.min(np.diff(t_s))))
    steps = int(np.ceil((t_s[-1] - t_s[0]) / step))
    step = (t_s[-1] - t_s[0]) / steps
    aif_fine = np.interp(t_s[0] + step * np.arange(steps + 1), t_s, aif)
    # Simulate each distinct (MTT, delay, dispersion) once; phantoms repeat them a lot.
    rows, inverse = np.unique(np.stack([mtt_s, delay_s, dispersion_s], axis=1), axis=0, return_inverse=True)
    unit = np.empty((len(rows), t_s.size))
    for begin in range(0, len(rows), _CHUNK):
        block = rows[begin : begin + _CHUNK]
        unit[begin : begin + _CHUNK] = _unit_flow_curves(
            aif_fine, step, t_s[0], t_s, block[:, 0], block[:, 1], block[:, 2], kind, shape
        )
    return unit[inverse.ravel()]


def _validated(aif, t_s, **per_voxel) -> tuple:
    """Check the shared inputs; returns (aif, t_s, per-voxel arrays broadcast to (N,))."""
    aif = np.asarray(aif, dtype=np.float64)
    t_s = np.asarray(t_s, dtype=np.float64)
    if aif.ndim != 1 or t_s.shape != aif.shape or aif.size < 2:
        raise ValueError(f"aif and t_s must be 1D of the same length >= 2, got {aif.shape} and {t_s.shape}")
    if np.any(np.diff(t_s) <= 0):
        raise ValueError("sample times t_s must increase strictly")
    params = {k: np.atleast_1d(np.asarray(v, dtype=np.float64)).ravel() for k, v in per_voxel.items()}
    count = max(p.size for p in params.values())
    try:
        params = {k: np.broadcast_to(p, (count,)) for k, p in params.items()}
    except ValueError:
        raise ValueError(f"{', '.join(per_voxel)} must have the same length N") from None
    for name, values in params.items():
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(f"{name} must be finite and >= 0")
    return aif, t_s, params


def delayed_dispersed(
    aif: np.ndarray, t_s: np.ndarray, delay_s: np.ndarray, dispersion_s: np.ndarray
) -> np.ndarray:
    """The arterial curve delayed and dispersed (unit area kernel): ``(aif * h_disp)(t - delay)``.

    A large vein (venous output function) or a downstream artery; same conventions as
    :func:`tissue_curves`.

    Returns
    -------
    (T, N) ndarray of float64
    """
    aif, t_s, p = _validated(aif, t_s, delay_s=delay_s, dispersion_s=dispersion_s)
    ones = np.ones_like(p["delay_s"])
    return _simulate(aif, t_s, ones, p["delay_s"], p["dispersion_s"], None).T


def _convolve_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Full linear convolution of each row of ``a`` (n, k) with the same row of ``b`` (n, m), by real FFTs.

    The products ``scipy.signal.fftconvolve(a, b, axes=1)`` takes, value for value; importing
    ``scipy.signal`` (with ``scipy.stats``) costs 0.5-0.9 s, which every perfusion analysis paid.
    """
    size = a.shape[1] + b.shape[1] - 1
    padded = fft.next_fast_len(size, real=True)
    return fft.irfft(fft.rfft(a, padded, axis=1) * fft.rfft(b, padded, axis=1), padded, axis=1)[:, :size]


def tissue_curves(
    aif: np.ndarray,
    t_s: np.ndarray,
    cbf: np.ndarray,
    cbv: np.ndarray,
    delay_s: np.ndarray,
    dispersion_s: np.ndarray,
    *,
    kind: str = "exponential",
    shape: float | None = None,
) -> np.ndarray:
    """Tissue concentration curves for an arterial input and per-voxel perfusion parameters.

    ``C(t) = F * (aif * h_disp * R_MTT)(t - delay)`` with ``F = CBF * RHO / (KH * 6000)`` and
    ``MTT = 60 * CBV / CBF``, computed on a fine internal grid (the arterial curve linearly
    interpolated between samples, zero before the first one) and sampled at ``t_s``, so the
    maps of :func:`StrokePerfusionSegLib.perfusion.compute_perfusion_maps` recover CBF, CBV
    and (without dispersion) Tmax = delay. Voxels with CBF or CBV of 0 get a flat zero curve.

    Parameters
    ----------
    aif : (T,) ndarray
        Arterial concentration in HU above baseline at ``t_s``.
    t_s : (T,) ndarray
        Increasing sample times in s.
    cbf : (N,) ndarray
        Cerebral blood flow in ml/100g/min (>= 0).
    cbv : (N,) ndarray
        Cerebral blood volume in ml/100g (>= 0).
    delay_s : (N,) ndarray
        Arrival delay after the arterial input in s (>= 0).
    dispersion_s : (N,) ndarray
        Time constant of the exponential dispersion kernel in s (>= 0; 0 = none).
    kind, shape
        Residue function (transit-time distribution), see :func:`residue_function`.

    Returns
    -------
    (T, N) ndarray of float64
        Concentration in the units of ``aif`` (HU above baseline).
    """
    shape = _shape(kind, shape)
    aif, t_s, p = _validated(aif, t_s, cbf=cbf, cbv=cbv, delay_s=delay_s, dispersion_s=dispersion_s)
    cbf, cbv = p["cbf"], p["cbv"]
    curves = np.zeros((t_s.size, cbf.size))
    perfused = (cbf > 0) & (cbv > 0)
    if perfused.any():
        mtt = 60.0 * cbv[perfused] / cbf[perfused]
        unit = _simulate(aif, t_s, mtt, p["delay_s"][perfused], p["dispersion_s"][perfused], kind, shape)
        curves[:, perfused] = (unit * flow_per_second(cbf[perfused])[:, None]).T
    return curves
