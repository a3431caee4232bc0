"""``strokeperfusionseg phantom``: write a cohort of digital CT-perfusion phantom patients."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

EPILOG = """\
examples:
  Twelve patients in the paper's group proportions, clinical geometry (512x512, 20 slices):
    strokeperfusionseg phantom --out cohort --patients 12 --seed 1

  A tiny, fast cohort for tests, one patient per group, maps = simulated truth:
    strokeperfusionseg phantom --out tiny --patients 3 --seed 7 --size 64 --slices 4 \\
        --frames 30 --groups LVO,NonLVO,WIS --maps truth

Each case folder holds ctp.nii.gz (4D, HU), cbf/cbv/mtt/ttp/tmax/mip.nii.gz, *_rgb.nii.gz
colour-coded copies, label.nii.gz (0 background, 1 brain, 2 penumbra, 3 core),
truth_*.nii.gz (simulated parameters) and case.json; cohort.json lists groups and the split.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "phantom",
        help="generate a digital CT-perfusion phantom cohort with known truth",
        description="Generate phantom patients (4D CTP, perfusion maps, truth labels, NIHSS) as case folders.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, type=Path, help="cohort folder to create (must not exist)")
    parser.add_argument("--patients", required=True, type=int, help="number of patients (>= 1)")
    parser.add_argument("--seed", required=True, type=int, help="random seed; the same seed gives the same cohort")
    parser.add_argument("--size", type=int, default=512,
                        help="in-plane matrix over a 220 mm field of view (default 512: 0.43 mm pixels)")
    parser.add_argument("--slices", type=int, default=20, help="5 mm slices (default 20; 13-27 typical)")
    parser.add_argument("--frames", type=int, default=40, help="time frames (default 40)")
    parser.add_argument("--dt", type=float, default=1.0, help="frame interval in s (default 1.0)")
    parser.add_argument("--noise-hu", type=float, default=3.0, help="quantum noise SD in HU (default 3)")
    parser.add_argument("--groups", help="comma-separated groups, cycled in order "
                        "(default: LVO/NonLVO/WIS in the paper's 77/60/15 proportions)")
    parser.add_argument("--maps", choices=("computed", "truth"), default="computed",
                        help="maps computed from the CTP (default) or the simulated truth")
    parser.add_argument("--perfusion-method", metavar="METHOD[,METHOD...]",
                        help="method(s) of the computed maps: bcsvd, osvd, tikhonov (each optionally +correction, "
                        "the exponential-residue bias correction) or model; several: one drawn per patient "
                        "(recorded in case.json); default the product's")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..phantom import PhantomConfig, generate_cohort, parse_groups, parse_perfusion_methods

    groups = parse_groups(args.groups) if args.groups is not None else None
    methods = parse_perfusion_methods(args.perfusion_method) if args.perfusion_method is not None else None
    config = PhantomConfig(size=args.size, slices=args.slices, frames=args.frames, dt_s=args.dt,
                           noise_hu=args.noise_hu, maps=args.maps)
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        print(f"phantom: {done}/{total} patients ({time.perf_counter() - start:.1f} s)", file=sys.stderr)

    out = generate_cohort(args.out, args.patients, args.seed, config, groups, methods=methods,
                          progress=progress)
    print(f"wrote {args.patients} patients to {out} ({time.perf_counter() - start:.1f} s)")
    return 0
