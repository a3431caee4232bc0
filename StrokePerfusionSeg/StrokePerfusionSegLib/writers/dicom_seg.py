"""Write the lesion segments as a DICOM Segmentation (highdicom) referencing the source series.

The SEG is binary, with one segment per lesion class of
:data:`~StrokePerfusionSegLib.labels.LESION_SEGMENTS` (segment 1 ischemic core, 2 penumbra),
coded property category/type and recommended display colour from ``labels.py``, and the
algorithm (name, version, family) that made it. Its frames refer to the images of the series
the study grid came from (``Study.reference_headers``), so PACS viewers overlay it on them.

A SEG needs real source images: for inputs that were not DICOM the writer refuses with an
:class:`~StrokePerfusionSegLib.errors.InputError` rather than inventing a patient, a study and
images that do not exist (see ``docs/clinical.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError
from ..labels import LESION_SEGMENTS
from ..atomic import write_file_atomically

#: Series number given to the SEG series (high, so it sorts after the console's series).
SEG_SERIES_NUMBER = 900
SOFTWARE_NAME = "StrokePerfusionSeg"


def _segment_descriptions(method: str, algorithm_name: str, algorithm_version: str) -> list:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    # CID 7162 has no "thresholding" family; histogram analysis is the nearest listed one.
    family = codes.cid7162.ArtificialIntelligence if method == "dl" else codes.cid7162.HistogramAnalysis
    algorithm = hd.AlgorithmIdentificationSequence(name=algorithm_name, family=family, version=algorithm_version)
    descriptions = []
    for number, spec in enumerate(LESION_SEGMENTS, start=1):
        code, scheme, meaning = spec.category
        type_code, type_scheme, type_meaning = spec.type
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=spec.name,
                segmented_property_category=hd.sr.CodedConcept(code, scheme, meaning),
                segmented_property_type=hd.sr.CodedConcept(type_code, type_scheme, type_meaning),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                display_color=hd.color.CIELabColor.from_rgb(*(round(255 * c) for c in spec.color)),
            )
        )
    return descriptions


def _private_coding_schemes() -> list:
    """Identify the private ("99...") coding schemes used by the segment codes (PS3.3 C.12.1)."""
    from highdicom.coding_schemes import CodingSchemeIdentificationItem

    schemes = sorted({scheme for spec in LESION_SEGMENTS for _, scheme, _ in (spec.category, spec.type)
                      if scheme.startswith("99")})
    return [CodingSchemeIdentificationItem(designator=scheme, name=f"{SOFTWARE_NAME} private codes",
                                           responsible_organization=SOFTWARE_NAME) for scheme in schemes]


def write_dicom_seg(
    labels: np.ndarray,
    reference_headers: list | None,
    path: str | os.PathLike,
    *,
    method: str,
    algorithm_name: str,
    algorithm_version: str,
) -> Path:
    """Write ``labels`` (z, y, x) as a DICOM SEG over the referenced slices, atomically.

    Parameters
    ----------
    labels : ndarray of int, shape (z, y, x)
        On the grid of ``reference_headers`` (slice ``k`` is ``reference_headers[k]``).
    reference_headers : list of pydicom.Dataset
        Headers of the source series' slices in z order (``Study.reference_headers``).
    path : path
    method : str
        ``"dl"`` or ``"threshold"`` (sets the algorithm family).
    algorithm_name, algorithm_version : str
        E.g. the model id and version, or ``"threshold"`` and the software version.
    """
    import highdicom as hd
    import pydicom
    from pydicom.uid import generate_uid

    if not reference_headers:
        raise InputError(
            "a DICOM SEG needs a DICOM input to refer to: segment the DICOM study (--dicom) or leave "
            "dicom-seg out of --format"
        )
    labels = np.asarray(labels)
    if labels.shape[0] != len(reference_headers):
        # The labels come from the study's own grid: a mismatch is the caller's mistake.
        raise ValueError(
            f"labels have {labels.shape[0]} slices but the reference series has {len(reference_headers)}"
        )
    sources = [pydicom.dcmread(h.filename, stop_before_pixels=True) for h in reference_headers]
    masks = np.stack([labels == spec.label for spec in LESION_SEGMENTS], axis=-1).astype(np.uint8)
    segmentation = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segment_descriptions(method, algorithm_name, algorithm_version),
        series_instance_uid=generate_uid(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=SOFTWARE_NAME,
        manufacturer_model_name=SOFTWARE_NAME,
        software_versions=__version__,
        device_serial_number="0",
        content_label="STROKE_LESIONS",
        content_description="Ischemic core and penumbra (decision support)",
        series_description="Core and penumbra (StrokePerfusionSeg)",
        omit_empty_frames=bool(masks.any()),
        coding_schemes=_private_coding_schemes(),
    )
    return write_file_atomically(path, lambda temporary: segmentation.save_as(temporary))
