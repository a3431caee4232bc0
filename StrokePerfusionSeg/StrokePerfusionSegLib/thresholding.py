"""RAPID-like threshold segmentation of ischemic core and penumbra (needs no trained model).

Rules (every threshold is a field of :class:`ThresholdParams`):

1. hypoperfused = brain & (Tmax > ``tmax_s``), then islands smaller than ``min_island_ml``
   are dropped.
2. The midline splits the brain into two hemispheres (:func:`find_midline`). The affected
   hemisphere is the one holding more hypoperfused tissue; the reference CBF is the mean CBF
   of the *other* hemisphere's brain voxels that are not hypoperfused.
3. core = hypoperfused & (CBF / reference < ``core_rcbf``), then core islands smaller than
   ``min_island_ml`` are dropped (they stay penumbra). Core is restricted to hypoperfused
   tissue because a low CBF with a normal Tmax is, on CTP, mostly CSF partial volume or noise
   in white matter rather than infarct.
4. penumbra = hypoperfused - core.

The output uses the network's labels: 0 background, 1 brain, 2 penumbra, 3 core.
Islands are 3D connected components with full (26-) connectivity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .labels import BRAIN, CORE, PENUMBRA
from .volumes import check_spacing, voxel_volume_ml

#: How the midline is found: the brain mask's principal in-plane axis through its centre of
#: mass (tilt-corrected), the image y axis through the centre of mass, or the grid's middle
#: column.
MIDLINE_METHODS = ("principal_axis", "centre_of_mass", "image_centre")


@dataclass(frozen=True)
class ThresholdParams:
    """Thresholds of the RAPID-like method.

    Attributes
    ----------
    core_rcbf : float
        Core where CBF is below this fraction of the contralateral mean (0.30 = 30 %).
    tmax_s : float
        Hypoperfused where Tmax is above this, in s.
    min_island_ml : float
        Connected hypoperfused or core regions smaller than this (ml) are dropped.
    midline : str
        One of :data:`MIDLINE_METHODS`.
    max_tilt_deg : float
        ``principal_axis`` falls back to the image y axis when the principal axis is tilted
        further than this from it, or when the brain is too round for the axis to be defined.
    """

    core_rcbf: float = 0.30
    tmax_s: float = 6.0
    min_island_ml: float = 0.2
    midline: str = "principal_axis"
    max_tilt_deg: float = 30.0

    @property
    def summary(self) -> str:
        """The rules in one line, for reports and tables."""
        return f"rCBF < {self.core_rcbf * 100:g} %, Tmax > {self.tmax_s:g} s"

    def __post_init__(self):
        if not 0.0 < self.core_rcbf <= 1.0:
            raise InputError(f"core_rcbf {self.core_rcbf} out of range: use a fraction in (0, 1], e.g. 0.3")
        if not self.tmax_s > 0.0:
            raise InputError(f"tmax_s {self.tmax_s} must be a positive delay in s, e.g. 6")
        if not self.min_island_ml >= 0.0:
            raise InputError(f"min_island_ml {self.min_island_ml} must be >= 0 ml")
        if self.midline not in MIDLINE_METHODS:
            raise InputError(f"unknown midline method '{self.midline}': use one of {', '.join(MIDLINE_METHODS)}")
        if not 0.0 <= self.max_tilt_deg <= 90.0:
            raise InputError(f"max_tilt_deg {self.max_tilt_deg} out of range: use 0..90 degrees")


@dataclass(frozen=True)
class Midline:
    """The mid-sagittal line in every axial slice, in mm of the ``(y, x)`` array axes.

    Attributes
    ----------
    centre_mm : (2,) tuple of float
        A point on the line, ``(y, x)`` mm from the centre of voxel (0, 0).
    direction : (2,) tuple of float
        Unit vector along the line, ``(y, x)``.
    method : str
        The method that placed it (a fallback may differ from the one asked for).
    """

    centre_mm: tuple[float, float]
    direction: tuple[float, float]
    method: str

    @property
    def normal(self) -> np.ndarray:
        """Unit ``(y, x)`` vector across the line, pointing to increasing x."""
        normal = np.array([-self.direction[1], self.direction[0]])
        return normal if normal[1] > 0 or (normal[1] == 0 and normal[0] > 0) else -normal

    def signed_distance_mm(self, shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
        """Signed in-plane distance (mm) of every voxel centre of a ``(z, y, x)`` grid to the line."""
        y = (np.arange(shape[1]) * spacing[1] - self.centre_mm[0])[:, None]
        x = (np.arange(shape[2]) * spacing[2] - self.centre_mm[1])[None, :]
        plane = y * self.normal[0] + x * self.normal[1]
        return np.broadcast_to(plane, tuple(shape))


@dataclass(frozen=True)
class ThresholdResult:
    """Labels and the figures behind them.

    Attributes
    ----------
    labels : ndarray of uint8, shape (z, y, x)
    reference_cbf : float
        Mean CBF of the normal contralateral tissue, ml/100g/min.
    affected_side : str or None
        ``"+x"`` or ``"-x"``: the array side of the midline holding more hypoperfusion (which
        patient side that is depends on the image direction); None without hypoperfusion.
    midline : Midline
    """

    labels: np.ndarray
    reference_cbf: float
    affected_side: str | None
    midline: Midline


def find_midline(
    brain_mask: np.ndarray, spacing: Sequence[float], method: str = "principal_axis", max_tilt_deg: float = 30.0
) -> Midline:
    """Place the mid-sagittal line of a brain mask (one line for all slices).

    Parameters
    ----------
    brain_mask : ndarray of bool, shape (z, y, x)
    spacing : (3,) sequence of float
        Voxel size in mm, ``(z, y, x)``.
    method : str
        One of :data:`MIDLINE_METHODS`.
    max_tilt_deg : float
        See :class:`ThresholdParams`.
    """
    spacing = check_spacing(spacing)
    # Moments of the in-plane voxel positions from the voxel count of each (y, x) column: one
    # pass over the mask, no coordinate list of every brain voxel.
    counts = np.count_nonzero(brain_mask, axis=0).astype(np.float64)
    total = counts.sum()
    if total == 0:
        raise InputError("the brain mask is empty: check the MIP or give a brain mask")
    y_mm = np.arange(counts.shape[0]) * spacing[1]
    x_mm = np.arange(counts.shape[1]) * spacing[2]
    centre = np.array([counts.sum(axis=1) @ y_mm, counts.sum(axis=0) @ x_mm]) / total
    if method == "image_centre":
        middle = ((brain_mask.shape[1] - 1) * spacing[1] / 2, (brain_mask.shape[2] - 1) * spacing[2] / 2)
        return Midline(tuple(float(v) for v in middle), (1.0, 0.0), method)
    if method == "principal_axis" and total >= 3:
        dy, dx = y_mm - centre[0], x_mm - centre[1]
        cross = dy @ counts @ dx
        covariance = np.array([[counts.sum(axis=1) @ dy**2, cross], [cross, counts.sum(axis=0) @ dx**2]]) / (total - 1)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        # The axis closest to the image y (anterior-posterior) axis is the midline candidate.
        candidate = int(np.argmax(np.abs(eigenvectors[0])))
        axis = eigenvectors[:, candidate] * np.sign(eigenvectors[0, candidate])
        tilt = np.degrees(np.arccos(np.clip(abs(axis[0]), 0.0, 1.0)))
        elongated = eigenvalues.max() > 1.1 * eigenvalues.min()
        if elongated and tilt <= max_tilt_deg:
            return Midline(tuple(float(v) for v in centre), (float(axis[0]), float(axis[1])), method)
    return Midline(tuple(float(v) for v in centre), (1.0, 0.0), "centre_of_mass")


def remove_small_islands(mask: np.ndarray, spacing: Sequence[float], min_ml: float) -> np.ndarray:
    """``mask`` without its 26-connected components smaller than ``min_ml`` ml."""
    from scipy import ndimage  # here, not at import: the CLI's parser reads ThresholdParams

    mask = np.asarray(mask, dtype=bool)
    if min_ml <= 0 or not mask.any():
        return mask
    components, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, bool))
    sizes_ml = np.bincount(components.ravel(), minlength=count + 1) * voxel_volume_ml(spacing)
    keep = sizes_ml >= min_ml
    keep[0] = False
    return keep[components]


def _check_inputs(cbf, tmax, brain_mask):
    arrays = {"cbf": np.asarray(cbf), "tmax": np.asarray(tmax), "brain mask": np.asarray(brain_mask)}
    for name, array in arrays.items():
        if array.ndim == 4 and array.shape[-1] == 3:
            raise InputError(
                f"{name} is colour-coded (RGB): thresholding needs the scalar map in its unit "
                "(load the scalar export, or decode it with colourcoding.decode_colour_map)"
            )
        if array.ndim != 3:
            raise InputError(f"{name} has shape {array.shape}: give a 3D (z, y, x) volume")
    shapes = {array.shape for array in arrays.values()}
    if len(shapes) > 1:
        listing = ", ".join(f"{name} {array.shape}" for name, array in arrays.items())
        raise InputError(f"thresholding inputs differ in shape: {listing}; resample them to one grid")
    for name in ("cbf", "tmax"):
        if not np.isfinite(arrays[name]).all():
            raise InputError(f"{name} holds NaN/inf voxels: replace them (e.g. with 0) before thresholding")
    return arrays["cbf"].astype(np.float32), arrays["tmax"].astype(np.float32), arrays["brain mask"].astype(bool)


def threshold_analysis(
    cbf: np.ndarray,
    tmax: np.ndarray,
    brain_mask: np.ndarray,
    spacing: Sequence[float],
    params: ThresholdParams = ThresholdParams(),
) -> ThresholdResult:
    """RAPID-like segmentation with its reference CBF, affected side and midline.

    Parameters
    ----------
    cbf : ndarray, shape (z, y, x)
        Cerebral blood flow, ml/100g/min.
    tmax : ndarray, shape (z, y, x)
        Tmax, s.
    brain_mask : ndarray of bool, shape (z, y, x)
        Brain parenchyma (e.g. :func:`~StrokePerfusionSegLib.brainmask.brain_mask_from_mip`).
    spacing : (3,) sequence of float
        Voxel size in mm, ``(z, y, x)``.
    params : ThresholdParams

    Returns
    -------
    ThresholdResult
    """
    spacing = check_spacing(spacing)
    cbf, tmax, brain = _check_inputs(cbf, tmax, brain_mask)
    midline = find_midline(brain, spacing, params.midline, params.max_tilt_deg)

    hypoperfused = remove_small_islands(brain & (tmax > params.tmax_s), spacing, params.min_island_ml)
    side = midline.signed_distance_mm(brain.shape, spacing)
    hemispheres = {"+x": brain & (side > 0), "-x": brain & (side < 0)}
    hypoperfused_count = {name: np.count_nonzero(hypoperfused & mask) for name, mask in hemispheres.items()}
    if any(hypoperfused_count.values()):
        affected = max(hypoperfused_count, key=hypoperfused_count.get)
        healthy = "-x" if affected == "+x" else "+x"
        normal = hemispheres[healthy] & ~hypoperfused
    else:
        affected, normal = None, brain
    if not normal.any():  # e.g. a mask covering one hemisphere only
        normal = brain & ~hypoperfused
    if not normal.any():
        raise InputError(
            "no normally perfused brain to take the reference CBF from: check the Tmax map and "
            f"the Tmax threshold ({params.tmax_s} s)"
        )
    reference_cbf = float(cbf[normal].mean())
    if reference_cbf <= 0:
        raise InputError(
            f"the mean CBF of normal brain is {reference_cbf:.3g} ml/100g/min: "
            "check that the CBF map is in ml/100g/min"
        )

    core = remove_small_islands(
        hypoperfused & (cbf < params.core_rcbf * reference_cbf), spacing, params.min_island_ml
    )
    labels = np.zeros(brain.shape, dtype=np.uint8)
    labels[brain] = BRAIN
    labels[hypoperfused] = PENUMBRA
    labels[core] = CORE
    return ThresholdResult(labels, reference_cbf, affected, midline)


def threshold_segmentation(
    cbf: np.ndarray,
    tmax: np.ndarray,
    brain_mask: np.ndarray,
    spacing: Sequence[float],
    params: ThresholdParams = ThresholdParams(),
) -> np.ndarray:
    """Labels ``(z, y, x)`` uint8 (0 background, 1 brain, 2 penumbra, 3 core); see
    :func:`threshold_analysis` for the parameters and the figures behind them."""
    return threshold_analysis(cbf, tmax, brain_mask, spacing, params).labels
