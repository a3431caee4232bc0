"""UniToBrain: CTP DICOM per patient with reference perfusion maps, no lesion label.

Layout, as the dataset's release code (EIDOSLAB/UC3-UNITOBrain, ``src/dicomtopt.py``) reads it::

    <root>/<patient>_Registered_Filtered_3mm_20HU/Filtered00001.dcm ...      every frame of every slice
    <root>/<patient>_Registered_Filtered_3mm_20HU_Maps/NLR_CBF/NLR_CBF*.dcm   one file per slice
    <root>/<patient>_Registered_Filtered_3mm_20HU_Maps/NLR_CBV/...
    <root>/<patient>_Registered_Filtered_3mm_20HU_Maps/NLR_TTP/...

The CTP is read by the product's DICOM reader (slices by ImagePositionPatient, frames by their
acquisition times), every map is computed from it, and the dataset's maps are stored beside
them as ``reference_<name>.nii.gz`` with their DICOM rescale applied: the release states no
units for them (its own code windows them to 8 bits), so they are a reference for the
perfusion analysis (``scale_check`` in ``case.json``), never a network input. There is no
lesion label: UniToBrain cases are segmented, not trained or scored on.
"""

from __future__ import annotations

from pathlib import Path

from .. import dicom
from ..dicom.volume import read_volume
from ..casefolder import UNKNOWN_GROUP
from ..errors import InputError
from .convert import DatasetInfo, SourceCase, check_grid

INFO = DatasetInfo(
    name="unitobrain",
    title="UniToBrain",
    label_scheme="none",
    map_software=("reference maps NLR_CBF, NLR_CBV, NLR_TTP as distributed; units not stated, stored with the "
                  "DICOM rescale applied as reference_<name>.nii.gz; inputs computed from the CTP"),
)
MAPS_SUFFIX = "_Maps"
REFERENCE_MAPS = {"NLR_CBF": "cbf", "NLR_CBV": "cbv", "NLR_TTP": "ttp"}


def find_cases(root: Path) -> list[Path]:
    """The patients' CTP folders: folders of DICOM files whose name does not end in ``_Maps``."""
    if not root.is_dir():
        raise InputError(f"UniToBrain folder not found: {root}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.endswith(MAPS_SUFFIX)
                     and any(p.glob("*.dcm")))
    if not folders:
        raise InputError(f"no UniToBrain patient in {root}: expected <patient>_Registered_Filtered_3mm_20HU/"
                         "Filtered00001.dcm ... beside <patient>_Registered_Filtered_3mm_20HU_Maps/")
    return folders


def _single_series(folder: Path, what: str) -> dicom.ScanResult:
    scan = dicom.scan_folder(folder)
    if len(scan.series) != 1:
        raise InputError(f"{what}: {folder.name} holds {len(scan.series)} DICOM series ({scan.describe_series()}); "
                         "expected exactly one")
    return scan


def read_case(folder: Path, *, dt_s: float | None = None) -> SourceCase:
    """Read one patient (see the module docstring)."""
    identifier = folder.name.split("_")[0]
    what = f"UniToBrain {identifier}"
    ctp_series = dicom.recognise_series(_single_series(folder, what)).ctp
    if ctp_series is None:
        raise InputError(f"{what}: {folder.name} is not a time series (one image per slice position and time expected)")
    volume = dicom.read_ctp_series(ctp_series)
    frame_interval = float(dt_s) if dt_s is not None else volume.dt_s
    references, files = {}, {}
    maps_folder = folder.with_name(folder.name + MAPS_SUFFIX)
    for subfolder, name in REFERENCE_MAPS.items():
        if not (maps_folder / subfolder).is_dir():
            continue
        stack = dicom.stack_series(_single_series(maps_folder / subfolder, what).series[0])
        values = read_volume(stack.headers[0])
        check_grid(stack.geometry, volume.geometry, f"{what}: {subfolder}", values.shape, volume.values.shape[1:])
        references[name], files[name] = values, f"{maps_folder.name}/{subfolder}"
    return SourceCase(
        case_id=identifier, geometry=volume.geometry, ctp=volume.values, dt_s=frame_interval,
        group=UNKNOWN_GROUP, reference_maps=references,
        provenance={"ctp": folder.name, "frames": int(volume.values.shape[0]),
                    "dt_s_from": "given (--dt)" if dt_s is not None else "DICOM acquisition times",
                    "reference_maps": files},
        notes=[] if references else [f"no {maps_folder.name}/ reference maps found"],
    )
