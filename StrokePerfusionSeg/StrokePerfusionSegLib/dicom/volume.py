"""Assemble single-frame DICOM series into 3D volumes and 4D CTP time series.

Slices are ordered by their position along the slice normal
(``ImagePositionPatient`` projected on ``row x column`` of ``ImageOrientationPatient``), so
the grid keeps the scanner's LPS orientation exactly: x follows the image rows, y the image
columns, z the normal. Nothing is resampled. The checks below turn the usual export faults
(missing slices, duplicated instances, mixed orientations or pixel sizes, tilted gantry,
irregular frame timing) into an :class:`~StrokePerfusionSegLib.errors.InputError` naming the
series and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.valuerep import TM

try:  # pydicom 3 (Slicer 5.12+): pixel_array already turns YBR into RGB
    from pydicom.pixels import apply_color_lut, convert_color_space

    _PIXEL_ARRAY_GIVES_RGB = True
except ImportError:  # pydicom 2.4 (bundled with Slicer 5.8 and 5.10): pixel_array keeps YBR
    from pydicom.pixel_data_handlers.util import apply_color_lut, convert_color_space

    _PIXEL_ARRAY_GIVES_RGB = False

from ..errors import InputError
from ..imageio import Geometry
from .scan import Series

#: Two slices closer than this along the normal (mm) are at the same position.
POSITION_TOLERANCE_MM = 0.01
#: Allowed deviation of one slice gap from the series' gap, as a fraction of the gap.
SLICE_GAP_TOLERANCE = 0.02
#: Allowed deviation of one frame interval from the series' interval: max(absolute s, fraction).
FRAME_INTERVAL_TOLERANCE = (0.05, 0.05)


@dataclass
class SliceStack:
    """Headers of one series sorted into a regular grid of slices.

    Attributes
    ----------
    geometry : Geometry
    headers : list of list of pydicom.Dataset
        ``headers[t][z]``: one list of slices per time point (a single list for a 3D series).
    times_s : ndarray of float, shape (t,), or None
        Acquisition time of each time point in s (4D series only).
    """

    geometry: Geometry
    headers: list
    times_s: np.ndarray | None = None

    @property
    def is_temporal(self) -> bool:
        return len(self.headers) > 1


def _orientation(header, series: Series) -> np.ndarray:
    if "ImageOrientationPatient" not in header or "ImagePositionPatient" not in header:
        raise InputError(
            f"{series.label} has no image position/orientation (a screenshot-like secondary "
            "capture?): export the maps with their patient geometry"
        )
    return np.array([float(v) for v in header.ImageOrientationPatient])


def _time_s(header) -> float | None:
    for keyword in ("AcquisitionTime", "ContentTime"):
        value = header.get(keyword)
        if value not in (None, ""):
            moment = TM(value)
            return moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6
    return None


def _check_uniform(headers, series: Series) -> np.ndarray:
    """Return the orientation shared by every header; errors for mixed orientations/sizes."""
    if any(int(h.get("NumberOfFrames", 1) or 1) > 1 for h in headers):
        raise InputError(
            f"{series.label} is a multi-frame (enhanced) object, which is not supported: "
            "export classic single-frame images"
        )
    check_one_acquisition([series], combined=True)
    orientation = _orientation(headers[0], series)
    sizes = {(int(h.Rows), int(h.Columns)) for h in headers}
    spacings = {tuple(round(float(v), 4) for v in h.get("PixelSpacing", (1.0, 1.0))) for h in headers}
    for header in headers[1:]:
        if not np.allclose(_orientation(header, series), orientation, atol=1e-4):
            raise InputError(
                f"{series.label} mixes image orientations: export one orientation per series "
                "(e.g. only the axial images)"
            )
    if len(sizes) > 1 or len(spacings) > 1:
        raise InputError(
            f"{series.label} mixes image sizes or pixel spacings ({sorted(sizes)}, {sorted(spacings)} mm): "
            "export the series on one grid"
        )
    if "PixelSpacing" not in headers[0]:
        raise InputError(f"{series.label} has no PixelSpacing: export the maps with their pixel size")
    return orientation


#: What identifies the patient, the study and the scanner's coordinate system of an image.
IDENTITY_ATTRIBUTES = ("PatientID", "StudyInstanceUID", "FrameOfReferenceUID")


def check_one_acquisition(series_list, *, combined: bool) -> None:
    """Refuse series of different patients or studies (and, when ``combined``, coordinate systems).

    Images of two patients at the same position would otherwise be segmented together with
    plausible but wrong results. ``combined`` series are put on one grid voxel by voxel, so
    they must also share the FrameOfReferenceUID; series used one instead of another (maps or
    the CTP they came from) need only the same patient and study. Absent values are not
    compared (anonymised exports may drop them).

    Raises
    ------
    InputError
        Naming the attribute, the series and the fix; never the patient's values.
    """
    keywords = IDENTITY_ATTRIBUTES if combined else IDENTITY_ATTRIBUTES[:2]
    for keyword in keywords:
        found = {}
        for series in series_list:
            for header in series.headers:
                value = str(header.get(keyword, "") or "").strip()
                if value:
                    found.setdefault(value, series)
        if len(found) > 1:
            labels = "; ".join(dict.fromkeys(s.label for s in found.values()))
            why, fix = (
                ("lie in different coordinate systems", "export all maps of one acquisition")
                if keyword == "FrameOfReferenceUID"
                else ("are not one patient's study", "put each study in its own folder and give that folder")
            )
            raise InputError(f"images of different {keyword}s would be combined ({labels}): they {why}; {fix}")


def _slice_spacing(positions: np.ndarray, series: Series, header) -> float:
    if len(positions) == 1:
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            if header.get(keyword) not in (None, ""):
                return float(header.get(keyword))
        return 1.0
    gaps = np.diff(positions)
    gap = float(gaps.min())
    off = np.abs(gaps - gap) > SLICE_GAP_TOLERANCE * gap
    if off.any():
        k = int(np.argmax(off))
        missing = gaps[k] / gap - 1.0
        if abs(missing - round(missing)) < 0.1:
            raise InputError(
                f"{series.label} misses {round(missing)} slice(s) between {positions[k]:.2f} and "
                f"{positions[k + 1]:.2f} mm (slice gap {gap:.2f} mm): re-export the complete series"
            )
        raise InputError(
            f"{series.label} has irregular slice gaps ({gaps.min():.2f} to {gaps.max():.2f} mm): "
            "re-export it with evenly spaced slices (or resample it first)"
        )
    return gap


def _geometry(headers_by_position, positions, orientation, series: Series) -> Geometry:
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    first = headers_by_position[0]
    origin = np.array([float(v) for v in first.ImagePositionPatient])
    for header, position in zip(headers_by_position[1:], positions[1:]):
        offset = np.array([float(v) for v in header.ImagePositionPatient]) - origin
        if np.linalg.norm(offset - (position - positions[0]) * normal) > 0.1:
            raise InputError(
                f"{series.label} has slices shifted within their plane (gantry tilt?): "
                "export it with tilt correction"
            )
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    gap = _slice_spacing(positions, series, first)
    direction = np.stack([row, column, normal], axis=1)
    return Geometry(
        spacing=(column_spacing, row_spacing, gap),
        origin=tuple(float(v) for v in origin),
        direction=tuple(float(v) for v in direction.ravel()),
    )


def stack_series(series: Series) -> SliceStack:
    """Sort a series into slices (3D) or time points of slices (4D CTP).

    A series with one instance per slice position is 3D. One with the same number ``t > 1`` of
    instances at every position is a time series: at each position the instances are ordered
    by ``TemporalPositionIdentifier`` (when present) or acquisition/content time, and the
    ``k``-th instance of every position forms time point ``k``; the frame interval must be
    regular.

    Raises
    ------
    InputError
        Missing slices, duplicated instances, mixed orientations or pixel spacings, in-plane
        shifted slices, missing or irregular timing.
    """
    headers = series.headers
    uids = [str(h.get("SOPInstanceUID", "")) for h in headers]
    if len(set(uids)) < len(uids):
        raise InputError(
            f"{series.label} holds duplicated instances (same SOPInstanceUID in several files): "
            "remove the copies"
        )
    orientation = _check_uniform(headers, series)
    normal = np.cross(orientation[:3], orientation[3:])
    along = np.array([float(np.dot(normal, [float(v) for v in h.ImagePositionPatient])) for h in headers])
    keys = np.round(along / POSITION_TOLERANCE_MM).astype(np.int64)
    unique_keys, counts = np.unique(keys, return_counts=True)
    positions = unique_keys * POSITION_TOLERANCE_MM
    if counts.min() != counts.max():
        raise InputError(
            f"{series.label} has {counts.min()} to {counts.max()} images per slice position "
            "(duplicated instances or an incomplete time series): remove the copies or "
            "re-export the complete series"
        )
    per_position = [[h for h, k in zip(headers, keys) if k == key] for key in unique_keys]
    frames = int(counts[0])
    if frames == 1:
        stack = [slices[0] for slices in per_position]
        return SliceStack(_geometry(stack, positions, orientation, series), [stack])
    times = [[_time_s(h) for h in slices] for slices in per_position]
    if any(t is None for row in times for t in row):
        raise InputError(
            f"{series.label} has {frames} images per slice position but no acquisition or content "
            "times: remove duplicated instances, or export the CTP with its timing"
        )
    ordered = []
    for slices, slice_times in zip(per_position, times):
        if all("TemporalPositionIdentifier" in h for h in slices):
            order = np.argsort([int(h.TemporalPositionIdentifier) for h in slices], kind="stable")
        else:
            order = np.argsort(slice_times, kind="stable")
        ordered.append([slices[i] for i in order])
    frame_times = np.array([[_time_s(ordered[z][t]) for z in range(len(ordered))] for t in range(frames)])
    frame_times = np.unwrap(frame_times, period=86400.0, axis=0)  # a study across midnight
    times_s = frame_times.mean(axis=1)
    if np.any(np.ptp(frame_times, axis=0) == 0):
        raise InputError(
            f"{series.label} holds duplicated instances (several images with the same position and "
            "time): remove the copies"
        )
    intervals = np.diff(times_s)
    dt = float(np.median(intervals))
    tolerance = max(FRAME_INTERVAL_TOLERANCE[0], FRAME_INTERVAL_TOLERANCE[1] * dt)
    if dt <= 0 or np.any(np.abs(intervals - dt) > tolerance):
        raise InputError(
            f"{series.label} has irregular frame timing (intervals {intervals.min():.2f} to "
            f"{intervals.max():.2f} s): resample the CTP to a constant frame interval first"
        )
    stack = [[ordered[z][t] for z in range(len(ordered))] for t in range(frames)]
    geometry = _geometry(stack[0], positions, orientation, series)
    return SliceStack(geometry, stack, times_s=times_s - times_s[0])


def _check_pixel_data(dataset, path) -> None:
    """Refuse pixel data that is missing or longer/shorter than Rows x Columns say.

    pydicom only warns when an uncompressed image holds more bytes than its header describes
    (e.g. Columns one too small) and then returns a skewed image; that must never be segmented.
    """
    if "PixelData" not in dataset:
        raise InputError(f"{path} holds no pixel data (a damaged or truncated file?): re-export the series")
    if dataset.file_meta.get("TransferSyntaxUID", pydicom.uid.ImplicitVRLittleEndian).is_compressed:
        return
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    expected = int(dataset.Rows) * int(dataset.Columns) * int(dataset.get("SamplesPerPixel", 1)) * frames
    expected = expected * int(dataset.get("BitsAllocated", 16)) // 8
    stored = len(dataset.PixelData)
    if stored not in (expected, expected + 1):  # one byte of padding to an even length
        raise InputError(
            f"{path} holds {stored} bytes of pixel data but its header (Rows {int(dataset.Rows)}, Columns "
            f"{int(dataset.Columns)}) describes {expected}: the header does not match the image; re-export the series"
        )


def read_pixels(header) -> np.ndarray:
    """Pixel data of one instance: float32 (rows, cols) after rescale, or uint8 (rows, cols, 3).

    Grayscale values get ``RescaleSlope``/``RescaleIntercept``; RGB/YBR images come back as
    RGB; PALETTE COLOR images are expanded through their palette (16-bit palettes scaled to 8).

    Raises
    ------
    InputError
        No pixel data, pixel data that does not match Rows x Columns, or data that does not
        decode; the message names the file.
    """
    dataset = pydicom.dcmread(header.filename)
    _check_pixel_data(dataset, header.filename)
    try:
        pixels = dataset.pixel_array
    except (ValueError, NotImplementedError, RuntimeError) as error:
        raise InputError(
            f"{header.filename}: cannot decode its pixel data ({str(error).splitlines()[0][:100]}); "
            "re-export the series uncompressed"
        ) from None
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, dataset)
        if rgb.dtype != np.uint8:
            rgb = (rgb.astype(np.uint32) >> 8).astype(np.uint8)
        return rgb
    if pixels.ndim == 3:
        if photometric.startswith("YBR") and not _PIXEL_ARRAY_GIVES_RGB:
            pixels = convert_color_space(pixels, photometric, "RGB")
        return pixels.astype(np.uint8)
    slope = float(dataset.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(dataset.get("RescaleIntercept", 0.0) or 0.0)
    # MONOCHROME1 only inverts the display; the rescaled values are the quantities.
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def read_volume(headers: list) -> np.ndarray:
    """Stack the pixels of sorted slice headers: (z, y, x) float32 or (z, y, x, 3) uint8."""
    return np.stack([read_pixels(h) for h in headers])


def is_colour(header) -> bool:
    """True for RGB, YBR or PALETTE COLOR images."""
    return int(header.get("SamplesPerPixel", 1)) == 3 or header.get("PhotometricInterpretation") == "PALETTE COLOR"


def stored_unit(header) -> str | None:
    """The unit a grayscale series declares (RescaleType, else Units), or None."""
    for keyword in ("RescaleType", "Units"):
        value = str(header.get(keyword, "") or "").strip()
        if value and value.upper() != "US":  # "US" means unspecified
            return value
    return None
