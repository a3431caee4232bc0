"""Bring the inputs of one study onto one geometry: maps, MIP, NIHSS and where they came from.

A study comes from exactly one of

* a case folder (``casefolder.load_case``),
* a DICOM folder (map series recognised by name, or a 4D CTP series),
* explicit map files (NIfTI/NRRD/MetaImage; scalar, or colour-coded RGB decoded like DICOM
  secondary captures),
* a 4D CTP file, from which the maps are computed first.

Whenever the maps are missing but a CTP is there, the maps are computed with
:func:`~StrokePerfusionSegLib.perfusion.compute_perfusion_maps`. Every map must lie on the
grid of the first one (same shape, spacing, origin and LPS direction); otherwise an
:class:`~StrokePerfusionSegLib.errors.InputError` names the map, unless the caller asks for
resampling, which is then done linearly onto the first map's grid and recorded in the notes.
Orientation is never changed. :attr:`Study.source` describes the inputs without patient
identifiers, for reports.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import imageio
from .errors import InputError
from .nihss import check_nihss
from .colourcoding import decode_colour_input
from .imageio import Geometry
from .mapspecs import MAP_NAMES, PERFUSION_MAP_INPUTS, map_spec
from .perfusionmethods import DEFAULT_METHOD

log = logging.getLogger(__name__)

#: The map every study loads when it is available (brain mask, report background).
OPTIONAL_MAPS = ("mip",)


@dataclass
class Study:
    """The inputs of one study on one grid.

    Attributes
    ----------
    study_id : str
        A label chosen by the user (folder or file name); never read from patient attributes.
    geometry : Geometry
    maps : dict of str to ndarray of float32, shape (z, y, x)
        In the units of :data:`~StrokePerfusionSegLib.mapspecs.MAP_SPECS`.
    nihss : int or None
    source : dict
        JSON-ready description of the inputs: ``kind`` (case, dicom, files, ctp) and per map
        how it was obtained (quantitative, colour, computed) and from which series/file name.
    reference_headers : list of pydicom.Dataset or None
        DICOM input only: the headers, in z order, of a series on the study grid, which a DICOM
        Segmentation refers to.
    dt_s : float or None
        Frame interval of the CTP (s) when the maps were computed.
    brain_mask : ndarray of bool, shape (z, y, x), or None
        The perfusion analysis' brain mask when the maps were computed here from a CTP (the
        segmentation reuses it instead of deriving it again from the MIP).
    notes : list of str
        What was assumed, converted or masked on the way, the perfusion analysis' notes included.
    timings : dict of str to float
        Seconds per stage (``read``, ``perfusion``).
    """

    study_id: str
    geometry: Geometry
    maps: dict[str, np.ndarray]
    nihss: int | None = None
    source: dict = field(default_factory=dict)
    reference_headers: list | None = None
    dt_s: float | None = None
    brain_mask: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return next(iter(self.maps.values())).shape

    @property
    def is_dicom(self) -> bool:
        return self.reference_headers is not None


class GridCheck:
    """Checks (or resamples) every map onto the first map's grid; resampling is noted."""

    def __init__(self, resample: bool, notes: list[str]):
        self.resample = resample
        self.notes = notes
        self.geometry: Geometry | None = None
        self.shape: tuple | None = None
        self.first = ""

    def put(self, name: str, values: np.ndarray, geometry: Geometry, origin: str) -> np.ndarray:
        if self.geometry is None:
            self.geometry, self.shape, self.first = geometry, values.shape, f"{name.upper()} ({origin})"
            return values
        if values.shape == self.shape and geometry.matches(self.geometry):
            return values
        if not self.resample:
            differences = ([f"shape {values.shape} vs {self.shape}"] if values.shape != self.shape else [])
            raise InputError(
                f"{name.upper()} ({origin}) and {self.first} are on different grids "
                f"({'; '.join(differences + geometry.differences(self.geometry))}); export all maps on one grid, "
                "or, only if both come from one acquisition of this patient, allow resampling (--resample)"
            )
        resampled = imageio.resample_onto(values.astype(np.float32), geometry, self.geometry, self.shape)
        note = f"{name.upper()} ({origin}): resampled linearly onto the grid of {self.first}"
        log.warning(note)
        self.notes.append(note)
        return resampled.astype(np.float32)


@dataclass
class _ComputedMaps:
    """The perfusion analysis' output that a study keeps."""

    maps: dict[str, np.ndarray]
    brain_mask: np.ndarray
    notes: list[str]
    settings: dict  # method, kh, rho_g_per_ml as used


def _maps_from_ctp(ctp, dt_s, geometry, perfusion, progress, cancel, timings) -> _ComputedMaps:
    """Maps of a raw CTP; ``perfusion``: ``method``, ``kh``, ``rho`` given to load_study (None = default)."""
    from .perfusion import compute_perfusion_maps
    from .tracer import KH, RHO

    method = perfusion["method"] or DEFAULT_METHOD
    kh = KH if perfusion["kh"] is None else perfusion["kh"]
    rho = RHO if perfusion["rho"] is None else perfusion["rho"]
    start = time.perf_counter()
    # Any real dtype as stored (int16 from case folders): the analysis never copies the 4D series.
    result = compute_perfusion_maps(
        ctp, float(dt_s), geometry.spacing_zyx,
        method=method, kh=kh, rho=rho, progress=progress, cancel=cancel,
    )
    timings["perfusion"] = time.perf_counter() - start
    maps = {name: np.asarray(values, dtype=np.float32) for name, values in result.maps.items()}
    note = f"perfusion maps computed from the raw CTP: method {method}, kh {kh:g}, rho {rho:g} g/ml"
    return _ComputedMaps(maps, np.asarray(result.brain_mask, dtype=bool), [note, *result.notes],
                         {"method": method, "kh": kh, "rho_g_per_ml": rho})


def _wanted(needed: Sequence[str]) -> tuple[str, ...]:
    for name in needed:
        map_spec(name)
    return tuple(dict.fromkeys((*needed, *OPTIONAL_MAPS)))


@dataclass
class _Loaded:
    """What one source gave: maps on ``grid`` and how they were obtained."""

    label: str
    maps: dict[str, np.ndarray]
    source: dict
    nihss: int | None = None
    reference_headers: list | None = None
    dt_s: float | None = None
    brain_mask: np.ndarray | None = None


def _computed_source(origin: str, computed: _ComputedMaps) -> dict:
    return {name: {"from": origin, "kind": "computed", **computed.settings} for name in computed.maps}


def _from_case(folder, needed, grid: GridCheck, notes, *, perfusion, progress, cancel, timings) -> _Loaded:
    from .casefolder import load_case

    folder = Path(folder)
    present = [n for n in _wanted(needed) if (folder / f"{n}.nii.gz").is_file()]
    missing = [n for n in needed if n not in present]
    with_ctp = bool(missing) and (folder / "ctp.nii.gz").is_file()
    if missing and not with_ctp and folder.is_dir():
        raise InputError(
            f"case {folder.name}: {', '.join(f'{n}.nii.gz' for n in missing)} missing in {folder} "
            "and no ctp.nii.gz to compute them from; add the maps or the CTP"
        )
    case = load_case(folder, maps=() if with_ctp else tuple(present), with_ctp=with_ctp, with_label=False)
    loaded = _Loaded(case.case_id, {}, {"kind": "case", "case": folder.name, "maps": {}}, case.nihss, dt_s=case.dt_s)
    if with_ctp:
        computed = _maps_from_ctp(case.ctp, case.dt_s, case.geometry, perfusion, progress, cancel, timings)
        notes.extend(computed.notes)
        loaded.brain_mask = computed.brain_mask
        loaded.source["maps"] = _computed_source("ctp.nii.gz", computed)
        maps = computed.maps
    else:
        maps = case.maps
        loaded.source["maps"] = {n: {"from": f"{n}.nii.gz", "kind": "quantitative"} for n in maps}
    loaded.maps = {name: grid.put(name, values, case.geometry, f"{name}.nii.gz") for name, values in maps.items()}
    return loaded


def _from_files(map_files: Mapping[str, os.PathLike], needed, grid: GridCheck, notes) -> _Loaded:
    missing = [n for n in needed if n not in map_files]
    if missing:
        raise InputError(f"missing map file(s) for {', '.join(missing)}: give --{' --'.join(missing)} FILE")
    loaded = _Loaded(Path(next(iter(map_files.values()))).parent.name, {}, {"kind": "files", "maps": {}})
    for name, path in map_files.items():
        map_spec(name)
        values, geometry, image = imageio.read_array(path)
        kind = "quantitative"
        if image.GetNumberOfComponentsPerPixel() == 3 and values.dtype == np.uint8:
            values, kind = decode_colour_input(values, name, Path(path).name, notes), "colour"
        elif values.ndim != 3:
            raise InputError(f"{Path(path).name} for {name.upper()} must be a 3D map, got shape {values.shape}")
        loaded.maps[name] = grid.put(name, values.astype(np.float32), geometry, Path(path).name)
        loaded.source["maps"][name] = {"from": Path(path).name, "kind": kind}
    return loaded


def _from_ctp_file(path, dt_s, grid: GridCheck, notes, *, perfusion, progress, cancel, timings) -> _Loaded:
    image = imageio.read_image(path)
    if image.GetDimension() != 4:
        raise InputError(f"{Path(path).name} is {image.GetDimension()}D: a CTP must be a 4D image (x, y, z, t)")
    frame_interval = imageio.checked_frame_interval_s(path, image, dt_s)
    geometry = Geometry.from_image(image)
    computed = _maps_from_ctp(
        sitk.GetArrayViewFromImage(image), frame_interval, geometry, perfusion, progress, cancel, timings
    )
    notes.extend(computed.notes)
    name = Path(path).name
    source = {"kind": "ctp", "ctp": name, "dt_s": frame_interval,
              "maps": _computed_source(name, computed)}
    maps = {key: grid.put(key, values, geometry, name) for key, values in computed.maps.items()}
    return _Loaded(name.split(".")[0], maps, source, dt_s=frame_interval, brain_mask=computed.brain_mask)


def _from_dicom(folder, needed, series_map, grid: GridCheck, notes, *, perfusion, progress, cancel,
                timings) -> _Loaded:
    from . import dicom

    scan = dicom.scan_folder(folder)
    if scan.skipped:
        names = ", ".join(p.name for p, _ in scan.skipped[:3]) + (" ..." if len(scan.skipped) > 3 else "")
        note = f"skipped {len(scan.skipped)} file(s) that are not DICOM images: {names}"
        log.warning(note)
        notes.append(note)
    recognition = dicom.recognise_series(scan, series_map)
    notes.extend(recognition.notes)
    missing = [n for n in needed if n not in recognition.maps]
    if not recognition.maps and recognition.ctp is None:
        raise InputError(
            f"no CT perfusion series in {folder} ({scan.describe_series()}): give the folder that holds "
            "the CTP or the map series, or name them with --map NAME=<SeriesInstanceUID>"
        )
    loaded = _Loaded(Path(folder).name, {}, {"kind": "dicom", "folder": Path(folder).name, "maps": {}})
    if missing and recognition.maps and recognition.unrecognised:
        # Some maps are there under known names: the others are most likely there too, under
        # names this product does not know, so ask rather than silently recompute from the CTP.
        raise recognition.missing_map_error(missing[0], scan)
    if missing and recognition.ctp is not None:
        volume = dicom.read_ctp_series(recognition.ctp)
        computed = _maps_from_ctp(volume.values, volume.dt_s, volume.geometry, perfusion, progress, cancel, timings)
        notes.extend(computed.notes)
        description = recognition.ctp.description
        loaded.maps = {name: grid.put(name, values, volume.geometry, description)
                       for name, values in computed.maps.items()}
        loaded.source["maps"] = _computed_source(description, computed)
        loaded.reference_headers, loaded.dt_s, loaded.brain_mask = volume.slice_headers, volume.dt_s, computed.brain_mask
        return loaded
    if missing:
        raise recognition.missing_map_error(missing[0], scan)
    for name in _wanted(needed):
        if name not in recognition.maps:
            continue
        series = recognition.maps[name]
        volume = dicom.read_map_series(series, name)
        notes.extend(volume.notes)
        loaded.maps[name] = grid.put(name, volume.values, volume.geometry, series.label)
        loaded.source["maps"][name] = {"from": series.description, "kind": volume.kind}
        loaded.reference_headers = loaded.reference_headers or volume.slice_headers
    return loaded


def load_study(
    *,
    case_dir: str | os.PathLike | None = None,
    dicom_dir: str | os.PathLike | None = None,
    map_files: Mapping[str, str | os.PathLike] | None = None,
    ctp_file: str | os.PathLike | None = None,
    nihss: int | None = None,
    needed: Sequence[str] = PERFUSION_MAP_INPUTS,
    series_map: Mapping[str, str] | None = None,
    dt_s: float | None = None,
    resample: bool = False,
    perfusion_method: str | None = None,
    kh: float | None = None,
    rho: float | None = None,
    study_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Study:
    """Load one study from exactly one source onto one grid.

    Parameters
    ----------
    case_dir, dicom_dir, map_files, ctp_file
        The source; give exactly one. ``map_files`` maps map names to files.
    nihss : int, optional
        Overrides the score of a case folder.
    needed : sequence of str
        Maps the method needs; the MIP is loaded too when available.
    series_map : mapping, optional
        DICOM only: map name (or ``"ctp"``) -> SeriesInstanceUID or series description.
    dt_s : float, optional
        Frame interval (s) of ``ctp_file`` when its 4th spacing is not right.
    resample : bool
        Resample maps that are not on the first map's grid instead of refusing them.
    perfusion_method, kh, rho : optional
        How maps are computed from a raw CTP: the method (one of
        :data:`~StrokePerfusionSegLib.perfusionmethods.METHODS`), the haematocrit factor ratio
        and the tissue density in g/ml; None is the default (``DEFAULT_METHOD``, 0.73, 1.04).
        Any of them given for a study whose maps are read, not computed, is an InputError.
    study_id : str, optional
        Label of the study (default: the folder or file name).
    progress, cancel : callable, optional
        Passed to the perfusion analysis.

    Returns
    -------
    Study
    """
    given = [s for s in (case_dir, dicom_dir, map_files, ctp_file) if s]
    if len(given) != 1:
        raise InputError("give exactly one input: a case folder, a DICOM folder, map files or a CTP file")
    start = time.perf_counter()
    notes: list[str] = []
    timings: dict[str, float] = {}
    grid = GridCheck(resample, notes)
    perfusion = {"method": perfusion_method, "kh": kh, "rho": rho}
    analysis = dict(perfusion=perfusion, progress=progress, cancel=cancel, timings=timings)
    if case_dir:
        loaded = _from_case(case_dir, needed, grid, notes, **analysis)
    elif dicom_dir:
        loaded = _from_dicom(dicom_dir, needed, series_map, grid, notes, **analysis)
    elif map_files:
        loaded = _from_files(map_files, needed, grid, notes)
    else:
        loaded = _from_ctp_file(ctp_file, dt_s, grid, notes, **analysis)
    computed = any(entry.get("kind") == "computed" for entry in loaded.source["maps"].values())
    if not computed and any(value is not None for value in perfusion.values()):
        raise InputError(
            f"{loaded.label} has its perfusion maps: a perfusion method, kh or rho applies only to maps computed "
            "from a raw CTP; leave --perfusion-method, --kh and --rho out, or give the CTP"
        )
    timings["read"] = time.perf_counter() - start - timings.get("perfusion", 0.0)
    return Study(
        study_id=study_id or loaded.label,
        geometry=grid.geometry,
        maps={n: loaded.maps[n] for n in MAP_NAMES if n in loaded.maps},
        nihss=check_nihss(nihss if nihss is not None else loaded.nihss),
        source=loaded.source,
        reference_headers=loaded.reference_headers,
        dt_s=loaded.dt_s,
        brain_mask=loaded.brain_mask,
        notes=notes,
        timings=timings,
    )
