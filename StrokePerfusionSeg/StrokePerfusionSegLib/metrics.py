"""Segmentation metrics per class and per patient in 3D, and group tables.

Distances come from MONAI (``monai.metrics``, the ``metrics`` extra), never from hand-rolled
code. MONAI measures surface distances between the *boundary voxels* of the two masks
(voxels of a mask with a background neighbour), in mm with the voxel spacing, Euclidean:

* Hausdorff distance (HD): the largest boundary-to-boundary distance in either direction.
* HD95: for each direction, the 95th percentile (``torch.quantile``, linear interpolation) of
  the distances from every boundary voxel of one mask to the nearest boundary voxel of the
  other; HD95 is the larger of the two directed percentiles.
* ASSD: the mean of all those distances, both directions pooled.

Empty-mask conventions (per class):

=====================  ======  ====================  ================
case                   Dice    HD, HD95, ASSD        volume difference
=====================  ======  ====================  ================
both masks empty       1       0 mm                  0 ml
one mask empty         0       NaN (undefined)       as counted
=====================  ======  ====================  ================

:func:`group_table` skips NaN values and reports how many it used, so a table stays defined.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .labels import CORE, PENUMBRA
from .volumes import check_spacing, voxel_volume_ml

#: Regions a metric can be computed over: name -> the labels that form it.
REGIONS = {"penumbra": (PENUMBRA,), "core": (CORE,), "hypoperfused": (PENUMBRA, CORE)}
#: The regions the paper reports.
DEFAULT_REGIONS = ("penumbra", "core")
#: Keys :func:`case_metrics` returns per region (as ``<region>_<key>``).
METRIC_KEYS = (
    "dice",
    "hd_mm",
    "hd95_mm",
    "assd_mm",
    "volume_pred_ml",
    "volume_truth_ml",
    "volume_difference_ml",
    "abs_volume_difference_ml",
)


def check_masks(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.ndim != 3 or truth.shape != pred.shape:
        raise ValueError(
            f"prediction {pred.shape} and truth {truth.shape} must be 3D (z, y, x) of one shape: "
            "resample the prediction to the truth's grid"
        )
    return pred.astype(bool), truth.astype(bool)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """3D Dice of two binary masks ``(z, y, x)``; 1 when both are empty."""
    pred, truth = check_masks(pred, truth)
    total = int(pred.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    from monai.metrics import compute_dice

    return float(compute_dice(_batched(pred), _batched(truth), include_background=True, ignore_empty=False))


def _batched(mask: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(mask))[None, None]


def _surface_metric(pred, truth, spacing, compute) -> float:
    pred, truth = check_masks(pred, truth)
    spacing = check_spacing(spacing)
    pred_any, truth_any = bool(pred.any()), bool(truth.any())
    if not pred_any and not truth_any:
        return 0.0
    if pred_any != truth_any:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns about empty masks, handled above
        return float(compute(_batched(pred), _batched(truth), spacing))


def hausdorff_mm(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float], percentile: float | None = None
) -> float:
    """Symmetric Hausdorff distance in mm of two binary masks ``(z, y, x)``.

    ``percentile`` (0..100) gives the percentile Hausdorff distance (95: HD95) as defined in
    the module docstring; None gives the maximum. Both empty: 0; one empty: NaN.
    """
    from monai.metrics import compute_hausdorff_distance

    return _surface_metric(
        pred,
        truth,
        spacing,
        lambda p, t, s: compute_hausdorff_distance(
            p, t, include_background=True, percentile=percentile, spacing=s
        ),
    )


def hd95_mm(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile Hausdorff distance in mm (see module docstring for the definition)."""
    return hausdorff_mm(pred, truth, spacing, percentile=95)


def assd_mm(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """Average symmetric surface distance in mm of two binary masks ``(z, y, x)``."""
    from monai.metrics import compute_average_surface_distance

    return _surface_metric(
        pred,
        truth,
        spacing,
        lambda p, t, s: compute_average_surface_distance(
            p, t, include_background=True, symmetric=True, spacing=s
        ),
    )


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a binary mask in ml: voxel count x voxel volume."""
    return int(np.count_nonzero(mask)) * voxel_volume_ml(spacing)


def case_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    regions: Sequence[str] = DEFAULT_REGIONS,
) -> dict[str, float]:
    """Every metric of one patient, per region, as a flat dictionary (one CSV row).

    Parameters
    ----------
    pred, truth : ndarray of int, shape (z, y, x)
        Label maps, 0 background, 1 brain, 2 penumbra, 3 core.
    spacing : (3,) sequence of float
        Voxel size in mm, ``(z, y, x)``.
    regions : sequence of str
        Names from :data:`REGIONS`.

    Returns
    -------
    dict
        ``<region>_<key>`` for every key of :data:`METRIC_KEYS`; the volume difference is
        signed ``pred - truth`` (ml), its absolute value is the paper's ``|Vgt - Vpred|``.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.ndim != 3 or pred.shape != truth.shape:
        raise ValueError(
            f"prediction {pred.shape} and truth {truth.shape} must be 3D (z, y, x) label maps "
            "of one shape: resample the prediction to the truth's grid"
        )
    unknown = [name for name in regions if name not in REGIONS]
    if unknown:
        raise ValueError(f"unknown region(s) {', '.join(unknown)}: use {', '.join(REGIONS)}")
    spacing = check_spacing(spacing)
    row: dict[str, float] = {}
    for name in regions:
        labels = REGIONS[name]
        pred_mask, truth_mask = np.isin(pred, labels), np.isin(truth, labels)
        volume_pred, volume_truth = volume_ml(pred_mask, spacing), volume_ml(truth_mask, spacing)
        row[f"{name}_dice"] = dice(pred_mask, truth_mask)
        row[f"{name}_hd_mm"] = hausdorff_mm(pred_mask, truth_mask, spacing)
        row[f"{name}_hd95_mm"] = hd95_mm(pred_mask, truth_mask, spacing)
        row[f"{name}_assd_mm"] = assd_mm(pred_mask, truth_mask, spacing)
        row[f"{name}_volume_pred_ml"] = volume_pred
        row[f"{name}_volume_truth_ml"] = volume_truth
        row[f"{name}_volume_difference_ml"] = volume_pred - volume_truth
        row[f"{name}_abs_volume_difference_ml"] = abs(volume_pred - volume_truth)
    return row


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (ddof 1) of the finite values of one metric.

    ``n`` values were used, ``missing`` were NaN (undefined, e.g. HD with one empty mask).
    ``sd`` is NaN when fewer than two values exist; ``mean`` is NaN when none exist.
    """

    mean: float
    sd: float
    n: int
    missing: int

    def __str__(self) -> str:
        text = f"{self.mean:.3g} ± {self.sd:.3g}"
        return text + (f" ({self.missing} undefined)" if self.missing else "")


def summarise(values: Iterable[float]) -> Summary:
    """:class:`Summary` of ``values``, skipping NaN."""
    values = np.asarray(list(values), dtype=float)
    finite = values[~np.isnan(values)]
    mean = float(finite.mean()) if finite.size else math.nan
    sd = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    return Summary(mean, sd, int(finite.size), int(values.size - finite.size))


def group_table(
    rows: Sequence[Mapping[str, object]],
    *,
    group_key: str = "group",
    metrics: Sequence[str] | None = None,
) -> dict[str, dict[str, Summary]]:
    """Mean +- SD of every metric per patient group, and over all patients.

    Parameters
    ----------
    rows : sequence of mapping
        One row per patient: :func:`case_metrics` output plus ``group_key`` (e.g. ``"LVO"``).
    group_key : str
        The row field naming the group; rows without it count under ``"all"`` only.
    metrics : sequence of str, optional
        Metric names to summarise; default: every numeric field of the first row.

    Returns
    -------
    dict
        ``{group: {metric: Summary}}``, groups in first-seen order, then ``"all"``.
    """
    if not rows:
        raise ValueError("no patient rows to summarise: evaluate at least one case")
    if metrics is None:
        metrics = [
            key
            for key, value in rows[0].items()
            if key != group_key and isinstance(value, (int, float)) and not isinstance(value, bool)
        ]
    groups: dict[str, list[Mapping[str, object]]] = {}
    for row in rows:
        if row.get(group_key) is not None:
            groups.setdefault(str(row[group_key]), []).append(row)
    groups["all"] = list(rows)
    return {
        group: {
            metric: summarise(float(row.get(metric, math.nan)) for row in members) for metric in metrics
        }
        for group, members in groups.items()
    }


def format_group_table(table: Mapping[str, Mapping[str, Summary]]) -> str:
    """A Markdown table: one row per group, one column per metric, cells ``mean ± SD``."""
    groups = list(table)
    metrics = list(next(iter(table.values())))
    lines = [
        "| group | n | " + " | ".join(metrics) + " |",
        "| --- | --- |" + " --- |" * len(metrics),
    ]
    for group in groups:
        cells = [str(table[group][metric]) for metric in metrics]
        patients = max((summary.n + summary.missing for summary in table[group].values()), default=0)
        lines.append(f"| {group} | {patients} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
