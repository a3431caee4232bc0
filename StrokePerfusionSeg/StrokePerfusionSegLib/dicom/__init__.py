"""DICOM input (scan, series grouping, map recognition, 4D CTP) and export.

Public names::

    scan_folder(folder) -> ScanResult
    recognise_series(scan, manual=None) -> Recognition
    read_map_series(series, name) -> SeriesVolume
    read_ctp_series(series) -> SeriesVolume
    write_case_as_dicom(case, folder, ...) -> Path
"""

from .export import write_case_as_dicom
from .reader import SeriesVolume, read_ctp_series, read_map_series
from .recognise import MAP_PATTERNS, Recognition, maps_named_by, recognise_series
from .scan import ScanResult, Series, scan_folder
from .volume import SliceStack, stack_series

__all__ = [
    "MAP_PATTERNS",
    "Recognition",
    "ScanResult",
    "Series",
    "SeriesVolume",
    "SliceStack",
    "maps_named_by",
    "read_ctp_series",
    "read_map_series",
    "recognise_series",
    "scan_folder",
    "stack_series",
    "write_case_as_dicom",
]
