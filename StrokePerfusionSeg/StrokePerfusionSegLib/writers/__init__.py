"""Output writers: Slicer ``.seg.nrrd``, NIfTI labels, DICOM SEG, JSON and PNG/PDF reports.

Every writer writes atomically (temporary file beside the target, then rename).
"""

from .dicom_seg import write_dicom_seg
from .nifti import write_label_nifti
from .report_json import build_report, write_report_json
from .report_visual import render_report_figure, write_visual_report
from .seg_nrrd import segmentation_document, write_seg_nrrd

__all__ = [
    "build_report",
    "render_report_figure",
    "segmentation_document",
    "write_dicom_seg",
    "write_label_nifti",
    "write_report_json",
    "write_seg_nrrd",
    "write_visual_report",
]
