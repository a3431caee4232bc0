"""Correction of the peak-height and peak-time bias of truncated-SVD deconvolution.

Truncation low-passes the residue function. A residue that drops from its peak at once (the
exponential of a well-mixed compartment) loses height and its maximum drifts later: with a
typical AIF, bcSVD at 0.1 reads CBF ~35 % low and Tmax ~1.5 s late for MTT 4 s. The loss depends
on the AIF, the truncation and the MTT, so it is measured per study: exponential-residue
tissue curves (:func:`StrokePerfusionSegLib.tracer.tissue_curves`) over a range of MTT are made
from the study's own AIF and passed through the same deconvolution, giving the peak height
``b(MTT)`` (per unit flow) and the peak time ``tau(MTT)``.

A voxel with measured ``peak`` and area-based CBV then satisfies
``peak = CBF * b(MTT)`` with ``MTT = 60 CBV / CBF``, i.e. ``b(MTT) / MTT = peak / (60 CBV)``;
``b(MTT) / MTT`` falls with MTT, so it is inverted by interpolation, giving MTT and
``CBF = peak / b(MTT)``; Tmax loses ``tau(MTT)``. CBV (an area ratio) needs no correction.
Voxels the model cannot explain (a ratio above the table's, typically because the series
ended before the washout and CBV reads low) use their apparent MTT ``60 CBV / peak``, and no
factor exceeds :data:`MAX_FLOW_CORRECTION`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..tracer import flow_per_second, tissue_curves
from .deconvolution import CirculantDeconvolver, peak_and_time

#: MTT values (s) at which the bias is measured; outside them the ends are held.
MTT_GRID_S = np.geomspace(0.5, 40.0, 48)
#: Largest factor by which a CBF reading is raised (or lowered).
MAX_FLOW_CORRECTION = 3.0
# CBF (ml/100g/min) of the simulated curves; the bias is per unit flow, so any value will do.
_REFERENCE_CBF = 60.0


@dataclass(frozen=True)
class PeakBias:
    """Measured deconvolution bias for each truncation candidate of one deconvolver.

    Attributes
    ----------
    mtt_s : (m,) ndarray
        MTT grid in s.
    height : (k, m) ndarray
        Peak of the deconvolved residue per unit flow (1 = no loss), per candidate.
    delay_s : (k, m) ndarray
        Time of that peak in s, for a tissue curve without delay.
    """

    mtt_s: np.ndarray
    height: np.ndarray
    delay_s: np.ndarray

    @classmethod
    def measure(cls, deconvolve: CirculantDeconvolver) -> "PeakBias":
        """Simulate exponential-residue tissue on the deconvolver's own AIF and measure it."""
        t_s = deconvolve.dt_s * np.arange(deconvolve.aif.size)
        cbv = _REFERENCE_CBF * MTT_GRID_S / 60.0
        curves = tissue_curves(deconvolve.aif, t_s, _REFERENCE_CBF, cbv, 0.0, 0.0).T
        flow = float(flow_per_second(_REFERENCE_CBF))
        residues = np.stack([curves.astype(np.float32) @ inverse[: curves.shape[1]] for inverse in deconvolve.inverses])
        heights, delays = [], []
        for residue in residues:
            peak, time_s = peak_and_time(residue, deconvolve.dt_s, circular=True)
            heights.append(peak / flow)
            delays.append(time_s)
        return cls(MTT_GRID_S.copy(), np.array(heights), np.array(delays))

    def correct(
        self,
        peak_cbf: np.ndarray,
        cbv: np.ndarray,
        tmax_s: np.ndarray,
        choice: np.ndarray,
        *,
        flow: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unbiased CBF, MTT and Tmax from the deconvolution's readings.

        Parameters
        ----------
        peak_cbf : (n,) ndarray
            ``KH / RHO * max(R) * 6000``, ml/100g/min.
        cbv : (n,) ndarray
            ml/100g.
        tmax_s : (n,) ndarray
            Time of max(R), s.
        choice : (n,) ndarray of int
            Truncation candidate of each voxel.
        flow : bool
            False leaves CBF at its reading and corrects Tmax only (for series too short for
            a trustworthy CBV).

        Returns
        -------
        cbf (ml/100g/min), mtt (s), tmax (s) : (n,) ndarrays of float64
            Voxels without flow or volume keep CBF 0, MTT 0 and their Tmax.
        """
        peak_cbf = np.asarray(peak_cbf, dtype=np.float64)
        cbv = np.asarray(cbv, dtype=np.float64)
        cbf = np.zeros_like(peak_cbf)
        mtt = np.zeros_like(peak_cbf)
        tmax = np.asarray(tmax_s, dtype=np.float64).copy()
        valid = (peak_cbf > 0) & (cbv > 0)
        ratio = np.where(valid, peak_cbf / (60.0 * np.where(valid, cbv, 1.0)), 0.0)
        for k in range(self.height.shape[0]):
            rows = valid & (choice == k)
            if not rows.any():
                continue
            # b(MTT) / MTT must fall with MTT for the inversion; hold it where numerics wobble.
            falling = np.minimum.accumulate(self.height[k] / self.mtt_s)
            inverted = np.interp(ratio[rows], falling[::-1], self.mtt_s[::-1])
            # A ratio beyond the model (CBV cut short by the end of the series, say) would send
            # MTT to the grid's floor and CBF sky-high: such voxels use their apparent MTT,
            # which under- rather than over-corrects, and no correction exceeds the cap.
            apparent = 1.0 / ratio[rows]
            mtt_k = np.where(ratio[rows] <= falling[0], inverted, apparent)
            height = np.interp(mtt_k, self.mtt_s, self.height[k])
            factor = np.clip(1.0 / np.maximum(height, 1e-6), 1.0 / MAX_FLOW_CORRECTION, MAX_FLOW_CORRECTION)
            cbf[rows] = peak_cbf[rows] * (factor if flow else 1.0)
            mtt[rows] = 60.0 * cbv[rows] / cbf[rows]
            tmax[rows] = np.clip(tmax[rows] - np.interp(mtt_k, self.mtt_s, self.delay_s[k]), 0.0, None)
        return cbf, mtt, tmax
