"""Lesion volumes, mismatch figures and DEFUSE-3 style target-mismatch flags.

This is the only place the target-mismatch thresholds are defined (:data:`DEFUSE3`).
The figures are decision support, never a treatment decision: show them with
:data:`DECISION_SUPPORT_CAVEAT`.

Conventions
-----------
* hypoperfused volume = core + penumbra (labels 3 and 2), i.e. the Tmax > 6 s region.
* mismatch volume = hypoperfused - core = penumbra volume.
* mismatch ratio = hypoperfused / core; ``None`` when the core volume is 0 (division by zero).
  A zero core with a penumbra meets the ratio criterion (the ratio is unbounded); a study
  with neither lesion class meets neither the ratio nor the mismatch-volume criterion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .errors import InputError
from .labels import CORE, NUM_CLASSES, PENUMBRA

DECISION_SUPPORT_CAVEAT = (
    "Decision support only: volumes and target-mismatch flags are estimates from an automatic "
    "segmentation and must be checked by a qualified physician; they are not a treatment decision."
)


@dataclass(frozen=True)
class MismatchCriteria:
    """Thresholds of a target-mismatch profile.

    Attributes
    ----------
    max_core_ml : float
        The core must be strictly smaller (ml).
    min_ratio : float
        The mismatch ratio hypoperfused/core must be at least this.
    min_mismatch_ml : float
        The mismatch volume hypoperfused - core must be at least this (ml).
    """

    max_core_ml: float = 70.0
    min_ratio: float = 1.8
    min_mismatch_ml: float = 15.0


#: DEFUSE-3 target mismatch: core < 70 ml, ratio >= 1.8, mismatch volume >= 15 ml.
DEFUSE3 = MismatchCriteria()


@dataclass(frozen=True)
class LesionVolumes:
    """Lesion volumes (ml) and mismatch figures of one study.

    ``target_mismatch`` holds the flags ``core_below_max``, ``ratio_at_least_min``,
    ``mismatch_volume_at_least_min`` and ``target_mismatch`` (all three), judged against
    ``criteria``.
    """

    core_ml: float
    penumbra_ml: float
    hypoperfused_ml: float
    mismatch_ratio: float | None
    mismatch_volume_ml: float
    target_mismatch: dict
    criteria: MismatchCriteria = DEFUSE3

    def to_dict(self) -> dict:
        """JSON-ready dictionary (``mismatch_ratio`` may be None), with the caveat."""
        document = asdict(self)
        document["caveat"] = DECISION_SUPPORT_CAVEAT
        return document


def check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    """``spacing`` as three positive floats (mm, ``(z, y, x)``); an InputError otherwise."""
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(np.isfinite(s) and s > 0 for s in values):
        raise InputError(f"spacing {spacing!r} is not three positive voxel sizes in mm (z, y, x)")
    return values


def voxel_volume_ml(spacing: Sequence[float]) -> float:
    """Volume of one voxel in ml from its ``(z, y, x)`` spacing in mm."""
    return float(np.prod(check_spacing(spacing))) / 1000.0


def target_mismatch_flags(
    core_ml: float, hypoperfused_ml: float, criteria: MismatchCriteria = DEFUSE3
) -> dict:
    """Target-mismatch flags from the core and hypoperfused volumes (ml); see module doc."""
    mismatch_ml = hypoperfused_ml - core_ml
    if core_ml > 0:
        ratio_ok = hypoperfused_ml / core_ml >= criteria.min_ratio
    else:
        ratio_ok = mismatch_ml > 0
    flags = {
        "core_below_max": bool(core_ml < criteria.max_core_ml),
        "ratio_at_least_min": bool(ratio_ok),
        "mismatch_volume_at_least_min": bool(mismatch_ml >= criteria.min_mismatch_ml),
    }
    flags["target_mismatch"] = all(flags.values())
    return flags


def lesion_volumes(
    labels: np.ndarray, spacing: Sequence[float], criteria: MismatchCriteria = DEFUSE3
) -> LesionVolumes:
    """Core, penumbra and hypoperfused volumes and the mismatch figures of a label map.

    Parameters
    ----------
    labels : ndarray of int, shape (z, y, x)
        0 background, 1 brain, 2 penumbra, 3 core.
    spacing : (3,) sequence of float
        Voxel size in mm, ``(z, y, x)``.
    criteria : MismatchCriteria
        Target-mismatch thresholds; DEFUSE-3 by default.

    Returns
    -------
    LesionVolumes
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise InputError(f"label map has shape {labels.shape}: give a 3D label map (z, y, x)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"label map has dtype {labels.dtype}: give integer labels 0..3")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise InputError(f"label map holds values outside 0..{NUM_CLASSES - 1}: use 0..3 labels")
    voxel_ml = voxel_volume_ml(spacing)
    core_ml = int(np.count_nonzero(labels == CORE)) * voxel_ml
    penumbra_ml = int(np.count_nonzero(labels == PENUMBRA)) * voxel_ml
    hypoperfused_ml = core_ml + penumbra_ml
    return LesionVolumes(
        core_ml=core_ml,
        penumbra_ml=penumbra_ml,
        hypoperfused_ml=hypoperfused_ml,
        mismatch_ratio=hypoperfused_ml / core_ml if core_ml > 0 else None,
        mismatch_volume_ml=hypoperfused_ml - core_ml,
        target_mismatch=target_mismatch_flags(core_ml, hypoperfused_ml, criteria),
        criteria=criteria,
    )
