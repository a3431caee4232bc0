"""The contrast bolus of one patient: arterial input, venous output and collateral filling.

All curves are concentrations in HU above baseline of whole blood in a large vessel (no partial
volume); the anatomy's vessel fractions scale them per voxel. The venous output function (VOF)
is the arterial curve later and broader with the same area, as indicator conservation demands
between two large vessels; a perfusion analysis that measures a partial-volume-reduced AIF in
a small artery can rescale it with the VOF.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..tracer import gamma_variate

@dataclass(frozen=True)
class Bolus:
    """Gamma-variate bolus parameters (recorded in case.json).

    The arterial curve is a first pass (arrival ``t0_s``, shape ``alpha``, scale ``beta_s``,
    height ``peak_hu``, peaking at ``t0 + alpha * beta``) plus a recirculation bump
    ``recirculation`` times as high, ``recirculation_delay_s`` later and twice as broad.
    The venous curve arrives ``vein_delay_s`` later with ``vein_broadening`` times the scale.
    """

    t0_s: float
    alpha: float
    beta_s: float
    peak_hu: float
    recirculation: float
    recirculation_delay_s: float
    vein_delay_s: float
    vein_broadening: float

    @property
    def peak_time_s(self) -> float:
        return self.t0_s + self.alpha * self.beta_s

    def to_dict(self) -> dict:
        return asdict(self) | {"peak_time_s": self.peak_time_s}

    def arterial(self, t_s: np.ndarray, *, delay_s: float = 0.0, broadening: float = 1.0) -> np.ndarray:
        """Arterial concentration (HU above baseline) at times ``t_s``, optionally later and broader.

        A broadened curve keeps its area (its height drops as its width grows).
        """
        beta = self.beta_s * broadening
        first = gamma_variate(t_s, t0_s=self.t0_s + delay_s, alpha=self.alpha, beta_s=beta,
                              peak=self.peak_hu / broadening)
        second = gamma_variate(t_s, t0_s=self.t0_s + delay_s + self.recirculation_delay_s, alpha=self.alpha,
                               beta_s=2.0 * beta, peak=self.recirculation * self.peak_hu / broadening)
        return first + second

    def venous(self, t_s: np.ndarray) -> np.ndarray:
        """Venous output (HU above baseline): later, broader, same area as :meth:`arterial`."""
        return self.arterial(t_s, delay_s=self.vein_delay_s, broadening=self.vein_broadening)


def sample_bolus(rng: np.random.Generator) -> Bolus:
    """A plausible injection: peak 250-450 HU at 14-20 s after the start of the scan."""
    t0 = float(rng.uniform(3.0, 7.0))
    alpha = float(rng.uniform(2.5, 4.0))
    peak_time = float(rng.uniform(14.0, 20.0))
    return Bolus(
        t0_s=t0,
        alpha=alpha,
        beta_s=(peak_time - t0) / alpha,
        peak_hu=float(rng.uniform(250.0, 450.0)),
        recirculation=float(rng.uniform(0.05, 0.15)),
        recirculation_delay_s=float(rng.uniform(10.0, 14.0)),
        vein_delay_s=float(rng.uniform(5.0, 8.0)),
        vein_broadening=float(rng.uniform(1.2, 1.5)),
    )
