"""Write the label map (0 background, 1 brain, 2 penumbra, 3 core) as NIfTI."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import imageio
from ..imageio import Geometry


def write_label_nifti(labels: np.ndarray, geometry: Geometry, path: str | os.PathLike) -> Path:
    """Write ``labels`` (z, y, x) as a uint8 ``.nii.gz`` with ``geometry``, atomically."""
    return imageio.write_array(np.asarray(labels).astype(np.uint8), geometry, path)
