"""Brain mask from the maximum intensity projection (MIP) of a CT perfusion study.

Over time, brain parenchyma stays a soft-tissue grey in the MIP (baseline ~30-35 HU plus a few HU
of enhancement), while air is far below, CSF lower, and bone and opacified vessels far above.
The mask is the largest connected soft-tissue region after stripping those, so it is what the
perfusion analysis deconvolves, what thresholding measures and what the predictor keeps.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .errors import InputError

#: Brain parenchyma range of the in-plane 3 x 3 mean of the MIP, in HU. The low end drops CSF
#: (~12 HU plus MIP noise bias), the high end bone and contrast-filled vessels.
BRAIN_MIP_RANGE_HU = (22.0, 100.0)
#: Unsmoothed MIP above this (HU) is a vessel or bone; such voxels are stripped with a margin.
VESSEL_MIP_HU = 120.0
#: In-plane radius (mm) of the opening that cuts thin soft-tissue bridges (scalp to brain).
OPENING_RADIUS_MM = 2.0


def _disk(radius_mm: float, spacing_yx: tuple[float, float]) -> np.ndarray:
    """In-plane disk structuring element (1, ny, nx) of ``radius_mm`` on a grid of ``spacing_yx``."""
    ry, rx = (max(0, int(np.floor(radius_mm / s))) for s in spacing_yx)
    y, x = np.mgrid[-ry : ry + 1, -rx : rx + 1]
    inside = (y * spacing_yx[0]) ** 2 + (x * spacing_yx[1]) ** 2 <= radius_mm**2
    return inside[None]


def _by_disk_rows(mask: np.ndarray, disk: np.ndarray, combine, filter1d) -> np.ndarray:
    """Erosion (``np.logical_and``, ``minimum_filter1d``) or dilation (``np.logical_or``,
    ``maximum_filter1d``) of ``mask`` (z, y, x) by a symmetric in-plane ``disk`` (1, ny, nx),
    voxels beyond the grid counting as False: the same result as scipy's binary erosion and
    dilation.

    The disk is the union of its rows, each a centred segment along x. Each segment length is
    one 1D filter (cost independent of the length), then the rows are combined shifted along y:
    the cost grows with the disk's height, not its area (at 0.43 mm pixels a 2 mm disk has 9
    rows but 69 elements), so it stays near linear in voxels as the resolution grows.
    """
    ry = disk.shape[1] // 2
    ny = mask.shape[1]
    out = np.full_like(mask, combine is np.logical_and)
    segments = {}
    for dy, row in zip(range(-ry, ry + 1), disk[0]):
        half = int(row.sum()) // 2
        if half not in segments:
            segment = filter1d(mask, 2 * half + 1, axis=2, mode="constant", cval=0)
            segments[half] = np.pad(segment, ((0, 0), (ry, ry), (0, 0)))  # False beyond the grid
        combine(out, segments[half][:, ry + dy : ry + dy + ny], out=out)
    return out


def _opening(mask: np.ndarray, disk: np.ndarray) -> np.ndarray:
    """``ndimage.binary_opening(mask, structure=disk)`` for a symmetric in-plane disk."""
    eroded = _by_disk_rows(mask, disk, np.logical_and, ndimage.minimum_filter1d)
    return _by_disk_rows(eroded, disk, np.logical_or, ndimage.maximum_filter1d)


def brain_mask_from_mip(mip_hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Brain parenchyma mask: skull, air, CSF and opacified vessels stripped.

    Parameters
    ----------
    mip_hu : (z, y, x) ndarray
        Maximum over time of the CT perfusion series, in HU.
    spacing : (3,) tuple of float
        Voxel size in mm, ``(z, y, x)``.

    Returns
    -------
    (z, y, x) ndarray of bool
        The largest connected soft-tissue region (empty when none is found).
    """
    mip = np.asarray(mip_hu, dtype=np.float32)
    if mip.ndim != 3:
        raise InputError(f"the MIP must be 3D (z, y, x), got shape {mip.shape}")
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"spacing must be three positive sizes in mm (z, y, x), got {spacing}")
    if not np.all(np.isfinite(mip)):
        raise InputError("the MIP holds NaN or infinite values: check the CT perfusion export")
    smooth = ndimage.uniform_filter(mip, size=(1, 3, 3), mode="nearest")
    low, high = BRAIN_MIP_RANGE_HU
    tissue = (smooth >= low) & (smooth <= high)
    vessel = ndimage.binary_dilation(mip > VESSEL_MIP_HU, structure=np.ones((1, 3, 3), bool))
    tissue &= ~vessel
    disk = _disk(OPENING_RADIUS_MM, (spacing[1], spacing[2]))
    if disk.size > 1:
        tissue = _opening(tissue, disk)
    labels, count = ndimage.label(tissue)
    if count == 0:
        return tissue
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (1 + int(np.argmax(sizes)))
