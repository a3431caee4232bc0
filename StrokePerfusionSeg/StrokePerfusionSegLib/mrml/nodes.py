"""MRML volume nodes: geometry, arrays, reading files, Subject Hierarchy and finding the maps.

Slicer keeps volumes in RAS (IJK-to-RAS matrix), SimpleITK/NIfTI files in LPS.
:func:`geometry_from_node` and :func:`ijk_to_ras` convert between a node and
:class:`~StrokePerfusionSegLib.imageio.Geometry` by flipping the first two world axes.

Like every module of :mod:`StrokePerfusionSegLib.mrml`, it never imports ``slicer.app``, ``qt``
or ``slicer.util`` and never reaches for a global scene: the caller hands in the scene, so the
same code runs inside 3D Slicer and on the ``slicer-core`` wheel (how CI tests it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..imageio import Geometry
from ..mapspecs import MAP_SPECS

#: Node attributes that tie generated nodes to this module (so re-runs update, never pile up).
ATTRIBUTE_MAP = "StrokePerfusionSeg.Map"
ATTRIBUTE_SOURCE = "StrokePerfusionSeg.SourceNodeID"
ATTRIBUTE_UNIT = "StrokePerfusionSeg.Unit"
#: Notes of the analysis that made a map volume (newline-separated), carried into Apply's notes.
ATTRIBUTE_NOTES = "StrokePerfusionSeg.Notes"
_RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _matrix_to_numpy(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(i, j) for j in range(4)] for i in range(4)])


def numpy_to_matrix(array: np.ndarray):
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


def node_label(node) -> str:
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
        raise InputError(f"volume {node_label(node)} holds no image data: load it again")
    image = node.GetImageData()
    dims = image.GetDimensions()
    components = image.GetNumberOfScalarComponents()
    if min(dims) < 2:
        raise InputError(
            f"volume {node_label(node)} is 2D ({dims[0]}x{dims[1]}x{dims[2]} voxels): "
            "select a 3D map volume"
        )
    if components > 3:
        raise InputError(
            f"volume {node_label(node)} has {components} frames/components (a 4D series?): "
            "select a 3D map, or load it as CTP and press 'Compute perfusion maps'"
        )
    if components == 2:
        raise InputError(f"volume {node_label(node)} has 2 components: give a scalar or RGB volume")
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    shape = tuple(reversed(dims)) + ((3,) if components == 3 else ())
    array = np.array(flat, copy=True).reshape(shape)
    if components == 3 and array.dtype != np.uint8:
        raise InputError(
            f"volume {node_label(node)} is a {array.dtype} vector volume: colour-coded maps must "
            "be 8-bit RGB"
        )
    return array


def vtk_image(array: np.ndarray):
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
    node.SetIJKToRASMatrix(numpy_to_matrix(ijk_to_ras(geometry)))
    node.SetAndObserveImageData(vtk_image(array))


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

    from ..imageio import READABLE_SUFFIXES

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


def put_in_item(scene, node, item: int) -> None:
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
        put_in_item(scene, node, study)
    return nodes


def nodes_of_class(scene, class_name: str) -> list:
    collection = scene.GetNodesByClass(class_name)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def check_alive(scene, nodes) -> None:
    for node in nodes:
        if node is not None and node.GetScene() is not scene:
            raise InputError(
                f"node {node_label(node)} left the scene while segmenting (scene closed?): "
                "load the study again and press Apply"
            )


def place_beside(scene, node, reference) -> None:
    """Put ``node`` in the Subject Hierarchy folder (study) that holds ``reference``."""
    from slicer import vtkMRMLSubjectHierarchyNode

    hierarchy = vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    reference_item = hierarchy.GetItemByDataNode(reference)
    parent = hierarchy.GetItemParent(reference_item) if reference_item else hierarchy.GetSceneItemID()
    put_in_item(scene, node, parent or hierarchy.GetSceneItemID())


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
    for node in nodes_of_class(scene, "vtkMRMLVolumeNode"):
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
