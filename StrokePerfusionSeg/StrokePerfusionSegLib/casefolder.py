"""The case folder and cohort formats.

A case folder holds ``cbf``, ``cbv``, ``mtt``, ``ttp``, ``tmax``, ``mip`` as float32 NIfTI
(``<name>.nii.gz``), optionally ``ctp.nii.gz`` (4D, whole HU as int16), colour-coded copies
``<name>_rgb.nii.gz`` (uint8 RGB), ``label.nii.gz`` (uint8 0..3; what its values mean is the
``label_scheme`` named in ``case.json``, see :mod:`.labelschemes`) and ``case.json``.
A cohort is a folder of case folders plus ``cohort.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from . import imageio
from .atomic import staged_folder, write_text_atomically
from .errors import InputError
from .imageio import Geometry, check_frame_interval
from .mapspecs import MAP_NAMES, MAP_SPECS
from .nihss import check_nihss
from .studyid import check_study_id, study_id_from_path

GROUPS = ("LVO", "NonLVO", "WIS")
#: Group of a public dataset's patient when the dataset does not say (training accepts it).
UNKNOWN_GROUP = "unknown"
SPLITS = ("train", "val", "test")
CASE_JSON = "case.json"
COHORT_JSON = "cohort.json"


@dataclass
class Case:
    """One patient study in memory.

    Attributes
    ----------
    case_id : str
    geometry : Geometry
        Grid shared by every 3D array of the case.
    maps : dict of str to ndarray of float32, shape (z, y, x)
        Parametric maps in the units of :data:`~StrokePerfusionSegLib.mapspecs.MAP_SPECS`.
    group : str or None
        ``LVO``, ``NonLVO`` or ``WIS`` when known.
    nihss : int or None
        NIH stroke scale score, 0..42.
    dt_s : float or None
        Frame interval of the CTP in s.
    ctp : ndarray of float32, shape (t, z, y, x), or None
        Raw CTP in HU.
    rgb : dict of str to ndarray of uint8, shape (z, y, x, 3)
        Colour-coded copies of maps.
    label : ndarray of uint8, shape (z, y, x), or None
        0 background, 1 brain, 2 penumbra, 3 core.
    meta : dict
        Everything else in ``case.json`` (units, source, generator parameters).
    """

    case_id: str
    geometry: Geometry
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    group: str | None = None
    nihss: int | None = None
    dt_s: float | None = None
    ctp: np.ndarray | None = None
    rgb: dict[str, np.ndarray] = field(default_factory=dict)
    label: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(z, y, x)`` shape of the case's 3D grid."""
        for array in (*self.maps.values(), self.label):
            if array is not None:
                return tuple(array.shape[:3])
        if self.ctp is not None:
            return tuple(self.ctp.shape[1:])
        raise InputError(f"case {self.case_id} holds no image")

    def case_json(self) -> dict:
        """The ``case.json`` content of this case."""
        document = dict(self.meta)
        document.update(
            id=self.case_id,
            group=self.group,
            nihss=self.nihss,
            dt_s=self.dt_s,
            units={name: MAP_SPECS[name].unit for name in self.maps} | {"ctp": "HU"},
        )
        return document


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold an object ``{...}``; an :class:`InputError` naming it otherwise."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text (a binary file?): replace it with the JSON file, or remove it") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path} is not valid JSON ({error}); fix or remove it") from None
    if not isinstance(document, dict):
        raise InputError(
            f"{path} holds a JSON {type(document).__name__ if document is not None else 'null'} where an "
            "object {...} is expected: fix or remove it"
        )
    return document


def read_case_json(path: Path) -> dict:
    """``case.json`` with its known fields checked for type and range.

    ``id`` must be a safe study id, ``group`` a string, ``nihss`` a whole score 0..42 (JSON
    ``true`` is not 1), ``dt_s`` a plausible frame interval in s; each may be absent or null.
    """
    document = read_json_object(path)
    if document.get("id") is not None:
        document["id"] = check_study_id(document["id"], source=f"{path} id")
    if document.get("group") is not None and not isinstance(document["group"], str):
        raise InputError(f"{path}: group {document['group']!r} is not a name: use one of {', '.join(GROUPS)} or null")
    document["nihss"] = check_nihss(document.get("nihss"), what=f"{path}: nihss")
    if document.get("dt_s") is not None:
        document["dt_s"] = check_frame_interval(
            document["dt_s"], source=f"{path} dt_s", fix="set dt_s to the seconds between CTP frames"
        )
    return document


def write_json(document: dict, path: str | os.PathLike) -> Path:
    """Write JSON atomically (temporary file, then rename)."""
    return write_text_atomically(path, json.dumps(document, indent=2) + "\n")


def ctp_as_stored(ctp_hu: np.ndarray) -> np.ndarray:
    """CTP in whole HU as int16, the way scanners store it (files 6x smaller than float32)."""
    return np.clip(np.round(ctp_hu), -32768, 32767).astype(np.int16)


def save_case(case: Case, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``case`` as a case folder, atomically.

    Everything is written into a hidden temporary folder beside ``folder``, which is renamed
    into place at the end; an existing ``folder`` is an :class:`InputError` unless
    ``overwrite``.
    """
    with staged_folder(folder, overwrite=overwrite) as staging:
        for name, array in case.maps.items():
            imageio.write_array(array.astype(np.float32), case.geometry, staging / f"{name}.nii.gz")
        for name, array in case.rgb.items():
            imageio.write_array(array.astype(np.uint8), case.geometry, staging / f"{name}_rgb.nii.gz")
        if case.ctp is not None:
            imageio.write_array(ctp_as_stored(case.ctp), case.geometry, staging / "ctp.nii.gz", dt_s=case.dt_s)
        if case.label is not None:
            imageio.write_array(case.label.astype(np.uint8), case.geometry, staging / "label.nii.gz")
        write_json(case.case_json(), staging / CASE_JSON)
    return Path(folder)


def _read_checked(path: Path, case_id: str, first: tuple[Path, Geometry] | None):
    """Read ``path``; its grid must match the ``first`` file's (path, geometry) when given."""
    array, found, _ = imageio.read_array(path)
    if first is not None and not found.matches(first[1]):
        raise InputError(
            f"case {case_id}: {path.name} and {first[0].name} are on different grids "
            f"({'; '.join(found.differences(first[1]))}); check both headers and export the maps on one grid"
        )
    return array, first or (path, found)


def load_case(
    folder: str | os.PathLike,
    *,
    maps: tuple[str, ...] | None = None,
    with_ctp: bool = False,
    with_rgb: bool = False,
    with_label: bool = True,
) -> Case:
    """Read a case folder.

    Parameters
    ----------
    folder : path
    maps : tuple of str, optional
        Maps to read (default: every map file present). A requested map that is missing is an
        :class:`InputError`.
    with_ctp, with_rgb, with_label : bool
        Also read ``ctp.nii.gz``, the ``*_rgb`` copies, ``label.nii.gz`` when present.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"case folder not found: {folder}")
    meta = read_case_json(folder / CASE_JSON) if (folder / CASE_JSON).is_file() else {}
    case_id = meta.pop("id", None) or study_id_from_path(folder)
    wanted = maps if maps is not None else tuple(n for n in MAP_NAMES if (folder / f"{n}.nii.gz").is_file())
    loaded, first = _read_maps(folder, case_id, wanted)
    rgb = {}
    if with_rgb:
        rgb, first = _read_rgb_copies(folder, case_id, wanted, first)
    label = None
    if with_label and (folder / "label.nii.gz").is_file():
        label, first = _read_label(folder, case_id, first)
    ctp = None
    dt_s = meta.pop("dt_s", None)
    if with_ctp:
        ctp, first, dt_s = _read_ctp(folder, case_id, first, dt_s)
    if first is None:
        raise InputError(f"case folder {folder} holds no map, label or CTP image")
    meta.pop("units", None)
    return Case(
        case_id=case_id,
        geometry=first[1],
        maps=loaded,
        group=meta.pop("group", None),
        nihss=meta.pop("nihss", None),
        dt_s=dt_s,
        ctp=ctp,
        rgb=rgb,
        label=label,
        meta=meta,
    )


#: The grid of a case: (path, geometry) of the first image read from it, or None before.
_First = Optional[Tuple[Path, Geometry]]  # typing: Slicer 5.8 runs Python 3.9


def _read_maps(folder: Path, case_id: str, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], _First]:
    """The scalar maps ``names`` as float32 ``(z, y, x)`` on one grid, and that grid."""
    first = None
    loaded = {}
    for name in names:
        path = folder / f"{name}.nii.gz"
        if not path.is_file():
            raise InputError(f"case {case_id}: missing {path.name} in {folder}; add it or choose other inputs")
        array, first = _read_checked(path, case_id, first)
        if array.ndim != 3:
            raise InputError(f"case {case_id}: {path.name} must be a 3D scalar image, got shape {array.shape}")
        loaded[name] = array.astype(np.float32)
    return loaded, first


def _read_rgb_copies(folder: Path, case_id: str, names: tuple[str, ...], first: _First):
    """The ``<name>_rgb`` copies present for ``names`` (uint8 ``(z, y, x, 3)``), and the grid."""
    rgb = {}
    for name in names:
        path = folder / f"{name}_rgb.nii.gz"
        if path.is_file():
            rgb[name], first = _read_checked(path, case_id, first)
    return rgb, first


def _read_label(folder: Path, case_id: str, first: _First) -> tuple[np.ndarray, _First]:
    """``label.nii.gz`` as uint8 0..3, and the grid."""
    label, first = _read_checked(folder / "label.nii.gz", case_id, first)
    if label.size and (label.min() < 0 or label.max() > 3):
        raise InputError(f"case {case_id}: label.nii.gz has values outside 0..3; relabel it")
    return label.astype(np.uint8), first


def _read_ctp(folder: Path, case_id: str, first: _First, dt_s: float | None):
    """``ctp.nii.gz`` as float32 HU ``(t, z, y, x)``, the grid, and the frame interval in s.

    ``dt_s`` from ``case.json`` wins; otherwise the header's, through
    :func:`imageio.checked_frame_interval_s` (0, negative or NaN are refused, not read as 1 s).
    """
    path = folder / "ctp.nii.gz"
    if not path.is_file():
        raise InputError(f"case {case_id}: no ctp.nii.gz in {folder}")
    image = imageio.read_image(path)
    if image.GetDimension() != 4:
        raise InputError(f"{path} is {image.GetDimension()}D: a CTP must be a 4D image (x, y, z, t); replace it")
    ctp = imageio.sitk.GetArrayFromImage(image).astype(np.float32)
    first = first or (path, Geometry.from_image(image))
    if dt_s is None:
        dt_s = imageio.checked_frame_interval_s(path, image)
    return ctp, first, dt_s


@dataclass
class Cohort:
    """A folder of case folders with their groups and patient-level split."""

    root: Path
    cases: list[dict]  # each {"id", "group", "nihss", "split"}

    def ids(self, split: str | None = None, group: str | None = None) -> list[str]:
        """Case ids, optionally of one split and/or one group."""
        return [
            c["id"]
            for c in self.cases
            if (split is None or c.get("split") == split) and (group is None or c.get("group") == group)
        ]

    def case_folder(self, case_id: str) -> Path:
        return self.root / case_id


def save_cohort_index(root: str | os.PathLike, cases: list[dict], extra: dict | None = None) -> Path:
    """Write ``cohort.json`` listing ``cases`` (dicts with id, group, nihss, split)."""
    document = {"cases": cases, "groups": sorted({c["group"] for c in cases})}
    document["split"] = {s: [c["id"] for c in cases if c.get("split") == s] for s in SPLITS}
    document.update(extra or {})
    return write_json(document, Path(root) / COHORT_JSON)


def load_cohort(root: str | os.PathLike) -> Cohort:
    """Read ``cohort.json`` of a cohort folder."""
    root = Path(root)
    index = root / COHORT_JSON
    if not index.is_file():
        raise InputError(f"{root} is not a cohort: {COHORT_JSON} is missing (make one with `strokeperfusionseg phantom`)")
    cases = read_json_object(index).get("cases", [])
    if not (isinstance(cases, list) and all(isinstance(c, dict) and isinstance(c.get("id"), str) for c in cases)):
        raise InputError(f"{index}: 'cases' must be a list of {{\"id\": ...}} objects; fix it or make the cohort again")
    return Cohort(root=root, cases=cases)
