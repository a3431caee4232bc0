"""Phantom generation benchmark: time per stage and peak memory for one clinical-size study.

    python -m benchmarks.phantom                          # 512 x 512 x 20 slices x 40 frames, LVO
    python -m benchmarks.phantom --maps truth --no-write  # the CTP generation alone
    python -m benchmarks.phantom --size 256 --group NonLVO

Stages: anatomy (template sampling, pose, lesions), curves (tracer curves of the distinct
parameter sets), assembly (4D CTP from the curve table), noise, maps (perfusion analysis when
``--maps computed``, else truth maps, TTP and MIP), colour coding, writing (compressed NIfTI
case folder with truth maps). Target: CTP generation (anatomy + curves + assembly + noise)
< 20 s for 512 x 512 x 20 x 40 on a 2-core machine. Wall time depends on the machine's load;
the CPU time beside it is less sensitive to other processes.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--group", default="LVO", choices=("LVO", "NonLVO", "WIS"))
    parser.add_argument("--maps", default="computed", choices=("computed", "truth"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="skip writing the case folder")
    args = parser.parse_args(argv)

    import torch

    from StrokePerfusionSegLib.phantom import PhantomConfig, save_study, simulate
    from StrokePerfusionSegLib.phantom.anatomy import _template_fields

    config = PhantomConfig(size=args.size, slices=args.slices, frames=args.frames, maps=args.maps)
    print(f"phantom {args.group}: {args.size}x{args.size} x {args.slices} slices x {args.frames} frames, "
          f"maps {args.maps}, torch threads {torch.get_num_threads()}")
    start, cpu = time.perf_counter(), time.process_time()
    _template_fields()  # once per process: reading the template and drawing vessels in it
    print(f"{'template (once per process)':<34s} {time.perf_counter() - start:7.2f} s wall "
          f"{time.process_time() - cpu:7.2f} s cpu")

    start, cpu = time.perf_counter(), time.process_time()
    study = simulate("bench", args.group, args.seed, config)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    for stage, seconds in study.timings.items():
        print(f"{stage.removesuffix('_s'):<34s} {seconds:7.2f} s wall {study.cpu_timings[stage]:7.2f} s cpu")
    stages = ("anatomy_s", "curves_s", "assembly_s", "noise_s")
    print(f"{'CTP generation (target < 20 s)':<34s} {sum(study.timings[k] for k in stages):7.2f} s wall "
          f"{sum(study.cpu_timings[k] for k in stages):7.2f} s cpu")
    print(f"{'simulate total':<34s} {wall:7.2f} s wall {cpu:7.2f} s cpu")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
    ctp_mib = study.case.ctp.nbytes / 2**20
    print(f"{'peak memory after simulate':<34s} {peak:7.0f} MiB (the 4D CTP alone: {ctp_mib:.0f} MiB)")

    if not args.no_write:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            save_study(study, Path(folder) / "case")
            written = sum(p.stat().st_size for p in (Path(folder) / "case").iterdir())
            print(f"{'writing':<34s} {time.perf_counter() - start:7.2f} s wall ({written / 2**20:.0f} MiB)")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(f"{'peak memory after writing':<34s} {peak:7.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
