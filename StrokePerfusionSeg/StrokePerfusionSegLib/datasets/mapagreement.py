"""How far a dataset's perfusion maps agree with this product's, inside the brain.

Per case and map (:func:`map_agreement`): the median of the dataset's map divided by ours (a
scaling or unit the dataset's software applies shows up as a ratio far from 1: 0.6 for a CBV
in ml/100ml, 1000 for times in ms), the Pearson correlation (linear agreement) and the
Spearman rank correlation (agreement up to any monotonic rescaling, such as an 8-bit window).
Over a cohort (:func:`agreement_table`): one Markdown row per map with the median and range of
each over the cases. Voxels count where both maps are positive and finite inside the analysis's
brain mask.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: Fewer voxels than this give no agreement (None).
MIN_VOXELS = 10
KEYS = ("median_ratio", "pearson_r", "spearman_r")


def map_agreement(ours: np.ndarray, theirs: np.ndarray, brain: np.ndarray) -> dict | None:
    """Agreement of ``theirs`` (the dataset's map) with ``ours`` (same grid, (z, y, x)) in ``brain``.

    Returns
    -------
    dict or None
        ``median_ratio`` (theirs / ours), ``pearson_r``, ``spearman_r`` (rounded to 3 decimals;
        a correlation is None when either map is constant there) and ``voxels``; None when
        fewer than :data:`MIN_VOXELS` voxels qualify.
    """
    from scipy import stats

    inside = brain & (ours > 0) & (theirs > 0) & np.isfinite(theirs) & np.isfinite(ours)
    count = int(inside.sum())
    if count < MIN_VOXELS:
        return None
    a, b = ours[inside].astype(np.float64), theirs[inside].astype(np.float64)
    constant = np.ptp(a) == 0 or np.ptp(b) == 0
    return {
        "median_ratio": round(float(np.median(b / a)), 3),
        "pearson_r": None if constant else round(float(stats.pearsonr(a, b)[0]), 3),
        "spearman_r": None if constant else round(float(stats.spearmanr(a, b)[0]), 3),
        "voxels": count,
    }


def _median_and_range(values: list[float]) -> str:
    if not values:
        return "–"
    middle = f"{np.median(values):.3g}"
    return middle if len(values) == 1 else f"{middle} ({min(values):.3g}–{max(values):.3g})"


def agreement_table(by_case: Mapping[str, Mapping[str, dict | None]], title: str) -> str:
    """Markdown table of the agreements of a cohort: ``{case id: {map name: map_agreement(...)}}``.

    One row per map: the number of cases with an agreement, then the median (range) over cases
    of the median ratio, Pearson r and Spearman r.
    """
    names = list(dict.fromkeys(name for maps in by_case.values() for name in maps))
    lines = [f"## {title}", "",
             "| map | cases | median ratio (dataset / ours) | Pearson r | Spearman r |", "| --- | --- | --- | --- | --- |"]
    for name in names:
        found = [maps[name] for maps in by_case.values() if maps.get(name)]
        cells = [_median_and_range([a[key] for a in found if a[key] is not None]) for key in KEYS]
        lines.append(f"| {name.upper()} | {len(found)} | " + " | ".join(cells) + " |")
    lines += ["", "Inside the brain mask of the product's analysis, voxels where both maps are positive; "
              "median (range) over the cases.", ""]
    return "\n".join(lines)
