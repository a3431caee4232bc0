"""The packaged MNI152 brain template (grey matter, white matter, CSF probabilities at 2 mm).

The files under ``data/templates/`` come from the ICBM 2009a non-linear symmetric template
(Fonov et al. 2009/2011, McConnell Brain Imaging Centre, MNI, McGill University; licence
notice in ``data/templates/LICENSE-MNI-ICBM152.txt``), downsampled by
:mod:`.make_template`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "data" / "templates"
TEMPLATE_FILES = {tissue: f"mni152_2mm_{tissue}.nii.gz" for tissue in ("gm", "wm", "csf")}


@dataclass(frozen=True)
class Template:
    """Tissue probabilities on the template grid and where that grid lies in MNI space.

    Attributes
    ----------
    gm, wm, csf : ndarray of float32, shape (k, j, i)
        Probabilities 0..1 of grey matter, white matter and CSF (array order of SimpleITK).
    index_to_ras : ndarray, shape (4, 4)
        Maps a voxel index ``(i, j, k, 1)`` (note: x-first) to MNI RAS coordinates in mm.
    spacing_mm : float
        Isotropic voxel size of the grid.
    """

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    index_to_ras: np.ndarray
    spacing_mm: float

    @property
    def ras_to_index(self) -> np.ndarray:
        """Inverse of :attr:`index_to_ras`."""
        return np.linalg.inv(self.index_to_ras)

    @property
    def intracranial(self) -> np.ndarray:
        """Bool (k, j, i): inside the skull (any tissue or CSF)."""
        return (self.gm + self.wm + self.csf) > 0.5


def _index_to_ras(image: sitk.Image) -> np.ndarray:
    # ITK geometry is LPS; MNI coordinates are RAS: flip the first two axes.
    direction = np.array(image.GetDirection()).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction * np.array(image.GetSpacing())[None, :]
    matrix[:3, 3] = image.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ matrix


@lru_cache(maxsize=1)
def load_template() -> Template:
    """Read the packaged template once per process (about 1 M voxels per tissue)."""
    arrays = {}
    image = None
    for tissue, name in TEMPLATE_FILES.items():
        image = sitk.ReadImage(str(TEMPLATE_DIR / name))
        arrays[tissue] = sitk.GetArrayFromImage(image).astype(np.float32) / 255.0
        arrays[tissue].setflags(write=False)
    return Template(**arrays, index_to_ras=_index_to_ras(image), spacing_mm=float(image.GetSpacing()[0]))
