"""The one-page visual report (PNG and PDF) a stroke team reads in a few seconds.

Top: study, method and NIHSS. Middle: a montage of up to :data:`MONTAGE_SLICES` axial slices
(those with the most lesion, in z order, or evenly spaced when there is none), three per line;
each line of slices is shown twice: core and penumbra filled over the MIP (grey), then outlined
over Tmax in the product's colour table (without a MIP, CBF takes the MIP's place). The tiles
are rendered with numpy (``colourcoding.encode_rgb``) and shown as one image, which keeps the page fast
to draw. Bottom: the volume table, the mismatch summary against DEFUSE-3 style criteria and the
decision-support caveat. Images are shown in radiological convention (patient's left on the
right, anterior up) when the grid's axes allow it.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..imageio import Geometry
from ..labels import LESION_SEGMENTS
from ..mapspecs import map_spec
from ..colourcoding import encode_rgb
from ..volumes import DECISION_SUPPORT_CAVEAT, LesionVolumes
from ..atomic import write_file_atomically

MONTAGE_SLICES = 6
OVERLAY_ALPHA = 0.45
PAGE_SIZE_IN = (8.27, 11.69)  # A4 portrait
PNG_DPI = 110
#: Largest side of a montage tile in pixels; bigger slices are shown every n-th pixel, which
#: is finer than the printed tile (about 1.3 inch) resolves and keeps the PDF small and fast.
TILE_PIXELS = 256
TILE_GAP = 4
MONTAGE_COLUMNS = 3
OUTLINE_PIXELS = 2
#: Widest character of running text as a fraction of its font size (DejaVu Sans, upper bound
#: of the average over words): lines are broken to fit the page with it.
CHARACTER_WIDTH_EM = 0.6


def montage_slices(labels: np.ndarray, count: int = MONTAGE_SLICES) -> list[int]:
    """Slice indices to show: the ``count`` with most lesion voxels, in z order."""
    lesion = np.isin(labels, [s.label for s in LESION_SEGMENTS]).sum(axis=(1, 2))
    depth = labels.shape[0]
    if not lesion.any():
        return sorted({int(round(v)) for v in np.linspace(0, depth - 1, min(count, depth))})
    ranked = [int(z) for z in np.argsort(-lesion, kind="stable")[:count] if lesion[z] > 0]
    return sorted(ranked)


def _tile(plane: np.ndarray, geometry: Geometry) -> np.ndarray:
    """A slice as shown: reduced to at most TILE_PIXELS a side, in radiological orientation."""
    step = max(1, -(-max(plane.shape[:2]) // TILE_PIXELS))
    plane = plane[::step, ::step]
    direction = np.array(geometry.direction).reshape(3, 3)
    if direction[0, 0] < 0:  # x runs to the patient's right: flip so the left is on the right
        plane = plane[:, ::-1]
    if direction[1, 1] < 0:  # y runs anterior: flip so anterior is up
        plane = plane[::-1, :]
    return plane


def _draw_segments(rgb: np.ndarray, labels_plane: np.ndarray, *, filled: bool) -> np.ndarray:
    """Blend the lesion segments into an RGB tile: filled (alpha) or as 1-pixel outlines."""
    from scipy import ndimage

    rgb = rgb.astype(np.float32)
    for spec in LESION_SEGMENTS:
        mask = labels_plane == spec.label
        if not filled:
            mask &= ~ndimage.binary_erosion(mask, iterations=OUTLINE_PIXELS)
        colour = np.array(spec.color, dtype=np.float32) * 255.0
        alpha = OVERLAY_ALPHA if filled else 1.0
        rgb[mask] = (1.0 - alpha) * rgb[mask] + alpha * colour
    return rgb.astype(np.uint8)


def _row_width(labels: np.ndarray, geometry: Geometry) -> int:
    tile_width = _tile(labels[0], geometry).shape[1]
    return MONTAGE_COLUMNS * tile_width + (MONTAGE_COLUMNS - 1) * TILE_GAP


def montage_row(values: np.ndarray, labels: np.ndarray, name: str, slices: Sequence[int], geometry: Geometry,
                *, filled: bool) -> np.ndarray:
    """One montage row as an RGB image: the map in its colour table with the segments drawn.

    Tiles are separated by :data:`TILE_GAP` white pixels.
    """
    tiles = []
    for z in slices:
        rgb = encode_rgb(_tile(values[z], geometry), name)
        tiles.append(_draw_segments(rgb, _tile(labels[z], geometry), filled=filled))
        tiles.append(np.full((rgb.shape[0], TILE_GAP, 3), 255, dtype=np.uint8))
    return np.concatenate(tiles[:-1], axis=1)


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
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    first = "mip" if "mip" in maps else "cbf"
    slices = montage_slices(labels)
    lines = [slices[i : i + MONTAGE_COLUMNS] for i in range(0, len(slices), MONTAGE_COLUMNS)]
    strips, captions = [], []  # captions: (row index, map name, slice numbers)
    for line in lines:
        for name, filled in ((first, True), ("tmax", False)):
            strip = montage_row(maps[name], labels, name, line, geometry, filled=filled)
            padded = np.full((strip.shape[0], _row_width(labels, geometry), 3), 255, dtype=np.uint8)
            padded[:, : strip.shape[1]] = strip
            strips += [padded, np.full((TILE_GAP * 3, padded.shape[1], 3), 255, dtype=np.uint8)]
            captions.append((name, line))
    mosaic = np.concatenate(strips[:-1], axis=0)
    figure = Figure(figsize=PAGE_SIZE_IN)
    figure.text(0.5, 0.965, title, ha="center", fontsize=15, weight="bold")
    figure.text(0.5, 0.94, subtitle, ha="center", fontsize=9)
    axes = figure.add_axes((0.07, 0.47, 0.9, 0.45))
    axes.imshow(mosaic, aspect=geometry.spacing[1] / geometry.spacing[0], interpolation="nearest")
    axes.set_axis_off()
    tile_height = strips[0].shape[0]
    tile_width = _tile(labels[0], geometry).shape[1]
    for row, (name, line) in enumerate(captions):
        top = row * (tile_height + TILE_GAP * 3)
        low, high = map_spec(name).window
        axes.text(-6, top + tile_height / 2, f"{name.upper()}\n{low:g}-{high:g} {map_spec(name).unit}",
                  ha="right", va="center", fontsize=7)
        for column, z in enumerate(line):
            axes.text(column * (tile_width + TILE_GAP) + 3, top + 3, f"{z + 1}/{labels.shape[0]}",
                      ha="left", va="top", fontsize=6, color="white")
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
    figure.text(0.05, 0.21, _fill(summary, 8, 0.9), fontsize=8)
    text = DECISION_SUPPORT_CAVEAT
    if notes:
        text += "\nNotes: " + "; ".join(notes[:6])
    figure.text(0.05, 0.04, _fill(text, 7, 0.9), fontsize=7, va="bottom", style="italic")
    return figure


def _fill(text: str, fontsize: float, width_fraction: float) -> str:
    """``text`` broken into lines that fit ``width_fraction`` of the page at ``fontsize`` (pt).

    Breaking here rather than with matplotlib's ``wrap=True``, which measures the text word by
    word at every draw: that was most of the time spent saving the page.
    """
    characters = int(width_fraction * PAGE_SIZE_IN[0] * 72 / (CHARACTER_WIDTH_EM * fontsize))
    return "\n".join(textwrap.fill(paragraph, characters) for paragraph in text.split("\n"))


def write_visual_report(
    figure, png_path: str | os.PathLike | None, pdf_path: str | os.PathLike | None
) -> list[Path]:
    """Save a report figure as PNG and/or PDF, atomically; returns the written paths."""
    written = []
    for path, options in ((png_path, {"dpi": PNG_DPI}), (pdf_path, {})):
        if path is not None:
            written.append(write_file_atomically(path, lambda temporary, o=options: figure.savefig(temporary, **o)))
    return written
