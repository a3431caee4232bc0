"""ISLES 2024 (BIDS): raw CTP, perfusion maps, follow-up infarct masks and clinical tables.

The reader uses the files co-registered to the NCCT (``space-ncct``), because the follow-up
lesion mask exists only in that space; every file of a case is then on one grid::

    <root>/derivatives/sub-<id>/ses-<acute>/sub-<id>_ses-<acute>_space-ncct_ctp.nii.gz      4D CTP
    <root>/derivatives/sub-<id>/ses-<acute>/perfusion-maps/sub-<id>_ses-<acute>_space-ncct_{cbf,cbv,mtt,tmax}.nii.gz
    <root>/derivatives/sub-<id>/ses-<acute>/sub-<id>_ses-<acute>_space-ncct_lvo-msk.nii.gz  (optional)
    <root>/derivatives/sub-<id>/ses-<follow-up>/sub-<id>_ses-<follow-up>_[space-ncct_]lesion-msk.nii.gz
    <root>/phenotype/[sub-<id>/]ses-<acute>/sub-<id>_ses-<acute>_demographic_baseline.{csv,xlsx}
    <root>/phenotype/[sub-<id>/]ses-<follow-up>/sub-<id>_ses-<follow-up>_outcome.{csv,xlsx}       (optional)

Sessions are ``ses-01``/``ses-02`` in the Zenodo release and ``ses-0001``/``ses-0002`` in the
challenge's README; the first is the acute one. The raw folder is ``raw_data`` (Zenodo) or
``rawdata`` (README). A JSON sidecar beside the CTP, when present, is copied into
``case.json``. The admission NIHSS is the ``NIHSS at admission`` column. The group is LVO
when the LVO mask marks voxels, Non-LVO when it is empty, unknown without it.

Reperfusion: the first column of the subject's clinical tables whose name holds ``TICI``
(e.g. ``mTICI``; the public descriptions of the release do not name the column) gives the
mTICI grade after treatment. Good reperfusion (2b, 2c, 3) makes the follow-up infarct about
the core at admission, poor reperfusion (0, 1, 2a) about core plus penumbra; the case's label
scheme says so (:func:`~StrokePerfusionSegLib.labelschemes.final_infarct_scheme`) and
``case.json`` records the grade and where it came from (``reperfusion``). Without a grade
(no column, an empty cell: no thrombectomy, or a grade such as ``2`` without its subgrade) the
scheme stays ``final_infarct`` and both readings are reported.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from ..casefolder import UNKNOWN_GROUP
from ..errors import InputError
from ..labelschemes import final_infarct_scheme
from ..nihss import check_nihss
from .convert import DatasetInfo, SourceCase, read_ctp, read_json_sidecar, read_map, read_mask

INFO = DatasetInfo(
    name="isles2024",
    title="ISLES 2024",
    label_scheme="final_infarct",
    map_software=("perfusion maps as distributed with the challenge (space-ncct derivatives); read as CBF "
                  "ml/100g/min, CBV ml/100g, MTT s, Tmax s (the release states no units: check scale_check)"),
)
MAP_NAMES = ("cbf", "cbv", "mtt", "tmax")
RAW_FOLDERS = ("raw_data", "rawdata")
SUBJECT = re.compile(r"^sub-[A-Za-z0-9]+$")
SESSION = re.compile(r"^ses-[A-Za-z0-9]+$")
NIHSS_COLUMN = "nihss at admission"
#: mTICI grades after treatment, and those that count as good reperfusion.
MTICI_GRADES = ("0", "1", "2a", "2b", "2c", "3")
GOOD_REPERFUSION = ("2b", "2c", "3")


def find_cases(root: Path) -> list[Path]:
    """The subject folders of ``derivatives/`` (where the co-registered files and masks are)."""
    derivatives = root / "derivatives"
    if not derivatives.is_dir() or not any((root / name).is_dir() for name in RAW_FOLDERS):
        raise InputError(f"{root} is not an ISLES 2024 folder: expected raw_data/ (or rawdata/), derivatives/ "
                         "and phenotype/ as in the challenge's BIDS release")
    subjects = sorted(p for p in derivatives.iterdir() if p.is_dir() and SUBJECT.match(p.name))
    if not subjects:
        raise InputError(f"no subject (sub-<id>/) in {derivatives}")
    return subjects


def sessions(subject: Path) -> tuple[str, str | None]:
    """(acute session, follow-up session or None) of a derivatives subject folder."""
    found = sorted(p.name for p in subject.iterdir() if p.is_dir() and SESSION.match(p.name))
    if not found:
        raise InputError(f"ISLES 2024 {subject.name}: no ses-<n>/ folder in {subject}")
    return found[0], (found[1] if len(found) > 1 else None)


def _first_existing(candidates: list[Path]) -> Path | None:
    return next((c for c in candidates if c.is_file()), None)


def _table_rows(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as stream:
            return list(csv.DictReader(stream))
    try:
        import openpyxl
    except ImportError:
        raise InputError(f"{path.name} is an Excel table: install openpyxl "
                         "(pip install 'strokeperfusionseg[datasets]') to read it") from None
    sheet = openpyxl.load_workbook(path, read_only=True, data_only=True).active
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    if not rows:
        return []
    header = [str(h).strip() if h is not None else "" for h in rows[0]]
    return [dict(zip(header, row)) for row in rows[1:]]


def _phenotype_table(root: Path, subject: str, session: str, kind: str) -> Path | None:
    stem = f"{subject}_{session}_{kind}"
    folders = [root / "phenotype" / subject / session, root / "phenotype" / session]
    return _first_existing([folder / f"{stem}{suffix}" for folder in folders for suffix in (".csv", ".xlsx")])


def _first_row(table: Path) -> tuple[dict, dict]:
    """The table's first data row and its columns by lower-case name."""
    rows = _table_rows(table)
    row = rows[0] if rows else {}
    return row, {str(key).strip().lower(): key for key in row}


def read_nihss(root: Path, subject: str, session: str) -> tuple[int | None, str | None]:
    """Admission NIHSS from the subject's baseline table, and the table's name (None, None: no table)."""
    table = _phenotype_table(root, subject, session, "demographic_baseline")
    if table is None:
        return None, None
    row, columns = _first_row(table)
    if NIHSS_COLUMN not in columns:
        raise InputError(f"ISLES 2024 {subject}: {table.name} has no 'NIHSS at admission' column "
                         f"(columns: {', '.join(str(c) for c in columns.values())})")
    value = row[columns[NIHSS_COLUMN]]
    return check_nihss(value, what=f"ISLES 2024 {subject}: {table.name} NIHSS"), table.name


def mtici_grade(value) -> str | None:
    """An mTICI cell as one of :data:`MTICI_GRADES` (``2B`` -> ``2b``, 3.0 -> ``3``); None when
    empty or not a full grade."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip().lower()
    if text.endswith(".0"):
        text = text[:-2]
    return text if text in MTICI_GRADES else None


def read_reperfusion(root: Path, subject: str, sessions_: tuple[str, str | None]) -> dict:
    """``{"mtici", "reperfused", "source"}`` from the subject's clinical tables (see the module docstring)."""
    candidates = [(session, kind) for session in sessions_ if session
                  for kind in ("demographic_baseline", "outcome")]
    for session, kind in candidates:
        table = _phenotype_table(root, subject, session, kind)
        if table is None:
            continue
        row, columns = _first_row(table)
        column = next((key for name, key in columns.items() if "tici" in name), None)
        if column is None:
            continue
        raw = row[column]
        written = None if raw is None or str(raw).strip() == "" else str(raw)
        grade = mtici_grade(written)
        return {"mtici": grade, "reperfused": None if grade is None else grade in GOOD_REPERFUSION,
                "source": f"{table.name}: {column}", "as_written": written}
    return {"mtici": None, "reperfused": None, "source": None, "as_written": None}


def read_case(subject_folder: Path, *, dt_s: float | None = None) -> SourceCase:
    """Read one subject (see the module docstring)."""
    root, subject = subject_folder.parent.parent, subject_folder.name
    what = f"ISLES 2024 {subject}"
    acute, follow_up = sessions(subject_folder)
    acute_folder = subject_folder / acute
    prefix = f"{subject}_{acute}_space-ncct"
    ctp_path = acute_folder / f"{prefix}_ctp.nii.gz"
    ctp, geometry, frame_interval, dt_from = read_ctp(ctp_path, what, dt_s)
    sidecar = read_json_sidecar(ctp_path.with_name(ctp_path.name.replace(".nii.gz", ".json")), what)
    shape = ctp.shape[1:]
    maps = {name: read_map(acute_folder / "perfusion-maps" / f"{prefix}_{name}.nii.gz", what, geometry, shape)
            for name in MAP_NAMES}
    lesion_path = None
    if follow_up is not None:
        base = subject_folder / follow_up
        lesion_path = _first_existing([base / f"{subject}_{follow_up}_space-ncct_lesion-msk.nii.gz",
                                       base / f"{subject}_{follow_up}_lesion-msk.nii.gz"])
    lesion = read_mask(lesion_path, what, geometry, shape) if lesion_path is not None else None
    lvo_path = acute_folder / f"{prefix}_lvo-msk.nii.gz"
    group = UNKNOWN_GROUP
    if lvo_path.is_file():
        group = "LVO" if np.any(read_mask(lvo_path, what, geometry, shape)) else "NonLVO"
    nihss, table = read_nihss(root, subject, acute)
    notes = [] if table else [f"no baseline table for {subject} in phenotype/: NIHSS unknown"]
    reperfusion = read_reperfusion(root, subject, (acute, follow_up))
    if reperfusion["reperfused"] is None:
        if reperfusion["source"] is None:
            found = "no mTICI column in its clinical tables"
        elif reperfusion["as_written"] is None:
            found = f"no grade in {reperfusion['source']}"
        else:
            found = f"mTICI '{reperfusion['as_written']}' in {reperfusion['source']} is not a full grade"
        notes.append(f"reperfusion unknown ({found}): the follow-up infarct is scored against core and "
                     "against core + penumbra")
    return SourceCase(
        case_id=subject, geometry=geometry, ctp=ctp, dt_s=frame_interval, maps=maps, lesion=lesion,
        nihss=nihss, group=group, label_scheme=final_infarct_scheme(reperfusion["reperfused"]),
        reperfusion=reperfusion,
        provenance={"subject": subject, "sessions": [acute, follow_up], "ctp": ctp_path.name, "dt_s_from": dt_from,
                    "lesion": lesion_path.name if lesion_path else None,
                    "lvo_mask": lvo_path.name if lvo_path.is_file() else None, "phenotype": table,
                    "ctp_sidecar": sidecar},
        notes=notes,
    )
