"""``strokeperfusionseg-train``: fit, run experiments, evaluate and export models.

Sub-commands::

    fit       CONFIG --cohort SRC --out RUN_DIR      train one run (resumes RUN_DIR when present)
    run       EXPERIMENT --cohort SRC --out DIR      train, export and evaluate every run of a grid
    evaluate  --model BUNDLE... --cohort SRC --split test --out DIR   tables and plots vs thresholding
    export    RUN_DIR --out DIR --model-id ID --version V            best checkpoint -> DIR/ID bundle
    cohort    --out DIR --patients N --seed S --workers W              phantom cohort in parallel
    cohort    --from isles2018|isles2024|unitobrain SRC --out DIR       a public dataset -> cohort folder

CONFIG and EXPERIMENT are JSON files or names of the shipped ones in ``training/configs``.
Exit status as the ``strokeperfusionseg`` command: 0 success, 2 user error, 1 failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from StrokePerfusionSegLib.errors import InputError, run_command


def _add_common(parser, *, overrides=True):
    parser.add_argument("--cohort", required=True, help="cohort folder (cohort.json) or CSV case list")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    if overrides:
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="override a setting, e.g. --set model.width=0.25 --set lr=1e-4 (JSON values)")
        parser.add_argument("--max-minutes", type=float, help="wall-clock budget of each run (best model kept)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _overrides(args) -> dict:
    from .config import parse_override

    overrides = dict(parse_override(text) for text in args.overrides)
    if args.max_minutes is not None:
        overrides["max_minutes"] = args.max_minutes
    return overrides


def _fit(args) -> int:
    from .experiments import plan_experiment
    from .trainer import fit

    _, runs = plan_experiment(args.config, _overrides(args))
    if len(runs) != 1:
        raise InputError(f"{args.config} is an experiment of {len(runs)} runs: use `strokeperfusionseg-train run`")
    summary = fit(runs[0].config, args.cohort, args.out, device=args.device, resume=not args.no_resume,
                  progress=not args.no_progress)
    print(json.dumps({k: summary[k] for k in ("stop_reason", "best_val_loss", "best_stage", "best_epoch",
                                              "epochs_run", "wall_s", "device")}, indent=2))
    return 0


def _run(args) -> int:
    from .experiments import run_experiment

    result = run_experiment(args.experiment, args.cohort, args.out, overrides=_overrides(args), only=args.only,
                            device=args.device, split=args.split, progress=not args.no_progress,
                            evaluate=not args.no_evaluate)
    print(result)
    return 0


def _evaluate(args) -> int:
    from .evaluate import evaluate

    methods = {}
    for text in args.model:
        name, _, path = text.rpartition("=")
        methods[name or Path(path).name] = path
    report = evaluate(methods, args.cohort, split=args.split, split_file=args.split_file, out_dir=args.out,
                      device=args.device,
                      with_threshold=not args.no_threshold, montage_case_count=args.montage_cases)
    print(report.markdown)
    return 0


def _export(args) -> int:
    from .export import export_run

    from .config import parse_override

    evaluation = json.loads(Path(args.evaluation).read_text()) if args.evaluation else None
    record = dict(parse_override(text) for text in args.record)
    print(export_run(args.run_dir, args.out, model_id=args.model_id, version=args.version, evaluation=evaluation,
                     extra_training=record))
    return 0


def _convert(args) -> int:
    from StrokePerfusionSegLib.datasets import AGREEMENT_FILE, convert_dataset, dataset_reader

    if args.source is None:
        raise InputError(f"give the {args.dataset} folder: strokeperfusionseg-train cohort --from {args.dataset} SRC --out DIR")

    def report(index, total, case_id):
        print(f"[{index + 1}/{total}] {case_id}", file=sys.stderr)

    out = convert_dataset(dataset_reader(args.dataset), args.source, args.out, dt_s=args.dt, maps=args.dataset_maps,
                          keep_ctp=args.with_ctp, split_seed=args.split_seed or 0,
                          progress=None if args.no_progress else report)
    print((out / AGREEMENT_FILE).read_text())
    print(out)
    return 0


def _cohort(args) -> int:
    from .cohort import generate_parts

    if args.dataset is not None:
        return _convert(args)
    if args.source is not None:
        raise InputError(f"{args.source}: a source folder needs --from DATASET (isles2018, isles2024 or unitobrain)")
    if args.patients is None or args.seed is None:
        raise InputError("a phantom cohort needs --patients N and --seed S (or convert a dataset with --from)")
    settings = dict(size=args.size, slices=args.slices, frames=args.frames, maps=args.maps,
                    with_ctp=args.with_ctp, with_rgb=args.with_rgb)
    print(generate_parts(args.out, args.patients, args.seed, workers=args.workers, split_seed=args.split_seed,
                         perfusion_methods=args.perfusion_method, only_splits=args.only_split, **settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strokeperfusionseg-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    fit = commands.add_parser("fit", help="train one run")
    fit.add_argument("config", help="training config JSON (or a shipped config name)")
    _add_common(fit)
    fit.add_argument("--no-resume", action="store_true", help="refuse to continue a run already in --out")
    fit.set_defaults(handler=_fit)

    run = commands.add_parser("run", help="train, export and evaluate every run of an experiment")
    run.add_argument("experiment", help="experiment JSON (e.g. exp1_ftl_grid, exp2_sf_inputs, exp3_fusion)")
    _add_common(run)
    run.add_argument("--only", action="append", help="run only this run name (repeatable)")
    run.add_argument("--split", default="val", choices=("train", "val", "test"), help="split of the table (paper: val)")
    run.add_argument("--no-evaluate", action="store_true", help="train and export only")
    run.set_defaults(handler=_run)

    evaluate = commands.add_parser("evaluate", help="Tables 1-3 style report on a split, beside thresholding")
    evaluate.add_argument("--model", action="append", required=True, metavar="[NAME=]BUNDLE",
                          help="model bundle folder or registry id (repeatable)")
    _add_common(evaluate, overrides=False)
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--split-file", help="a run's split.json, when the trainer made the split (no split column)")
    evaluate.add_argument("--no-threshold", action="store_true", help="leave the thresholding baseline out")
    evaluate.add_argument("--montage-cases", type=int, default=2, help="best and worst cases shown (each)")
    evaluate.set_defaults(handler=_evaluate)

    cohort = commands.add_parser("cohort", help="a phantom cohort in parallel (-> cases.csv), or a public dataset "
                                                "converted (--from)")
    cohort.add_argument("source", nargs="?", help="with --from: the dataset's folder as downloaded")
    cohort.add_argument("--from", dest="dataset", metavar="DATASET",
                        help="isles2018, isles2024 or unitobrain: convert this public dataset (docs/datasets.md) instead of generating phantoms")
    cohort.add_argument("--out", required=True, help="folder to create")
    cohort.add_argument("--patients", type=int)
    cohort.add_argument("--seed", type=int)
    cohort.add_argument("--workers", type=int, default=2, help="parallel processes (one part cohort each)")
    cohort.add_argument("--split-seed", type=int,
                        help="re-split the joined parts 58/20/22 by patient, stratified by group, with this seed "
                             "(with --from: the seed of the labelled cases' split, default 0)")
    cohort.add_argument("--size", type=int, default=256, help="in-plane pixels over 220 mm (default 256)")
    cohort.add_argument("--slices", type=int, default=20)
    cohort.add_argument("--frames", type=int, default=40)
    cohort.add_argument("--maps", choices=("computed", "truth"), default="computed")
    cohort.add_argument("--perfusion-method", metavar="METHOD[,METHOD...]",
                        help="method(s) of the computed maps: bcsvd, osvd, tikhonov (each optionally +correction, "
                        "the exponential-residue bias correction) or model; several: one drawn per patient "
                        "(recorded in case.json); default the product's (perfusionmethods.DEFAULT_METHOD)")
    cohort.add_argument("--only-split", action="append", choices=("train", "val", "test"),
                        help="simulate only this split's patients of the same cohort (repeatable)")
    cohort.add_argument("--with-ctp", action="store_true", help="keep the 4D CTP (large)")
    cohort.add_argument("--dt", type=float, help="with --from: frame interval in s, overriding the files' own")
    cohort.add_argument("--dataset-maps", choices=("dataset", "computed"), default="dataset",
                        help="with --from: keep the dataset's maps (default; TTP and MIP computed) or compute all")
    cohort.add_argument("--no-progress", action="store_true", help="with --from: no per-case progress lines")
    cohort.add_argument("--with-rgb", action="store_true", help="keep colour-coded map copies")
    cohort.set_defaults(handler=_cohort)

    export = commands.add_parser("export", help="best checkpoint of a run -> model bundle")
    export.add_argument("run_dir")
    export.add_argument("--out", required=True, help="folder that receives the bundle folder <model-id>/")
    export.add_argument("--model-id", required=True)
    export.add_argument("--version", default="0.1.0")
    export.add_argument("--evaluation", help="evaluation summary JSON (evaluate's summary.json)")
    export.add_argument("--record", action="append", default=[], metavar="KEY=VALUE",
                        help="training fact to record in model.json (cohort command, wall time, ...)")
    export.set_defaults(handler=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    return run_command(lambda: args.handler(args), name="training")

if __name__ == "__main__":
    sys.exit(main())
