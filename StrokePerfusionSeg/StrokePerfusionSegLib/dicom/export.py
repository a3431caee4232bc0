"""Write a :class:`~StrokePerfusionSegLib.casefolder.Case` as a DICOM study.

This turns a phantom or any case folder into what a CT console exports, for PACS tests,
demonstrations and round-trip checks: one series per parametric map (quantitative CT images,
int16 with RescaleSlope/Intercept and the unit in RescaleType), colour-coded secondary
captures of the ``case.rgb`` copies, and the raw CTP as one 4D series (one image per slice and
time point, with TemporalPositionIdentifier and AcquisitionTime). The patient is anonymous:
PatientID is the case id, the name is empty.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from .. import __version__
from ..casefolder import Case
from ..atomic import staged_folder
from ..errors import InputError
from ..mapspecs import MAP_SPECS

#: Largest stored integer of a quantitative map; the slope maps the map's range onto it.
_INT16_RANGE = 32000
_STUDY_TIME_S = 8 * 3600.0


def _tm(seconds: float) -> str:
    seconds = seconds % 86400.0
    hours, rest = divmod(seconds, 3600.0)
    minutes, rest = divmod(rest, 60.0)
    return f"{int(hours):02d}{int(minutes):02d}{rest:09.6f}"


def _slice_positions(case: Case) -> tuple[list[float], list[np.ndarray]]:
    direction = np.array(case.geometry.direction).reshape(3, 3)
    origin = np.array(case.geometry.origin)
    orientation = [float(v) for v in np.concatenate([direction[:, 0], direction[:, 1]])]
    step = direction[:, 2] * case.geometry.spacing[2]
    return orientation, [origin + k * step for k in range(case.shape[0])]


class _SeriesWriter:
    """Common header of every image of one study; one call writes one series."""

    def __init__(self, case: Case, folder: Path):
        self.case = case
        self.folder = folder
        self.study_uid = generate_uid()
        self.frame_of_reference_uid = generate_uid()
        self.orientation, self.positions = _slice_positions(case)
        self.series_number = 0
        self.date = datetime.date.today().strftime("%Y%m%d")

    def _header(self, sop_class: str, series_uid: str, description: str, z: int, instance: int) -> Dataset:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientName = ""
        ds.PatientID = self.case.case_id
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.StudyInstanceUID = self.study_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = self.date
        ds.StudyTime = _tm(_STUDY_TIME_S)
        ds.StudyID = "1"
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.Modality = "CT"
        ds.Manufacturer = "StrokePerfusionSeg"
        ds.SoftwareVersions = __version__
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = self.series_number
        ds.SeriesDescription = description
        ds.InstanceNumber = instance
        ds.FrameOfReferenceUID = self.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.ImageOrientationPatient = self.orientation
        ds.ImagePositionPatient = [float(v) for v in self.positions[z]]
        ds.SliceLocation = float(np.dot(np.cross(self.orientation[:3], self.orientation[3:]), self.positions[z]))
        ds.PixelSpacing = [float(self.case.geometry.spacing[1]), float(self.case.geometry.spacing[0])]
        ds.SliceThickness = float(self.case.geometry.spacing[2])
        rows, columns = self.case.shape[1:]
        ds.Rows, ds.Columns = rows, columns
        return ds

    def _save(self, ds: Dataset, subfolder: Path, index: int) -> None:
        ds.save_as(subfolder / f"IM{index:05d}.dcm", enforce_file_format=True)

    def quantitative(self, volumes: np.ndarray, description: str, unit: str, times_s=None) -> None:
        """One CT series from (z, y, x) or (t, z, y, x) float values."""
        self.series_number += 1
        series_uid = generate_uid()
        subfolder = self.folder / f"{self.series_number:02d}_{description.replace(' ', '_')}"
        subfolder.mkdir()
        frames = volumes[None] if volumes.ndim == 3 else volumes
        peak = float(np.abs(frames).max()) if frames.size else 0.0
        slope = max(peak, 1e-6) / _INT16_RANGE if unit != "HU" else 1.0
        for t, volume in enumerate(frames):
            for z, plane in enumerate(volume):
                instance = t * volume.shape[0] + z + 1
                ds = self._header(CTImageStorage, series_uid, description, z, instance)
                ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] if times_s is not None else ["DERIVED", "SECONDARY"]
                ds.SamplesPerPixel = 1
                ds.PhotometricInterpretation = "MONOCHROME2"
                ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
                ds.RescaleSlope = f"{slope:.10g}"
                ds.RescaleIntercept = "0"
                ds.RescaleType = unit
                ds.KVP = ""
                stored = np.clip(np.round(plane / slope), -32768, 32767).astype(np.int16)
                ds.PixelData = stored.tobytes()
                if times_s is not None:
                    ds.TemporalPositionIdentifier = t + 1
                    ds.NumberOfTemporalPositions = len(frames)
                    ds.AcquisitionTime = _tm(_STUDY_TIME_S + times_s[t])
                    ds.ContentTime = ds.AcquisitionTime
                self._save(ds, subfolder, instance)

    def colour(self, rgb: np.ndarray, description: str) -> None:
        """One RGB secondary-capture series from a (z, y, x, 3) uint8 volume."""
        self.series_number += 1
        series_uid = generate_uid()
        subfolder = self.folder / f"{self.series_number:02d}_{description.replace(' ', '_')}"
        subfolder.mkdir()
        for z, plane in enumerate(rgb):
            ds = self._header(SecondaryCaptureImageStorage, series_uid, description, z, z + 1)
            ds.ConversionType = "WSD"
            ds.ImageType = ["DERIVED", "SECONDARY"]
            ds.SamplesPerPixel = 3
            ds.PhotometricInterpretation = "RGB"
            ds.PlanarConfiguration = 0
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
            ds.PixelData = np.ascontiguousarray(plane, dtype=np.uint8).tobytes()
            self._save(ds, subfolder, z + 1)


def write_case_as_dicom(
    case: Case,
    folder: str | os.PathLike,
    *,
    maps: tuple[str, ...] | None = None,
    colour_maps: tuple[str, ...] = (),
    with_ctp: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a case as a DICOM study folder, one sub-folder per series, atomically.

    Parameters
    ----------
    case : Case
    folder : path
        Created; an existing folder is an :class:`InputError` unless ``overwrite``.
    maps : tuple of str, optional
        Quantitative map series to write (default: every map of the case). Descriptions are
        the upper-case map names ("CBF", "TMAX", ...).
    colour_maps : tuple of str
        Colour-coded secondary captures to write from ``case.rgb`` ("CBF color", ...).
    with_ctp : bool
        Also write ``case.ctp`` as a 4D series "CT Perfusion" (needs ``case.dt_s``).

    Returns
    -------
    Path
        The study folder.
    """
    folder = Path(folder)
    with staged_folder(folder, overwrite=overwrite) as staging:
        writer = _SeriesWriter(case, staging)
        if with_ctp and case.ctp is not None:
            if case.dt_s is None:
                raise InputError(f"case {case.case_id} has a CTP but no frame interval dt_s")
            times = np.arange(case.ctp.shape[0]) * float(case.dt_s)
            writer.quantitative(case.ctp, "CT Perfusion", "HU", times_s=times)
        for name in maps if maps is not None else tuple(case.maps):
            if name not in case.maps:
                raise InputError(f"case {case.case_id} has no {name} map to export")
            writer.quantitative(case.maps[name], name.upper(), MAP_SPECS[name].unit)
        for name in colour_maps:
            if name not in case.rgb:
                raise InputError(f"case {case.case_id} has no colour-coded {name} to export")
            writer.colour(case.rgb[name], f"{name.upper()} color")
    return folder
