"""Model-based perfusion estimates: each tissue curve matched to a dictionary of model curves.

The model is the indicator-dilution equation of :mod:`..tracer`,
``C(t) = F * (aif * R)(t - delay)``, with a transit-time distribution of mean MTT from several
families: gamma of shape ``lambda`` (Mouridsen et al. 2006; 1 is the exponential residue, large
``lambda`` a box) and lognormal. As in the model-based estimators that were the most accurate
in published comparisons on digital phantoms (Boutelier et al. 2012, Bayesian estimation over
the gamma model), the residue shape is estimated, not assumed; here by the least-squares
(flat-prior maximum a posteriori) choice over a grid of (family, MTT, delay), each
candidate's flow ``F`` in closed form: ``F = <c, b> / <b, b>``, the best candidate the one with
the largest ``<c, b>^2 / <b, b>``: with unit-norm model curves ``u = b / |b|``, the largest
positive ``<c, u>``, so one product and one argmax per voxel. The products are taken in the
coordinates of the candidates' :data:`RANK` leading singular vectors (16 numbers instead of
40-80 frames; the part of a curve outside that span is noise no candidate can explain); the
chosen candidate's flow is the exact least-squares one on the frames.

Arterial dispersion is not a parameter: an exponential dispersion kernel convolved with a short
residue gives the same tissue curve as a longer residue without it, so the curve cannot tell
them apart. Like SVD, the fit measures the effective (dispersed) residue: with dispersion CBF
reads low and Tmax late.

Vectorised in two passes, each one matrix product per group of voxels (groups of a few hundred
voxels, so that the (voxels, candidates) scores stay in the processor's cache):

1. coarse: a few shapes at whole-frame delays from one frame before the AIF (tissue that an
   AIF voxel downstream of it precedes) to :data:`MAX_DELAY_S`, to place each voxel's arrival;
2. fine: every shape at sub-frame delays around that arrival, one product per arrival.

The maps follow the definitions of docs/perfusion.md ("Method") with the fitted parameters: CBF
``= kh/rho * 6000 * F``, CBV ``= kh/rho * 100 * F * MTT`` (the model extrapolates the washout a
short series misses), MTT, and Tmax ``=`` the delay (every family's residue peaks at arrival).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..tracer import flow_per_second, tissue_curves

#: Transit-time distributions (kind and shape of :func:`..tracer.residue_function`): gamma
#: ``lambda`` 1 (exponential) to 50 (near box) and lognormal (SD of ``log t``).
FAMILIES = (
    ("gamma", 1.0), ("gamma", 2.0), ("gamma", 4.0), ("gamma", 10.0), ("gamma", 50.0),
    ("lognormal", 0.5), ("lognormal", 1.0),
)
#: Mean transit times (s).
MTT_S = tuple(float(m) for m in np.geomspace(1.0, 30.0, 18))
#: Coarse pass: families (indices into :data:`FAMILIES`) and MTTs (s, nearest of :data:`MTT_S`)
#: at whole-frame delays.
COARSE_FAMILIES = (0, 4)
COARSE_MTT_S = (1.5, 2.5, 4.0, 6.0, 9.0, 14.0, 20.0)
#: Delays are multiples of the frame interval over this.
SUBFRAMES = 4
#: Fine pass: delays around the coarse arrival, in 1 / :data:`SUBFRAMES` of a frame.
FINE_DELAY_STEPS = tuple(range(-5, 6))
#: Latest tissue arrival after the AIF that is searched (s); at most 60 % of the series.
MAX_DELAY_S = 20.0
#: Scores are inner products in the span of the candidates' leading right singular vectors
#: (frames -> this many coordinates; the candidates keep > 99.99 % of their energy).
RANK = 16
# Voxels per matrix product: (voxels, candidates) float32 scores of ~1-2 MB, cache-sized (a
# 200 000-voxel run took 0.36 s at 512, 0.45 s at 2048 and 0.78 s at 32768 on a 2-core machine).
_CHUNK = 512


@dataclass(frozen=True)
class ModelFit:
    """Model curves of one AIF on one series' frames, ready to match many voxels.

    Build with :meth:`build`; call with tissue curves ``(n, t)``.

    Attributes
    ----------
    dt_s : float
        Frame interval in s.
    frames : int
        Frames of the series, ``t``.
    shapes : (s, 2) ndarray
        ``(family index into FAMILIES, MTT s)`` of each candidate.
    coarse : (c,) ndarray of int
        Candidates of the coarse pass.
    coarse_steps : (d,) ndarray of int
        Delays of the coarse pass, in 1 / :data:`SUBFRAMES` frame steps.
    basis : (t, r) ndarray of float32
        Orthonormal basis of the candidates' leading :data:`RANK` singular vectors: tissue curves
        and candidates are compared by their coordinates in it.
    coarse_bank : (r, d * c) ndarray of float32
        Unit-norm model curves of the coarse pass in :attr:`basis` coordinates, delay-major
        (column ``i * c + j``: delay ``i``, candidate ``j``).
    fine_banks : (d, r, k * s) ndarray of float32
        For each coarse arrival, the unit-norm model curves of every candidate at each of
        :data:`FINE_DELAY_STEPS` around it (``k`` delays, delay-major).
    fine_curves : (d, k * s, t) ndarray of float32
        The same candidates' unit-flow model curves divided by their squared norm: the flow of a
        chosen candidate is the exact least-squares ``<c, b> / <b, b>``.
    """

    dt_s: float
    frames: int
    shapes: np.ndarray
    coarse: np.ndarray
    coarse_steps: np.ndarray
    basis: np.ndarray
    coarse_bank: np.ndarray
    fine_banks: np.ndarray
    fine_curves: np.ndarray

    @classmethod
    def build(cls, aif: np.ndarray, dt_s: float) -> "ModelFit":
        """Model dictionary for the AIF ``(t,)`` sampled every ``dt_s`` s."""
        aif = np.asarray(aif, dtype=np.float64)
        if not np.all(np.isfinite(aif)) or np.max(np.abs(aif)) == 0:
            raise InputError("the arterial input curve is empty or not finite: choose another AIF voxel")
        dt_s = float(dt_s)
        shapes = np.array([(f, m) for f in range(len(FAMILIES)) for m in MTT_S])
        lead = SUBFRAMES * (1 - min(FINE_DELAY_STEPS) // SUBFRAMES)  # one frame early, less the fine offsets
        step = dt_s / SUBFRAMES
        # The grid runs past the series' end by the lead, the AIF held at its last value there:
        # tissue that arrives before the AIF shows, at t, the model's value at t + lead.
        grid = step * np.arange(SUBFRAMES * (aif.size - 1) + lead + 1)
        aif_fine = np.interp(grid, dt_s * np.arange(aif.size), aif)
        curves = np.zeros((len(shapes), lead + grid.size))  # unit flow, arriving with the AIF, from -lead steps
        for family, (kind, shape) in enumerate(FAMILIES):
            rows = np.flatnonzero(shapes[:, 0] == family)
            # CBF 1 ml/100g/min, MTT -> CBV; rescaled to unit flow F = 1/s.
            unit = tissue_curves(aif_fine, grid, np.ones(rows.size), shapes[rows, 1] / 60.0, 0.0, 0.0,
                                 kind=kind, shape=shape)
            curves[rows, lead:] = unit.T / float(flow_per_second(1.0))

        def bank(rows, steps):
            """Unit-norm curves (len(steps) * len(rows), t) of ``rows`` delayed by ``steps``, and their norms."""
            samples = SUBFRAMES * np.arange(aif.size)[None, :] - np.asarray(steps)[:, None] + lead
            delayed = np.where(samples[None] >= 0, curves[rows][:, np.clip(samples, 0, None)], 0.0)
            delayed = delayed.transpose(1, 0, 2).reshape(-1, aif.size)  # (steps * rows, t)
            norms = np.linalg.norm(delayed, axis=1)
            norms = np.where(norms > 0, norms, np.inf)
            return delayed / norms[:, None], norms

        latest = min(MAX_DELAY_S, 0.6 * aif.size * dt_s)
        coarse_steps = SUBFRAMES * np.arange(-1, int(latest / dt_s) + 1)
        nearest = [float(MTT_S[np.argmin(np.abs(np.log(np.asarray(MTT_S) / m)))]) for m in COARSE_MTT_S]
        coarse = np.flatnonzero(np.isin(shapes[:, 0], COARSE_FAMILIES) & np.isin(shapes[:, 1], nearest))
        every = np.arange(len(shapes))
        fine = [bank(every, arrival + np.asarray(FINE_DELAY_STEPS)) for arrival in coarse_steps]
        basis = np.linalg.svd(np.concatenate([b for b, _ in fine]), full_matrices=False)[2][:RANK].T
        # Row-major (r, candidates) float32 banks: the fastest product.
        project = lambda b: np.ascontiguousarray((b @ basis).T, np.float32)  # noqa: E731
        return cls(dt_s, aif.size, shapes, coarse, coarse_steps, basis.astype(np.float32),
                   project(bank(coarse, coarse_steps)[0]), np.stack([project(b) for b, _ in fine]),
                   np.stack([(b / n[:, None]).astype(np.float32) for b, n in fine]))

    def __call__(self, tissue: np.ndarray) -> dict[str, np.ndarray]:
        """Best model per tissue curve ``(n, t)`` (HU above baseline).

        The products are cache-sized groups: run BLAS with one thread around this call
        (threadpoolctl; the callers that start threads or take curves from users do), its own
        threads cost more to start and, on a busy machine, to wait for than they save (measured
        10-15x slower on 2 loaded cores).

        Returns
        -------
        dict of (n,) arrays
            ``flow`` F in 1/s (HU units), ``mtt_s``, ``tmax_s`` (the delay, >= 0), ``delay_s``
            and ``family`` (index into :data:`FAMILIES`, int) of the chosen candidate; flow 0
            (and the rest 0) where no candidate correlates positively with the curve.
        """
        tissue = np.asarray(tissue, dtype=np.float32)
        if tissue.ndim != 2 or tissue.shape[1] != self.frames:
            raise ValueError(f"tissue curves must be (n, {self.frames}), got {tissue.shape}")
        coordinates = tissue @ self.basis
        arrival = np.concatenate([
            _best(coordinates[i : i + _CHUNK], self.coarse_bank) // len(self.coarse)
            for i in range(0, len(tissue), _CHUNK)
        ])
        flow = np.zeros(len(tissue))
        choice = np.zeros(len(tissue), np.intp)
        for index in np.unique(arrival):
            voxels = np.flatnonzero(arrival == index)
            for start in range(0, voxels.size, _CHUNK):
                chunk = voxels[start : start + _CHUNK]
                choice[chunk] = _best(coordinates[chunk], self.fine_banks[index])
                flow[chunk] = np.einsum("nt,nt->n", tissue[chunk], self.fine_curves[index, choice[chunk]])
        steps = self.coarse_steps[arrival] + np.asarray(FINE_DELAY_STEPS)[choice // len(self.shapes)]
        delay = steps * self.dt_s / SUBFRAMES
        flow = np.clip(flow, 0.0, None)
        fitted = flow > 0
        shape = self.shapes[choice % len(self.shapes)]
        return {
            "flow": flow,
            "mtt_s": np.where(fitted, shape[:, 1], 0.0),
            "tmax_s": np.where(fitted, np.clip(delay, 0.0, None), 0.0),
            "delay_s": np.where(fitted, delay, 0.0),
            "family": np.where(fitted, shape[:, 0], 0).astype(int),
        }


def _best(coordinates: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """Index of the unit-norm model curve (column of ``bank`` (r, k)) closest to each curve (n, r)."""
    return (coordinates @ bank).argmax(axis=1)
