"""Regularised SVD deconvolution of tissue curves by the arterial input, block-circulant form.

``c = A r`` with ``A[i, j] = k[(i - j) mod L]`` over ``L = 2 t`` zero-padded frames (the
block-circulant matrix of Wu et al. 2003), so a tissue curve that arrives later than the AIF is
a circular shift and its flow is not underestimated (delay insensitivity). The kernel
``k[m] = dt * (aif[m] + aif[m - 1]) / 2`` takes the residue as constant over each frame
``[t_j, t_j + dt)`` and the AIF as linear between samples: the plain ``dt * aif[m]`` would
treat ``r[0]`` as centred on ``t = 0`` and halve it for a residue that starts there, which
costs CBF and moves Tmax half a frame late. ``A`` is
decomposed once per study; its truncated pseudo-inverse is one ``(L, L)`` float32 matrix, and
deconvolving every brain voxel is one matrix product per chunk of voxels.

* bcSVD: singular values below ``threshold * sigma_max`` are dropped (default 0.1).
* oSVD: the same with a per-voxel threshold, the smallest of :data:`OSVD_THRESHOLDS` whose
  residue function has an oscillation index below ``oscillation_limit`` (default 0.035),
  found by a vectorised bisection over the candidates (each step one matrix product per
  group of voxels); the largest candidate is the fallback.
* Tikhonov: singular values filtered by ``s^2 / (s^2 + mu^2)`` instead of cut, with ``mu``
  chosen per voxel among :data:`TIKHONOV_MU` (fractions of the largest singular value) by
  generalised cross-validation (GCV: the residual norm over the squared effective degrees of
  freedom left, ``|(I - A A_mu^+) c|^2 / (L - sum f)^2``), read off the SVD coefficients
  ``U^T c`` of each curve without deconvolving it for every candidate.

The residue functions come out multiplied by the flow, ``F * R(t)`` in 1/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

#: bcSVD truncation, as a fraction of the largest singular value.
BCSVD_THRESHOLD = 0.1
#: oSVD oscillation index limit (Wu et al. 2003).
OSVD_OSCILLATION_LIMIT = 0.035
#: oSVD candidate truncations, ascending (fractions of the largest singular value).
OSVD_THRESHOLDS = (0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.2, 0.3)
#: Tikhonov candidates ``mu``, ascending (fractions of the largest singular value).
TIKHONOV_MU = tuple(float(mu) for mu in np.geomspace(0.01, 0.5, 12))


def circulant_aif_matrix(aif: np.ndarray, dt_s: float) -> np.ndarray:
    """Block-circulant convolution matrix ``(L, L)``, ``L = 2 t``, of an AIF ``(t,)`` sampled every ``dt_s`` s."""
    aif = np.asarray(aif, dtype=np.float64)
    length = 2 * aif.size
    padded = np.zeros(length)
    padded[: aif.size] = aif
    kernel = 0.5 * dt_s * (padded + np.roll(padded, 1))  # padded[-1] is 0: nothing before t = 0
    lag = (np.arange(length)[:, None] - np.arange(length)[None, :]) % length
    return kernel[lag]


@dataclass(frozen=True)
class CirculantDeconvolver:
    """Truncated pseudo-inverses of one AIF's circulant matrix, ready to apply to many voxels.

    Build with :meth:`bcsvd` or :meth:`osvd`; call with tissue curves ``(n, t)``.

    Attributes
    ----------
    aif : (t,) ndarray
        Arterial concentration (HU above baseline).
    dt_s : float
        Frame interval in s.
    inverses : (k, L, L) ndarray of float32
        Transposed regularised inverses, one per candidate (k = 1 for bcSVD).
    thresholds : tuple of float
        Truncation (SVD) or ``mu`` (Tikhonov) of each candidate, as a fraction of the largest
        singular value.
    oscillation_limit : float or None
        oSVD limit on the oscillation index; None otherwise.
    gcv : tuple of two ndarrays or None
        Tikhonov only: ``U[:t]`` (t, L), the SVD coefficients of a zero-padded curve, and the
        filter factors (k, L) of each candidate, for the GCV choice.
    """

    aif: np.ndarray
    dt_s: float
    inverses: np.ndarray
    thresholds: tuple
    oscillation_limit: float | None = None
    gcv: tuple | None = None

    @classmethod
    def _build(cls, aif, dt_s, thresholds, oscillation_limit=None, tikhonov=False) -> "CirculantDeconvolver":
        aif = np.asarray(aif, dtype=np.float64)
        if not np.all(np.isfinite(aif)) or np.max(np.abs(aif)) == 0:
            raise InputError("the arterial input curve is empty or not finite: choose another AIF voxel")
        u, s, vt = np.linalg.svd(circulant_aif_matrix(aif, dt_s))
        if tikhonov:
            filters = np.stack([s**2 / (s**2 + (mu * s[0]) ** 2) for mu in thresholds])
        else:
            filters = np.stack([(s >= threshold * s[0]).astype(np.float64) for threshold in thresholds])
        # r = V diag(f/s) U^T c; stored transposed so that R = C @ inverse for rows of C.
        inverses = np.stack([(u * (f / s)[None, :]) @ vt for f in filters]).astype(np.float32)
        gcv = (u[: aif.size].astype(np.float32), filters) if tikhonov else None
        return cls(aif, float(dt_s), inverses, tuple(thresholds), oscillation_limit, gcv)

    @classmethod
    def bcsvd(cls, aif: np.ndarray, dt_s: float, threshold: float = BCSVD_THRESHOLD):
        """Fixed-threshold block-circulant SVD."""
        return cls._build(aif, dt_s, (threshold,))

    @classmethod
    def osvd(
        cls,
        aif: np.ndarray,
        dt_s: float,
        oscillation_limit: float = OSVD_OSCILLATION_LIMIT,
        thresholds=OSVD_THRESHOLDS,
    ):
        """Oscillation-index-limited block-circulant SVD."""
        return cls._build(aif, dt_s, tuple(sorted(thresholds)), oscillation_limit)

    @classmethod
    def tikhonov(cls, aif: np.ndarray, dt_s: float, mu=TIKHONOV_MU):
        """Tikhonov-filtered block-circulant SVD, ``mu`` chosen per voxel by GCV."""
        return cls._build(aif, dt_s, tuple(sorted(mu)), tikhonov=True)

    def __call__(self, tissue: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Deconvolve tissue concentration curves (n, t).

        Returns
        -------
        residues : (n, L) ndarray of float32
            ``F * R`` in 1/s.
        choice : (n,) ndarray of int
            Index into :attr:`thresholds` of the truncation used for each curve.
        """
        tissue = np.asarray(tissue, dtype=np.float32)
        # The zero padding of the tissue curves meets only the first t rows of each inverse.
        inverses = self.inverses[:, : tissue.shape[1], :]
        if self.gcv is not None:
            return self._by_gcv(tissue, inverses)
        last = len(self.thresholds) - 1
        choice = np.full(tissue.shape[0], last)
        chosen = tissue @ inverses[last]  # bcSVD's only one; oSVD's most regularised fallback
        if self.oscillation_limit is None:
            return chosen, choice
        # Bisection for the least regularised calm candidate (the oscillation index falls as
        # truncation grows): ~log2(k) products per voxel instead of up to k.
        low = np.zeros(tissue.shape[0], np.intp)
        while np.any(low < choice):
            middle = (low + choice) // 2
            for k in np.unique(middle[low < choice]):
                voxels = np.flatnonzero((middle == k) & (low < choice))
                residue = tissue[voxels] @ inverses[k]
                calm = oscillation_index(residue) <= self.oscillation_limit
                chosen[voxels[calm]] = residue[calm]
                choice[voxels[calm]] = k
                low[voxels[~calm]] = k + 1
        return chosen, choice

    def _by_gcv(self, tissue, inverses):
        """Residues of the candidate with the least GCV score per curve (see the module docstring)."""
        projection, filters = self.gcv
        coefficients = (tissue @ projection) ** 2  # (n, L): squared U^T c
        left = filters.shape[1] - filters.sum(axis=1)  # degrees of freedom left, per candidate
        scores = np.stack([coefficients @ (1.0 - f) ** 2 / d**2 for f, d in zip(filters, left)], axis=1)
        choice = scores.argmin(axis=1)
        chosen = np.empty((tissue.shape[0], inverses.shape[2]), np.float32)
        for k in np.unique(choice):
            voxels = np.flatnonzero(choice == k)
            chosen[voxels] = tissue[voxels] @ inverses[k]
        return chosen, choice


def oscillation_index(residues: np.ndarray) -> np.ndarray:
    """Oscillation index of residue functions (n, L): mean absolute second difference / peak.

    ``OI = 1 / (L * max r) * sum_k |r[k] - 2 r[k-1] + r[k-2]|`` (Wu et al. 2003); flat
    (all-zero) curves get 0.
    """
    second = np.abs(np.diff(residues, 2, axis=1)).sum(axis=1)
    peak = residues.max(axis=1)
    return np.where(peak > 0, second / (residues.shape[1] * np.where(peak > 0, peak, 1.0)), 0.0)


def peak_and_time(curves: np.ndarray, dt_s: float, *, circular: bool) -> tuple[np.ndarray, np.ndarray]:
    """Height and time (s, sub-frame by a parabola through the top three samples) of each row's maximum.

    Parameters
    ----------
    curves : (n, L) ndarray
    dt_s : float
        Sampling interval in s.
    circular : bool
        Residue functions of the circulant deconvolution: the second half of the row holds
        negative lags (tissue before the AIF), whose time is clipped to 0.

    Returns
    -------
    height : (n,) ndarray
        Sample maximum (not the parabola's, which can overshoot).
    time_s : (n,) ndarray
    """
    n, length = curves.shape
    top = curves.argmax(axis=1)
    rows = np.arange(n)
    if circular:
        before, after = curves[rows, (top - 1) % length], curves[rows, (top + 1) % length]
    else:
        before = curves[rows, np.maximum(top - 1, 0)]
        after = curves[rows, np.minimum(top + 1, length - 1)]
    height = curves[rows, top]
    bend = before - 2.0 * height + after
    offset = np.where(bend < 0, 0.5 * (before - after) / np.where(bend < 0, bend, -1.0), 0.0)
    position = top + np.clip(offset, -0.5, 0.5)
    if circular:
        position = np.where(top > length // 2, position - length, position)
    return height, np.clip(position * dt_s, 0.0, None)
