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
import errno
import logging
import os
import sys
import tempfile
from pathlib import Path

from ..errors import InputError
from ..mapspecs import MAP_NAMES
from ..perfusionmethods import DEFAULT_METHOD, METHODS, check_factors
from .perfusion import add_factor_arguments

log = logging.getLogger(__name__)

EPILOG = """\
examples:
  One study exported from the scanner console as DICOM (maps or raw CTP), NIHSS 14:
    strokeperfusionseg segment --dicom /data/study1 --nihss 14 --out results

  A case folder (cbf.nii.gz, cbv.nii.gz, ttp.nii.gz, tmax.nii.gz, mip.nii.gz, case.json):
    strokeperfusionseg segment --case cases/LVO-001 --out results

  Map files given one by one, with the threshold method (no network):
    strokeperfusionseg segment --cbf cbf.nii.gz --cbv cbv.nii.gz --ttp ttp.nii.gz \\
        --tmax tmax.nii.gz --mip mip.nii.gz --method threshold --out results

  A raw 4D CTP file: the maps are computed first (by default, or here the second time by
  block-circulant SVD without the haematocrit and density factors):
    strokeperfusionseg segment --ctp ctp.nii.gz --nihss 9 --out results
    strokeperfusionseg segment --ctp ctp.nii.gz --perfusion-method bcsvd --kh 1 --rho 1 --out results

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
    perfusion = parser.add_argument_group(
        "perfusion analysis (raw CTP input only: --ctp, or a case/DICOM folder holding the CTP instead of maps)")
    perfusion.add_argument(
        "--perfusion-method", choices=METHODS, metavar="|".join(METHODS),
        help=f"how the maps are computed from the CTP (default {DEFAULT_METHOD}); as `strokeperfusionseg perfusion "
             "--method`, docs/perfusion.md compares them",
    )
    add_factor_arguments(perfusion)
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


def parse_formats(text: str) -> tuple[str, ...] | None:
    """The requested formats, or None for ``auto``; an InputError for unknown names."""
    from ..pipeline import FORMATS

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


def parse_manual_map(entries: list[str]) -> dict[str, str]:
    mapping = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or not value.strip():
            raise InputError(f"--map {entry}: write it as NAME=SERIES, e.g. --map tmax=1.2.840.113619...")
        mapping[name.strip().lower()] = value.strip()
    return mapping


def ensure_writable(folder: Path) -> None:
    """Prove ``folder`` writable, or the nearest existing folder above it where it will be
    created (only once a result is written: a refused run leaves no empty folder behind); an
    InputError naming it otherwise."""
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise InputError(
            f"cannot write to output folder {folder} ({error.strerror or error}): choose a folder you can write to"
        ) from None


def single_job(args):
    """The one study named by --case, --dicom, --ctp or the map files, named after it.

    The id is the resolved name (``--case .`` is named after the current folder; map files
    after the folder holding them); a name that is no plain folder name is refused.
    """
    from ..batch import Job
    from ..studyid import study_id_from_path

    if args.case:
        return Job(study_id_from_path(args.case), {"case_dir": Path(args.case)}, args.nihss)
    if args.dicom:
        return Job(study_id_from_path(args.dicom), {"dicom_dir": Path(args.dicom)}, args.nihss)
    if args.ctp:
        return Job(study_id_from_path(args.ctp), {"ctp_file": Path(args.ctp), "dt_s": args.dt}, args.nihss)
    files = {name: Path(getattr(args, name)) for name in MAP_NAMES if getattr(args, name)}
    return Job(study_id_from_path(next(iter(files.values())).resolve().parent), {"map_files": files}, args.nihss)


def check_batch_output(batch: str, out: Path) -> None:
    """Refuse a batch output folder that is the batch folder or lies inside it.

    Results and summary.csv would be written among the inputs (and taken for studies by the
    next run); with --overwrite a study's results would replace the study itself.
    """
    source = Path(batch).resolve()
    if source.is_dir() and (out.resolve() == source or source in out.resolve().parents):
        raise InputError(f"--out {out} lies in the batch folder {batch}: choose an output folder outside it")


def perfusion_options(args) -> dict:
    """The perfusion flags given, as keyword arguments of ``studyio.load_study`` (absent: the defaults)."""
    given = {"perfusion_method": args.perfusion_method, "kh": args.kh, "rho": args.rho}
    return {name: value for name, value in given.items() if value is not None}


def check_options(args, formats: tuple[str, ...] | None) -> None:
    """Refuse contradictory options before any work."""
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
    if args.shard and not args.batch:
        raise InputError("--shard splits a --batch; give --batch DIR|CSV too")
    if args.batch and args.nihss is not None:
        raise InputError("--nihss is for one study: in a batch put the scores in case.json or the CSV's nihss column")
    if args.map and not (args.dicom or args.batch):
        raise InputError("--map names DICOM series: use it with --dicom (or a --batch of DICOM folders)")
    perfusion = perfusion_options(args)
    if perfusion and single["files"]:
        raise InputError("--perfusion-method, --kh and --rho set how maps are computed from a raw CTP, but map files "
                         "were given: leave them out, or give the CTP with --ctp")
    check_factors(**{name: value for name, value in perfusion.items() if name != "perfusion_method"})
    if formats and "dicom-seg" in formats and not (args.dicom or args.batch):
        raise InputError("a DICOM SEG needs a DICOM input (--dicom); leave dicom-seg out of --format for other inputs")


def _print_single(result, target: Path) -> None:
    volumes = result.volumes
    ratio = "n/a" if volumes.mismatch_ratio is None else f"{volumes.mismatch_ratio:.2f}"
    print(
        f"{result.study.study_id}: core {volumes.core_ml:.2f} ml, penumbra {volumes.penumbra_ml:.2f} ml, "
        f"hypoperfused {volumes.hypoperfused_ml:.2f} ml, mismatch ratio {ratio}, "
        f"mismatch volume {volumes.mismatch_volume_ml:.2f} ml, "
        f"target mismatch {str(volumes.target_mismatch['target_mismatch']).lower()}"
    )
    for note in result.notes:
        print(f"note: {note}")
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items())
    print(f"results in {target} ({stages})")


def run(args) -> int:
    from .. import batch
    from ..pipeline import THRESHOLD, resolve_method

    requested = parse_formats(args.format)
    shard = parse_shard(args.shard)
    series_map = parse_manual_map(args.map)
    check_options(args, requested)
    jobs = batch.collect_jobs(args.batch) if args.batch else [single_job(args)]
    out = Path(args.out)
    if args.batch:
        check_batch_output(args.batch, out)
    ensure_writable(out)
    # The model loads (PyTorch import, weights) while the first study is read.
    method = resolve_method(THRESHOLD if args.method == "threshold" else args.model, background=True)
    options = dict(formats=requested, series_map=series_map, resample=args.resample,
                   device=args.device, overwrite=args.overwrite, perfusion=perfusion_options(args))
    if not args.batch:
        result = batch.segment_job(jobs[0], method, out, **options)
        _print_single(result, out / jobs[0].study_id)
        return 0

    from tqdm import tqdm

    jobs = batch.shard_jobs(jobs, *shard)
    summary = batch.summary_path(out, shard)
    with tqdm(total=len(jobs), desc="segmenting", unit="study", file=sys.stderr) as bar:
        rows, status = batch.run_batch(jobs, method, out, summary, on_done=lambda row: bar.update(), **options)
    done = sum(row["status"] == "ok" for row in rows)
    print(f"segmented {done} of {len(rows)} studies; summary in {summary}")
    return status
