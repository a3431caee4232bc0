"""End to end ``strokeperfusionseg perfusion``: wall time against one dense product of the same size.

    python -m benchmarks.perfusion_cli                          # a 512 x 512 x 20 x 40 phantom head
    python -m benchmarks.perfusion_cli --ctp ctp.nii.gz --rounds 3 --methods model bcsvd

Without ``--ctp`` it writes a phantom LVO head with 3 HU noise as an int16 ``.nii.gz`` (the way
scanners store a series; about 1 min to make). Runs the command line as a new process each time
(interpreter start, imports, reading the ``.nii.gz``, the analysis, writing every map), the
methods alternately, and after each run times one dense float32 product ``(brain voxels x 2t)
@ (2t x 2t)`` in this process, so that the reference sees the same machine load. Prints the
median wall seconds per method, the median seconds per stage (the command's own timings; start-up
is the rest of the wall time) and the ratio of the median wall time to the median product; the
target is 15x.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 15.0


def write_phantom_ctp(folder: Path, slices: int, size: int, frames: int) -> Path:
    """A phantom LVO head's series as int16 HU ``ctp.nii.gz`` (dt 1 s) in ``folder``."""
    from StrokePerfusionSegLib import imageio
    from StrokePerfusionSegLib.casefolder import ctp_as_stored
    from StrokePerfusionSegLib.phantom import PhantomConfig, simulate

    config = PhantomConfig(size=size, slices=slices, frames=frames, noise_hu=3.0, maps="truth", with_rgb=False)
    case = simulate("bench", "LVO", 3, config).case
    return imageio.write_array(ctp_as_stored(case.ctp), case.geometry, folder / "ctp.nii.gz", dt_s=case.dt_s)


def dense_product_s(voxels: int, frames: int) -> float:
    """Seconds of one float32 ``(voxels x 2t) @ (2t x 2t)`` product (after a warm-up product)."""
    import numpy as np

    rng = np.random.default_rng(0)
    left = rng.standard_normal((voxels, 2 * frames), dtype=np.float32)
    right = rng.standard_normal((2 * frames, 2 * frames), dtype=np.float32)
    left[:1000] @ right
    clock = time.perf_counter()
    left @ right
    return time.perf_counter() - clock


def run_cli(ctp: Path, out: Path, method: str) -> tuple[float, dict[str, float], int, int]:
    """Wall seconds, the command's stage timings, brain voxels and frames of one run."""
    clock = time.perf_counter()
    printed = subprocess.run(
        [sys.executable, "-m", "StrokePerfusionSegLib", "perfusion", "--ctp", str(ctp), "--out", str(out),
         "--method", method],
        check=True, capture_output=True, text=True,
    ).stdout
    wall = time.perf_counter() - clock
    stages = {name: float(value) for name, value in re.findall(r"(\w+) ([\d.]+) s", printed.split("timings:")[1])}
    voxels = int(re.search(r"brain: (\d+) voxels", printed).group(1))
    frames = int(re.search(r"(\d+) frames\)", printed).group(1))
    return wall, stages, voxels, frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perfusion_cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ctp", type=Path, help="4D CTP .nii.gz to analyse (default: write a phantom head)")
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["model", "bcsvd"])
    args = parser.parse_args(argv)

    walls: dict[str, list[float]] = {method: [] for method in args.methods}
    stages: dict[str, dict[str, list[float]]] = {method: {} for method in args.methods}
    products: list[float] = []
    with tempfile.TemporaryDirectory() as temporary:
        ctp = args.ctp or write_phantom_ctp(Path(temporary), args.slices, args.size, args.frames)
        for index in range(args.rounds):
            for method in args.methods:
                wall, timings, voxels, frames = run_cli(ctp, Path(temporary) / f"out-{method}-{index}", method)
                walls[method].append(wall)
                timings["start-up"] = wall - sum(timings.values())
                for stage, seconds in timings.items():
                    stages[method].setdefault(stage, []).append(seconds)
                products.append(dense_product_s(voxels, frames))
    product = statistics.median(products)
    print(f"perfusion CLI on {ctp.name if args.ctp else 'a phantom head'}, {args.rounds} interleaved rounds")
    print(f"dense product ({voxels} x {2 * frames}) @ ({2 * frames} x {2 * frames}) float32: median {product:.3f} s "
          f"({', '.join(f'{p:.3f}' for p in products)})")
    for method, values in walls.items():
        median = statistics.median(values)
        print(f"{method:<8} median {median:.2f} s ({', '.join(f'{v:.2f}' for v in values)}): "
              f"{median / product:.1f}x the product (target <= {TARGET_RATIO:.0f}x)")
    print("median seconds per stage: " + ", ".join(args.methods))
    for stage in stages[args.methods[0]]:
        print(f"  {stage:<16}" + "".join(f"{statistics.median(stages[m].get(stage, [0.0])):>10.2f}"
                                         for m in args.methods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
