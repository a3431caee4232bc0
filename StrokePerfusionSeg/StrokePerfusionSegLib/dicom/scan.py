"""Scan a folder of DICOM files into series.

Every file under the folder is opened with pydicom (headers only). Files that are not DICOM,
or DICOM objects that are not images (DICOMDIR, reports), are skipped and listed in
:attr:`ScanResult.skipped` so the caller can tell the user; they never stop the scan.
Logs name series by number and description only, never by patient attributes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from ..errors import InputError


@dataclass
class Series:
    """The instances of one ``SeriesInstanceUID`` (headers only, pixel data not read).

    Attributes
    ----------
    uid : str
        SeriesInstanceUID.
    description : str
        SeriesDescription ('' when absent).
    number : int or None
        SeriesNumber.
    headers : list of pydicom.Dataset
        One header per file, read with ``stop_before_pixels``; ``header.filename`` is its path.
    """

    uid: str
    description: str
    number: int | None
    headers: list = field(default_factory=list)

    @property
    def label(self) -> str:
        """How messages name the series: number, description and UID (no patient data)."""
        number = f"#{self.number} " if self.number is not None else ""
        return f"series {number}'{self.description}' ({self.uid})"

    @property
    def modality(self) -> str:
        return str(getattr(self.headers[0], "Modality", "")) if self.headers else ""


@dataclass
class ScanResult:
    """Series found in a folder, and the files skipped with the reason."""

    folder: Path
    series: list[Series]
    skipped: list[tuple[Path, str]]

    def describe_series(self) -> str:
        """One line listing every series found (for error messages)."""
        if not self.series:
            return "no DICOM image series"
        return "; ".join(f"{s.label}, {len(s.headers)} files" for s in self.series)


#: Attributes the reader uses, with the type each value must convert to. They are converted
#: once here, so that a damaged value (an unknown VR, "abc" for a number) is reported naming
#: the file instead of failing deep inside the reading.
READ_ATTRIBUTES = {
    "SeriesInstanceUID": str, "SeriesDescription": str, "SeriesNumber": int, "SOPInstanceUID": str,
    "PatientID": str, "StudyInstanceUID": str, "FrameOfReferenceUID": str, "Modality": str,
    "Rows": int, "Columns": int, "SamplesPerPixel": int, "BitsAllocated": int, "NumberOfFrames": int,
    "PhotometricInterpretation": str, "PixelSpacing": float, "ImagePositionPatient": float,
    "ImageOrientationPatient": float, "SliceThickness": float, "SpacingBetweenSlices": float,
    "RescaleSlope": float, "RescaleIntercept": float, "RescaleType": str, "Units": str,
    "AcquisitionTime": str, "ContentTime": str, "TemporalPositionIdentifier": int,
}
#: Largest Rows or Columns accepted (CT images are 512 or 1024; 65535 is a damaged header).
MAX_MATRIX = 4096


def _check_values(header: pydicom.Dataset, path: Path) -> None:
    """Raise :class:`InputError` naming ``path`` when a used attribute does not convert."""
    for keyword, kind in READ_ATTRIBUTES.items():
        try:
            value = header.get(keyword)
            if value in (None, ""):
                continue
            values = value if isinstance(value, pydicom.multival.MultiValue) else [value]
            [kind(v) for v in values]
        except Exception as error:  # any failure of pydicom's or Python's conversion is damage
            raise InputError(
                f"{path}: {keyword} holds an invalid value ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:80] if str(error) else 'unreadable'}); re-export the series or remove the file"
            ) from None
    for keyword in ("Rows", "Columns"):
        if keyword in header and not 0 < int(header.get(keyword)) <= MAX_MATRIX:
            raise InputError(
                f"{path}: {keyword} {int(header.get(keyword))} is not an image size (1..{MAX_MATRIX}); "
                "the header is damaged: re-export the series"
            )


def _is_image(header: pydicom.Dataset) -> bool:
    return "SeriesInstanceUID" in header and "Rows" in header and "Columns" in header


def scan_folder(folder: str | os.PathLike) -> ScanResult:
    """Read the headers of every file under ``folder`` and group them by series.

    Parameters
    ----------
    folder : path
        Folder searched recursively; hidden files are ignored.

    Returns
    -------
    ScanResult
        Series sorted by series number, then description.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"DICOM folder not found: {folder}; give the folder that holds the study")
    series: dict[str, Series] = {}
    skipped: list[tuple[Path, str]] = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, EOFError, OSError, ValueError, TypeError) as error:
            skipped.append((path, f"not a readable DICOM file ({type(error).__name__})"))
            continue
        try:
            is_image = _is_image(header)
        except Exception as error:  # a damaged element before the ones _is_image reads
            raise InputError(f"{path}: damaged DICOM header ({type(error).__name__}); remove the file") from None
        if not is_image:
            skipped.append((path, "DICOM object without image (e.g. DICOMDIR or report)"))
            continue
        _check_values(header, path)
        uid = str(header.SeriesInstanceUID)
        if uid not in series:
            number = header.get("SeriesNumber")
            series[uid] = Series(
                uid=uid,
                description=str(header.get("SeriesDescription", "")).strip(),
                number=int(number) if number not in (None, "") else None,
            )
        series[uid].headers.append(header)
    ordered = sorted(series.values(), key=lambda s: (s.number if s.number is not None else 1 << 30, s.description))
    return ScanResult(folder=folder, series=ordered, skipped=skipped)
