"""The one-page visual report (PNG and PDF) a stroke team reads in a few seconds.

Top: study, method and NIHSS. Middle: a montage of up to :data:`MONTAGE_SLICES` axial slices
(those with the most lesion, in z order, or evenly spaced when there is none),
core and penumbra filled over the MIP (first row) and outlined over Tmax in the product's colour
table (second row); without a MIP the first row shows CBF. Bottom: the volume table, the mismatch summary against DEFUSE-3 style criteria
and the decision-support caveat. Images are shown in radiological convention (patient's left
on the right, anterior up) when the grid's axes allow it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..imageio import Geometry
from ..labels import LESION_SEGMENTS
from ..maps import PERFUSION_LUT, map_spec
from ..volumes import DECISION_SUPPORT_CAVEAT, LesionVolumes
from ._atomic import write_atomically

MONTAGE_SLICES = 6
OVERLAY_ALPHA = 0.45
PAGE_SIZE_IN = (8.27, 11.69)  # A4 portrait
PNG_DPI = 110


def montage_slices(labels: np.ndarray, count: int = MONTAGE_SLICES) -> list[int]:
    """Slice indices to show: the ``count`` with most lesion voxels, in z order."""
    lesion = np.isin(labels, [s.label for s in LESION_SEGMENTS]).sum(axis=(1, 2))
    depth = labels.shape[0]
    if not lesion.any():
        return sorted({int(round(v)) for v in np.linspace(0, depth - 1, min(count, depth))})
    ranked = [int(z) for z in np.argsort(-lesion, kind="stable")[:count] if lesion[z] > 0]
    return sorted(ranked)


def _radiological(plane: np.ndarray, geometry: Geometry) -> np.ndarray:
    direction = np.array(geometry.direction).reshape(3, 3)
    if direction[0, 0] < 0:  # x runs to the patient's right: flip so the left is on the right
        plane = plane[:, ::-1]
    if direction[1, 1] < 0:  # y runs anterior: flip so anterior is up
        plane = plane[::-1, :]
    return plane


def _overlay(labels_plane: np.ndarray) -> np.ndarray:
    rgba = np.zeros(labels_plane.shape + (4,), dtype=np.float32)
    for spec in LESION_SEGMENTS:
        where = labels_plane == spec.label
        rgba[where, :3] = spec.color
        rgba[where, 3] = OVERLAY_ALPHA
    return rgba


def _volume_lines(volumes: LesionVolumes) -> tuple[list[list[str]], str]:
    ratio = "n/a (no core)" if volumes.mismatch_ratio is None else f"{volumes.mismatch_ratio:.2f}"
    rows = [
        ["Ischemic core (ml)", f"{volumes.core_ml:.1f}"],
        ["Penumbra (ml)", f"{volumes.penumbra_ml:.1f}"],
        ["Hypoperfused, core + penumbra (ml)", f"{volumes.hypoperfused_ml:.1f}"],
        ["Mismatch volume (ml)", f"{volumes.mismatch_volume_ml:.1f}"],
        ["Mismatch ratio", ratio],
    ]
    flags = volumes.target_mismatch
    criteria = volumes.criteria
    summary = (
        f"Target mismatch (core < {criteria.max_core_ml:g} ml, ratio >= {criteria.min_ratio:g}, "
        f"mismatch >= {criteria.min_mismatch_ml:g} ml): {'MET' if flags['target_mismatch'] else 'NOT MET'}  "
        f"[core {'yes' if flags['core_below_max'] else 'no'}, ratio {'yes' if flags['ratio_at_least_min'] else 'no'}, "
        f"mismatch volume {'yes' if flags['mismatch_volume_at_least_min'] else 'no'}]"
    )
    return rows, summary


def render_report_figure(
    maps: Mapping[str, np.ndarray],
    labels: np.ndarray,
    geometry: Geometry,
    volumes: LesionVolumes,
    *,
    title: str,
    subtitle: str = "",
    notes: Sequence[str] = (),
):
    """Draw the report page; returns a matplotlib Figure (not attached to pyplot).

    ``maps`` needs ``tmax``; the first row uses ``mip`` when present, else ``cbf``.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    perfusion_colours = ListedColormap(PERFUSION_LUT / 255.0)
    rows = [("mip", "gray") if "mip" in maps else ("cbf", perfusion_colours), ("tmax", perfusion_colours)]
    slices = montage_slices(labels)
    aspect = geometry.spacing[1] / geometry.spacing[0]
    figure = Figure(figsize=PAGE_SIZE_IN)
    figure.text(0.5, 0.965, title, ha="center", fontsize=15, weight="bold")
    figure.text(0.5, 0.94, subtitle, ha="center", fontsize=9)
    grid = figure.add_gridspec(2, len(slices), left=0.03, right=0.97, top=0.92, bottom=0.47, hspace=0.12, wspace=0.04)
    for row, (name, colour_map) in enumerate(rows):
        low, high = map_spec(name).window
        for column, z in enumerate(slices):
            axes = figure.add_subplot(grid[row, column])
            axes.imshow(_radiological(maps[name][z], geometry), cmap=colour_map, vmin=low, vmax=high,
                        aspect=aspect, interpolation="nearest")
            if row == 0:  # filled on the MIP, outlined on Tmax so its colours stay readable
                axes.imshow(_radiological(_overlay(labels[z]), geometry), aspect=aspect, interpolation="nearest")
            else:
                for spec in LESION_SEGMENTS:
                    mask = _radiological(labels[z] == spec.label, geometry)
                    if mask.any():
                        axes.contour(mask.astype(np.float32), levels=[0.5], colors=[spec.color], linewidths=1.0)
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                axes.set_title(f"slice {z + 1}/{labels.shape[0]}", fontsize=7)
            if column == 0:
                unit = map_spec(name).unit
                axes.set_ylabel(f"{name.upper()} [{low:g}-{high:g} {unit}]", fontsize=7)
    for index, spec in enumerate(LESION_SEGMENTS):  # colour key of the overlays
        figure.patches.append(
            Rectangle((0.06 + 0.2 * index, 0.445), 0.015, 0.012, transform=figure.transFigure, color=spec.color)
        )
        figure.text(0.08 + 0.2 * index, 0.446, spec.name, fontsize=8)
    table_rows, summary = _volume_lines(volumes)
    table_axes = figure.add_axes((0.1, 0.25, 0.8, 0.17))
    table_axes.axis("off")
    table = table_axes.table(cellText=table_rows, colLabels=["Volume", "Value"], loc="center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.scale(1.0, 1.4)
    figure.text(0.05, 0.21, summary, fontsize=8, wrap=True)
    text = DECISION_SUPPORT_CAVEAT
    if notes:
        text += "\nNotes: " + "; ".join(notes[:6])
    figure.text(0.05, 0.04, text, fontsize=7, wrap=True, va="bottom", style="italic")
    return figure


def write_visual_report(
    figure, png_path: str | os.PathLike | None, pdf_path: str | os.PathLike | None
) -> list[Path]:
    """Save a report figure as PNG and/or PDF, atomically; returns the written paths."""
    written = []
    for path, options in ((png_path, {"dpi": PNG_DPI}), (pdf_path, {})):
        if path is not None:
            written.append(write_atomically(path, lambda temporary, o=options: figure.savefig(temporary, **o)))
    return written
