"""Digital reference object (DRO) for validating the perfusion analysis.

Not an anatomical phantom (that is :mod:`StrokePerfusionSegLib.phantom`): like the QIBA
reference objects, it lays out blocks of tissue, one block per combination of known
parameters, so accuracy can be read per parameter. Each slice holds a strip of air with an
artery and a large vein (for the AIF and the VOF) above a grid of tissue blocks, all curves
made by :mod:`StrokePerfusionSegLib.tracer` from one arterial input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..tracer import delayed_dispersed, gamma_variate, residue_peak, tissue_curves

#: Baseline HU of tissue blocks, vessels and the surrounding air.
TISSUE_HU, VESSEL_HU, AIR_HU = 35.0, 40.0, -1000.0
#: Vein: arrives this long (s) after the artery, dispersed with this time constant (s).
VEIN_DELAY_S, VEIN_DISPERSION_S = 6.0, 2.0
#: Rows of air holding the vessels at the top of every slice.
VESSEL_STRIP_ROWS = 4


@dataclass
class ReferenceStudy:
    """A synthetic 4D study with the maps it was made from.

    Attributes
    ----------
    ctp_hu : (t, z, y, x) float32
    dt_s : float
    spacing : (3,) tuple, mm (z, y, x)
    truth : dict of str to (z, y, x) float32
        ``cbf``, ``cbv``, ``mtt``, ``tmax`` (what a deconvolution should find: delay plus the
        dispersed residue's peak time) and ``cbf_apparent`` (CBF times the dispersed
        residue's peak height); 0 outside tissue.
    blocks : (z, y, x) int32
        ``i + 1`` on the block of parameter row ``i``, 0 elsewhere.
    artery : (z, y, x) bool
    aif : (t,) float64
        Arterial concentration (HU above baseline) before partial volume.
    """

    ctp_hu: np.ndarray
    dt_s: float
    spacing: tuple
    truth: dict
    blocks: np.ndarray
    artery: np.ndarray
    aif: np.ndarray

    @property
    def tissue(self) -> np.ndarray:
        """(z, y, x) bool: voxels of the tissue blocks."""
        return self.blocks > 0

    def block_errors(self, maps: dict, *, margin: int = 0, within: np.ndarray | None = None) -> dict:
        """Error of the median of each map over each block, against the truth.

        Parameters
        ----------
        maps : dict of str to (z, y, x) ndarray
            Computed ``cbf``, ``cbv``, ``mtt``, ``tmax``.
        margin : int
            Pixels left out at the in-plane edges of each block (where smoothing mixes blocks).
        within : (z, y, x) bool, optional
            Only these voxels count (e.g. the brain mask of the analysis).

        Returns
        -------
        dict of str to (n_blocks,) ndarray
            Relative errors ``(estimate - truth) / truth`` for ``cbf``, ``cbv``, ``mtt``;
            ``tmax`` in s. Blocks without a voxel left get NaN.
        """
        keep = np.ones_like(self.tissue) if within is None else np.asarray(within, bool)
        if margin > 0:
            width = 2 * margin + 1
            core = ndimage.minimum_filter(self.blocks, size=(1, width, width), mode="constant")
            keep = keep & (core == self.blocks)
        errors = {name: np.full(self.blocks.max(), np.nan) for name in ("cbf", "cbv", "mtt", "tmax")}
        for i in range(self.blocks.max()):
            voxels = keep & (self.blocks == i + 1)
            if not voxels.any():
                continue
            for name in errors:
                estimate = float(np.median(maps[name][voxels]))
                truth = float(self.truth[name][voxels][0])
                errors[name][i] = estimate - truth if name == "tmax" else (estimate - truth) / truth
        return errors


def reference_aif(t_s: np.ndarray, *, arrival_s: float = 8.0, peak_hu: float = 300.0) -> np.ndarray:
    """Arterial curve: a gamma-variate first pass (peak ~4.5 s after arrival) plus a 10 % recirculation."""
    first = gamma_variate(t_s, t0_s=arrival_s, alpha=3.0, beta_s=1.5, peak=peak_hu)
    second = gamma_variate(t_s, t0_s=arrival_s + 10.0, alpha=3.0, beta_s=2.5, peak=0.1 * peak_hu)
    return first + second


def make_reference_study(
    parameters: np.ndarray,
    *,
    block: int = 6,
    slices: int = 4,
    dt_s: float = 1.0,
    frames: int = 45,
    noise_hu: float = 0.0,
    seed: int = 0,
    artery_partial_volume: float = 1.0,
    spacing: tuple = (5.0, 1.0, 1.0),
    kind: str = "exponential",
    residue_shape: float | None = None,
) -> ReferenceStudy:
    """Build a reference study.

    Parameters
    ----------
    parameters : (n, 4) array_like
        Rows of ``(cbf ml/100g/min, cbv ml/100g, delay s, dispersion s)``, one per tissue block;
        the blocks fill the slices in raster order (as many block rows as needed).
    block : int
        Block edge in pixels.
    slices : int
        Number of slices; the blocks are spread over them.
    dt_s : float
        Frame interval in s.
    frames : int
        Number of frames.
    noise_hu : float
        Standard deviation of Gaussian noise added to every voxel and frame, in HU.
    seed : int
        Noise seed.
    artery_partial_volume : float
        Fraction of the arterial enhancement the artery voxels show (the vein shows all of it).
    spacing : (3,) tuple of float
        Voxel size in mm (z, y, x).
    kind, residue_shape
        Residue function (transit-time distribution) and its shape parameter (see
        :func:`StrokePerfusionSegLib.tracer.residue_function`).
    """
    parameters = np.atleast_2d(np.asarray(parameters, dtype=np.float64))
    per_slice = int(np.ceil(len(parameters) / slices))
    columns = max(4, int(np.ceil(np.sqrt(per_slice))))
    rows = int(np.ceil(per_slice / columns))
    shape = (slices, VESSEL_STRIP_ROWS + rows * block, columns * block)
    t_s = dt_s * np.arange(frames)
    aif = reference_aif(t_s)

    baseline = np.full(shape, AIR_HU, np.float32)
    concentration = np.zeros((frames,) + shape, np.float32)
    truth = {name: np.zeros(shape, np.float32) for name in ("cbf", "cbv", "mtt", "tmax", "cbf_apparent")}
    blocks = np.zeros(shape, np.int32)
    artery = np.zeros(shape, bool)
    artery[:, 1:3, 1:3] = True
    vein = np.zeros(shape, bool)
    vein[:, 1:4, -4:-1] = True
    baseline[artery | vein] = VESSEL_HU
    concentration[:, artery] = (artery_partial_volume * aif)[:, None]
    concentration[:, vein] = delayed_dispersed(aif, t_s, VEIN_DELAY_S, VEIN_DISPERSION_S)

    curves = tissue_curves(aif, t_s, *parameters.T, kind=kind, shape=residue_shape)
    cbf, cbv, delay, dispersion = parameters.T
    mtt = 60.0 * cbv / np.where(cbf > 0, cbf, np.inf)
    peak_time, peak_height = residue_peak(np.where(mtt > 0, mtt, 1.0), dispersion, kind, residue_shape)
    for i in range(len(parameters)):
        z, position = divmod(i, per_slice)
        r, c = divmod(position, columns)
        where = (z, slice(VESSEL_STRIP_ROWS + r * block, VESSEL_STRIP_ROWS + (r + 1) * block),
                 slice(c * block, (c + 1) * block))
        blocks[where] = i + 1
        baseline[where] = TISSUE_HU
        concentration[(slice(None),) + where] = curves[:, i, None, None]
        for name, value in (("cbf", cbf[i]), ("cbv", cbv[i]), ("mtt", mtt[i]),
                            ("tmax", delay[i] + peak_time[i]), ("cbf_apparent", cbf[i] * peak_height[i])):
            truth[name][where] = value
    ctp = concentration  # assembled in place: clinical-size objects are hundreds of MB
    ctp += baseline[None]
    if noise_hu > 0:
        rng = np.random.default_rng(seed)
        for frame in ctp:
            frame += noise_hu * rng.standard_normal(shape, dtype=np.float32)
    return ReferenceStudy(ctp, float(dt_s), tuple(spacing), truth, blocks, artery, aif)
