"""``strokeperfusionseg segment``: from a study (or many) to segments, volumes and reports.

Per study the outputs go to ``OUT/<study id>/`` (written in a hidden staging folder and renamed
into place, so a study is either complete or absent):

* ``<id>.seg.nrrd``      3D Slicer segmentation (Ischemic core, Penumbra) — format ``seg.nrrd``
* ``<id>_labels.nii.gz`` label map 0 background, 1 brain, 2 penumbra, 3 core — ``nifti``
* ``<id>_seg.dcm``       DICOM Segmentation referring to the source series — ``dicom-seg``
* ``<id>_report.json``   volumes, mismatch, inputs, model, timings — always
* ``<id>_report.png``, ``<id>_report.pdf``  one-page visual report — ``report``

Batches (``--batch``) also write ``OUT/summary.csv`` (``summary-shard-K-of-N.csv`` with
``--shard``). Exit status: 0 every study done; 2 a user error (bad option or input; in a batch:
at least one study had an input problem and none failed otherwise); 1 a failure that is not
the user's (in a batch: at least one study failed so); 130 cancelled.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import staged_folder, write_csv_atomically
from ..errors import EXIT_FAILURE, EXIT_USER_ERROR, CancelledError, InputError
from ..mapspecs import MAP_NAMES
from ..thresholding import ThresholdParams

log = logging.getLogger(__name__)

FORMATS = ("seg.nrrd", "nifti", "dicom-seg", "report")
SUMMARY_COLUMNS = (
    "id", "status", "core_ml", "penumbra_ml", "hypoperfused_ml", "mismatch_ratio",
    "mismatch_volume_ml", "target_mismatch", "seconds", "output", "message",
)
#: Maps the threshold method reads (the MIP gives the brain mask).
THRESHOLD_INPUTS = ("cbf", "tmax", "mip")
CSV_SOURCE_COLUMNS = ("case", "dicom", "ctp") + MAP_NAMES

EPILOG = """\
examples:
  One study exported from the scanner console as DICOM (maps or raw CTP), NIHSS 14:
    strokeperfusionseg segment --dicom /data/study1 --nihss 14 --out results

  A case folder (cbf.nii.gz, cbv.nii.gz, ttp.nii.gz, tmax.nii.gz, mip.nii.gz, case.json):
    strokeperfusionseg segment --case cases/LVO-001 --out results

  Map files given one by one, with the threshold method (no network):
    strokeperfusionseg segment --cbf cbf.nii.gz --cbv cbv.nii.gz --ttp ttp.nii.gz \\
        --tmax tmax.nii.gz --mip mip.nii.gz --method threshold --out results

  A raw 4D CTP file: the maps are computed first:
    strokeperfusionseg segment --ctp ctp.nii.gz --nihss 9 --out results

  The console named a map in a way not recognised: say which series it is:
    strokeperfusionseg segment --dicom /data/study2 --map tmax="Perf T-max (s)" --out results

  Every study in a folder (or listed in a CSV), split over two machines:
    strokeperfusionseg segment --batch /data/studies --out results --shard 1/2
    strokeperfusionseg segment --batch /data/studies --out results --shard 2/2

  CSV columns: id, then case | dicom | ctp | cbf,cbv,ttp,tmax,mip (paths, relative to the
  CSV), and nihss (optional).

Results are decision support: a physician checks every segmentation before use.
exit status: 0 all done, 2 input problem (see the message), 1 failure (please report), 130 cancelled.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment ischemic core and penumbra of one study or many; write segmentations and reports",
        description=(
            "Segment the ischemic core and the penumbra from CT perfusion maps (or a raw CTP), "
            "and write a Slicer segmentation, a NIfTI label map, a DICOM Segmentation and a "
            "one-page report with the volumes and the mismatch figures."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("input (give exactly one kind)")
    source.add_argument("--case", metavar="DIR", help="a case folder (maps as <name>.nii.gz, case.json)")
    source.add_argument("--dicom", metavar="DIR", help="a folder with the study's DICOM files (map series or 4D CTP)")
    for name in MAP_NAMES:
        source.add_argument(f"--{name}", metavar="FILE", help=f"{name.upper()} map file (NIfTI/NRRD; scalar or colour-coded)")
    source.add_argument("--ctp", metavar="FILE", help="a raw 4D CTP file (HU); the maps are computed first")
    source.add_argument("--batch", metavar="DIR|CSV", help="many studies: a folder of case/DICOM folders, or a CSV")
    details = parser.add_argument_group("study details")
    details.add_argument("--nihss", type=int, metavar="N", help="admission NIHSS score 0..42 (single study)")
    details.add_argument(
        "--map", action="append", default=[], metavar="NAME=SERIES",
        help="DICOM: which series holds a map, by SeriesInstanceUID or description (repeatable; NAME may be ctp)",
    )
    details.add_argument("--dt", type=float, metavar="SECONDS", help="frame interval of --ctp when its file does not record it")
    details.add_argument("--resample", action="store_true", help="resample maps on other grids onto the first map's grid (logged)")
    method = parser.add_argument_group("method")
    method.add_argument("--method", choices=("dl", "threshold"), default="dl",
                        help="dl: the trained network (default); threshold: rCBF < 30%% core, Tmax > 6 s hypoperfusion")
    method.add_argument("--model", metavar="ID|PATH", help="model id from the registry or a bundle folder (default: the bundled model)")
    method.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the network runs (default auto)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", metavar="DIR", required=True, help="output folder; each study gets OUT/<id>/")
    output.add_argument(
        "--format", default="auto", metavar="LIST",
        help="comma list of seg.nrrd, nifti, dicom-seg, report (default auto: all, dicom-seg for DICOM input); "
             "the JSON report is always written",
    )
    output.add_argument("--overwrite", action="store_true", help="replace existing results of a study")
    output.add_argument("--shard", metavar="K/N", help="batch: process only the K-th of N interleaved parts")
    parser.set_defaults(handler=run)


@dataclass
class Job:
    """One study to segment: where it comes from."""

    study_id: str
    source: dict  # keyword arguments of studyio.load_study
    nihss: int | None = None
    is_dicom: bool = False


@dataclass
class MethodSpec:
    """The segmentation method, loaded once for all studies."""

    name: str
    needed: tuple[str, ...]
    bundle: object | None = None
    model_id: str | None = None
    model_version: str | None = None
    needs_nihss: bool = False


@dataclass
class Outcome:
    study_id: str
    status: str = "ok"
    message: str = ""
    row: dict = field(default_factory=dict)


def parse_formats(text: str) -> tuple[str, ...] | None:
    """The requested formats, or None for ``auto``; an InputError for unknown names."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if names in ([], ["auto"]):
        return None
    if names == ["all"]:
        return FORMATS
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise InputError(f"unknown --format {', '.join(unknown)}: use a comma list of {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(names))


def parse_shard(text: str | None) -> tuple[int, int]:
    """``K/N`` -> (K, N) with 1 <= K <= N; (1, 1) for None."""
    if not text:
        return 1, 1
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text}: write it as K/N, e.g. 1/4") from None
    if not 1 <= k <= n:
        raise InputError(f"--shard {text}: K must be between 1 and N")
    return k, n


def shard_jobs(jobs: list[Job], k: int, n: int) -> list[Job]:
    """The K-th of N interleaved parts of the jobs sorted by id (every job in exactly one part)."""
    ordered = sorted(jobs, key=lambda job: job.study_id)
    return [job for index, job in enumerate(ordered) if index % n == k - 1]


def parse_manual_map(entries: list[str]) -> dict[str, str]:
    mapping = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or not value.strip():
            raise InputError(f"--map {entry}: write it as NAME=SERIES, e.g. --map tmax=1.2.840.113619...")
        mapping[name.strip().lower()] = value.strip()
    return mapping


def ensure_writable(folder: Path) -> None:
    """Create ``folder`` and prove it writable; an InputError naming it otherwise."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InputError(
            f"cannot write to output folder {folder} ({error.strerror or error}): choose a folder you can write to"
        ) from None


def _is_case_folder(folder: Path) -> bool:
    return (folder / "case.json").is_file() or any(
        (folder / f"{name}.nii.gz").is_file() for name in (*MAP_NAMES, "ctp")
    )


def _job_for_folder(folder: Path, nihss=None) -> Job:
    if _is_case_folder(folder):
        return Job(folder.name, {"case_dir": folder}, nihss)
    return Job(folder.name, {"dicom_dir": folder}, nihss, is_dicom=True)


def jobs_from_csv(path: Path) -> list[Job]:
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        unknown = [c for c in columns if c not in (*CSV_SOURCE_COLUMNS, "id", "nihss")]
        if unknown:
            raise InputError(f"{path.name}: unknown column(s) {', '.join(unknown)}; use id, nihss, {', '.join(CSV_SOURCE_COLUMNS)}")
        jobs = []
        for number, raw in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
            def resolve(value):
                return (path.parent / value).resolve() if value else None
            study_id = row.get("id") or f"row{number}"
            nihss = row.get("nihss") or None
            if row.get("case"):
                jobs.append(Job(study_id, {"case_dir": resolve(row["case"])}, nihss))
            elif row.get("dicom"):
                jobs.append(Job(study_id, {"dicom_dir": resolve(row["dicom"])}, nihss, is_dicom=True))
            elif row.get("ctp"):
                jobs.append(Job(study_id, {"ctp_file": resolve(row["ctp"])}, nihss))
            else:
                files = {n: resolve(row[n]) for n in MAP_NAMES if row.get(n)}
                jobs.append(Job(study_id, {"map_files": files}, nihss))
    ids = [job.study_id for job in jobs]
    if len(set(ids)) < len(ids):
        raise InputError(f"{path.name}: study ids repeat; give every row a unique id")
    return jobs


def collect_jobs(args) -> list[Job]:
    """Every study the options name, before sharding."""
    single = {
        "case": args.case, "dicom": args.dicom, "ctp": args.ctp, "batch": args.batch,
        "files": any(getattr(args, name) for name in MAP_NAMES),
    }
    given = [name for name, value in single.items() if value]
    if len(given) != 1:
        raise InputError(
            "give exactly one input: --case DIR, --dicom DIR, --cbf/--cbv/--ttp/--tmax FILEs, --ctp FILE or --batch"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if args.batch:
        if args.nihss is not None:
            raise InputError("--nihss is for one study: in a batch put the scores in case.json or the CSV's nihss column")
        batch = Path(args.batch)
        if batch.is_file():
            return jobs_from_csv(batch)
        if not batch.is_dir():
            raise InputError(f"--batch {batch}: no such folder or CSV file")
        folders = [p for p in sorted(batch.iterdir()) if p.is_dir() and not p.name.startswith(".")]
        if not folders:
            raise InputError(f"--batch {batch} holds no study folders: give a folder of case or DICOM folders")
        return [_job_for_folder(folder) for folder in folders]
    if args.case:
        return [Job(Path(args.case).name, {"case_dir": Path(args.case)}, args.nihss)]
    if args.dicom:
        return [Job(Path(args.dicom).name, {"dicom_dir": Path(args.dicom)}, args.nihss, is_dicom=True)]
    if args.ctp:
        return [Job(Path(args.ctp).name.split(".")[0], {"ctp_file": Path(args.ctp), "dt_s": args.dt}, args.nihss)]
    files = {name: Path(getattr(args, name)) for name in MAP_NAMES if getattr(args, name)}
    study_id = next(iter(files.values())).resolve().parent.name  # the folder holding the maps
    return [Job(study_id, {"map_files": files}, args.nihss)]


def load_method(name: str, model: str | None, device: str) -> MethodSpec:
    """Resolve and load the segmentation method once."""
    if name == "threshold":
        return MethodSpec("threshold", THRESHOLD_INPUTS)
    from ..bundle import load_bundle
    from ..registry import default_model_id

    model = model or default_model_id()
    if model is None:
        raise InputError("no default model is installed: give --model ID|PATH, or use --method threshold")
    bundle = load_bundle(model, device="cpu")
    return MethodSpec(
        "dl",
        tuple(bundle.config.inputs),
        bundle=bundle,
        model_id=bundle.model_id,
        model_version=bundle.version,
        needs_nihss=bool(bundle.config.use_nihss),
    )


def _formats_for(job: Job, requested: tuple[str, ...] | None) -> tuple[str, ...]:
    if requested is None:
        return FORMATS if job.is_dicom else tuple(f for f in FORMATS if f != "dicom-seg")
    if "dicom-seg" in requested and not job.is_dicom:
        raise InputError(
            f"{job.study_id}: a DICOM SEG needs a DICOM input (--dicom); leave dicom-seg out of --format for other inputs"
        )
    return requested


def segment_job(job: Job, method: MethodSpec, out: Path, *, requested_formats, series_map, resample,
                device: str, overwrite: bool) -> dict:
    """Load, segment and write one study; returns its summary row. Raises on problems."""
    from .. import writers
    from ..predictor import predict
    from ..studyio import load_study
    from ..volumes import lesion_volumes

    start = time.perf_counter()
    formats = _formats_for(job, requested_formats)
    target = out / job.study_id
    if target.exists() and not overwrite:
        raise InputError(f"{target} already exists: remove it, choose another --out, or add --overwrite")
    extra = {"series_map": series_map} if job.is_dicom else {}
    study = load_study(**job.source, nihss=job.nihss, needed=method.needed, resample=resample,
                       study_id=job.study_id, **extra)
    if method.needs_nihss and study.nihss is None:
        raise InputError(f"{job.study_id}: model {method.model_id} uses the NIHSS score: give --nihss N (0..42)")
    timings = dict(study.timings)
    images = {name: study.maps[name] for name in method.needed}
    stage = time.perf_counter()
    prediction = predict(
        images, study.geometry.spacing_zyx, method=method.bundle if method.name == "dl" else "threshold",
        nihss=study.nihss, mip=study.maps.get("mip"), device=device,
    )
    timings["segment"] = time.perf_counter() - stage
    labels = prediction.labels
    volumes = lesion_volumes(labels, study.geometry.spacing_zyx)
    notes = [*study.notes, *prediction.notes]

    with staged_folder(target, overwrite=True) as staging:
        names = {"report.json": f"{job.study_id}_report.json"}
        if "seg.nrrd" in formats:
            stage = time.perf_counter()
            names["seg.nrrd"] = f"{job.study_id}.seg.nrrd"
            writers.write_seg_nrrd(labels, study.geometry, staging / names["seg.nrrd"])
            timings["write_seg_nrrd"] = time.perf_counter() - stage
        if "nifti" in formats:
            stage = time.perf_counter()
            names["nifti"] = f"{job.study_id}_labels.nii.gz"
            writers.write_label_nifti(labels, study.geometry, staging / names["nifti"])
            timings["write_nifti"] = time.perf_counter() - stage
        if "dicom-seg" in formats:
            stage = time.perf_counter()
            names["dicom-seg"] = f"{job.study_id}_seg.dcm"
            writers.write_dicom_seg(
                labels, study.reference_headers, staging / names["dicom-seg"], method=method.name,
                algorithm_name=method.model_id or "rCBF-Tmax thresholds",
                algorithm_version=method.model_version or _software_version(),
            )
            timings["write_dicom_seg"] = time.perf_counter() - stage
        if "report" in formats:
            stage = time.perf_counter()
            names["report.png"] = f"{job.study_id}_report.png"
            names["report.pdf"] = f"{job.study_id}_report.pdf"
            figure = writers.render_report_figure(
                study.maps, labels, study.geometry, volumes, title=f"Core and penumbra: {job.study_id}",
                subtitle=_method_line(method, study.nihss, prediction.device), notes=notes,
            )
            writers.write_visual_report(figure, staging / names["report.png"], staging / names["report.pdf"])
            timings["write_report"] = time.perf_counter() - stage
        timings["total"] = time.perf_counter() - start
        report = writers.build_report(
            study, volumes, method=method.name, model_id=method.model_id, model_version=method.model_version,
            device=prediction.device, timings_s=timings, notes=notes, outputs=names,
        )
        writers.write_report_json(report, staging / names["report.json"])
    return {
        "id": job.study_id, "status": "ok",
        "core_ml": f"{volumes.core_ml:.2f}", "penumbra_ml": f"{volumes.penumbra_ml:.2f}",
        "hypoperfused_ml": f"{volumes.hypoperfused_ml:.2f}",
        "mismatch_ratio": "" if volumes.mismatch_ratio is None else f"{volumes.mismatch_ratio:.2f}",
        "mismatch_volume_ml": f"{volumes.mismatch_volume_ml:.2f}",
        "target_mismatch": str(volumes.target_mismatch["target_mismatch"]).lower(),
        "seconds": f"{timings['total']:.2f}", "output": str(target), "message": "",
        "timings": timings,
    }


def _software_version() -> str:
    from .. import __version__

    return __version__


def _method_line(method: MethodSpec, nihss, device: str) -> str:
    what = f"model {method.model_id} {method.model_version}" if method.name == "dl" else f"thresholds {ThresholdParams().summary}"
    return f"{what} on {device}; NIHSS {nihss if nihss is not None else 'not given'}; StrokePerfusionSeg {_software_version()}"


def write_summary(rows: list[dict], path: Path) -> Path:
    """Write the batch summary CSV atomically."""
    return write_csv_atomically(path, rows, SUMMARY_COLUMNS)


def _print_single(row: dict) -> None:
    ratio = row["mismatch_ratio"] or "n/a"
    print(
        f"{row['id']}: core {row['core_ml']} ml, penumbra {row['penumbra_ml']} ml, "
        f"hypoperfused {row['hypoperfused_ml']} ml, mismatch ratio {ratio}, "
        f"mismatch volume {row['mismatch_volume_ml']} ml, target mismatch {row['target_mismatch']}"
    )
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in row["timings"].items())
    print(f"results in {row['output']} ({stages})")


def run(args) -> int:
    requested = parse_formats(args.format)
    k, n = parse_shard(args.shard)
    if args.shard and not args.batch:
        raise InputError("--shard splits a --batch; give --batch DIR|CSV too")
    series_map = parse_manual_map(args.map)
    if series_map and not (args.dicom or args.batch):
        raise InputError("--map names DICOM series: use it with --dicom (or a --batch of DICOM folders)")
    jobs = collect_jobs(args)
    if not args.batch:
        _formats_for(jobs[0], requested)  # refuse a wrong --format before any work
    out = Path(args.out)
    ensure_writable(out)
    method = load_method(args.method, args.model, args.device)
    options = dict(requested_formats=requested, series_map=series_map, resample=args.resample,
                   device=args.device, overwrite=args.overwrite)
    if not args.batch:
        _print_single(segment_job(jobs[0], method, out, **options))
        return 0

    from tqdm import tqdm

    jobs = shard_jobs(jobs, k, n)
    rows, worst = [], 0
    summary = out / ("summary.csv" if n == 1 else f"summary-shard-{k}-of-{n}.csv")
    for job in tqdm(jobs, desc="segmenting", unit="study", file=sys.stderr):
        try:
            row = segment_job(job, method, out, **options)
        except CancelledError:
            raise
        except InputError as error:
            log.warning("%s: %s", job.study_id, error)
            row, worst = {"id": job.study_id, "status": "input-error", "message": str(error)}, worst or EXIT_USER_ERROR
        except Exception as error:  # keep going: one broken study must not stop the archive
            log.exception("%s failed", job.study_id)
            row, worst = {"id": job.study_id, "status": "failed", "message": f"{type(error).__name__}: {error}"}, EXIT_FAILURE
        rows.append(row)
        write_summary(rows, summary)
    done = sum(row["status"] == "ok" for row in rows)
    print(f"segmented {done} of {len(rows)} studies; summary in {summary}")
    return worst
