"""``strokeperfusionseg demo``: the main job on the embedded default.

Makes one phantom stroke study (raw 4D CTP with known truth), computes its perfusion maps from
the CTP, segments it with the bundled default model (or the thresholding method), writes every
output and prints the volumes beside the phantom's truth.
"""

from __future__ import annotations

import time
from pathlib import Path

DEMO_CASE_ID = "demo-LVO"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole path on a phantom stroke study and print the volumes",
        description=(
            "Generate a phantom LVO stroke study (4D CTP), compute its perfusion maps, segment the "
            "ischemic core and penumbra, and write the study, the segmentation and the reports."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="new folder for the study and the results")
    parser.add_argument("--seed", type=int, default=7, help="phantom seed (default 7)")
    parser.add_argument("--size", type=int, default=512, help="in-plane matrix in pixels (default 512)")
    parser.add_argument("--slices", type=int, default=20, help="number of 5 mm slices (default 20)")
    parser.add_argument("--method", choices=("dl", "threshold"), default="dl",
                        help="dl: the bundled default model (default); threshold: rCBF/Tmax thresholds")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..atomic import staged_folder
    from ..phantom import PhantomConfig, save_study, simulate
    from ..batch import Job, segment_job
    from ..pipeline import THRESHOLD, resolve_method
    from ..volumes import lesion_volumes

    method = resolve_method(THRESHOLD if args.method == "threshold" else None)  # fail early: no model installed
    config = PhantomConfig(size=args.size, slices=args.slices)
    with staged_folder(args.out) as staging:
        start = time.perf_counter()
        study = simulate(DEMO_CASE_ID, "LVO", args.seed, config)
        case = study.case
        spacing = case.geometry.spacing_zyx
        print(
            f"phantom study {case.case_id}: {case.ctp.shape[0]} frames x {case.shape} voxels of "
            f"{spacing[2]:.2f} x {spacing[1]:.2f} x {spacing[0]:.1f} mm, dt {case.dt_s} s, NIHSS {case.nihss}; "
            f"CTP simulated and maps computed ({config.perfusion_method}) in {time.perf_counter() - start:.1f} s"
        )
        save_study(study, staging / "study")
        result = segment_job(Job(DEMO_CASE_ID, {"case_dir": staging / "study"}, nihss=case.nihss), method,
                             staging / "results", device=args.device)
    truth = lesion_volumes(case.label, spacing)
    volumes = result.volumes
    print(f"segmented with {method.display_name} in {result.timings['total']:.1f} s (reading, segmenting, writing)")
    print(f"{'':18}{'predicted':>10}{'truth':>10}")
    for name, predicted, true in (
        ("core", volumes.core_ml, truth.core_ml),
        ("penumbra", volumes.penumbra_ml, truth.penumbra_ml),
        ("hypoperfused", volumes.hypoperfused_ml, truth.hypoperfused_ml),
    ):
        print(f"{name + ' (ml)':18}{predicted:10.1f}{true:10.1f}")
    ratio = "n/a" if volumes.mismatch_ratio is None else f"{volumes.mismatch_ratio:.2f}"
    print(f"mismatch ratio {ratio}, mismatch volume {volumes.mismatch_volume_ml:.2f} ml, "
          f"target mismatch {str(volumes.target_mismatch['target_mismatch']).lower()} (decision support only)")
    for note in result.notes:
        print(f"note: {note}")
    print(f"outputs: {args.out / 'results' / DEMO_CASE_ID}")
    return 0
