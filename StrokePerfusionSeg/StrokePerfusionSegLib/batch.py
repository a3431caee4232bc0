"""The batch runner: many studies through the one pipeline, one summary CSV.

Used by ``strokeperfusionseg segment --batch`` and by the headless Slicer script
(``Resources/Scripts/batch_segment.py``, which runs that same command). Studies come from

* a CSV with the columns ``id``, then ``case`` | ``dicom`` | ``ctp`` | ``cbf,cbv,ttp,tmax,mip``
  (paths relative to the CSV) and optionally ``nihss``;
* a folder of study folders: case folders (``<map>.nii.gz``, ``case.json``) or DICOM folders;
* a flat folder of map sets named ``<id>_<map>.nii.gz`` (``<id>_<map>_rgb.nii.gz`` for
  colour-coded maps; ``.nii`` and ``.nrrd`` too).

Each study is loaded, segmented and written by :mod:`.pipeline`; a study that fails gets a row
in the summary with ``status`` ``input-error`` (its input is at fault; the message says how to
fix it) or ``failed`` (not the user's fault), and the others go on. The summary is rewritten
after every study, so an interrupted batch leaves the rows of the studies done.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import write_csv_atomically
from .errors import EXIT_FAILURE, EXIT_USER_ERROR, CancelledError, InputError
from .mapspecs import MAP_NAMES

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = (
    "id", "status", "core_ml", "penumbra_ml", "hypoperfused_ml", "mismatch_ratio",
    "mismatch_volume_ml", "target_mismatch", "seconds", "output", "notes", "message",
)
CSV_SOURCE_COLUMNS = ("case", "dicom", "ctp") + MAP_NAMES
_MAP_SET_FILE = re.compile(
    rf"^(?P<id>.+?)[_-](?P<map>{'|'.join(MAP_NAMES)})(?P<rgb>_rgb)?\.(nii\.gz|nii|nrrd)$", re.IGNORECASE
)


@dataclass
class Job:
    """One study to segment: its id and the keyword arguments of ``studyio.load_study``.

    ``id_source`` says where the id came from, for messages; ``problem`` is an input error
    found while collecting (e.g. a looping link), reported as the study's summary row.
    """

    study_id: str
    source: dict = field(default_factory=dict)
    nihss: int | str | None = None
    id_source: str = "the study id"
    problem: str | None = None

    def input_paths(self) -> list[Path]:
        """Every path this study is read from (the output must stay apart from them)."""
        paths = []
        for key, value in self.source.items():
            if key == "map_files":
                paths.extend(Path(v) for v in value.values())
            elif key in ("case_dir", "dicom_dir", "ctp_file"):
                paths.append(Path(value))
        return paths


def summary_path(out: Path, shard: tuple[int, int] = (1, 1)) -> Path:
    """``OUT/summary.csv``, or ``OUT/summary-shard-K-of-N.csv`` for one shard of N."""
    k, n = shard
    return out / ("summary.csv" if n == 1 else f"summary-shard-{k}-of-{n}.csv")


def is_case_folder(folder: Path) -> bool:
    """A folder holding ``case.json`` or ``<map>.nii.gz`` / ``ctp.nii.gz`` files."""
    return (folder / "case.json").is_file() or any(
        (folder / f"{name}.nii.gz").is_file() for name in (*MAP_NAMES, "ctp")
    )


def _job_for_folder(folder: Path) -> Job:
    kind = "case_dir" if is_case_folder(folder) else "dicom_dir"
    return Job(folder.name, {kind: folder}, id_source=f"the folder name of {folder}")


def _map_set_jobs(folder: Path) -> list[Job]:
    """Jobs of the ``<id>_<map>[_rgb].nii.gz`` files in ``folder`` (scalar preferred to RGB)."""
    sets: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        match = _MAP_SET_FILE.match(path.name)
        if match and path.is_file():
            files = sets.setdefault(match["id"], {})
            name = match["map"].lower()
            if match["rgb"] is None or name not in files:
                files[name] = path
    return [Job(study_id, {"map_files": files}, id_source=f"the file names <id>_<map> in {folder}")
            for study_id, files in sets.items()]


def jobs_from_folder(folder: Path) -> list[Job]:
    """The studies in ``folder``: study sub-folders and flat map sets, or the folder itself."""
    if is_case_folder(folder):
        return [_job_for_folder(folder)]
    entries = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    # A link that leads nowhere (dangling, or a loop) gets its own row instead of vanishing.
    broken = [Job(p.name, problem=f"{p} is a symbolic link that leads nowhere (dangling or a loop): fix or remove it")
              for p in entries if p.is_symlink() and not p.exists()]
    jobs = [_job_for_folder(p) for p in entries if p.is_dir()] + _map_set_jobs(folder) + broken
    if not jobs:
        raise InputError(
            f"{folder} holds no studies: give a folder of case or DICOM folders, files named "
            "<id>_<map>.nii.gz, or a CSV"
        )
    return jobs


def jobs_from_csv(path: Path) -> list[Job]:
    """The studies listed in a CSV (see the module doc for the columns)."""
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        unknown = [c for c in columns if c not in (*CSV_SOURCE_COLUMNS, "id", "nihss")]
        if unknown:
            raise InputError(
                f"{path.name}: unknown column(s) {', '.join(unknown)}; use id, nihss, {', '.join(CSV_SOURCE_COLUMNS)}"
            )
        jobs = [_job_from_row(path.parent, number, raw) for number, raw in enumerate(reader, start=2)]
    ids = [job.study_id for job in jobs]
    if len(set(ids)) < len(ids):
        raise InputError(f"{path.name}: study ids repeat; give every row a unique id")
    return jobs


def _job_from_row(base: Path, number: int, raw: dict) -> Job:
    row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}

    def resolve(value: str) -> Path:
        return (base / value).resolve()

    job = Job(row.get("id") or f"row{number}", nihss=row.get("nihss") or None, id_source=f"row {number}'s id")
    if row.get("case"):
        job.source = {"case_dir": resolve(row["case"])}
    elif row.get("dicom"):
        job.source = {"dicom_dir": resolve(row["dicom"])}
    elif row.get("ctp"):
        job.source = {"ctp_file": resolve(row["ctp"])}
    else:
        job.source = {"map_files": {n: resolve(row[n]) for n in MAP_NAMES if row.get(n)}}
    return job


def collect_jobs(source: str | Path) -> list[Job]:
    """Every study of a batch source: a CSV file or a folder."""
    source = Path(source)
    if source.is_file():
        return jobs_from_csv(source)
    if not source.is_dir():
        raise InputError(f"{source}: no such folder or CSV file; give a folder of studies or a CSV")
    return jobs_from_folder(source)


def shard_jobs(jobs: list[Job], k: int, n: int) -> list[Job]:
    """The K-th of N interleaved parts of the jobs sorted by id (every job in exactly one part)."""
    ordered = sorted(jobs, key=lambda job: job.study_id)
    return [job for index, job in enumerate(ordered) if index % n == k - 1]


def summary_row(result, output: Path, seconds: float) -> dict:
    """The summary CSV row of a segmented study (volumes in ml with 2 decimals)."""
    volumes = result.volumes
    return {
        "id": result.study.study_id, "status": "ok",
        "core_ml": f"{volumes.core_ml:.2f}", "penumbra_ml": f"{volumes.penumbra_ml:.2f}",
        "hypoperfused_ml": f"{volumes.hypoperfused_ml:.2f}",
        "mismatch_ratio": "" if volumes.mismatch_ratio is None else f"{volumes.mismatch_ratio:.2f}",
        "mismatch_volume_ml": f"{volumes.mismatch_volume_ml:.2f}",
        "target_mismatch": str(volumes.target_mismatch["target_mismatch"]).lower(),
        "seconds": f"{seconds:.2f}", "output": str(output), "notes": " | ".join(result.notes), "message": "",
    }


def segment_job(job: Job, method, out: Path, *, formats=None, series_map=None, resample=False,
                device="auto", overwrite=False, perfusion=None):
    """Load, segment and write one study into ``out/<id>``; returns the SegmentationResult.

    ``perfusion``: ``perfusion_method``, ``kh`` and ``rho`` for :func:`.studyio.load_study`
    (how maps are computed from a raw CTP; absent = the defaults).

    Before any work: the id must be a plain folder name (:func:`studyid.check_study_id`), the
    target must not exist (unless ``overwrite``), be a link or a file, nor overlap the study's
    inputs; the target's lock is then held from loading to writing, so a second run writing
    the same study is refused at once instead of replacing these results.
    """
    from .atomic import check_apart, check_output_target, folder_lock
    from .pipeline import segment_study, write_outputs
    from .studyid import check_study_id
    from .studyio import load_study

    if job.problem:
        raise InputError(job.problem)
    target = check_output_target(out / check_study_id(job.study_id, source=job.id_source), overwrite=overwrite)
    check_apart(target, job.input_paths())
    extra = {"series_map": series_map} if "dicom_dir" in job.source else {}
    with folder_lock(target):
        study = load_study(**job.source, nihss=job.nihss, needed=method.required_maps, resample=resample,
                           study_id=target.name, **extra, **(perfusion or {}))
        result = segment_study(study, method, device=device)
        write_outputs(result, target, formats, overwrite=overwrite)
    return result


def run_batch(
    jobs: Sequence[Job],
    method,
    out: Path,
    summary: Path,
    *,
    on_done: Callable[[dict], None] | None = None,
    **options,
) -> tuple[list[dict], int]:
    """Segment every job; returns the summary rows and the exit status.

    The exit status is 0 when every study is done, 2 when some had an input problem and none
    failed otherwise, 1 when any failed for another reason. ``options`` go to :func:`segment_job`.
    """
    import time

    rows, worst = [], 0
    for job in jobs:
        started = time.perf_counter()
        try:
            result = segment_job(job, method, out, **options)
            row = summary_row(result, out / job.study_id, time.perf_counter() - started)
        except CancelledError:
            raise
        except Exception as error:  # keep going: one broken study must not stop the archive
            method.bundle  # ... but a model that failed to load stops it before any row: that is no study's fault
            if isinstance(error, InputError):
                log.warning("%s: %s", job.study_id, error)
                row, worst = {"id": job.study_id, "status": "input-error", "message": str(error)}, worst or EXIT_USER_ERROR
            else:
                log.exception("%s failed", job.study_id)
                row, worst = ({"id": job.study_id, "status": "failed", "message": f"{type(error).__name__}: {error}"},
                              EXIT_FAILURE)
        rows.append(row)
        write_csv_atomically(summary, rows, SUMMARY_COLUMNS)
        if on_done is not None:
            on_done(row)
    return rows, worst
