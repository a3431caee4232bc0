"""Model-based perfusion estimates: each tissue curve matched to a dictionary of model curves.

The model is the indicator-dilution equation of :mod:`..tracer`,
``C(t) = F * (aif * R)(t - delay)``, with a transit-time distribution of mean MTT from several
families: gamma of shape ``lambda`` (Mouridsen et al. 2006; 1 is the exponential residue, large
``lambda`` a box) and lognormal. As in the model-based estimators that were the most accurate
in published comparisons on digital phantoms (Boutelier et al. 2012, Bayesian estimation over
the gamma model), the residue shape is estimated, not assumed; here by the least-squares
(flat-prior maximum a posteriori) choice over a grid of (family, MTT, delay), each
candidate's flow ``F`` in closed form: ``F = <c, b> / <b, b>``, the best candidate the one with
the largest ``<c, b>^2 / <b, b>``.

Arterial dispersion is not a parameter: an exponential dispersion kernel convolved with a short
residue gives the same tissue curve as a longer residue without it, so the curve cannot tell
them apart. Like SVD, the fit measures the effective (dispersed) residue: with dispersion CBF
reads low and Tmax late.

Vectorised in two passes, each one matrix product per group of voxels:

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
# Voxels per matrix product (bounds the (voxels, candidates) work arrays).
_CHUNK = 32768


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
    fine_curves : (s, f) ndarray of float32
        Unit-flow model curve of each candidate arriving with the AIF, every
        ``dt / SUBFRAMES`` s from ``-lead`` s: a delay is a shift along this grid.
    lead : int
        Sub-frame steps of :attr:`fine_curves` before ``t = 0`` (the earliest arrival searched).
    coarse : (c,) ndarray of int
        Candidates of the coarse pass.
    coarse_steps : (d,) ndarray of int
        Delays of the coarse pass, in sub-frame steps.
    """

    dt_s: float
    frames: int
    shapes: np.ndarray
    fine_curves: np.ndarray
    lead: int
    coarse: np.ndarray
    coarse_steps: np.ndarray

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
        curves = np.zeros((len(shapes), lead + grid.size), np.float32)
        for family, (kind, shape) in enumerate(FAMILIES):
            rows = np.flatnonzero(shapes[:, 0] == family)
            # CBF 1 ml/100g/min, MTT -> CBV; rescaled to unit flow F = 1/s.
            unit = tissue_curves(aif_fine, grid, np.ones(rows.size), shapes[rows, 1] / 60.0, 0.0, 0.0,
                                 kind=kind, shape=shape)
            curves[rows, lead:] = unit.T / float(flow_per_second(1.0))
        latest = min(MAX_DELAY_S, 0.6 * aif.size * dt_s)
        coarse_steps = SUBFRAMES * np.arange(-1, int(latest / dt_s) + 1)
        nearest = [float(MTT_S[np.argmin(np.abs(np.log(np.asarray(MTT_S) / m)))]) for m in COARSE_MTT_S]
        coarse = np.flatnonzero(np.isin(shapes[:, 0], COARSE_FAMILIES) & np.isin(shapes[:, 1], nearest))
        return cls(dt_s, aif.size, shapes, curves, lead, coarse, coarse_steps)

    def bank(self, rows: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Model curves (len(steps) * len(rows), t) of candidates ``rows`` delayed by each of ``steps`` sub-frames."""
        samples = SUBFRAMES * np.arange(self.frames)[None, :] - np.asarray(steps)[:, None] + self.lead
        curves = self.fine_curves[rows][:, np.clip(samples, 0, None)]  # (rows, steps, t)
        curves = np.where(samples[None] >= 0, curves, 0.0)
        return curves.transpose(1, 0, 2).reshape(-1, self.frames)

    def __call__(self, tissue: np.ndarray) -> dict[str, np.ndarray]:
        """Best model per tissue curve ``(n, t)`` (HU above baseline).

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
        coarse = self.bank(self.coarse, self.coarse_steps)
        arrival = np.concatenate([
            _match(tissue[i : i + _CHUNK], coarse)[1] // len(self.coarse) for i in range(0, len(tissue), _CHUNK)
        ])
        flow = np.zeros(len(tissue))
        best = np.zeros(len(tissue), np.intp)
        delay = np.zeros(len(tissue))
        every = np.arange(len(self.shapes))
        for index in np.unique(arrival):
            voxels = np.flatnonzero(arrival == index)
            steps = self.coarse_steps[index] + np.asarray(FINE_DELAY_STEPS)
            bank = self.bank(every, steps)
            for start in range(0, voxels.size, _CHUNK):
                chunk = voxels[start : start + _CHUNK]
                flow[chunk], choice = _match(tissue[chunk], bank)
                best[chunk] = choice % len(self.shapes)
                delay[chunk] = steps[choice // len(self.shapes)] * self.dt_s / SUBFRAMES
        fitted = flow > 0
        shape = self.shapes[best]
        return {
            "flow": flow,
            "mtt_s": np.where(fitted, shape[:, 1], 0.0),
            "tmax_s": np.where(fitted, np.clip(delay, 0.0, None), 0.0),
            "delay_s": np.where(fitted, delay, 0.0),
            "family": np.where(fitted, shape[:, 0], 0).astype(int),
        }


def _match(tissue: np.ndarray, bank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares flow and index of the best model curve in ``bank`` (k, t) for each curve (n, t)."""
    norm = np.einsum("kt,kt->k", bank, bank, dtype=np.float64)
    norm = np.where(norm > 0, norm, np.inf).astype(np.float32)
    projection = tissue @ bank.T
    score = np.maximum(projection, 0.0)
    score *= score
    score /= norm
    choice = score.argmax(axis=1)
    rows = np.arange(len(tissue))
    return np.clip(projection[rows, choice] / norm[choice], 0.0, None).astype(np.float64), choice
