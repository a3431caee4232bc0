"""Turn a public dataset's patients into case folders and a cohort (the readers' shared part).

Every reader (one module per dataset) yields :class:`SourceCase` objects: the raw CTP in HU
with its frame interval, the dataset's own maps in the product's units, the lesion mask and
what the dataset says about the patient. :func:`build_case` completes one into a
:class:`~StrokePerfusionSegLib.casefolder.Case`:

* the product's perfusion analysis runs on the raw CTP; the maps the dataset lacks (TTP and
  MIP in all three datasets) come from it, with a note in ``case.json``; with
  ``maps="computed"`` every map does, so a dataset is seen through the same analysis as the
  product's own input;
* each dataset map (and reference map) is compared with the product's map of the same name
  inside the brain (``case.json`` ``scale_check``: median ratio, Pearson and Spearman
  correlation, :mod:`.mapagreement`): a ratio far from 1 shows a scaling the dataset's software
  applies and the documentation does not state; the cohort's table of them is
  ``map_agreement.md``;
* the label is 0 outside the analysis's brain mask, 1 inside and 3 where the dataset marks a
  lesion; its meaning is the dataset's label scheme (:mod:`..labelschemes`), named in
  ``case.json``.

:func:`convert_dataset` writes the whole cohort folder atomically: labelled cases are listed
in ``cohort.json`` with a patient-level train/val/test split (stratified by group), unlabelled
ones under ``unlabelled`` (they can be segmented, not trained or scored on).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import imageio
from ..atomic import staged_folder
from ..casefolder import Case, save_case, save_cohort_index
from ..errors import InputError
from ..imageio import Geometry
from ..perfusionmethods import DEFAULT_METHOD
from ..labels import BACKGROUND, BRAIN, CORE
from ..labelschemes import label_scheme
from .mapagreement import agreement_table, map_agreement

log = logging.getLogger(__name__)

MAP_SOURCES = ("dataset", "computed")
#: The cohort's map-agreement table (Markdown), beside cohort.json.
AGREEMENT_FILE = "map_agreement.md"
#: Train/val/test fractions of the conversion's split (the paper's 58/20/22).
SPLIT_FRACTIONS = (0.58, 0.20, 0.22)


@dataclass
class SourceCase:
    """One patient as a dataset reader found it.

    Attributes
    ----------
    case_id : str
    geometry : Geometry
        The grid of the CTP, the maps and the lesion mask (readers refuse mismatches).
    ctp : ndarray, shape (t, z, y, x)
        Raw CTP in HU, any real dtype.
    dt_s : float
        Frame interval in s.
    maps : dict of str to ndarray (z, y, x)
        The dataset's maps, in the units of :data:`~StrokePerfusionSegLib.mapspecs.MAP_SPECS`.
    lesion : ndarray of bool (z, y, x) or None
        The dataset's lesion mask; None for an unlabelled case.
    nihss : int or None
    group : str
        ``LVO``, ``NonLVO`` or ``unknown``.
    reference_maps : dict of str to ndarray (z, y, x)
        Maps kept only as a reference (units unknown), written as ``reference_<name>.nii.gz``.
    provenance : dict
        Files read and facts about them, copied into ``case.json`` under ``source``.
    notes : list of str
    label_scheme : str or None
        This case's label scheme when it differs from the dataset's (an ISLES 2024 case whose
        reperfusion is known).
    reperfusion : dict or None
        What the dataset says about reperfusion after treatment (``case.json`` ``reperfusion``).
    """

    case_id: str
    geometry: Geometry
    ctp: np.ndarray
    dt_s: float
    maps: dict = field(default_factory=dict)
    lesion: np.ndarray | None = None
    nihss: int | None = None
    group: str = "unknown"
    reference_maps: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    label_scheme: str | None = None
    reperfusion: dict | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is and what its files mean (each reader module defines one as ``INFO``)."""

    name: str
    title: str
    label_scheme: str
    map_software: str  # who computed the dataset's maps, their units and scaling, as documented


def read_nifti(path: Path, what: str) -> tuple[np.ndarray, Geometry, sitk.Image]:
    """A 3D or 4D NIfTI as ``(array, geometry, image)``; :class:`InputError` naming ``what`` otherwise."""
    if not path.is_file():
        raise InputError(f"{what}: {path} is missing; restore it from the dataset's archive")
    image = imageio.read_image(path)  # unreadable files are an InputError naming the file
    if image.GetDimension() not in (3, 4):
        raise InputError(f"{what}: {path.name} is {image.GetDimension()}D; expected a 3D or 4D image")
    # A copy: a view would outlive its image once the caller drops it.
    return sitk.GetArrayFromImage(image), Geometry.from_image(image), image


def read_map(path: Path, what: str, geometry: Geometry, shape) -> np.ndarray:
    """A 3D map on the CTP's grid (``geometry``, ``shape``) as float32; other grids are refused
    (no silent resampling)."""
    values, found, image = read_nifti(path, what)
    if image.GetDimension() != 3:
        raise InputError(f"{what}: {path.name} is {image.GetDimension()}D; a map must be 3D")
    check_grid(found, geometry, f"{what}: {path.name}", values.shape, shape)
    return np.asarray(values, dtype=np.float32)


def read_ctp(path: Path, what: str, dt_s: float | None) -> tuple[np.ndarray, Geometry, float, str]:
    """A 4D CTP NIfTI ``(x, y, z, t)`` as ``(ctp (t, z, y, x), geometry, dt_s, where dt_s came from)``."""
    ctp, geometry, image = read_nifti(path, what)
    if image.GetDimension() != 4:
        raise InputError(f"{what}: {path.name} is {image.GetDimension()}D with size {image.GetSize()}; "
                         "the CTP must be a 4D image (x, y, z, time)")
    if ctp.shape[0] < 3:
        raise InputError(f"{what}: {path.name} has {ctp.shape[0]} time frames; a CTP needs a bolus passage")
    if dt_s is not None:
        return ctp, geometry, float(dt_s), "given (--dt)"
    header_dt = imageio.frame_interval_s(path, image)
    low, high = imageio.PLAUSIBLE_FRAME_INTERVAL_S
    if header_dt is None or not low <= header_dt <= high:
        declared = "no frame interval" if header_dt is None else f"a frame interval of {header_dt:g} s"
        raise InputError(f"{what}: {path.name} gives {declared} in its header; give the real one with --dt SECONDS")
    return ctp, geometry, header_dt, "NIfTI header (pixdim[4])"


def check_grid(found: Geometry, expected: Geometry, what: str, shape, expected_shape) -> None:
    """:class:`InputError` unless ``found``/``shape`` is the CTP's grid."""
    if not (found.matches(expected) and tuple(shape) == tuple(expected_shape)):
        raise InputError(
            f"{what} is not on the CTP's grid (size {tuple(shape)} vs {tuple(expected_shape)}, spacing "
            f"{found.spacing} vs {expected.spacing}, origin {found.origin} vs {expected.origin}); "
            "use the co-registered files of the dataset"
        )


def read_mask(path: Path, what: str, geometry: Geometry, shape) -> np.ndarray:
    """A binary 3D mask on the CTP's grid as bool; other values are refused."""
    values, found, image = read_nifti(path, what)
    if image.GetDimension() != 3:
        raise InputError(f"{what}: {path.name} is {image.GetDimension()}D; a mask must be 3D")
    check_grid(found, geometry, f"{what}: {path.name}", values.shape, shape)
    unique = np.unique(values)
    if not set(unique.tolist()) <= {0, 1}:
        raise InputError(f"{what}: {path.name} holds values {unique[:6].tolist()}; a lesion mask must be 0/1")
    return np.asarray(values, dtype=bool)


def build_case(source: SourceCase, info: DatasetInfo, *, maps: str = "dataset", keep_ctp: bool = False,
               perfusion_method: str = DEFAULT_METHOD) -> Case:
    """Complete a :class:`SourceCase` into a :class:`Case` (see the module docstring)."""
    from ..perfusion import compute_perfusion_maps

    if maps not in MAP_SOURCES:
        raise InputError(f"unknown map source '{maps}': use one of {', '.join(MAP_SOURCES)}")
    try:
        result = compute_perfusion_maps(source.ctp, source.dt_s, source.geometry.spacing_zyx, method=perfusion_method)
    except InputError as error:
        raise InputError(f"{info.title} case {source.case_id}: {error}") from None
    computed = {name: np.asarray(values, dtype=np.float32) for name, values in result.maps.items()}
    chosen = dict(computed)
    origin = {name: f"computed from the CTP ({perfusion_method})" for name in computed}
    if maps == "dataset":
        for name, values in source.maps.items():
            chosen[name] = np.asarray(values, dtype=np.float32)
            origin[name] = f"{info.title}, as distributed"
    lacking = sorted(set(computed) - set(source.maps))
    notes = list(source.notes) + list(result.notes)
    if maps == "dataset" and lacking:
        notes.append(f"{', '.join(n.upper() for n in lacking)} not in {info.title}: computed from its raw CTP "
                     "with the product's perfusion analysis")
    scale_check = {name: map_agreement(computed[name], values, result.brain_mask)
                   for name, values in {**source.maps, **source.reference_maps}.items() if name in computed}
    label = None
    if source.lesion is not None:
        label = np.where(result.brain_mask, BRAIN, BACKGROUND).astype(np.uint8)
        label[source.lesion] = CORE
    scheme = (source.label_scheme or info.label_scheme) if source.lesion is not None else "none"
    meta = {
        "dataset": info.name,
        "label_scheme": scheme,
        "label_meaning": label_scheme(scheme).description if source.lesion is not None else None,
        "maps_from": origin,
        "map_software": info.map_software,
        "scale_check": {"what": "the dataset's map vs the product's map inside the brain", **scale_check},
        "source": source.provenance,
        "notes": notes,
    }
    if source.reperfusion is not None:
        meta["reperfusion"] = source.reperfusion
    return Case(case_id=source.case_id, geometry=source.geometry, maps=chosen, group=source.group,
                nihss=source.nihss, dt_s=source.dt_s,
                ctp=np.asarray(source.ctp, dtype=np.float32) if keep_ctp else None, label=label, meta=meta)


def _split(entries: list[dict], seed: int) -> None:
    from ..phantom.cohort import split_patients

    splits = split_patients([e["group"] for e in entries], SPLIT_FRACTIONS, np.random.default_rng(seed))
    for entry, split in zip(entries, splits):
        entry["split"] = split


def convert_dataset(reader, source_root: str | os.PathLike, out: str | os.PathLike, *,
                    dt_s: float | None = None, maps: str = "dataset", keep_ctp: bool = False,
                    split_seed: int = 0, overwrite: bool = False,
                    progress: Callable[[int, int, str], None] | None = None) -> Path:
    """Convert every case a reader finds under ``source_root`` into the cohort folder ``out``.

    Parameters
    ----------
    reader : module
        A dataset module of this package (``INFO``, ``find_cases``, ``read_case``).
    dt_s : float, optional
        Frame interval (s) to use instead of the files' own.
    maps : {"dataset", "computed"}
        Keep the dataset's maps (computing only those it lacks) or compute every map.
    keep_ctp : bool
        Also store each raw CTP (``ctp.nii.gz``, int16 HU; large).
    split_seed : int
        Seed of the patient-level train/val/test split of the labelled cases.

    Returns
    -------
    Path
        ``out``, written atomically (nothing is left behind when a case fails), with
        ``map_agreement.md``: the dataset's maps vs the product's, per map over the cases.
    """
    info = reader.INFO
    handles = reader.find_cases(Path(source_root))
    labelled, unlabelled, agreements = [], [], {}
    with staged_folder(out, overwrite=overwrite) as staging:
        for index, handle in enumerate(handles):
            source = reader.read_case(handle, dt_s=dt_s)
            if progress is not None:
                progress(index, len(handles), source.case_id)
            case = build_case(source, info, maps=maps, keep_ctp=keep_ctp)
            folder = save_case(case, staging / source.case_id, overwrite=True)
            for name, values in source.reference_maps.items():
                imageio.write_array(np.asarray(values, dtype=np.float32), source.geometry,
                                    folder / f"reference_{name}.nii.gz")
            entry = {"id": source.case_id, "group": source.group, "nihss": source.nihss}
            (labelled if case.label is not None else unlabelled).append(entry)
            agreements[source.case_id] = {k: v for k, v in case.meta["scale_check"].items() if k != "what"}
            log.info("%s: converted %s", info.title, source.case_id)
        (staging / AGREEMENT_FILE).write_text(agreement_table(
            agreements, f"{info.title} maps vs this product's maps ({len(agreements)} cases)"))
        _split(labelled, split_seed)
        save_cohort_index(staging, labelled, extra={
            "dataset": info.name, "label_scheme": info.label_scheme, "unlabelled": unlabelled,
            "converted_from": str(Path(source_root)), "maps": maps, "split_seed": split_seed,
        })
    return Path(out)


def read_json_sidecar(path: Path, what: str) -> dict:
    """A BIDS JSON sidecar as a dict ({} when absent); a malformed one is an :class:`InputError`."""
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{what}: sidecar {path.name} is not valid JSON ({error}); fix or remove it") from None
    if not isinstance(document, dict):
        raise InputError(f"{what}: sidecar {path.name} must hold a JSON object")
    return document
