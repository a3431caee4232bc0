"""The lesion segments and the volumes table in the scene (built from a pipeline result).

Segments are built outside any segmentation node and swapped in at the end, so a failure leaves
the scene as it was; the user's own segments in the same node are kept.
"""

from __future__ import annotations

import os

import numpy as np

from ..imageio import Geometry
from ..labels import LESION_SEGMENTS
from ..terminology import TERMINOLOGY_FILE, terminology_entry
from ..volumes import DECISION_SUPPORT_CAVEAT
from .nodes import ATTRIBUTE_SOURCE, ijk_to_ras, numpy_to_matrix, vtk_image


def load_terminology(terminologies_logic, path: str | os.PathLike = TERMINOLOGY_FILE) -> str:
    """Load the lesion terminology context into Slicer's Terminologies logic; returns its name."""
    return terminologies_logic.LoadTerminologyFromFile(str(path))


def lesion_segments(labels: np.ndarray, geometry: Geometry) -> dict:
    """Segment id -> new ``vtkSegment`` per lesion class, sharing one labelmap (values 0..3).

    Built outside any segmentation node, so a failure leaves the scene untouched.
    """
    from slicer import vtkOrientedImageData, vtkSegment, vtkSegmentationConverter

    lesion_values = [spec.label for spec in LESION_SEGMENTS]
    lesions = np.where(np.isin(labels, lesion_values), labels, 0).astype(np.uint8)
    image = vtkOrientedImageData()
    image.ShallowCopy(vtk_image(lesions))
    image.SetImageToWorldMatrix(numpy_to_matrix(ijk_to_ras(geometry)))
    representation = vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    segments = {}
    for spec in LESION_SEGMENTS:
        segment = vtkSegment()
        segment.SetName(spec.name)
        segment.SetColor(*spec.color)
        segment.SetLabelValue(spec.label)
        # The tag SetTerminology() writes; that method only exists from Slicer 5.10.
        segment.SetTag(vtkSegment.GetTerminologyEntryTagName(), terminology_entry(spec))
        segment.AddRepresentation(representation, image)
        segments[spec.segment_id] = segment
    return segments


def replace_lesion_segments(segmentation_node, reference, segments: dict) -> None:
    """Swap the lesion segments of ``segmentation_node`` for ``segments`` (other segments stay)."""
    target = segmentation_node.GetSegmentation()
    was_modifying = segmentation_node.StartModify()
    try:
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
        segmentation_node.SetNodeReferenceID(
            segmentation_node.GetReferenceImageGeometryReferenceRole(), reference.GetID()
        )
        for spec in LESION_SEGMENTS:
            if target.GetSegment(spec.segment_id) is not None:
                target.RemoveSegment(spec.segment_id)
        for segment_id, segment in segments.items():
            target.AddSegment(segment, segment_id)
    finally:
        segmentation_node.EndModify(was_modifying)


def volume_rows(volumes) -> list[tuple[str, float, str]]:
    """``(quantity, value, unit)`` rows of a ``volumes.LesionVolumes``.

    A mismatch ratio without core is NaN; target-mismatch flags are 1 (met) or 0 (not met).
    """
    criteria = volumes.criteria
    ratio = float("nan") if volumes.mismatch_ratio is None else float(volumes.mismatch_ratio)
    flag_names = {
        "core_below_max": f"Core < {criteria.max_core_ml:g} ml",
        "ratio_at_least_min": f"Mismatch ratio >= {criteria.min_ratio:g}",
        "mismatch_volume_at_least_min": f"Mismatch volume >= {criteria.min_mismatch_ml:g} ml",
        "target_mismatch": "Target mismatch (all criteria)",
    }
    rows = [
        ("Ischemic core", float(volumes.core_ml), "ml"),
        ("Penumbra", float(volumes.penumbra_ml), "ml"),
        ("Hypoperfused", float(volumes.hypoperfused_ml), "ml"),
        ("Mismatch ratio", ratio, "hypoperfused / core"),
        ("Mismatch volume", float(volumes.mismatch_volume_ml), "ml"),
    ]
    for key, met in volumes.target_mismatch.items():
        rows.append((flag_names.get(key, key), 1.0 if met else 0.0, "1 met / 0 not met"))
    return rows


def fill_volumes_table(table_node, volumes) -> None:
    """Write lesion volumes into a ``vtkMRMLTableNode`` (columns Quantity, Value, Unit)."""
    import vtk

    table = vtk.vtkTable()
    quantity, value, unit = vtk.vtkStringArray(), vtk.vtkDoubleArray(), vtk.vtkStringArray()
    for column, name in ((quantity, "Quantity"), (value, "Value"), (unit, "Unit")):
        column.SetName(name)
        table.AddColumn(column)
    for row_quantity, row_value, row_unit in volume_rows(volumes):
        quantity.InsertNextValue(row_quantity)
        value.InsertNextValue(row_value)
        unit.InsertNextValue(row_unit)
    table_node.SetAndObserveTable(table)
    table_node.SetUseColumnTitleAsColumnHeader(True)
    table_node.SetDescription(DECISION_SUPPORT_CAVEAT)
    table_node.SetAttribute("StrokePerfusionSeg.Caveat", DECISION_SUPPORT_CAVEAT)


def table_values(table_node) -> dict[str, float]:
    """The volumes table back as ``{quantity: value}`` (for the module's self-test and scripts)."""
    table = table_node.GetTable()
    quantity, value = table.GetColumnByName("Quantity"), table.GetColumnByName("Value")
    return {quantity.GetValue(i): value.GetValue(i) for i in range(table.GetNumberOfRows())}


def source_volume_of(segmentation_node, scene):
    """The volume a segmentation was computed from (for Segment Editor's source volume)."""
    node_id = segmentation_node.GetAttribute(ATTRIBUTE_SOURCE)
    return scene.GetNodeByID(node_id) if node_id else None
