"""Phantom patients written in the published layouts of public CT perfusion datasets.

None of the public datasets can be downloaded here, so their readers
(:mod:`StrokePerfusionSegLib.datasets`) are tested, and ``docs/datasets.md``'s worked example
runs, on look-alike folders: phantom cases (CTP, maps, truth label) stored under the dataset's
own folder and file names, formats, 4D layout and sidecars. What a look-alike cannot imitate
is the datasets' content (real heads, their software's map scaling).

Each writer takes :class:`~StrokePerfusionSegLib.casefolder.Case` objects holding ``ctp``,
``dt_s``, maps and ``label`` (as the phantom generates them) and returns the dataset root.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import imageio
from ..casefolder import Case, ctp_as_stored
from ..labels import CORE, PENUMBRA

#: First SMIR object id of an ISLES 2018 look-alike (the real ids are six-digit numbers).
FIRST_SMIR_ID = 345560


def _write(array: np.ndarray, case: Case, path: Path, dt_s: float | None = None) -> None:
    imageio.write_array(array, case.geometry, path, dt_s=dt_s)


def write_isles2018(cases: Sequence[Case], root: str | os.PathLike, *, split: str = "TRAINING") -> Path:
    """``root/<split>/case_<n>/SMIR.Brain.XX.O.<MODALITY>.<id>/<same>.nii`` for each case.

    ``CT_4DPWI`` is the 4D CTP (int16 HU, frame interval in pixdim[4]); ``CT`` the mean of the
    first two frames; ``CT_CBF``, ``CT_CBV``, ``CT_MTT``, ``CT_Tmax`` the maps; ``OT`` (TRAINING
    only) the core as 0/1 uint8. Uncompressed ``.nii`` as the challenge ships.
    """
    root = Path(root)
    smir_id = FIRST_SMIR_ID
    for number, case in enumerate(cases, start=1):
        folder = root / split / f"case_{number}"
        images = {
            "CT": np.asarray(case.ctp[:2], dtype=np.float32).mean(axis=0).astype(np.int16),
            "CT_4DPWI": ctp_as_stored(case.ctp),
            "CT_CBF": case.maps["cbf"], "CT_CBV": case.maps["cbv"], "CT_MTT": case.maps["mtt"],
            "CT_Tmax": case.maps["tmax"],
        }
        if split == "TRAINING":
            images["OT"] = (case.label == CORE).astype(np.uint8)
        for modality, array in images.items():
            name = f"SMIR.Brain.XX.O.{modality}.{smir_id}"
            smir_id += 1
            _write(array, case, folder / name / f"{name}.nii", case.dt_s if array.ndim == 4 else None)
    return root


def write_isles2024(cases: Sequence[Case], root: str | os.PathLike, *, sessions=("ses-01", "ses-02"),
                    raw_folder: str = "raw_data", table: str = "xlsx", mtici: Sequence | None = None) -> Path:
    """The ISLES 2024 BIDS tree for each case as ``sub-stroke<nnnn>``.

    Raw (``<raw_folder>/sub/ses-01``: ncct, cta, ctp with a JSON sidecar, perfusion-maps) and
    NCCT-space derivatives (ctp, perfusion-maps, lvo-msk in the acute session; lesion-msk, the
    final infarct, in the follow-up session), and the clinical tables
    ``phenotype/sub/ses-01/sub_ses-01_demographic_baseline.<table>`` (``xlsx`` as on Zenodo, or
    ``csv`` as in the challenge's README) and, with ``mtici``,
    ``phenotype/sub/ses-02/sub_ses-02_outcome.<table>`` (``mRS 3 months``, ``mTICI``).

    ``mtici`` gives each case's grade (None: no grade in the table). The final infarct is the
    phantom's core after good reperfusion (2b, 2c, 3) and its core + penumbra otherwise.
    """
    root = Path(root)
    acute, follow_up = sessions
    grades = list(mtici) if mtici is not None else [None] * len(cases)
    for number, (case, grade) in enumerate(zip(cases, grades), start=1):
        subject = f"sub-stroke{number:04d}"
        ctp = ctp_as_stored(case.ctp)
        ncct = np.asarray(case.ctp[0], dtype=np.float32).astype(np.int16)
        maps = {name: case.maps[name] for name in ("cbf", "cbv", "mtt", "tmax")}
        raw = root / raw_folder / subject / acute
        derived = root / "derivatives" / subject / acute
        _write(ncct, case, raw / f"{subject}_{acute}_ncct.nii.gz")
        for folder, space in ((raw, ""), (derived, "space-ncct_")):
            stem = f"{subject}_{acute}_{space}"
            _write(ctp, case, folder / f"{stem}ctp.nii.gz", case.dt_s)
            (folder / f"{stem}ctp.json").write_text(json.dumps(
                {"Modality": "CT", "Manufacturer": "StrokePerfusionSeg phantom", "ImageType": ["ORIGINAL", "PERFUSION"]}))
            _write(ncct, case, folder / f"{stem}cta.nii.gz")  # stands in for the CTA: not read
            for name, values in maps.items():
                _write(values, case, folder / "perfusion-maps" / f"{stem}{name}.nii.gz")
        lvo = np.zeros(case.label.shape, np.uint8)
        if case.group == "LVO":
            lvo[case.label.shape[0] // 2, :2, :2] = 1  # a marked occlusion; its place does not matter here
        _write(lvo, case, derived / f"{subject}_{acute}_space-ncct_lvo-msk.nii.gz")
        reperfused = str(grade).lower() in ("2b", "2c", "3")
        infarct = (case.label == CORE) if reperfused else np.isin(case.label, (PENUMBRA, CORE))
        _write(infarct.astype(np.uint8), case, root / "derivatives" / subject / follow_up
               / f"{subject}_{follow_up}_space-ncct_lesion-msk.nii.gz")
        _write_table(root / "phenotype" / subject / acute / f"{subject}_{acute}_demographic_baseline.{table}",
                     {"Age": 70, "Sex": "F", "NIHSS at admission": case.nihss, "mRS at admission": 0})
        if mtici is not None:
            _write_table(root / "phenotype" / subject / follow_up / f"{subject}_{follow_up}_outcome.{table}",
                         {"mRS 3 months": 2, "mTICI": grade})
    return root


def _write_table(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        with open(path, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(row))
            writer.writeheader()
            writer.writerow(row)
        return
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(list(row))
    book.active.append(list(row.values()))
    book.save(path)


def write_unitobrain(cases: Sequence[Case], root: str | os.PathLike) -> Path:
    """``root/MOL-<nnn>_Registered_Filtered_3mm_20HU/Filtered<nnnnn>.dcm`` (the CTP, every frame)
    and ``..._Maps/NLR_{CBF,CBV,TTP}/NLR_<MAP><nnn>.dcm`` (one file per slice) for each case."""
    from ..dicom import write_case_as_dicom

    root = Path(root)
    for number, case in enumerate(cases, start=1):
        stem = f"MOL-{number:03d}_Registered_Filtered_3mm_20HU"
        with tempfile.TemporaryDirectory() as scratch:
            study = write_case_as_dicom(case, Path(scratch) / "study", maps=("cbf", "cbv", "ttp"))
            for series in sorted(p for p in study.iterdir() if p.is_dir()):
                files = sorted(series.glob("*.dcm"))
                description = _series_description(files[0])
                if description == "CT Perfusion":
                    target = [root / stem / f"Filtered{i:05d}.dcm" for i in range(1, len(files) + 1)]
                else:
                    kind = f"NLR_{description.upper()}"
                    target = [root / f"{stem}_Maps" / kind / f"{kind}{i:03d}.dcm" for i in range(1, len(files) + 1)]
                for source, destination in zip(files, target):
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, destination)
    return root


def _series_description(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).get("SeriesDescription", ""))
