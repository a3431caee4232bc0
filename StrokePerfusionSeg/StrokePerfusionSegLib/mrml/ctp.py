"""4D CTP in the scene: a sequence (or multi-volume) node in, perfusion map volumes out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..imageio import Geometry
from ..mapspecs import MAP_SPECS
from ..perfusionmethods import DEFAULT_METHOD
from .nodes import (
    ATTRIBUTE_MAP,
    ATTRIBUTE_NOTES,
    ATTRIBUTE_SOURCE,
    add_volume_node,
    array_from_node,
    check_alive,
    geometry_from_node,
    node_label,
    nodes_of_class,
    place_beside,
    set_node_array,
)


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
            raise InputError(f"sequence {node_label(node)} is not a series of scalar volumes: select a 4D CTP")
        arrays = [array_from_node(frame) for frame in frames]
        if len({a.shape for a in arrays}) != 1:
            raise InputError(f"frames of {node_label(node)} differ in size: it is not one CTP series")
        ctp = np.stack(arrays).astype(np.float32)
        geometry = geometry_from_node(frames[0])
        if dt_s is None:
            try:
                times = np.array([float(node.GetNthIndexValue(i)) for i in range(len(frames))])
            except ValueError:
                raise InputError(
                    f"sequence {node_label(node)} has non-numeric frame times: enter the frame interval"
                ) from None
            if node.GetIndexUnit() == "ms":
                times = times / 1000.0
            dt_s = float(np.median(np.diff(times)))
    else:
        from vtk.util import numpy_support

        image = node.GetImageData()
        if image is None or image.GetNumberOfScalarComponents() < 2:
            raise InputError(
                f"{node_label(node)} is a 3D volume, not a 4D CTP: select a sequence or multi-volume"
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
        raise InputError(f"frame interval of {node_label(node)} is unknown: enter dt in s")
    return ctp, geometry, float(dt_s)


@dataclass
class MapVolumes:
    """The map volume nodes made from a CTP, and what the analysis wants the user to know."""

    nodes: dict[str, object]
    notes: list[str] = field(default_factory=list)


def compute_map_volumes(
    scene,
    ctp_node,
    *,
    dt_s: float | None = None,
    perfusion_method: str = DEFAULT_METHOD,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> MapVolumes:
    """Compute perfusion maps from a 4D CTP node into scalar volume nodes.

    Re-running on the same CTP updates the map nodes made before (matched by attributes),
    so nodes never pile up. The nodes (``cbf``, ``cbv``, ``mtt``, ``ttp``, ``tmax``, ``mip``)
    are in the units of :data:`.mapspecs.MAP_SPECS` (attribute ``StrokePerfusionSeg.Unit``) and
    carry the analysis' notes (attribute ``StrokePerfusionSeg.Notes``), which a later Apply on
    them reports.
    """
    from ..perfusion import compute_perfusion_maps

    ctp, geometry, dt_s = ctp_from_node(ctp_node, dt_s)
    result = compute_perfusion_maps(
        ctp, dt_s, geometry.spacing_zyx, method=perfusion_method, progress=progress, cancel=cancel
    )
    check_alive(scene, [ctp_node])
    existing = {}
    for node in nodes_of_class(scene, "vtkMRMLScalarVolumeNode"):
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
        node.SetAttribute(ATTRIBUTE_NOTES, "\n".join(result.notes))
        place_beside(scene, node, ctp_node)
        nodes[name] = node
    return MapVolumes(nodes, list(result.notes))
