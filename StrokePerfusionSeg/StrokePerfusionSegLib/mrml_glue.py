"""MRML glue: volume nodes in a scene -> predictor -> one segmentation node and a volumes table.

The only module of the library that touches MRML. It never imports ``slicer.app``, ``qt`` or
``slicer.util`` and never reaches for a global scene: the caller hands in the scene (and, where
needed, the module logics), so the same code runs inside 3D Slicer and on the ``slicer-core``
wheel (how CI tests it).

Geometry: Slicer keeps volumes in RAS (IJK-to-RAS matrix), SimpleITK/NIfTI files in LPS.
:func:`geometry_from_node` and :func:`ijk_to_ras` convert between a node and
:class:`~StrokePerfusionSegLib.imageio.Geometry` by flipping the first two world axes.

Nothing is written into the scene until the prediction has finished: a Cancel, an error or a
closed scene leaves the output segmentation as it was.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import write_file_atomically
from .errors import InputError
from .imageio import Geometry, resample_onto
from .labels import LESION_SEGMENTS, SegmentSpec
from .mapspecs import MAP_SPECS, map_spec
from .volumes import DECISION_SUPPORT_CAVEAT

logger = logging.getLogger(__name__)

#: Terminology context of the lesion segments; the file is generated from :mod:`.labels`.
TERMINOLOGY_CONTEXT = "StrokePerfusionSeg lesions"
TERMINOLOGY_FILE = Path(__file__).resolve().parents[1] / "Resources" / "StrokePerfusionSeg.term.json"
#: Node attributes that tie generated nodes to this module (so re-runs update, never pile up).
ATTRIBUTE_MAP = "StrokePerfusionSeg.Map"
ATTRIBUTE_SOURCE = "StrokePerfusionSeg.SourceNodeID"
ATTRIBUTE_UNIT = "StrokePerfusionSeg.Unit"
_RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


# --- geometry and arrays -------------------------------------------------------------------


def _matrix_to_numpy(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(i, j) for j in range(4)] for i in range(4)])


def _numpy_to_matrix(array: np.ndarray):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for i in range(4):
        for j in range(4):
            matrix.SetElement(i, j, float(array[i, j]))
    return matrix


def ijk_to_ras(geometry: Geometry) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of ``geometry`` (which is LPS, ITK order)."""
    direction = np.array(geometry.direction, dtype=float).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.array(geometry.spacing)[None, :]
    lps[:3, 3] = geometry.origin
    return _RAS_FROM_LPS @ lps


def geometry_from_node(node) -> Geometry:
    """:class:`Geometry` (LPS, ITK order) of a volume node, from its IJK-to-RAS matrix."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    lps = _RAS_FROM_LPS @ _matrix_to_numpy(matrix)
    columns = lps[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    direction = columns / spacing[None, :]
    return Geometry(
        spacing=tuple(float(s) for s in spacing),
        origin=tuple(float(o) for o in lps[:3, 3]),
        direction=tuple(float(d) for d in direction.ravel()),
    )


def _node_label(node) -> str:
    return f"'{node.GetName()}'" if node is not None else "(none)"


def array_from_node(node) -> np.ndarray:
    """Copy of a volume node's voxels: ``(z, y, x)`` scalar or ``(z, y, x, 3)`` uint8 RGB.

    Raises
    ------
    InputError
        No image data, a 2D image (one slice), more than 3 components (a 4D multi-volume:
        compute the maps first) or non-RGB vector data.
    """
    from vtk.util import numpy_support

    if node is None or node.GetImageData() is None:
        raise InputError(f"volume {_node_label(node)} holds no image data: load it again")
    image = node.GetImageData()
    dims = image.GetDimensions()
    components = image.GetNumberOfScalarComponents()
    if min(dims) < 2:
        raise InputError(
            f"volume {_node_label(node)} is 2D ({dims[0]}x{dims[1]}x{dims[2]} voxels): "
            "select a 3D map volume"
        )
    if components > 3:
        raise InputError(
            f"volume {_node_label(node)} has {components} frames/components (a 4D series?): "
            "select a 3D map, or load it as CTP and press 'Compute perfusion maps'"
        )
    if components == 2:
        raise InputError(f"volume {_node_label(node)} has 2 components: give a scalar or RGB volume")
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    shape = tuple(reversed(dims)) + ((3,) if components == 3 else ())
    array = np.array(flat, copy=True).reshape(shape)
    if components == 3 and array.dtype != np.uint8:
        raise InputError(
            f"volume {_node_label(node)} is a {array.dtype} vector volume: colour-coded maps must "
            "be 8-bit RGB"
        )
    return array


def _vtk_image(array: np.ndarray):
    import vtk
    from vtk.util import numpy_support

    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    components = array.shape[3] if array.ndim == 4 else 1
    flat = np.ascontiguousarray(array).reshape(-1, components) if components > 1 else np.ascontiguousarray(array).ravel()
    scalars = numpy_support.numpy_to_vtk(flat, deep=True)
    image.GetPointData().SetScalars(scalars)
    return image


def set_node_array(node, array: np.ndarray, geometry: Geometry) -> None:
    """Replace a volume node's voxels (``(z, y, x)`` or ``(z, y, x, 3)``) and geometry."""
    node.SetIJKToRASMatrix(_numpy_to_matrix(ijk_to_ras(geometry)))
    node.SetAndObserveImageData(_vtk_image(array))


def add_volume_node(scene, array: np.ndarray, geometry: Geometry, name: str, *, unit: str | None = None):
    """Add a scalar volume (``(z, y, x)``) or RGB vector volume (``(z, y, x, 3)`` uint8) to ``scene``."""
    rgb = array.ndim == 4 and array.shape[-1] == 3
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode" if rgb else "vtkMRMLScalarVolumeNode", name)
    set_node_array(node, array, geometry)
    node.CreateDefaultDisplayNodes()
    if unit:
        node.SetAttribute(ATTRIBUTE_UNIT, unit)
    return node


def load_volume_file(scene, path: str | os.PathLike, name: str | None = None):
    """Read a NIfTI/NRRD file with Slicer's own volume reader into a new node of ``scene``.

    Colour-coded (3-component) files become vector volumes, everything else scalar volumes.
    A missing, unsupported or unreadable file is an :class:`InputError` and adds no node.
    """
    import SimpleITK as sitk
    from slicer import vtkMRMLVolumeArchetypeStorageNode

    from .imageio import READABLE_SUFFIXES

    path = Path(path)
    if not path.is_file() or not path.name.lower().endswith(READABLE_SUFFIXES):
        raise InputError(f"{path} is not a NIfTI/NRRD file: give files ending in {', '.join(READABLE_SUFFIXES)}")
    header = sitk.ImageFileReader()
    header.SetFileName(str(path))
    try:
        header.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"cannot read {path}: is it a complete NIfTI/NRRD volume?") from None
    vector = header.GetNumberOfComponents() == 3
    node = scene.AddNewNodeByClass(
        "vtkMRMLVectorVolumeNode" if vector else "vtkMRMLScalarVolumeNode",
        name or path.name.split(".")[0],
    )
    storage = vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        raise InputError(f"Slicer cannot read {path}: is it a complete NIfTI/NRRD volume?")
    node.CreateDefaultDisplayNodes()
    return node


def _study_item(scene, patient_name: str, study_name: str) -> int:
    """A new Subject Hierarchy patient/study pair; returns the study item."""
    from slicer import vtkMRMLSubjectHierarchyNode

    hierarchy = vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), patient_name)
    return hierarchy.CreateStudyItem(patient, study_name)


def _put_in_item(scene, node, item: int) -> None:
    """Make ``node`` a child of Subject Hierarchy ``item`` (creating its own item if needed).

    Inside Slicer the Subject Hierarchy logic adds an item for every new node; on slicer-core
    nothing does, so the item is created here.
    """
    from slicer import vtkMRMLSubjectHierarchyNode

    hierarchy = vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    own = hierarchy.GetItemByDataNode(node)
    if own:
        hierarchy.SetItemParent(own, item)
    else:
        hierarchy.CreateItem(item, node)


def add_ctp_sequence(scene, ctp: np.ndarray, geometry: Geometry, dt_s: float, name: str):
    """Add a 4D CTP ``(t, z, y, x)`` in HU as a ``vtkMRMLSequenceNode`` (index: time in s)."""
    from slicer import vtkMRMLScalarVolumeNode

    if ctp.ndim != 4:
        raise InputError(f"a CTP series must be 4D (t, z, y, x), got shape {ctp.shape}")
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("s")
    sequence.SetIndexType(sequence.NumericIndex)
    frame = vtkMRMLScalarVolumeNode()
    for index in range(ctp.shape[0]):
        set_node_array(frame, np.asarray(ctp[index], dtype=np.float32), geometry)
        sequence.SetDataNodeAtValue(frame, f"{index * dt_s:g}")
    return sequence


def add_case_volumes(scene, case, *, colour_coded: bool = False) -> dict[str, object]:
    """Load a :class:`~StrokePerfusionSegLib.casefolder.Case` into ``scene`` as one study.

    Maps become scalar volumes named ``<case id> <MAP>`` (their colour-coded copies instead when
    ``colour_coded``), the CTP a sequence node ``<case id> CTP``, all in a Subject Hierarchy
    patient/study. Returns map name (and ``ctp``) -> node.
    """
    study = _study_item(scene, case.case_id, "CT perfusion")
    source = case.rgb if colour_coded else case.maps
    nodes = {}
    for name, array in source.items():
        unit = None if colour_coded else MAP_SPECS[name].unit
        nodes[name] = add_volume_node(scene, array, case.geometry, f"{case.case_id} {name.upper()}", unit=unit)
    if case.ctp is not None:
        nodes["ctp"] = add_ctp_sequence(scene, case.ctp, case.geometry, case.dt_s, f"{case.case_id} CTP")
    for node in nodes.values():
        _put_in_item(scene, node, study)
    return nodes


# --- inputs --------------------------------------------------------------------------------


@dataclass
class GatheredInputs:
    """Arrays of the input volumes on one grid (the first input's).

    Attributes
    ----------
    images : dict of str to ndarray
        Map name -> ``(z, y, x)`` float32 in the map's unit, or ``(z, y, x, 3)`` uint8 RGB.
    geometry : Geometry
        Grid of every array (the reference volume's).
    reference : vtkMRMLVolumeNode
        The first input: reference geometry and source volume of the segmentation.
    notes : list of str
        What was done to the inputs (resampling), for the user.
    """

    images: dict[str, np.ndarray]
    geometry: Geometry
    reference: object
    notes: list[str] = field(default_factory=list)


def gather_inputs(volume_nodes: Mapping[str, object], *, resample: bool = True) -> GatheredInputs:
    """Read input volume nodes onto the grid of the first one.

    Parameters
    ----------
    volume_nodes : mapping of str to vtkMRMLVolumeNode
        Map name (``cbf``, ``cbv``, ``ttp``, ``tmax``, ``mip``, ...) -> node, first = reference.
    resample : bool
        Resample volumes on another grid onto the reference grid (linear; nearest for RGB) and
        say so in ``notes``; if False a mismatch is an :class:`InputError`.
    """
    if not volume_nodes:
        raise InputError("no input volumes: select the CBF, CBV, TTP, Tmax and MIP volumes")
    missing = [name for name, node in volume_nodes.items() if node is None]
    if missing:
        raise InputError(f"no volume selected for {', '.join(m.upper() for m in missing)}: select one")
    images: dict[str, np.ndarray] = {}
    notes: list[str] = []
    reference = next(iter(volume_nodes.values()))
    geometry = geometry_from_node(reference)
    shape = None
    for name, node in volume_nodes.items():
        map_spec(name)  # unknown map name -> InputError
        array = array_from_node(node)
        found = geometry_from_node(node)
        if shape is None:
            shape = array.shape[:3]
        elif array.shape[:3] != shape or not found.matches(geometry):
            if not resample:
                raise InputError(
                    f"{name.upper()} volume {_node_label(node)} is not on the grid of "
                    f"{_node_label(reference)}: resample it onto one grid"
                )
            array = resample_onto(array, found, geometry, shape)
            message = (
                f"{name.upper()} ({node.GetName()}) was resampled onto the grid of "
                f"{reference.GetName()} (spacing {found.spacing} -> {geometry.spacing} mm)"
            )
            logger.warning(message)
            notes.append(message)
        images[name] = array if array.ndim == 4 else array.astype(np.float32)
    return GatheredInputs(images=images, geometry=geometry, reference=reference, notes=notes)


# --- terminology ---------------------------------------------------------------------------


def _code(code: tuple[str, str, str]) -> str:
    value, scheme, meaning = code
    return f"{scheme}^{value}^{meaning}"


def terminology_entry(spec: SegmentSpec) -> str:
    """Slicer's serialized terminology entry of a lesion segment (context~category~type~...)."""
    return f"{TERMINOLOGY_CONTEXT}~{_code(spec.category)}~{_code(spec.type)}~^^~~^^~^^"


def terminology_document() -> dict:
    """The ``.term.json`` content (dcmqi segment-context schema) for :data:`~StrokePerfusionSegLib.labels.LESION_SEGMENTS`."""
    categories: dict[tuple, dict] = {}
    for spec in LESION_SEGMENTS:
        value, scheme, meaning = spec.category
        category = categories.setdefault(
            spec.category,
            {"CodingSchemeDesignator": scheme, "CodeValue": value, "CodeMeaning": meaning,
             "showAnatomy": "false", "Type": []},
        )
        value, scheme, meaning = spec.type
        category["Type"].append(
            {
                "CodingSchemeDesignator": scheme,
                "CodeValue": value,
                "CodeMeaning": meaning,
                "recommendedDisplayRGBValue": [round(c * 255) for c in spec.color],
                "3dSlicerLabel": spec.name,
            }
        )
    return {
        "@schema": "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/schemas/segment-context-schema.json#",
        "SegmentationCategoryTypeContextName": TERMINOLOGY_CONTEXT,
        "SegmentationCodes": {"Category": list(categories.values())},
    }


def terminology_json_text() -> str:
    """The ``.term.json`` file content written to :data:`TERMINOLOGY_FILE`."""
    return json.dumps(terminology_document(), indent=2) + "\n"


def load_terminology(terminologies_logic, path: str | os.PathLike = TERMINOLOGY_FILE) -> str:
    """Load the lesion terminology context into Slicer's Terminologies logic; returns its name."""
    return terminologies_logic.LoadTerminologyFromFile(str(path))


# --- segmentation and table ----------------------------------------------------------------


def _lesion_segments(labels: np.ndarray, geometry: Geometry) -> dict:
    """Segment id -> new ``vtkSegment`` per lesion class, sharing one labelmap (values 0..3).

    Built outside any segmentation node, so a failure leaves the scene untouched.
    """
    from slicer import vtkOrientedImageData, vtkSegment, vtkSegmentationConverter

    lesion_values = [spec.label for spec in LESION_SEGMENTS]
    lesions = np.where(np.isin(labels, lesion_values), labels, 0).astype(np.uint8)
    image = vtkOrientedImageData()
    image.ShallowCopy(_vtk_image(lesions))
    image.SetImageToWorldMatrix(_numpy_to_matrix(ijk_to_ras(geometry)))
    representation = vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    segments = {}
    for spec in LESION_SEGMENTS:
        segment = vtkSegment()
        segment.SetName(spec.name)
        segment.SetColor(*spec.color)
        segment.SetLabelValue(spec.label)
        segment.SetTerminology(terminology_entry(spec))
        segment.AddRepresentation(representation, image)
        segments[spec.segment_id] = segment
    return segments


def _replace_lesion_segments(segmentation_node, reference, segments: dict) -> None:
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


def _place_beside(scene, node, reference) -> None:
    """Put ``node`` in the Subject Hierarchy folder (study) that holds ``reference``."""
    from slicer import vtkMRMLSubjectHierarchyNode

    hierarchy = vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    reference_item = hierarchy.GetItemByDataNode(reference)
    parent = hierarchy.GetItemParent(reference_item) if reference_item else hierarchy.GetSceneItemID()
    _put_in_item(scene, node, parent or hierarchy.GetSceneItemID())


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


# --- the whole path ------------------------------------------------------------------------


@dataclass
class SegmentationResult:
    """What :func:`segment_volumes` put into the scene."""

    segmentation_node: object
    table_node: object
    labels: np.ndarray  # (z, y, x) uint8 0..3 on the reference grid
    geometry: Geometry
    volumes: object  # volumes.LesionVolumes
    notes: list[str]
    timings: dict[str, float]  # s: read_volumes_s, predict_s (predict_* its stages), segments_and_table_s, total_s
    device: str


def resolve_method(method):
    """``"threshold"``, a loaded Bundle, or a model id/bundle path (loaded here, on the CPU;
    the predictor moves it to its device)."""
    if method is None or method == "threshold":
        return "threshold"
    if isinstance(method, (str, os.PathLike)):
        from .bundle import load_bundle

        return load_bundle(method)
    return method


def _method_needs(method) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    """(maps the method reads, volumes it requires, whether it reads the NIHSS)."""
    if method == "threshold":
        return ("cbf", "tmax"), ("cbf", "tmax", "mip"), False
    inputs = tuple(method.config.inputs)
    return inputs, inputs, bool(method.config.use_nihss)


def _check_alive(scene, nodes) -> None:
    for node in nodes:
        if node is not None and node.GetScene() is not scene:
            raise InputError(
                f"node {_node_label(node)} left the scene while segmenting (scene closed?): "
                "load the study again and press Apply"
            )


def segment_volumes(
    scene,
    volume_nodes: Mapping[str, object],
    *,
    method="threshold",
    nihss: int | None = None,
    segmentation_node=None,
    table_node=None,
    device: str = "auto",
    resample: bool = True,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    output_name: str | None = None,
) -> SegmentationResult:
    """Segment core and penumbra from map volumes of ``scene`` into one segmentation node.

    Parameters
    ----------
    scene : vtkMRMLScene
    volume_nodes : mapping of str to vtkMRMLVolumeNode
        Map name -> scalar volume (map units) or RGB vector volume (colour-coded). The first is
        the reference geometry and source volume. ``mip`` (HU) is used for the brain mask.
    method : ``"threshold"``, Bundle, or str
        Thresholding, a loaded model bundle, or a model id / bundle folder.
    nihss : int or None
        NIH stroke scale 0..42; required when the model reads it.
    segmentation_node, table_node : MRML nodes or None
        Outputs to update (lesion segments and rows replaced); new nodes when None.
    device : ``"auto"``, ``"cpu"`` or ``"cuda"``
    resample : bool
        Resample inputs on another grid onto the first one's (with a note); else refuse them.
    progress : callable(done, total), optional
        Called by the predictor after each batch of slices.
    cancel : callable() -> bool, optional
        Polled by the predictor; True stops with ``CancelledError``, the scene untouched.
    output_name : str, optional
        Name of a new segmentation node (default ``<reference volume> core-penumbra``).

    Returns
    -------
    SegmentationResult
    """
    from .predictor import predict
    from .nihss import check_nihss
    from .volumes import lesion_volumes

    nihss = check_nihss(nihss)
    method = resolve_method(method)
    inputs, required, use_nihss = _method_needs(method)
    if use_nihss and nihss is None:
        raise InputError("this model reads the NIHSS score: enter it (0-42) before Apply")
    missing = [name.upper() for name in required if volume_nodes.get(name) is None]
    if missing:
        raise InputError(f"the method needs {', '.join(missing)}: select {'it' if len(missing) == 1 else 'them'}")
    started = time.perf_counter()
    selected = {name: node for name, node in volume_nodes.items() if node is not None}
    gathered = gather_inputs(selected, resample=resample)
    gathered_at = time.perf_counter()
    prediction = predict(  # decodes colour-coded maps itself, with a note
        {name: gathered.images[name] for name in inputs},
        gathered.geometry.spacing_zyx,
        method=method,
        nihss=nihss,
        mip=gathered.images.get("mip"),
        device=device,
        progress=progress,
        cancel=cancel,
    )
    predicted_at = time.perf_counter()
    labels = np.asarray(prediction.labels, dtype=np.uint8)
    volumes = lesion_volumes(labels, gathered.geometry.spacing_zyx)
    new_segments = _lesion_segments(labels, gathered.geometry)
    _check_alive(scene, [gathered.reference, segmentation_node, table_node])

    # Everything is computed: only now touch the scene.
    if segmentation_node is None:
        name = output_name or f"{gathered.reference.GetName()} core-penumbra"
        segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        segmentation_node.CreateDefaultDisplayNodes()
    _replace_lesion_segments(segmentation_node, gathered.reference, new_segments)
    segmentation_node.SetAttribute(ATTRIBUTE_SOURCE, gathered.reference.GetID())
    if table_node is None:
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{segmentation_node.GetName()} volumes")
    fill_volumes_table(table_node, volumes)
    _place_beside(scene, segmentation_node, gathered.reference)
    _place_beside(scene, table_node, gathered.reference)
    finished = time.perf_counter()
    timings = {f"predict_{key}": value for key, value in prediction.timings.items()}
    timings.update(read_volumes_s=gathered_at - started, predict_s=predicted_at - gathered_at,
                   segments_and_table_s=finished - predicted_at, total_s=finished - started)
    return SegmentationResult(
        segmentation_node=segmentation_node,
        table_node=table_node,
        labels=labels,
        geometry=gathered.geometry,
        volumes=volumes,
        notes=gathered.notes + list(prediction.notes),
        timings=timings,
        device=str(prediction.device),
    )


def source_volume_of(segmentation_node, scene):
    """The volume a segmentation was computed from (for Segment Editor's source volume)."""
    node_id = segmentation_node.GetAttribute(ATTRIBUTE_SOURCE)
    return scene.GetNodeByID(node_id) if node_id else None


def write_segmentation(segmentation_node, path: str | os.PathLike) -> Path:
    """Save a segmentation node as ``.seg.nrrd`` (names, colours, terminology), atomically."""
    from slicer import vtkMRMLSegmentationStorageNode

    def write(temporary: Path) -> None:
        storage = vtkMRMLSegmentationStorageNode()
        storage.SetFileName(str(temporary))
        storage.SetUseCompression(True)
        if not storage.WriteData(segmentation_node):
            raise OSError(f"writing the segmentation to {path} failed")

    return write_file_atomically(path, write)


# --- 4D CTP -> maps ------------------------------------------------------------------------


def ctp_from_node(node, dt_s: float | None = None) -> tuple[np.ndarray, Geometry, float]:
    """A 4D CTP node as ``(ctp (t, z, y, x) float32 HU, geometry, dt_s)``.

    Accepts a ``vtkMRMLSequenceNode`` of scalar volumes (index values are frame times in s,
    used for ``dt_s`` when not given) or a multi-component volume (a multi-volume, one
    component per frame; ``dt_s`` from its ``MultiVolume.FrameLabels`` attribute in ms, or given).
    """
    if node is None:
        raise InputError("no 4D CTP selected: select a sequence or multi-volume node")
    if node.IsA("vtkMRMLSequenceNode"):
        frames = [node.GetNthDataNode(i) for i in range(node.GetNumberOfDataNodes())]
        if len(frames) < 2 or not all(f is not None and f.IsA("vtkMRMLScalarVolumeNode") for f in frames):
            raise InputError(f"sequence {_node_label(node)} is not a series of scalar volumes: select a 4D CTP")
        arrays = [array_from_node(frame) for frame in frames]
        if len({a.shape for a in arrays}) != 1:
            raise InputError(f"frames of {_node_label(node)} differ in size: it is not one CTP series")
        ctp = np.stack(arrays).astype(np.float32)
        geometry = geometry_from_node(frames[0])
        if dt_s is None:
            try:
                times = np.array([float(node.GetNthIndexValue(i)) for i in range(len(frames))])
            except ValueError:
                raise InputError(
                    f"sequence {_node_label(node)} has non-numeric frame times: enter the frame interval"
                ) from None
            if node.GetIndexUnit() == "ms":
                times = times / 1000.0
            dt_s = float(np.median(np.diff(times)))
    else:
        from vtk.util import numpy_support

        image = node.GetImageData()
        if image is None or image.GetNumberOfScalarComponents() < 2:
            raise InputError(
                f"{_node_label(node)} is a 3D volume, not a 4D CTP: select a sequence or multi-volume"
            )
        frames_count = image.GetNumberOfScalarComponents()
        flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
        ctp = np.moveaxis(flat.reshape(tuple(reversed(image.GetDimensions())) + (frames_count,)), -1, 0)
        ctp = ctp.astype(np.float32)
        geometry = geometry_from_node(node)
        labels = node.GetAttribute("MultiVolume.FrameLabels")
        if dt_s is None and labels:
            times_ms = np.array([float(v) for v in labels.split(",")])
            dt_s = float(np.median(np.diff(times_ms))) / 1000.0
    if dt_s is None or not dt_s > 0:
        raise InputError(f"frame interval of {_node_label(node)} is unknown: enter dt in s")
    return ctp, geometry, float(dt_s)


def compute_map_volumes(
    scene,
    ctp_node,
    *,
    dt_s: float | None = None,
    method: str = "bcsvd",
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, object]:
    """Compute perfusion maps from a 4D CTP node into scalar volume nodes.

    Re-running on the same CTP updates the map nodes made before (matched by attributes),
    so nodes never pile up. Returns map name -> node (``cbf``, ``cbv``, ``mtt``, ``ttp``,
    ``tmax``, ``mip``), each in the unit of :data:`.mapspecs.MAP_SPECS` (attribute ``StrokePerfusionSeg.Unit``).
    """
    from .perfusion import compute_perfusion_maps

    ctp, geometry, dt_s = ctp_from_node(ctp_node, dt_s)
    result = compute_perfusion_maps(
        ctp, dt_s, geometry.spacing_zyx, method=method, progress=progress, cancel=cancel
    )
    _check_alive(scene, [ctp_node])
    existing = {}
    for node in _nodes_of_class(scene, "vtkMRMLScalarVolumeNode"):
        if node.GetAttribute(ATTRIBUTE_SOURCE) == ctp_node.GetID() and node.GetAttribute(ATTRIBUTE_MAP):
            existing[node.GetAttribute(ATTRIBUTE_MAP)] = node
    nodes = {}
    for name, array in result.maps.items():
        if name not in MAP_SPECS:
            continue
        node = existing.get(name)
        if node is None:
            node = add_volume_node(scene, array, geometry, f"{ctp_node.GetName()} {name.upper()}",
                                   unit=MAP_SPECS[name].unit)
            node.SetAttribute(ATTRIBUTE_MAP, name)
            node.SetAttribute(ATTRIBUTE_SOURCE, ctp_node.GetID())
        else:
            set_node_array(node, array.astype(np.float32), geometry)
        low, high = MAP_SPECS[name].window
        display = node.GetDisplayNode()
        if display is not None:
            display.AutoWindowLevelOff()
            display.SetWindowLevelMinMax(low, high)
        _place_beside(scene, node, ctp_node)
        nodes[name] = node
    return nodes


def _nodes_of_class(scene, class_name: str) -> list:
    collection = scene.GetNodesByClass(class_name)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


# --- auto-fill -----------------------------------------------------------------------------

_NAME_HINTS = {
    "cbf": ("cbf", "blood flow", "rbf"),
    "cbv": ("cbv", "blood volume", "rbv"),
    "ttp": ("ttp", "time to peak", "time-to-peak"),
    "tmax": ("tmax", "t max", "t-max", "time to max"),
    "mip": ("mip", "maximum intensity"),
}


def guess_map_nodes(scene) -> dict[str, object]:
    """Map name -> volume node, where exactly one volume's name/series description names the map.

    A map named by several volumes (or none) is left out, so the user chooses.
    """
    candidates: dict[str, list] = {name: [] for name in _NAME_HINTS}
    for node in _nodes_of_class(scene, "vtkMRMLVolumeNode"):
        if node.IsA("vtkMRMLLabelMapVolumeNode"):
            continue
        text = " ".join(
            filter(None, [node.GetName(), node.GetAttribute("DICOM.SeriesDescription"),
                          node.GetAttribute(ATTRIBUTE_MAP)])
        ).lower()
        tokens = text.replace("_", " ").replace("-", " ").replace(".", " ").split()
        for name, hints in _NAME_HINTS.items():
            if any((" " in hint and hint in text) or hint in tokens for hint in hints):
                candidates[name].append(node)
    return {name: nodes[0] for name, nodes in candidates.items() if len(nodes) == 1}
