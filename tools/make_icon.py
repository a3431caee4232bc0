"""Draw the 128x128 extension and module icon from the segment colours of labels.py.

A brain outline in axial view with a penumbra (blue) around an ischemic core (red)::

    python tools/make_icon.py   # writes StrokePerfusionSeg.png and the module icon
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Ellipse, PathPatch  # noqa: E402
from matplotlib.path import Path as CurvePath  # noqa: E402

from StrokePerfusionSegLib.labels import SEGMENT_BY_LABEL, CORE, PENUMBRA  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGETS = (ROOT / "StrokePerfusionSeg.png", ROOT / "StrokePerfusionSeg" / "Resources" / "Icons" / "StrokePerfusionSeg.png")
SIZE_PX = 128


def draw(path: Path) -> None:
    figure = plt.figure(figsize=(1, 1), dpi=SIZE_PX)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.axis("off")
    axes.add_patch(Ellipse((0.5, 0.5), 0.80, 0.94, facecolor="#2b2b2b", edgecolor="#e6e6e6", linewidth=3))
    axes.add_patch(Ellipse((0.5, 0.5), 0.68, 0.82, facecolor="#7a7a7a", edgecolor="none"))
    axes.plot([0.5, 0.5], [0.12, 0.88], color="#2b2b2b", linewidth=2)  # interhemispheric fissure
    penumbra = CurvePath(
        [(0.18, 0.55), (0.20, 0.85), (0.47, 0.86), (0.47, 0.60), (0.47, 0.30), (0.22, 0.25), (0.18, 0.55)],
        [CurvePath.MOVETO] + [CurvePath.CURVE4] * 6,
    )
    axes.add_patch(PathPatch(penumbra, facecolor=SEGMENT_BY_LABEL[PENUMBRA].color, edgecolor="none"))
    axes.add_patch(Ellipse((0.33, 0.55), 0.16, 0.24, facecolor=SEGMENT_BY_LABEL[CORE].color, edgecolor="none"))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=SIZE_PX, transparent=True)
    plt.close(figure)


if __name__ == "__main__":
    for target in TARGETS:
        draw(target)
        print(f"wrote {target}")
