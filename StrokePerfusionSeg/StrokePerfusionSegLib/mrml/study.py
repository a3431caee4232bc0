"""The panel's adapter to the pipeline: selected volume nodes -> Study -> segments and table.

Volumes are read onto the grid of the first one (resampled with a note where the panel allows
it), colour-coded vector volumes are decoded by the same decoder as every other input, the
pipeline segments, and only then is the scene touched: a Cancel, an error or a closed scene
leaves the output segmentation as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..colourcoding import decode_colour_input
from ..errors import InputError
from ..mapspecs import MAP_NAMES, map_spec
from ..nihss import check_nihss
from ..studyio import GridCheck, Study
from .nodes import ATTRIBUTE_NOTES, ATTRIBUTE_SOURCE, array_from_node, check_alive, geometry_from_node, place_beside
from .segmentation import fill_volumes_table, lesion_segments, replace_lesion_segments


def study_from_nodes(
    volume_nodes: Mapping[str, object],
    *,
    nihss: int | None = None,
    resample: bool = True,
    study_id: str | None = None,
) -> tuple[Study, object]:
    """A :class:`~StrokePerfusionSegLib.studyio.Study` of the selected map volumes.

    Parameters
    ----------
    volume_nodes : mapping of str to vtkMRMLVolumeNode
        Map name -> scalar volume (map unit) or RGB vector volume (colour-coded); the first is
        the reference grid and the segmentation's source volume.
    nihss : int or None
    resample : bool
        Resample volumes on another grid onto the reference's (with a note); else refuse them.
    study_id : str, optional
        Default: the reference volume's name.

    Returns
    -------
    (Study, vtkMRMLVolumeNode)
        The study and its reference volume.
    """
    if not volume_nodes:
        raise InputError("no input volumes: select the map volumes the method needs")
    unselected = [name.upper() for name, node in volume_nodes.items() if node is None]
    if unselected:
        raise InputError(f"no volume selected for {', '.join(unselected)}: select one")
    started = time.perf_counter()
    notes: list[str] = []
    grid = GridCheck(resample, notes)
    maps = {}
    for name, node in volume_nodes.items():
        map_spec(name)  # unknown map name -> InputError
        values = array_from_node(node)
        origin = f"volume '{node.GetName()}'"
        if values.ndim == 4:
            values = decode_colour_input(values, name, origin, notes)
        maps[name] = grid.put(name, values.astype(np.float32), geometry_from_node(node), origin)
        made_with = node.GetAttribute(ATTRIBUTE_NOTES)  # the perfusion analysis' notes, once per study
        notes.extend(note for note in (made_with or "").split("\n") if note and note not in notes)
    reference = next(iter(volume_nodes.values()))
    study = Study(
        study_id=study_id or reference.GetName(),
        geometry=grid.geometry,
        maps={name: maps[name] for name in MAP_NAMES if name in maps},
        nihss=check_nihss(nihss),
        source={"kind": "slicer", "maps": {name: {"from": node.GetName()} for name, node in volume_nodes.items()}},
        notes=notes,
        timings={"read": time.perf_counter() - started},
    )
    return study, reference


@dataclass
class PanelResult:
    """What :func:`segment_volumes` put into the scene, with the pipeline's result."""

    segmentation_node: object
    table_node: object
    result: object  # pipeline.SegmentationResult

    @property
    def labels(self) -> np.ndarray:
        return self.result.labels

    @property
    def volumes(self):
        return self.result.volumes

    @property
    def notes(self) -> list[str]:
        return self.result.notes

    @property
    def timings(self) -> dict[str, float]:
        return self.result.timings

    @property
    def device(self) -> str:
        return self.result.device


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
) -> PanelResult:
    """Segment core and penumbra from map volumes of ``scene`` into one segmentation node.

    Parameters
    ----------
    scene : vtkMRMLScene
    volume_nodes : mapping of str to vtkMRMLVolumeNode
        See :func:`study_from_nodes`; unselected (None) entries are ignored.
    method : pipeline.Method, ``"threshold"``, model id, bundle folder or Bundle
    nihss : int or None
        NIH stroke scale 0..42; required when the model reads it.
    segmentation_node, table_node : MRML nodes or None
        Outputs to update (lesion segments and rows replaced); new nodes when None.
    device : ``"auto"``, ``"cpu"`` or ``"cuda"``
    resample : bool
    progress : callable(done, total), optional
    cancel : callable() -> bool, optional
        Polled by the predictor; True stops with ``CancelledError``, the scene untouched.
    output_name : str, optional
        Name of a new segmentation node (default ``<reference volume> core-penumbra``).

    Returns
    -------
    PanelResult
    """
    from ..pipeline import missing_maps, resolve_method, segment_study

    method = resolve_method(method)
    selected = {name: node for name, node in volume_nodes.items() if node is not None}
    missing = missing_maps(method, selected)
    if missing:
        raise InputError(f"the method needs {', '.join(m.upper() for m in missing)}: "
                         f"select {'it' if len(missing) == 1 else 'them'}")
    if method.uses_nihss and nihss is None:
        raise InputError(f"model {method.name} reads the NIHSS score: enter it (0-42) before Apply")
    study, reference = study_from_nodes(
        {name: selected[name] for name in dict.fromkeys((*method.required_maps, *selected))},
        nihss=nihss, resample=resample,
    )
    result = segment_study(study, method, device=device, progress=progress, cancel=cancel)
    segments = lesion_segments(result.labels, study.geometry)
    check_alive(scene, [reference, segmentation_node, table_node])

    # Everything is computed: only now touch the scene.
    started = time.perf_counter()
    if segmentation_node is None:
        segmentation_node = scene.AddNewNodeByClass(
            "vtkMRMLSegmentationNode", output_name or f"{reference.GetName()} core-penumbra"
        )
        segmentation_node.CreateDefaultDisplayNodes()
    replace_lesion_segments(segmentation_node, reference, segments)
    segmentation_node.SetAttribute(ATTRIBUTE_SOURCE, reference.GetID())
    if table_node is None:
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{segmentation_node.GetName()} volumes")
    fill_volumes_table(table_node, result.volumes)
    place_beside(scene, segmentation_node, reference)
    place_beside(scene, table_node, reference)
    result.timings["scene"] = time.perf_counter() - started
    result.timings["total"] = sum(value for key, value in result.timings.items() if key != "total")
    return PanelResult(segmentation_node, table_node, result)

