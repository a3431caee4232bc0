"""Perfusion analysis benchmark: accuracy against known truth, and speed/memory at clinical size.

    python -m benchmarks.perfusion                 # accuracy + speed (512 x 512 x 20 x 40)
    python -m benchmarks.perfusion --skip-speed    # accuracy only (~1 min)
    python -m benchmarks.perfusion --phantom       # also phantom patients against their truth maps

Accuracy, on the digital reference object (:mod:`StrokePerfusionSegLib.perfusion.reference_object`,
curves from :func:`StrokePerfusionSegLib.tracer.tissue_curves`):

* noise-free, per voxel, no smoothing: median |relative error| of CBF and CBV, median |error|
  of Tmax (s), for dt 1.0 and 1.5 s over 60 s; targets CBF <= 10 %, CBV <= 5 %, Tmax <= 1 s;
* CBF drift of bcSVD over tracer delays 0-5 s (target <= 5 %);
* 3 and 6 HU noise: the same figures per tissue block (median over each 16 x 16 block's
  interior, default smoothing), then the median over blocks.

Speed: 512 x 512 x 20 x 40 studies with 3 HU noise, a phantom LVO head (the clinical case)
and tissue in every voxel (a worst case: a head fills about half of the field of view),
through :func:`compute_perfusion_maps` with bcSVD and the model fit (target <= 10 s) and oSVD
(<= 60 s), with and without the default smoothing (``--methods`` to time fewer); memory (<= 4 GB); and the ratio to one dense float32 matrix
product of the same size (brain voxels x 2t by 2t x 2t) timed in the same run, which makes the
figure comparable across machines and loads.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

#: Tissue blocks: (CBF ml/100g/min, CBV ml/100g) x delays (s), no dispersion.
FLOWS = ((60.0, 4.0), (50.0, 3.5), (35.0, 4.0), (25.0, 2.0), (15.0, 2.5), (8.0, 1.5))
DELAYS = (0.0, 1.0, 2.5, 4.0, 5.0)


def _parameters(delays=DELAYS):
    return [(cbf, cbv, delay, 0.0) for cbf, cbv in FLOWS for delay in delays]


def _voxel_errors(result, study) -> dict:
    inside = result.brain_mask & study.tissue
    truth, maps = study.truth, result.maps
    return {
        "cbf": float(np.median(np.abs(maps["cbf"][inside] / truth["cbf"][inside] - 1.0))),
        "cbv": float(np.median(np.abs(maps["cbv"][inside] / truth["cbv"][inside] - 1.0))),
        "tmax": float(np.median(np.abs(maps["tmax"][inside] - truth["tmax"][inside]))),
    }


def _row(label: str, errors: dict) -> str:
    return (f"  {label:<34s} CBF {100 * errors['cbf']:5.1f} %   CBV {100 * errors['cbv']:5.1f} %   "
            f"Tmax {errors['tmax']:5.2f} s")


def accuracy() -> None:
    from StrokePerfusionSegLib.perfusion import compute_perfusion_maps, make_reference_study

    print("accuracy, noise-free, per voxel (targets: CBF <= 10 %, CBV <= 5 %, Tmax <= 1 s)")
    for dt_s in (1.0, 1.5):
        study = make_reference_study(_parameters(), block=6, slices=2, dt_s=dt_s, frames=int(60 / dt_s))
        for method in ("bcsvd", "osvd"):
            for correct in (True, False):
                result = compute_perfusion_maps(
                    study.ctp_hu, dt_s, study.spacing, method=method, smoothing_mm=0, correct_bias=correct
                )
                label = f"dt {dt_s:.1f} s {method}" + ("" if correct else " (no bias correction)")
                print(_row(label, _voxel_errors(result, study)))

    print("CBF drift of bcSVD over delays 0-5 s (target <= 5 %)")
    delays = np.arange(0.0, 5.01, 0.5)
    study = make_reference_study([(50.0, 3.5, d, 0.0) for d in delays], block=4, slices=1, frames=60)
    for correct in (True, False):
        result = compute_perfusion_maps(study.ctp_hu, 1.0, study.spacing, smoothing_mm=0, correct_bias=correct)
        cbf = [np.median(result.maps["cbf"][study.blocks == i + 1]) for i in range(len(delays))]
        print(f"  {'bias correction ' + ('on' if correct else 'off'):<34s} CBF {min(cbf):5.1f}..{max(cbf):5.1f} "
              f"ml/100g/min, drift {100 * (max(cbf) / min(cbf) - 1):4.1f} %")

    print("accuracy with noise, per 16 x 16 block (interior median), default smoothing")
    for noise_hu in (3.0, 6.0):
        study = make_reference_study(_parameters((0.0, 2.5, 5.0)), block=16, slices=2, frames=50,
                                     noise_hu=noise_hu, seed=7)
        for method in ("bcsvd", "osvd"):
            result = compute_perfusion_maps(study.ctp_hu, 1.0, study.spacing, method=method)
            errors = study.block_errors(result.maps, margin=3, within=result.brain_mask)
            summary = {name: float(np.nanmedian(np.abs(errors[name]))) for name in ("cbf", "cbv", "tmax")}
            print(_row(f"{noise_hu:.0f} HU {method}", summary))


#: Phantom patients scored for accuracy: (group, seed), two of each group with a lesion and one WIS.
PHANTOM_PATIENTS = (("LVO", 3), ("LVO", 5), ("NonLVO", 8), ("NonLVO", 13), ("WIS", 11))


def phantom(size: int, frame_counts) -> None:
    from StrokePerfusionSegLib.perfusion import compute_perfusion_maps
    from StrokePerfusionSegLib.phantom import PhantomConfig, simulate

    print(f"phantom patients, {size} x {size} x 4 slices, noise-free, against their truth maps, per voxel of "
          "perfused tissue; median over patients of each patient's median")
    for frames in frame_counts:
        for method in ("bcsvd", "osvd"):
            per_patient = []
            for group, seed in PHANTOM_PATIENTS:
                study = simulate("bench", group, seed, PhantomConfig(size=size, slices=4, frames=frames, noise_hu=0.0,
                                                                     maps="truth", with_rgb=False))
                case, truth = study.case, study.truth
                result = compute_perfusion_maps(case.ctp, case.dt_s, case.geometry.spacing_zyx, method=method)
                inside = result.brain_mask & (truth["cbf"] > 0)
                errors = {name: np.median(np.abs(result.maps[name][inside] / truth[name][inside] - 1.0))
                          for name in ("cbf", "cbv")}
                errors["tmax"] = np.median(np.abs(result.maps["tmax"][inside] - truth["tmax"][inside]))
                per_patient.append(errors)
            summary = {name: float(np.median([e[name] for e in per_patient])) for name in ("cbf", "cbv", "tmax")}
            each = ", ".join(f"{group} {seed}: {100 * e['cbf']:.0f} %"
                             for (group, seed), e in zip(PHANTOM_PATIENTS, per_patient, strict=True))
            print(_row(f"{frames} frames {method}", summary) + f"   (CBF per patient: {each})")


def _clinical_size_study(slices: int, size: int, frames: int):
    """(t, z, y, x) float32 study of at least the requested size: 64 x 64 tissue blocks everywhere."""
    from StrokePerfusionSegLib.perfusion import make_reference_study

    parameters = _parameters()
    per_slice = (size // 64) ** 2
    rows = [parameters[i % len(parameters)] for i in range(slices * per_slice)]
    study = make_reference_study(rows, block=64, slices=slices, frames=frames, noise_hu=3.0,
                                 spacing=(5.0, 0.45, 0.45))
    return study.ctp_hu[:, :, :size, :size], study.spacing  # a view: the vessel strip adds 4 rows


def _phantom_head_study(slices: int, size: int, frames: int):
    """(t, z, y, x) float32 phantom LVO patient with 3 HU noise: a real head in the field of view."""
    from StrokePerfusionSegLib.phantom import PhantomConfig, simulate

    config = PhantomConfig(size=size, slices=slices, frames=frames, noise_hu=3.0, maps="truth", with_rgb=False)
    case = simulate("bench", "LVO", 3, config).case
    return case.ctp, case.geometry.spacing_zyx


#: Speed targets (s) at 512 x 512 x 20 x 40.
TARGETS_S = {"bcsvd": 10.0, "model": 10.0, "osvd": 60.0}


def _time_methods(ctp, spacing, methods) -> tuple[dict, int]:
    """Wall time of each (method, smoothing), printed with CPU time and stages; and the brain voxel count."""
    from StrokePerfusionSegLib.perfusion import compute_perfusion_maps

    walls = {}
    for method in methods:
        target = TARGETS_S[method]
        for smoothing in (1.5, 0.0):
            wall, cpu = time.perf_counter(), time.process_time()
            result = compute_perfusion_maps(ctp, 1.0, spacing, method=method, smoothing_mm=smoothing)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            walls[method, smoothing] = wall
            stages = ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in result.timings.items())
            print(f"    {method:<6s} smoothing {smoothing:.1f} mm {wall:6.2f} s wall {cpu:6.2f} s cpu "
                  f"(target <= {target:.0f} s): {stages}")
    return walls, int(result.brain_mask.sum())


def _dense_product_ratios(walls: dict, voxels: int, frames: int) -> None:
    """Time one float32 product (brain voxels x 2t) @ (2t x 2t) and print each run's multiple of it."""
    rng = np.random.default_rng(0)
    left = rng.standard_normal((voxels, 2 * frames), dtype=np.float32)
    right = rng.standard_normal((2 * frames, 2 * frames), dtype=np.float32)
    clock = time.perf_counter()
    left @ right
    product = time.perf_counter() - clock
    ratios = ", ".join(f"{m} {s:.1f} mm {wall / product:.0f}x" for (m, s), wall in walls.items())
    print(f"    dense product ({voxels} x {2 * frames}) @ ({2 * frames} x {2 * frames}) float32: "
          f"{product:.2f} s; analysis / product: {ratios}")


def speed(slices: int, size: int, frames: int, methods) -> None:
    import tracemalloc

    from StrokePerfusionSegLib.perfusion import compute_perfusion_maps

    print(f"speed, {size} x {size} x {slices} slices x {frames} frames, wall and CPU time (the machine may be shared)")
    ctp, spacing = _phantom_head_study(slices, size, frames)
    print(f"  phantom LVO head, 3 HU ({ctp.nbytes / 2**20:.0f} MiB float32)")
    _dense_product_ratios(*_time_methods(ctp, spacing, methods), frames)
    del ctp
    ctp, spacing = _clinical_size_study(slices, size, frames)
    print(f"  tissue in every voxel, 3 HU (worst case: a head fills about half of the field of view; "
          f"{ctp.nbytes / 2**20:.0f} MiB float32)")
    _dense_product_ratios(*_time_methods(ctp, spacing, methods), frames)
    tracemalloc.start()
    compute_perfusion_maps(ctp, 1.0, spacing)
    working = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"    memory: the input {ctp.nbytes / 2**20:.0f} MiB + bcSVD working set {working:.0f} MiB "
          f"(target <= 4096 MiB); peak resident so far {peak:.0f} MiB, building the test studies included")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--phantom", action="store_true", help="also score phantom patients (about 2 min more)")
    parser.add_argument("--phantom-size", type=int, default=256)
    parser.add_argument("--phantom-frames", type=int, nargs="+", default=[50, 40])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--methods", nargs="+", choices=tuple(TARGETS_S), default=tuple(TARGETS_S))
    args = parser.parse_args(argv)
    if not args.skip_accuracy:
        accuracy()
    if args.phantom:
        phantom(args.phantom_size, args.phantom_frames)
    if not args.skip_speed:
        speed(args.slices, args.size, args.frames, args.methods)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
