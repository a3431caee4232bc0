"""Image geometry and NIfTI/NRRD reading and writing through SimpleITK.

Arrays are ``(z, y, x)`` (3D), ``(t, z, y, x)`` (4D) or ``(z, y, x, 3)`` (RGB); geometry is
kept beside them in a :class:`Geometry` (ITK order, LPS). Every write goes to a temporary file
in the target folder and is renamed into place, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .atomic import write_file_atomically
from .errors import InputError

READABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass(frozen=True)
class Geometry:
    """Where a 3D voxel grid lies in patient space.

    Attributes
    ----------
    spacing : (3,) tuple of float
        Voxel size in mm, ITK order ``(x, y, z)``.
    origin : (3,) tuple of float
        Centre of the first voxel in mm, LPS.
    direction : (9,) tuple of float
        Row-major 3x3 direction cosines (ITK), columns are the x, y, z axes in LPS.
    """

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Voxel size in mm in numpy array-axis order ``(z, y, x)``."""
        return (self.spacing[2], self.spacing[1], self.spacing[0])

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in ml (mm^3 / 1000)."""
        return float(np.prod(self.spacing)) / 1000.0

    @classmethod
    def from_image(cls, image: sitk.Image) -> "Geometry":
        """Geometry of a 3D image, or of the first three axes of a 4D image."""
        dim = image.GetDimension()
        if dim not in (3, 4):
            raise InputError(f"expected a 3D or 4D image, got {dim}D")
        spacing = tuple(float(s) for s in image.GetSpacing()[:3])
        origin = tuple(float(o) for o in image.GetOrigin()[:3])
        direction = np.array(image.GetDirection(), dtype=float).reshape(dim, dim)[:3, :3]
        return cls(spacing, origin, tuple(float(d) for d in direction.ravel()))

    def apply(self, image: sitk.Image) -> sitk.Image:
        """Set this geometry on a 3D image (or the spatial part of a 4D one), in place."""
        if image.GetDimension() == 3:
            image.SetSpacing(self.spacing)
            image.SetOrigin(self.origin)
            image.SetDirection(self.direction)
        else:
            image.SetSpacing(self.spacing + (image.GetSpacing()[3],))
            image.SetOrigin(self.origin + (0.0,))
            direction = np.eye(4)
            direction[:3, :3] = np.array(self.direction).reshape(3, 3)
            image.SetDirection(tuple(direction.ravel()))
        return image

    def matches(self, other: "Geometry", tolerance_mm: float = 1e-3) -> bool:
        """True when both grids have the same spacing, origin and direction (within tolerance)."""
        return (
            np.allclose(self.spacing, other.spacing, atol=tolerance_mm)
            and np.allclose(self.origin, other.origin, atol=tolerance_mm)
            and np.allclose(self.direction, other.direction, atol=1e-4)
        )


def array_to_image(array: np.ndarray, geometry: Geometry, *, dt_s: float | None = None) -> sitk.Image:
    """Wrap a ``(z, y, x)``, ``(z, y, x, 3)`` RGB or ``(t, z, y, x)`` array as a SimpleITK image.

    ``dt_s`` (frame interval in s) is required for 4D arrays and stored as the 4th spacing.
    """
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[-1] == 3 and array.dtype == np.uint8:
        image = sitk.GetImageFromArray(array, isVector=True)
    elif array.ndim == 4:
        if dt_s is None:
            raise ValueError("a 4D CTP image needs its frame interval dt (s)")
        image = sitk.GetImageFromArray(array, isVector=False)
        image.SetSpacing((1.0, 1.0, 1.0, float(dt_s)))
    elif array.ndim == 3:
        # isVector=False: SimpleITK would otherwise take a short last axis for colour components.
        image = sitk.GetImageFromArray(array, isVector=False)
    else:
        raise ValueError(f"cannot store an array of shape {array.shape} as an image")
    return geometry.apply(image)


def resample_onto(
    array: np.ndarray, source: Geometry, target: Geometry, shape: tuple[int, int, int]
) -> np.ndarray:
    """Resample a ``(z, y, x)`` or RGB ``(z, y, x, 3)`` array from ``source`` onto ``target``.

    Scalar maps are interpolated linearly; colour-coded images take the nearest voxel, since
    mixing colours would invent values that are not in the colour table. Points outside the
    source are 0. Callers say so to the user: resampling is never silent.
    """
    moving = array_to_image(array, source)
    reference = sitk.Image([int(shape[2]), int(shape[1]), int(shape[0])], sitk.sitkUInt8)
    target.apply(reference)
    interpolator = sitk.sitkNearestNeighbor if array.ndim == 4 else sitk.sitkLinear
    resampled = sitk.Resample(moving, reference, sitk.Transform(), interpolator, 0.0, moving.GetPixelID())
    return sitk.GetArrayFromImage(resampled)


def _nifti1_data_end(header: bytes) -> int | None:
    """Byte offset where a NIfTI-1 file's voxel data ends, or None for another format."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            dims = struct.unpack(order + "8h", header[40:56])
            bits_per_voxel = struct.unpack(order + "h", header[72:74])[0]
            data_offset = int(struct.unpack(order + "f", header[108:112])[0])
            voxels = int(np.prod([max(d, 1) for d in dims[1 : dims[0] + 1]], dtype=np.int64))
            return data_offset + voxels * bits_per_voxel // 8
    return None


#: Frame intervals (s) a CT perfusion series plausibly has; others are a wrong header or unit.
PLAUSIBLE_FRAME_INTERVAL_S = (0.1, 10.0)
#: NIfTI-1 ``xyzt_units`` time codes -> factor to seconds (0, unknown, is taken as seconds).
_NIFTI_TIME_UNITS = {0: 1.0, 8: 1.0, 16: 1e-3, 24: 1e-6}


def _nifti1_header(path: Path) -> bytes:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as stream:
        return stream.read(348)


def frame_interval_s(path: str | os.PathLike, image: sitk.Image) -> float | None:
    """The frame interval (s) the 4D file ``path`` (read as ``image``) declares; None if none.

    For NIfTI-1 the header's pixdim[4] in its time unit (``xyzt_units``: s, ms or us), read from
    the file itself: the NIfTI library under ITK turns a zero or negative pixdim[4] into 1, in
    the spacing and in the metadata alike, so a missing interval would pass for 1 s. Other
    formats: the image's 4th spacing.
    """
    header = _nifti1_header(Path(path))
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            interval = struct.unpack(order + "f", header[92:96])[0]
            factor = _NIFTI_TIME_UNITS.get(header[123] & 0x38)
            return float(interval) * factor if interval > 0 and factor is not None else None
    return float(image.GetSpacing()[3])


def check_complete(path: Path) -> None:
    """Raise :class:`InputError` when a NIfTI file is shorter than its header says.

    ITK reads a truncated file (an interrupted copy) without complaint and fills the rest with
    zeros, so a half-copied study would be segmented as if complete. For ``.nii.gz`` the gzip
    trailer's uncompressed size is compared with the header's, which costs no decompression.
    """
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        with gzip.open(path, "rb") as stream:
            try:
                expected = _nifti1_data_end(stream.read(348))
            except (OSError, EOFError):
                expected = -1
        with open(path, "rb") as raw:
            raw.seek(-4, os.SEEK_END)
            stored = struct.unpack("<I", raw.read(4))[0]
        complete = expected is None or (expected >= 0 and stored == expected % 2**32)
    elif name.endswith(".nii"):
        with open(path, "rb") as raw:
            expected = _nifti1_data_end(raw.read(348))
        complete = expected is None or path.stat().st_size >= expected
    else:
        return
    if not complete:
        raise InputError(f"{path} is truncated or damaged (an interrupted copy?): copy it again")


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read a NIfTI/NRRD/MetaImage file; an :class:`InputError` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    if not str(path).lower().endswith(READABLE_SUFFIXES):
        raise InputError(
            f"{path.name} is not a NIfTI/NRRD/MetaImage file: give a file ending in "
            + ", ".join(READABLE_SUFFIXES)
        )
    check_complete(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise InputError(f"cannot read {path}: {first_line}; is the file complete?") from None


def read_array(path: str | os.PathLike) -> tuple[np.ndarray, Geometry, sitk.Image]:
    """Read an image file as ``(array, geometry, image)``; see :func:`read_image`."""
    image = read_image(path)
    return sitk.GetArrayFromImage(image), Geometry.from_image(image), image


def write_image(image: sitk.Image, path: str | os.PathLike, *, compress: bool = True) -> Path:
    """Write ``image`` atomically: to a temporary file beside ``path``, then rename."""
    return write_file_atomically(path, lambda temporary: sitk.WriteImage(image, str(temporary), compress))


def write_array(
    array: np.ndarray, geometry: Geometry, path: str | os.PathLike, *, dt_s: float | None = None
) -> Path:
    """Write an array with its geometry; see :func:`array_to_image` and :func:`write_image`."""
    return write_image(array_to_image(array, geometry, dt_s=dt_s), path)
