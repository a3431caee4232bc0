"""Perfusion maps of the shared phantom's LVO case: ischemic tissue reads as ischemic.

The tiny phantom (30 frames) ends before most tissue washes out, so absolute values are not
scored here (the benchmark scores a 50-frame case against its truth maps); the contrasts the
segmentation relies on are.
"""

from __future__ import annotations

import numpy as np

from StrokePerfusionSegLib.labels import BRAIN, CORE, PENUMBRA
from StrokePerfusionSegLib.perfusion import compute_perfusion_maps


def test_core_has_low_flow_and_penumbra_late_tmax(lvo_case):
    result = compute_perfusion_maps(lvo_case.ctp, lvo_case.dt_s, lvo_case.geometry.spacing_zyx)
    label = lvo_case.label
    inside = result.brain_mask
    healthy, penumbra, core = (inside & (label == value) for value in (BRAIN, PENUMBRA, CORE))
    assert healthy.sum() > 100 and core.any() and penumbra.any()
    maps = result.maps
    assert np.median(maps["cbf"][core]) < 0.6 * np.median(maps["cbf"][healthy])
    assert np.median(maps["tmax"][penumbra]) > np.median(maps["tmax"][healthy]) + 2.0
    assert np.median(maps["cbv"][core]) < np.median(maps["cbv"][healthy])
    # Most of the phantom's brain is analysed.
    assert inside.sum() > 0.6 * (label > 0).sum()
