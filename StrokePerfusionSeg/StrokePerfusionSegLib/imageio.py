"""Image geometry and NIfTI/NRRD reading and writing through SimpleITK.

Arrays are ``(z, y, x)`` (3D), ``(t, z, y, x)`` (4D) or ``(z, y, x, 3)`` (RGB); geometry is
kept beside them in a :class:`Geometry` (ITK order, LPS). Every write goes to a temporary file
in the target folder and is renamed into place, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .atomic import write_file_atomically
from .errors import InputError

try:  # ISA-L (wheels for most platforms, not all): deflate ~8x zlib's speed at level 1, inflate ~1.4x ITK's
    from isal import igzip
except ImportError:
    igzip = None
#: gzip writer of ``.nii.gz`` files.
GzipFile = gzip.GzipFile if igzip is None else igzip.GzipFile

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
        return not self.differences(other, tolerance_mm)

    def differences(self, other: "Geometry", tolerance_mm: float = 1e-3) -> list[str]:
        """What differs from ``other``, for messages: e.g. ``["direction (1, 0, 0, ...) vs (-1, 0, 0, ...)"]``."""
        found = []
        for what, mine, theirs, tolerance in (
            ("spacing", self.spacing, other.spacing, tolerance_mm),
            ("origin", self.origin, other.origin, tolerance_mm),
            ("direction", self.direction, other.direction, 1e-4),
        ):
            if not np.allclose(mine, theirs, atol=tolerance):
                found.append(f"{what} {tuple(round(v, 3) for v in mine)} vs {tuple(round(v, 3) for v in theirs)}")
        return found


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


#: NIfTI datatype codes of floating-point voxels, with their numpy type (``<`` replaced per file).
_NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8"}
#: NIfTI datatype codes of scalar voxels, with their numpy type.
_NIFTI_SCALAR_TYPES = {2: "u1", 4: "i2", 8: "i4", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8",
                       **_NIFTI_FLOAT_TYPES}
#: SimpleITK's scalar pixel types, with their numpy type.
_ITK_SCALAR_TYPES = {
    sitk.sitkUInt8: "u1", sitk.sitkInt8: "i1", sitk.sitkUInt16: "u2", sitk.sitkInt16: "i2", sitk.sitkUInt32: "u4",
    sitk.sitkInt32: "i4", sitk.sitkUInt64: "u8", sitk.sitkInt64: "i8", sitk.sitkFloat32: "f4", sitk.sitkFloat64: "f8",
}
#: Leading bytes of formats that are sometimes given a NIfTI name by mistake.
_FOREIGN_SIGNATURES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"PK\x03\x04": "a ZIP archive",
    b"%PDF": "a PDF document",
}
_CHUNK_BYTES = 1 << 22


@dataclass(frozen=True)
class _NiftiLayout:
    """Where a NIfTI file's voxels lie and how they are stored."""

    data_offset: int
    data_bytes: int
    shape: tuple[int, ...]  # NIfTI order (x, y, z, t, ...)
    float_dtype: str | None  # numpy dtype of float voxels, None for integer/colour voxels
    voxel_size: tuple[float, ...]  # pixdim[1..3] as stored (ITK reads 0 and NaN as 1 mm)
    dtype: str | None  # numpy dtype of scalar voxels as stored, None for colour/complex voxels
    scaled: bool  # scl_slope/scl_inter other than none (ITK then rescales the voxels)


def _nifti_layout(header: bytes) -> _NiftiLayout | None:
    """Voxel layout from a NIfTI-1 or NIfTI-2 header, or None for another format."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            dims = struct.unpack(order + "8h", header[40:56])
            datatype, bits_per_voxel = struct.unpack(order + "2h", header[70:74])
            pixdim = struct.unpack(order + "3f", header[80:92])
            data_offset = int(struct.unpack(order + "f", header[108:112])[0])
            slope, intercept = struct.unpack(order + "2f", header[112:120])
        elif len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:
            datatype, bits_per_voxel = struct.unpack(order + "2h", header[12:16])
            dims = struct.unpack(order + "8q", header[16:80])
            pixdim = struct.unpack(order + "3d", header[112:136])
            data_offset = int(struct.unpack(order + "q", header[168:176])[0])
            slope, intercept = struct.unpack(order + "2d", header[176:192])
        else:
            continue
        if not 0 < dims[0] <= 7:
            return None  # ITK refuses this header itself, naming the file
        shape = tuple(max(int(d), 1) for d in dims[1 : dims[0] + 1])
        data_bytes = int(np.prod(shape, dtype=np.float64)) * bits_per_voxel // 8
        float_type = _NIFTI_FLOAT_TYPES.get(datatype)
        scalar_type = _NIFTI_SCALAR_TYPES.get(datatype)
        return _NiftiLayout(
            data_offset, data_bytes, shape, order + float_type if float_type else None,
            tuple(pixdim[: min(dims[0], 3)]), order + scalar_type if scalar_type else None,
            not (slope in (0.0, 1.0) and intercept == 0.0),  # slope 0 is none (NIfTI); NaN counts as scaled
        )
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


def _open_stream(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _damaged(path: Path) -> InputError:
    return InputError(f"{path} is truncated or damaged (an interrupted copy?): copy it again")


def _check_nifti_header(path: Path) -> _NiftiLayout | None:
    """Parse a NIfTI header and check its size and voxel size before any voxel is read."""
    try:
        with _open_stream(path) as stream:
            layout = _nifti_layout(stream.read(544))
    except (OSError, EOFError, zlib.error):
        raise _damaged(path) from None
    if layout is not None:
        _check_memory(path, layout.data_bytes, layout.shape)
        if not all(math.isfinite(size) and size != 0 for size in layout.voxel_size):
            raise InputError(
                f"{path} has voxel size {layout.voxel_size} mm in its header (pixdim), which ITK would "
                "read as 1 mm: fix the header or export the map again"
            )
    return layout


def _read_matches_stored(path: Path, layout: _NiftiLayout, image: sitk.Image) -> bool:
    """True when ITK's voxels are byte for byte the ones a ``.nii.gz`` stores, by its gzip CRC.

    The CRC of the header bytes and of ITK's array must equal the gzip trailer's: then the
    stream is intact and ITK changed no value (it would have zeroed NaN/Inf). It costs one CRC
    over memory instead of a second decompression. False also for legitimate differences
    (big-endian data, scaled voxels, several gzip members): the caller then streams the file.
    """
    values = sitk.GetArrayViewFromImage(image)
    if values.nbytes != layout.data_bytes or values.dtype.byteorder == ">":
        return False
    try:
        with _open_stream(path) as stream:
            crc = zlib.crc32(stream.read(layout.data_offset))
        with open(path, "rb") as raw:
            raw.seek(-8, os.SEEK_END)
            stored_crc, stored_size = struct.unpack("<II", raw.read(8))
    except (OSError, EOFError, zlib.error):
        return False
    crc = zlib.crc32(values, crc)
    return crc == stored_crc and (layout.data_offset + layout.data_bytes) % 2**32 == stored_size


def _verify_nifti_data(path: Path, layout: _NiftiLayout) -> None:
    """Read a NIfTI file's voxels as stored and refuse damage ITK would hide.

    ITK fills a truncated file with zeros, does not check the gzip CRC, and turns NaN and
    infinite voxels into 0, so a damaged map would be segmented as "no lesion". This reads the
    raw stream once, in chunks (no second copy of the image in memory): the gzip CRC and
    length are verified at its end, the data length is compared with the header's, and
    floating-point voxels are checked to be finite.
    """
    non_finite = 0
    try:
        with _open_stream(path) as stream:
            stream.seek(layout.data_offset)
            remaining = layout.data_bytes
            while remaining > 0:
                chunk = stream.read(min(_CHUNK_BYTES, remaining))  # a multiple of 8 bytes but the last
                if len(chunk) < min(_CHUNK_BYTES, remaining):
                    raise _damaged(path)
                remaining -= len(chunk)
                if layout.float_dtype:
                    values = np.frombuffer(chunk, dtype=layout.float_dtype)
                    non_finite += int(values.size - np.count_nonzero(np.isfinite(values)))
            while stream.read(_CHUNK_BYTES):  # to the end, where gzip checks its CRC and length
                pass
    except (OSError, EOFError, zlib.error):
        raise _damaged(path) from None
    _refuse_non_finite(path, non_finite)


def _refuse_non_finite(path: Path, count: int) -> None:
    if count:
        raise InputError(
            f"{path} holds {count} NaN or infinite voxel(s): "
            "export the map again with finite values (e.g. 0 outside the brain)"
        )


def _refuse_foreign_format(path: Path) -> None:
    """An :class:`InputError` when a file named like NIfTI is really something else."""
    with open(path, "rb") as raw:
        head = raw.read(132)
    kind = next((k for signature, k in _FOREIGN_SIGNATURES.items() if head.startswith(signature)), None)
    if not head:
        kind = "empty (0 bytes)"
    elif kind is None and len(head) >= 132 and head[128:132] == b"DICM":
        kind = "a DICOM file"
    elif kind is None and path.name.lower().endswith(".nii.gz") and not head.startswith(b"\x1f\x8b"):
        kind = "not gzip-compressed"
    if kind is not None:
        raise InputError(f"{path} is {kind}, not the image its name says: give the NIfTI/NRRD file itself")


def memory_budget_bytes() -> int:
    """Largest image (bytes of voxels) a read may allocate: half of this computer's memory."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX (Windows): assume a 16 GiB machine
        physical = 16 << 30
    return int(physical) // 2


def _check_header(path: Path) -> sitk.ImageFileReader:
    """Check dimension, size, spacing and memory from the header, before any voxel is read.

    Returns the reader, holding the image information ITK read.
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise InputError(f"cannot read {path}: {first_line}; is the file complete?") from None
    dimension, size = reader.GetDimension(), reader.GetSize()
    if dimension not in (3, 4):
        raise InputError(
            f"{path} is a {dimension}D image (size {size}): give a 3D map (x, y, z) or a 4D CTP series (x, y, z, t)"
        )
    spacing = reader.GetSpacing()
    if not all(math.isfinite(s) and s > 0 for s in spacing[:3]):
        raise InputError(f"{path} has voxel spacing {spacing} mm in its header: fix the header (positive mm)")
    bits = int(re.search(r"(\d+)-bit", sitk.GetPixelIDValueAsString(reader.GetPixelID())).group(1))
    voxel_bytes = int(np.prod(size, dtype=np.float64)) * reader.GetNumberOfComponents() * bits // 8
    _check_memory(path, voxel_bytes, size)
    return reader


def _check_memory(path: Path, voxel_bytes: int, size: tuple[int, ...]) -> None:
    budget = memory_budget_bytes()
    if voxel_bytes > budget:
        raise InputError(
            f"{path} claims {' x '.join(map(str, size))} voxels ({voxel_bytes / 2**30:.1f} GiB), more than this computer can hold "
            f"({budget / 2**30:.1f} GiB allowed): check the file (a damaged header?), or crop it"
        )


def _inflated_nifti(path: Path, layout: _NiftiLayout, header: sitk.ImageFileReader) -> np.ndarray | None:
    """The voxels of a plain scalar ``.nii.gz`` inflated by ISA-L, read-only; None to leave it to ITK.

    They are the voxels ITK would read (stored type, no scaling), inflated in 0.7x ITK's time,
    the gzip CRC and length checked by ISA-L (no second pass over them as in
    :func:`_read_matches_stored`). Scaled, big-endian, colour or otherwise unusual voxels are
    left to ITK, and so are files whose compressed and inflated bytes would not both fit in
    :func:`memory_budget_bytes`.
    """
    plain = (
        igzip is not None and path.name.lower().endswith(".gz") and layout.dtype is not None and layout.dtype[0] == "<"
        and not layout.scaled and header.GetNumberOfComponents() == 1 and tuple(header.GetSize()) == layout.shape
        and _ITK_SCALAR_TYPES.get(header.GetPixelID()) == layout.dtype[1:]
    )
    if not plain or path.stat().st_size + layout.data_offset + layout.data_bytes > memory_budget_bytes():
        return None
    try:
        stored = igzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error):
        raise _damaged(path) from None
    if len(stored) < layout.data_offset + layout.data_bytes:
        raise _damaged(path)  # ITK would fill the rest with zeros
    voxels = np.frombuffer(stored, layout.dtype, layout.data_bytes // np.dtype(layout.dtype).itemsize,
                           layout.data_offset).reshape(tuple(reversed(layout.shape)))
    if layout.float_dtype and not (np.isfinite(voxels.min()) and np.isfinite(voxels.max())):
        _refuse_non_finite(path, sum(int(plane.size - np.count_nonzero(np.isfinite(plane))) for plane in voxels))
    return voxels


def _checked_header(path: str | os.PathLike) -> tuple[Path, _NiftiLayout | None, sitk.ImageFileReader]:
    """The checks :func:`read_image` makes before reading any voxel: path, NIfTI layout, ITK's header."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    if not str(path).lower().endswith(READABLE_SUFFIXES):
        raise InputError(
            f"{path.name} is not a NIfTI/NRRD/MetaImage file: give a file ending in "
            + ", ".join(READABLE_SUFFIXES)
        )
    _refuse_foreign_format(path)
    layout = _check_nifti_header(path) if str(path).lower().endswith((".nii", ".nii.gz")) else None
    return path, layout, _check_header(path)


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read a 3D or 4D NIfTI/NRRD/MetaImage file, refusing damaged ones before it is used.

    The header is checked before any voxel is read (3D or 4D, positive spacing, size within
    :func:`memory_budget_bytes`). NIfTI voxels must be the stored ones: for ``.nii.gz`` the
    gzip CRC is taken over ITK's array (:func:`_read_matches_stored`); when it differs, or for
    ``.nii``, the stored data is streamed to name the fault (:func:`_verify_nifti_data`:
    damage, or NaN/Inf that ITK would have read as 0). Other formats keep NaN/Inf, so their
    floating-point voxels are checked after reading.

    Raises
    ------
    InputError
        Naming the file and the fix: missing, not an image, damaged, 2D/5D, too large, NaN/Inf.
    """
    path, layout, _ = _checked_header(path)
    return _read_checked_image(path, layout)


def read_voxels(path: str | os.PathLike) -> tuple[np.ndarray, sitk.ImageFileReader]:
    """The voxels of an image file as an array, and ITK's header of it; the checks of :func:`read_image`.

    For a caller that needs the array and the geometry but no :class:`SimpleITK.Image`: a plain
    scalar ``.nii.gz`` is inflated by ISA-L straight into the array (:func:`_inflated_nifti`;
    the 512 x 512 x 20 x 40 int16 series of the ``perfusion`` command in about 0.7x the time of
    ITK's read and CRC check), anything else is read by ITK.

    Returns
    -------
    voxels : ndarray, (z, y, x) or (t, z, y, x)
        As stored (not copied: may be read-only).
    header : SimpleITK.ImageFileReader
        The file's image information: ``GetDimension``, ``GetSize``, ``GetSpacing``,
        ``GetOrigin``, ``GetDirection`` as the image would have them (for :meth:`Geometry.from_image`).
    """
    path, layout, header = _checked_header(path)
    voxels = _inflated_nifti(path, layout, header) if layout is not None else None
    if voxels is None:
        voxels = sitk.GetArrayFromImage(_read_checked_image(path, layout))
    return voxels, header


def _read_checked_image(path: Path, layout: _NiftiLayout | None) -> sitk.Image:
    """ITK's read of a file that passed :func:`_checked_header`, its voxels checked (see :func:`read_image`)."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        if layout is not None:
            _verify_nifti_data(path, layout)  # names the damage when there is one
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise InputError(f"cannot read {path}: {first_line}; is the file complete?") from None
    if layout is not None:
        gzipped = path.name.lower().endswith(".gz")
        if not (gzipped and _read_matches_stored(path, layout, image)):
            _verify_nifti_data(path, layout)
        return image
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        values = sitk.GetArrayViewFromImage(image)
        _refuse_non_finite(path, sum(int(plane.size - np.count_nonzero(np.isfinite(plane))) for plane in values))
    return image


def read_array(path: str | os.PathLike) -> tuple[np.ndarray, Geometry, sitk.Image]:
    """Read an image file as ``(array, geometry, image)``; see :func:`read_image`."""
    image = read_image(path)
    return sitk.GetArrayFromImage(image), Geometry.from_image(image), image


def check_frame_interval(dt_s: float, *, source: str, fix: str = "pass --dt S (seconds between frames)") -> float:
    """``dt_s`` as float when it is a plausible CTP frame interval in s.

    Raises
    ------
    InputError
        Not a positive finite number, or outside :data:`PLAUSIBLE_FRAME_INTERVAL_S` (milliseconds?); the
        message names ``source`` (e.g. the file, or ``"--dt"``) and ``fix``.
    """
    try:
        value = float(dt_s)
    except (TypeError, ValueError):
        raise InputError(f"{source}: frame interval {dt_s!r} is not a number of seconds: {fix}") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{source}: frame interval {value:g} s is not a positive number of seconds: {fix}")
    low, high = PLAUSIBLE_FRAME_INTERVAL_S
    if not low <= value <= high:
        raise InputError(
            f"{source}: frame interval {value:g} s is implausible (expected {low:g}-{high:g} s; milliseconds?): {fix}"
        )
    return value


def checked_frame_interval_s(path: str | os.PathLike, image: sitk.Image, given: float | None = None) -> float:
    """The frame interval (s) to analyse the 4D CTP ``image`` (read from ``path``) with.

    ``given`` (the ``--dt`` option) wins; otherwise :func:`frame_interval_s` (the header's, as
    stored). Either must pass :func:`check_frame_interval`.

    Raises
    ------
    InputError
        The interval is missing, not positive, or implausible; the message names ``--dt``.
    """
    if given is not None:
        return check_frame_interval(given, source="--dt", fix="give the seconds between frames, e.g. --dt 1.5")
    stored = frame_interval_s(path, image)
    if stored is None:
        raise InputError(f"{path} records no usable frame interval (pixdim[4] 0, negative or NaN): pass --dt S")
    return check_frame_interval(stored, source=f"{path} (header)")


#: gzip level of written ``.nii.gz`` files: the fastest (float maps barely shrink at higher levels).
GZIP_LEVEL = 1


def write_image(image: sitk.Image, path: str | os.PathLike, *, compress: bool = True) -> Path:
    """Write ``image`` atomically: to a temporary file beside ``path``, then rename.

    A ``.nii.gz`` is written by ITK uncompressed and gzipped here at :data:`GZIP_LEVEL`: ITK's
    NIfTI writer ignores the compression level and deflates at zlib's default, 0.2-0.3 s per
    512 x 512 x 20 float32 map (most of the ``perfusion`` command's writing); ISA-L at level 1
    takes 0.03-0.06 s, the files 5-35 % larger.
    """
    if compress and Path(path).name.lower().endswith(".nii.gz"):
        return write_file_atomically(path, lambda temporary: _write_nifti_gz(image, temporary))
    return write_file_atomically(path, lambda temporary: sitk.WriteImage(image, str(temporary), compress))


def _write_nifti_gz(image: sitk.Image, path: Path) -> None:
    """ITK's uncompressed NIfTI of ``image``, gzipped into ``path`` (no name or time in the gzip header)."""
    handle, plain = tempfile.mkstemp(prefix=".tmp-", suffix=".nii", dir=path.parent)
    os.close(handle)
    try:
        sitk.WriteImage(image, plain, False)
        with open(plain, "rb") as source, open(path, "wb") as target:
            with GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=target, mtime=0) as stream:
                shutil.copyfileobj(source, stream, _CHUNK_BYTES)
    finally:
        os.unlink(plain)


def write_array(
    array: np.ndarray, geometry: Geometry, path: str | os.PathLike, *, dt_s: float | None = None
) -> Path:
    """Write an array with its geometry; see :func:`array_to_image` and :func:`write_image`."""
    return write_image(array_to_image(array, geometry, dt_s=dt_s), path)
