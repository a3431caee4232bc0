"""Batch segmentation of many studies through the MRML glue, headless Slicer or plain Python.

Each study is loaded with Slicer's own volume reader into a fresh MRML scene and segmented by
:func:`~StrokePerfusionSegLib.mrml_glue.segment_volumes`, exactly as the panel does; the
outputs per study are ``<case>.seg.nrrd`` (Slicer segmentation: segment names, colours,
terminology), ``<case>_label.nii.gz`` (labels 0..3) and one row of ``volumes.csv``.
A study that fails is reported in the log and in the CSV (``status`` = ``error``) and skipped.

Run it inside Slicer::

    Slicer --no-main-window --python-script StrokePerfusionSeg/Resources/Scripts/batch_segment.py \\
        -- --input STUDIES --output OUT [--method threshold|MODEL_ID|BUNDLE_DIR]

or with plain Python where ``slicer-core`` is installed: ``python -m StrokePerfusionSegLib.batch ...``.

Accepted inputs (``--input``):

* a cohort / folder of case folders (``cbf.nii.gz``, ``cbv.nii.gz``, ... and ``case.json``);
* a single case folder;
* a folder of DICOM studies (one sub-folder per study, map series recognised by their
  descriptions, or a 4D CTP series from which the maps are computed; read by
  :func:`~StrokePerfusionSegLib.studyio.load_study`), or one DICOM study folder;
* a flat folder of map sets named ``<case>_<map>.nii.gz`` (``<map>`` one of cbf, cbv, mtt,
  ttp, tmax, mip; ``<case>_<map>_rgb.nii.gz`` for colour-coded maps).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import write_csv_atomically
from .errors import EXIT_FAILURE, CancelledError, InputError, run_command
from .mapspecs import MAP_NAMES

logger = logging.getLogger(__name__)

#: Maps the batch loads when present (``mtt`` is not read by any method).
BATCH_MAPS = ("cbf", "cbv", "ttp", "tmax", "mip")
VOLUMES_CSV = "volumes.csv"
_MAP_SET_FILE = re.compile(
    rf"^(?P<case>.+?)[_-](?P<map>{'|'.join(MAP_NAMES)})(?P<rgb>_rgb)?\.(nii\.gz|nii|nrrd)$", re.IGNORECASE
)
_VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd")


@dataclass
class BatchCase:
    """One study to segment: map name -> file, and the NIHSS score when known."""

    case_id: str
    files: dict[str, Path] = field(default_factory=dict)
    dicom_dir: Path | None = None
    nihss: int | None = None
    problem: str | None = None  # set when the study cannot even be listed properly


def _map_files_in_folder(folder: Path) -> dict[str, Path]:
    files = {}
    for name in BATCH_MAPS:
        for candidate in (f"{name}.nii.gz", f"{name}_rgb.nii.gz", f"{name}.nii", f"{name}.nrrd"):
            if (folder / candidate).is_file():
                files[name] = folder / candidate
                break
    return files


def _holds_dicom(folder: Path) -> bool:
    """True when a file in ``folder`` (or its sub-folders) carries the DICOM preamble."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as stream:
                if stream.read(132)[128:] == b"DICM":
                    return True
    return False


def _case_from_folder(folder: Path) -> BatchCase:
    case = BatchCase(case_id=folder.name, files=_map_files_in_folder(folder))
    if not case.files and not (folder / "case.json").is_file() and _holds_dicom(folder):
        case.dicom_dir = folder
        return case
    meta_path = folder / "case.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            case.case_id = str(meta.get("id", folder.name))
            case.nihss = meta.get("nihss")
        except json.JSONDecodeError as error:
            case.problem = f"{meta_path} is not valid JSON ({error})"
    if not case.files and case.problem is None:
        case.problem = f"no map files (cbf.nii.gz, ...) in {folder}"
    return case


def find_cases(input_dir: str | os.PathLike) -> list[BatchCase]:
    """The studies under ``input_dir`` (see the module doc for the accepted layouts)."""
    root = Path(input_dir)
    if not root.is_dir():
        raise InputError(f"input folder not found: {root}")
    if _map_files_in_folder(root) or (not any(p.is_dir() for p in root.iterdir()) and _holds_dicom(root)):
        return [_case_from_folder(root)]
    flat: dict[str, BatchCase] = {}
    for path in sorted(root.iterdir()):
        match = _MAP_SET_FILE.match(path.name)
        if path.is_file() and match and match["map"].lower() in BATCH_MAPS:
            case = flat.setdefault(match["case"], BatchCase(case_id=match["case"]))
            if match["rgb"] is None or match["map"].lower() not in case.files:
                case.files[match["map"].lower()] = path
    folders = [
        _case_from_folder(path)
        for path in sorted(root.iterdir())
        if path.is_dir() and not path.name.startswith(".")
        and ((path / "case.json").is_file() or any(path.glob("*.nii*")) or any(path.glob("*.nrrd"))
             or _holds_dicom(path))
    ]
    cases = folders + list(flat.values())
    if not cases:
        raise InputError(
            f"no studies in {root}: give case folders (cbf.nii.gz, ...) or files named <case>_<map>.nii.gz"
        )
    return cases


def _volume_columns() -> list[str]:
    return [
        "case", "status", "core_ml", "penumbra_ml", "hypoperfused_ml", "mismatch_ratio",
        "mismatch_volume_ml", "core_below_max", "ratio_at_least_min", "mismatch_volume_at_least_min",
        "target_mismatch", "device", "seconds", "message",
    ]


def _write_csv(rows: list[dict], path: Path) -> Path:
    return write_csv_atomically(path, rows, _volume_columns())


def _dicom_nodes(scene, case: BatchCase, method) -> dict:
    """Volume nodes of a DICOM study's maps (computed from its CTP series when it has no maps).

    DICOM holds no NIHSS: it comes from ``--nihss``.
    """
    from . import mrml_glue
    from .studyio import load_study

    needed = ("cbf", "tmax") if method == "threshold" else tuple(method.config.inputs)
    study = load_study(dicom_dir=case.dicom_dir, needed=needed, study_id=case.case_id)
    nodes = {
        name: mrml_glue.add_volume_node(scene, study.maps[name], study.geometry, f"{case.case_id} {name.upper()}")
        for name in BATCH_MAPS
        if name in study.maps
    }
    return nodes


def segment_case(case: BatchCase, output_dir: Path, *, method, device: str = "auto", nihss: int | None = None) -> dict:
    """Segment one study into ``output_dir``; returns its CSV row. Errors propagate."""
    from slicer import vtkMRMLScene

    from . import imageio, mrml_glue

    if case.problem:
        raise InputError(case.problem)
    started = time.perf_counter()
    scene = vtkMRMLScene()
    try:
        if case.dicom_dir is not None:
            nodes = _dicom_nodes(scene, case, method)
        else:
            nodes = {
                name: mrml_glue.load_volume_file(scene, case.files[name], f"{case.case_id} {name.upper()}")
                for name in BATCH_MAPS
                if name in case.files
            }
        result = mrml_glue.segment_volumes(
            scene,
            nodes,
            method=method,
            nihss=case.nihss if case.nihss is not None else nihss,
            device=device,
            output_name=f"{case.case_id} core-penumbra",
        )
        mrml_glue.write_segmentation(result.segmentation_node, output_dir / f"{case.case_id}.seg.nrrd")
        imageio.write_array(result.labels, result.geometry, output_dir / f"{case.case_id}_label.nii.gz")
    finally:
        scene.Clear(1)
    volumes = result.volumes
    row = {
        "case": case.case_id,
        "status": "ok",
        "core_ml": f"{volumes.core_ml:.3f}",
        "penumbra_ml": f"{volumes.penumbra_ml:.3f}",
        "hypoperfused_ml": f"{volumes.hypoperfused_ml:.3f}",
        "mismatch_ratio": "" if volumes.mismatch_ratio is None else f"{volumes.mismatch_ratio:.3f}",
        "mismatch_volume_ml": f"{volumes.mismatch_volume_ml:.3f}",
        "device": result.device,
        "seconds": f"{time.perf_counter() - started:.2f}",
        "message": "; ".join(result.notes),
    }
    row.update({key: int(bool(flag)) for key, flag in volumes.target_mismatch.items()})
    return row


def run_batch(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    method="threshold",
    device: str = "auto",
    nihss: int | None = None,
) -> list[dict]:
    """Segment every study under ``input_dir`` into ``output_dir``; one CSV row per study.

    ``method`` is ``"threshold"``, a model id or a bundle folder, loaded once for all studies.
    ``nihss`` is used for studies whose ``case.json`` gives none. A study that fails gets a row
    with ``status`` ``error`` and the reason; the others go on.
    """
    from .mrml_glue import resolve_method

    cases = find_cases(input_dir)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    method = resolve_method(method)
    rows = []
    for number, case in enumerate(cases, start=1):
        logger.info("[%d/%d] %s", number, len(cases), case.case_id)
        try:
            rows.append(segment_case(case, output, method=method, device=device, nihss=nihss))
        except (CancelledError, KeyboardInterrupt):
            raise
        except InputError as error:
            logger.error("%s: skipped: %s", case.case_id, error)
            rows.append({"case": case.case_id, "status": "error", "message": str(error)})
        except Exception as error:  # a crash on one study must not stop the batch
            logger.exception("%s: skipped after an unexpected failure", case.case_id)
            rows.append({"case": case.case_id, "status": "error", "message": f"{type(error).__name__}: {error}"})
    _write_csv(rows, output / VOLUMES_CSV)
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batch_segment",
        description="Segment ischemic core and penumbra for a folder of CT perfusion studies "
        "(decision support only).",
    )
    parser.add_argument("--input", required=True, type=Path, help="folder of case folders, a case folder, or <case>_<map>.nii.gz files")
    parser.add_argument("--output", required=True, type=Path, help="folder for <case>.seg.nrrd, <case>_label.nii.gz, volumes.csv")
    parser.add_argument("--method", default="threshold", help="'threshold', a registry model id or a bundle folder (default: threshold)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--nihss", type=int, default=None, help="NIHSS for studies whose case.json gives none (0-42)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; returns 0 when every study succeeded, 1 when some failed, 2 on bad usage."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # Slicer passes the separator through
        argv = argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    return run_command(lambda: _run(args), name="batch")


def _run(args) -> int:
    rows = run_batch(args.input, args.output, method=args.method, device=args.device, nihss=args.nihss)
    failed = [row["case"] for row in rows if row["status"] != "ok"]
    print(f"{len(rows) - len(failed)} of {len(rows)} studies segmented; volumes in {args.output / VOLUMES_CSV}")
    if failed:
        print(f"failed: {', '.join(failed)} (reasons in {VOLUMES_CSV})", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
