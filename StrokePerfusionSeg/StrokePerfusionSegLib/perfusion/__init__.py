"""Perfusion analysis: parametric maps from a raw 4D CT perfusion series.

:func:`compute_perfusion_maps` is the entry point for a 4D series and
:func:`deconvolve_curves` for tissue curves; the modules hold the steps: :mod:`.bolus` (bolus
timing, baseline), :mod:`.aif` (arterial input, venous scaling), :mod:`.deconvolution`
(bcSVD / oSVD / Tikhonov), :mod:`.modelfit` (model fit), :mod:`.calibration` (SVD bias
correction), :mod:`.curves` (maps from curves), :mod:`.maps` (the volume pipeline) and
:mod:`.reference_object` (a digital reference object with known truth, for validation).
"""

from .aif import GammaFit, fit_gamma_variate
from .bolus import Bolus, find_bolus
from .curves import METHODS, deconvolve_curves
from .deconvolution import CirculantDeconvolver, circulant_aif_matrix, oscillation_index
from .maps import MIN_FRAMES, PerfusionResult, compute_perfusion_maps
from .modelfit import ModelFit
from .reference_object import ReferenceStudy, make_reference_study, reference_aif

__all__ = [
    "Bolus",
    "CirculantDeconvolver",
    "GammaFit",
    "METHODS",
    "MIN_FRAMES",
    "ModelFit",
    "PerfusionResult",
    "ReferenceStudy",
    "circulant_aif_matrix",
    "compute_perfusion_maps",
    "deconvolve_curves",
    "find_bolus",
    "fit_gamma_variate",
    "make_reference_study",
    "oscillation_index",
    "reference_aif",
]
