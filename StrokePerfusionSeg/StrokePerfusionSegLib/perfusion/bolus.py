"""Bolus timing and the conversion from HU to concentration.

The contrast bolus is found on the mean curve of the brain: its peak, and the last frame
before it that is still within :data:`ARRIVAL_FRACTION` of the baseline level. Frames before
that (less one) are a first baseline. Arteries enhance seconds before the parenchyma, so once
the AIF is known the baseline is cut back to the frames before the AIF rises
(:func:`before_arterial_arrival`). Concentration is HU minus the baseline's mean.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import InputError

#: Fraction of the peak enhancement (above the pre-peak minimum) that marks bolus arrival.
ARRIVAL_FRACTION = 0.10
#: Fraction of the arterial peak that marks the arrival of contrast in the arteries.
AIF_ARRIVAL_FRACTION = 0.05
#: Smallest peak enhancement of the mean brain curve (HU) that counts as a contrast bolus.
MIN_BRAIN_ENHANCEMENT_HU = 1.0


@dataclass(frozen=True)
class Bolus:
    """Timing of the contrast bolus on the mean brain curve.

    Attributes
    ----------
    baseline_frames : int
        Number of leading frames averaged as the unenhanced baseline (>= 1).
    arrival_frame : int
        Last frame before the peak still at the baseline level.
    peak_frame : int
        Frame of the maximum of the mean brain curve.
    enhancement_hu : float
        Peak of the mean brain curve above its pre-peak minimum, in HU.
    remaining_fraction : float
        Enhancement left at the last frame, as a fraction of the peak's: near 1 when the
        series ends before the brain washes out.
    """

    baseline_frames: int
    arrival_frame: int
    peak_frame: int
    enhancement_hu: float
    remaining_fraction: float


def find_bolus(mean_curve_hu: np.ndarray) -> Bolus:
    """Find the bolus on the mean brain time-attenuation curve.

    Parameters
    ----------
    mean_curve_hu : (t,) ndarray
        Mean HU of the brain in each frame.

    Returns
    -------
    Bolus

    Raises
    ------
    InputError
        When the curve does not rise by :data:`MIN_BRAIN_ENHANCEMENT_HU` (no contrast given,
        or a series acquired without the bolus).
    """
    curve = np.asarray(mean_curve_hu, dtype=np.float64)
    peak_frame = int(np.argmax(curve))
    floor = float(curve[: peak_frame + 1].min())
    enhancement = float(curve[peak_frame]) - floor
    if enhancement < MIN_BRAIN_ENHANCEMENT_HU:
        raise InputError(
            f"no contrast bolus found: the brain enhances by only {enhancement:.2f} HU over time; "
            "give the CT perfusion series acquired during the contrast injection"
        )
    quiet = np.flatnonzero(curve[:peak_frame] <= floor + ARRIVAL_FRACTION * enhancement)
    arrival = int(quiet[-1]) if quiet.size else 0
    return Bolus(
        baseline_frames=max(1, arrival - 1),
        arrival_frame=arrival,
        peak_frame=peak_frame,
        enhancement_hu=enhancement,
        remaining_fraction=(float(curve[-1]) - floor) / enhancement,
    )


def before_arterial_arrival(bolus: Bolus, aif_hu: np.ndarray) -> Bolus:
    """``bolus`` with its baseline cut to the frames before the arterial curve rises.

    The AIF has risen once it exceeds :data:`AIF_ARRIVAL_FRACTION` of its peak above its
    pre-peak minimum; at least one frame is kept.
    """
    curve = np.asarray(aif_hu, dtype=np.float64)
    peak_frame = int(np.argmax(curve))
    floor = float(curve[: peak_frame + 1].min())
    quiet = np.flatnonzero(curve[:peak_frame] <= floor + AIF_ARRIVAL_FRACTION * (curve[peak_frame] - floor))
    frames = int(quiet[-1]) if quiet.size else 0
    return replace(bolus, baseline_frames=max(1, min(bolus.baseline_frames, frames)))


def baseline_image(ctp_hu: np.ndarray, bolus: Bolus) -> np.ndarray:
    """Mean of the baseline frames, ``(z, y, x)`` float32 in HU."""
    return np.mean(ctp_hu[: bolus.baseline_frames], axis=0, dtype=np.float64).astype(np.float32)
