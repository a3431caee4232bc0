"""ISLES 2018 (CT perfusion): the SMIR export layout.

Layout (see ``docs/datasets.md`` for the sources)::

    TRAINING/case_<n>/SMIR.Brain.XX.O.<MODALITY>.<id>/SMIR.Brain.XX.O.<MODALITY>.<id>.nii
    TESTING/case_<n>/...                       (no OT; some copies spell the folders in lower case)

with the modalities ``CT`` (non-contrast slab), ``CT_4DPWI`` (the raw CTP, 4D x, y, z, t),
``CT_CBF``, ``CT_CBV``, ``CT_MTT``, ``CT_Tmax`` and, for training cases, ``OT`` (the infarct
core drawn on DWI acquired shortly after the CTP). Slabs hold few slices (2 to 22) of one
grid shared by every file. There is no TTP, no MIP and no NIHSS.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..casefolder import UNKNOWN_GROUP
from ..errors import InputError
from .convert import DatasetInfo, SourceCase, read_ctp, read_map, read_mask

INFO = DatasetInfo(
    name="isles2018",
    title="ISLES 2018",
    label_scheme="core",
    map_software=("maps as distributed with the challenge; read as CBF ml/100g/min, CBV ml/100g, MTT s, "
                  "Tmax s (the challenge states no units: check scale_check)"),
)
#: The SMIR folder (and file stem) of one modality.
SMIR_NAME = re.compile(r"^SMIR\.Brain\.XX\.O\.(?P<modality>[A-Za-z0-9_]+)\.(?P<id>\d+)$")
MAP_MODALITIES = {"CT_CBF": "cbf", "CT_CBV": "cbv", "CT_MTT": "mtt", "CT_Tmax": "tmax"}
REQUIRED = ("CT_4DPWI", *MAP_MODALITIES)
SPLIT_FOLDERS = {"TRAINING": "train", "TESTING": "test"}
CASE_FOLDER = re.compile(r"^case_\d+$")


def find_cases(root: Path) -> list[Path]:
    """The ``case_<n>`` folders under ``root`` (itself, or below ``TRAINING``/``TESTING``)."""
    if not root.is_dir():
        raise InputError(f"ISLES 2018 folder not found: {root}")
    if CASE_FOLDER.match(root.name):
        return [root]
    # Copies in the wild spell the split folders TRAINING or training.
    parents = [root] + [p for p in root.iterdir() if p.is_dir() and p.name.upper() in SPLIT_FOLDERS]
    cases = sorted((p for parent in parents for p in parent.iterdir() if p.is_dir() and CASE_FOLDER.match(p.name)),
                   key=lambda p: (p.parent.name, int(p.name.split("_")[1])))
    if not cases:
        raise InputError(f"no ISLES 2018 case in {root}: expected TRAINING/case_<n>/SMIR.Brain.XX.O.CT_4DPWI.<id>/... "
                         "(give the folder that holds TRAINING or the case folders)")
    return cases


def case_id(folder: Path) -> str:
    """``train_case_1`` below TRAINING, ``test_case_1`` below TESTING, else the folder name."""
    split = SPLIT_FOLDERS.get(folder.parent.name.upper())
    return f"{split}_{folder.name}" if split else folder.name


def modality_files(folder: Path) -> dict[str, Path]:
    """Modality -> NIfTI file of one case; duplicates and SMIR folders without their file are refused."""
    found = {}
    for entry in sorted(folder.iterdir()):
        match = SMIR_NAME.match(entry.name)
        if not entry.is_dir() or match is None:
            continue
        modality = match["modality"]
        if modality in found:
            raise InputError(f"ISLES 2018 {folder.name}: two {modality} folders ({found[modality].parent.name}, "
                             f"{entry.name}); keep one")
        candidates = [entry / f"{entry.name}{suffix}" for suffix in (".nii", ".nii.gz")]
        existing = [c for c in candidates if c.is_file()]
        if not existing:
            raise InputError(f"ISLES 2018 {folder.name}: {entry.name}/ lacks {entry.name}.nii; "
                             "re-extract the case from the challenge archive")
        found[modality] = existing[0]
    return found


def read_case(folder: Path, *, dt_s: float | None = None) -> SourceCase:
    """Read one ``case_<n>`` folder (see the module docstring)."""
    identifier = case_id(folder)
    what = f"ISLES 2018 {identifier}"
    files = modality_files(folder)
    missing = [m for m in REQUIRED if m not in files]
    if missing:
        raise InputError(f"{what}: no {', '.join(missing)} in {folder} (expected SMIR.Brain.XX.O.{missing[0]}.<id>/"
                         f"SMIR.Brain.XX.O.{missing[0]}.<id>.nii)")
    ctp, geometry, frame_interval, dt_from = read_ctp(files["CT_4DPWI"], what, dt_s)
    shape = ctp.shape[1:]
    maps = {name: read_map(files[modality], what, geometry, shape) for modality, name in MAP_MODALITIES.items()}
    lesion = read_mask(files["OT"], what, geometry, shape) if "OT" in files else None
    return SourceCase(
        case_id=identifier, geometry=geometry, ctp=ctp, dt_s=frame_interval, maps=maps, lesion=lesion,
        nihss=None, group=UNKNOWN_GROUP,
        provenance={"folder": folder.name, "files": {m: p.name for m, p in files.items()}, "dt_s_from": dt_from,
                    "ignored": sorted(set(files) - {*REQUIRED, "OT"})},
        notes=["ISLES 2018 gives no NIHSS: train models without it (model.use_nihss=false)"],
    )
