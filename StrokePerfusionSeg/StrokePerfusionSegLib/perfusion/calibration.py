"""Correction of the biases of truncated-SVD deconvolution and of a series that ends too early.

Truncation low-passes the residue function. A residue that drops from its peak at once (the
exponential of a well-mixed compartment) loses height and its maximum drifts later: with a
typical AIF, bcSVD at 0.1 reads CBF 25-60 % low and Tmax 1-2 s late for MTT 4 s. And a series
that stops before the washout cuts the tail off the tissue curve, so the area-based CBV reads
low, the more so the later the tissue fills. All of it depends on the AIF, the truncation, the
frames acquired, the MTT and the delay, so it is measured per study: exponential-residue tissue
curves (:func:`StrokePerfusionSegLib.tracer.tissue_curves`) over a grid of MTT and delay are
made from the study's own AIF, on its own frames, and passed through the same deconvolution.
That gives, per (delay, MTT), the peak height per unit flow ``b``, the peak's lag behind the
arrival, and the fraction ``f`` of the CBV that the series captures.

A voxel shows two numbers that pin its (MTT, delay): ``peak / (60 CBV) = b / (MTT f)``, which
falls with MTT, and its Tmax, the delay plus the lag. They are solved once per study on a grid
of those two observables, giving look-up tables of the CBF factor ``1 / b``, the CBV factor
``1 / f`` and the lag; each voxel is then a bilinear look-up. Voxels the model cannot explain
end at the grid's edge, and no factor exceeds :data:`MAX_FLOW_CORRECTION` /
:data:`MAX_VOLUME_CORRECTION`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..tracer import KH, RHO, flow_per_second, tissue_curves
from .deconvolution import CirculantDeconvolver, peak_and_time

#: MTT values (s) at which the bias is measured; outside them the ends are held.
MTT_GRID_S = np.geomspace(0.5, 40.0, 48)
#: Arrival delays after the AIF (s) at which the bias is measured.
DELAY_GRID_S = np.arange(0.0, 15.0, 1.0)
#: Largest factor by which a CBF reading is raised (or lowered).
MAX_FLOW_CORRECTION = 3.0
#: Largest factor by which a CBV reading is raised (it is never lowered).
MAX_VOLUME_CORRECTION = 2.0
#: Nodes of the look-up grid along ``log(peak / (60 CBV))``.
RATIO_NODES = 160
#: Spacing of the look-up grid along Tmax, as a fraction of the frame interval.
TMAX_STEP_FRACTION = 0.25
# CBF (ml/100g/min) of the simulated curves; the bias is per unit flow, so any value will do.
_REFERENCE_CBF = 60.0


@dataclass(frozen=True)
class DeconvolutionBias:
    """Measured bias of one deconvolver on one study's frames, as look-up tables.

    Attributes
    ----------
    log_ratio : (r,) ndarray
        Grid of ``log(peak_cbf / (60 cbv))``, ``peak_cbf`` in ml/100g/min and ``cbv`` in ml/100g.
    tmax_s : (u,) ndarray
        Grid of the measured Tmax, s.
    table : (k, r, u, 3) ndarray
        Per truncation candidate and node: the seconds taken off Tmax, what the CBF reading is
        multiplied by and what the CBV reading is multiplied by, in that order.
    """

    log_ratio: np.ndarray
    tmax_s: np.ndarray
    table: np.ndarray

    @classmethod
    def measure(cls, deconvolve: CirculantDeconvolver) -> "DeconvolutionBias":
        """Simulate exponential-residue tissue on the deconvolver's AIF and frames; tabulate its readings."""
        frames = deconvolve.aif.size
        t_s = deconvolve.dt_s * np.arange(frames)
        delay, mtt = (grid.ravel() for grid in np.meshgrid(DELAY_GRID_S, MTT_GRID_S, indexing="ij"))
        cbv = _REFERENCE_CBF * mtt / 60.0
        curves = tissue_curves(deconvolve.aif, t_s, _REFERENCE_CBF, cbv, delay, 0.0).T
        captured = KH / RHO * curves.sum(axis=1) / deconvolve.aif.sum() * 100.0 / cbv
        flow = float(flow_per_second(_REFERENCE_CBF))
        shape = (DELAY_GRID_S.size, MTT_GRID_S.size)
        readings = []
        for inverse in deconvolve.inverses:
            peak, time_s = peak_and_time(curves.astype(np.float32) @ inverse[:frames], deconvolve.dt_s, circular=True)
            readings.append(((peak / flow).reshape(shape), (time_s - delay).reshape(shape)))
        captured = np.clip(captured.reshape(shape), 1e-3, None)

        # What a voxel shows, peak / (60 CBV), for each simulated curve.
        ratios = [height / (MTT_GRID_S * captured) for height, _ in readings]
        positive = np.concatenate([ratio.ravel() for ratio in ratios])
        positive = positive[positive > 0]
        log_ratio = np.linspace(np.log(positive.min()), np.log(positive.max()), RATIO_NODES)
        step = TMAX_STEP_FRACTION * deconvolve.dt_s
        latest = DELAY_GRID_S[-1] + max(float(lag.max()) for _, lag in readings)
        tmax_s = np.arange(0.0, latest + step, step)
        table = np.stack([
            _solve_on_grid(ratio, height, lag, captured, np.exp(log_ratio), tmax_s)
            for ratio, (height, lag) in zip(ratios, readings)  # one ratio per reading, by construction
        ])
        return cls(log_ratio, tmax_s, table)

    def correct(
        self,
        peak_cbf: np.ndarray,
        cbv: np.ndarray,
        tmax_s: np.ndarray,
        choice: np.ndarray,
        *,
        flow: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Unbiased CBF, CBV, MTT and Tmax from the deconvolution's readings.

        Parameters
        ----------
        peak_cbf : (n,) ndarray
            ``KH / RHO * max(R) * 6000``, ml/100g/min.
        cbv : (n,) ndarray
            Area ratio, ml/100g.
        tmax_s : (n,) ndarray
            Time of max(R), s.
        choice : (n,) ndarray of int
            Truncation candidate of each voxel.
        flow : bool
            False leaves CBF and CBV at their readings and corrects Tmax only (for series too
            short for a trustworthy CBV).

        Returns
        -------
        cbf (ml/100g/min), cbv (ml/100g), mtt (s), tmax (s) : (n,) ndarrays of float64
            Voxels without flow or volume keep CBF 0, MTT 0 and their readings otherwise.
        """
        peak_cbf = np.asarray(peak_cbf, dtype=np.float64)
        cbv = np.asarray(cbv, dtype=np.float64)
        tmax = np.asarray(tmax_s, dtype=np.float64)
        valid = (peak_cbf > 0) & (cbv > 0)
        ratio = np.where(valid, peak_cbf / (60.0 * np.where(valid, cbv, 1.0)), 1.0)
        lag, flow_factor, volume_factor = self._look_up(choice, np.log(ratio), tmax)
        tmax = np.where(valid, np.clip(tmax - lag, 0.0, None), tmax)
        if flow:
            flow_factor = np.clip(flow_factor, 1.0 / MAX_FLOW_CORRECTION, MAX_FLOW_CORRECTION)
            cbf = np.where(valid, peak_cbf * flow_factor, 0.0)
            cbv = np.where(valid, cbv * np.clip(volume_factor, 1.0, MAX_VOLUME_CORRECTION), cbv)
        else:
            cbf = np.where(valid, peak_cbf, 0.0)
        mtt = np.where(valid, 60.0 * cbv / np.where(valid, cbf, 1.0), 0.0)
        return cbf, cbv, mtt, tmax

    def _look_up(self, choice, log_ratio, tmax_s):
        """Bilinear look-up of (lag, flow factor, volume factor), each (n,), clamped to the grid."""
        _, ratios, times, _ = self.table.shape
        tables = self.table.reshape(-1, 3)
        ratio_index = np.clip((log_ratio - self.log_ratio[0]) / (self.log_ratio[1] - self.log_ratio[0]), 0, ratios - 1)
        time_index = np.clip(tmax_s / (self.tmax_s[1] - self.tmax_s[0]), 0, times - 1)
        low_ratio = np.minimum(ratio_index.astype(np.intp), ratios - 2)
        low_time = np.minimum(time_index.astype(np.intp), times - 2)
        ratio_weight = (ratio_index - low_ratio)[:, None]
        time_weight = (time_index - low_time)[:, None]
        corner = (np.asarray(choice, dtype=np.intp) * ratios + low_ratio) * times + low_time
        before = (1.0 - time_weight) * tables[corner] + time_weight * tables[corner + 1]
        after = (1.0 - time_weight) * tables[corner + times] + time_weight * tables[corner + times + 1]
        return ((1.0 - ratio_weight) * before + ratio_weight * after).T


def _solve_on_grid(simulated_ratio, height, lag, captured, ratio, tmax_s):
    """(lag, flow factor, volume factor) at every (ratio, Tmax) node from the simulated readings.

    Parameters
    ----------
    simulated_ratio, height, lag, captured : (d, m) ndarray
        On the (delay, MTT) grid: ``peak / (60 CBV)`` (1/s), peak per unit flow, lag of the peak
        (s) and captured CBV fraction of each simulated curve.
    ratio : (r,) ndarray
        ``peak / (60 CBV)`` values of the grid, 1/s.
    tmax_s : (u,) ndarray

    Returns
    -------
    (r, u, 3) ndarray
    """
    # Per delay row, the MTT that explains each ratio (the ratio must fall with MTT for the
    # inversion; numerical wobbles are held), and what that MTT implies.
    per_row = []
    for d in range(DELAY_GRID_S.size):
        falling = np.minimum.accumulate(simulated_ratio[d])
        mtt = np.interp(ratio, falling[::-1], MTT_GRID_S[::-1])
        per_row.append([np.interp(mtt, MTT_GRID_S, values[d]) for values in (height, lag, captured)])
    row_height, row_lag, row_captured = (np.array(values) for values in zip(*per_row))  # (d, r)

    # The delay is where delay + lag meets the measured Tmax; between rows, linear.
    arrival = np.maximum.accumulate(DELAY_GRID_S[:, None] + row_lag, axis=0)  # (d, r), rising with d
    rows = np.arange(ratio.size)
    upper = np.clip((arrival[:, :, None] < tmax_s[None, None, :]).sum(axis=0), 1, DELAY_GRID_S.size - 1)  # (r, u)
    low_arrival, high_arrival = arrival[upper - 1, rows[:, None]], arrival[upper, rows[:, None]]
    weight = np.clip((tmax_s[None, :] - low_arrival) / np.maximum(high_arrival - low_arrival, 1e-9), 0.0, 1.0)

    def blend(values):
        return (1.0 - weight) * values[upper - 1, rows[:, None]] + weight * values[upper, rows[:, None]]

    return np.stack([blend(row_lag), 1.0 / np.maximum(blend(row_height), 1e-6), 1.0 / blend(row_captured)], axis=-1)
