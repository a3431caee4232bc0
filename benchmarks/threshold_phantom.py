"""Threshold method on the phantom: Dice and volumes per case, on truth and on computed maps.

Generates the tiny cohort of ``Testing/conftest.py`` (or a larger one with --size/--slices),
runs the RAPID-like thresholds with the MIP brain mask on the simulated (truth) CBF/Tmax and on
the maps computed from the CTP, and prints Dice and volumes per region.

    python benchmarks/threshold_phantom.py [--size 64] [--slices 4] [--frames 30] [--seed 20240521]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--seed", type=int, default=20240521)
    args = parser.parse_args(argv)

    from StrokePerfusionSegLib.brainmask import brain_mask_from_mip
    from StrokePerfusionSegLib.casefolder import load_case, load_cohort
    from StrokePerfusionSegLib.metrics import case_metrics
    from StrokePerfusionSegLib.phantom import PhantomConfig, generate_cohort, load_truth
    from StrokePerfusionSegLib.thresholding import threshold_analysis

    warnings.simplefilter("ignore")  # MONAI's empty-mask warnings; conventions are in metrics.py
    config = PhantomConfig(size=args.size, slices=args.slices, frames=args.frames, dt_s=1.0, noise_hu=3.0)
    with tempfile.TemporaryDirectory() as folder:
        root = generate_cohort(f"{folder}/cohort", 3, args.seed, config, groups=("LVO", "NonLVO", "WIS"))
        cohort = load_cohort(root)
        print("case   group   maps      ref CBF  Dice pen/core/hyp   core ml pred/truth  penumbra ml pred/truth")
        for case_id in cohort.ids():
            case_folder = cohort.case_folder(case_id)
            case = load_case(case_folder, with_label=True)
            spacing = case.geometry.spacing_zyx
            brain = brain_mask_from_mip(case.maps["mip"], spacing)
            for source, maps in (("truth", load_truth(case_folder)), ("computed", case.maps)):
                result = threshold_analysis(maps["cbf"], maps["tmax"], brain, spacing)
                row = case_metrics(result.labels, case.label, spacing, regions=("penumbra", "core", "hypoperfused"))
                print(
                    f"{case_id:6s} {case.group:7s} {source:9s} {result.reference_cbf:7.1f}  "
                    f"{row['penumbra_dice']:.2f}/{row['core_dice']:.2f}/{row['hypoperfused_dice']:.2f}"
                    f"      {row['core_volume_pred_ml']:6.2f}/{row['core_volume_truth_ml']:<6.2f}"
                    f"        {row['penumbra_volume_pred_ml']:6.2f}/{row['penumbra_volume_truth_ml']:.2f}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
