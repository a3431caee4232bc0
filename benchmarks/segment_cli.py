"""End to end ``strokeperfusionseg segment --case``: the default model against thresholding.

    python -m benchmarks.segment_cli                       # 20 x 512 x 512, 3 interleaved rounds
    python -m benchmarks.segment_cli --slices 20 --size 512 --rounds 3 --model path/to/bundle

Writes one synthetic case folder (maps in their windows, an elliptic head in the MIP, NIHSS 12,
0.43 x 0.43 x 5 mm) and runs the command line as a new process each time, the model and
``--method threshold`` alternately, so both see the same machine load. Prints the median wall
seconds of each (process start, imports, reading, brain mask, method, writing every output)
and their ratio; the target is the model within 1.3x of thresholding. The CPU seconds of each
run (user + system) say how much of it ran in parallel: the model loads in a second thread
while the study is read, which shortens the wall time only where a core is free.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_case(folder: Path, slices: int, size: int) -> Path:
    from StrokePerfusionSegLib.casefolder import Case, save_case
    from StrokePerfusionSegLib.commands.bench import synthetic_study
    from StrokePerfusionSegLib.imageio import Geometry

    pixel = 220.0 / size
    maps = synthetic_study(slices, size)
    case = Case("bench", Geometry(spacing=(pixel, pixel, 5.0)), maps=maps, nihss=12)
    return save_case(case, folder / "bench")


def _children_cpu_s() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.segment_cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default=None, help="--model of the command (default: the bundled model)")
    args = parser.parse_args(argv)

    commands = {
        "model": ["--method", "dl", *(["--model", args.model] if args.model else [])],
        "threshold": ["--method", "threshold"],
    }
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    stages: dict[str, dict[str, list[float]]] = {name: {} for name in commands}
    with tempfile.TemporaryDirectory() as temporary:
        case = write_case(Path(temporary), args.slices, args.size)
        for index in range(args.rounds):
            for name, options in commands.items():
                out = Path(temporary) / f"out-{name}-{index}"
                used = _children_cpu_s()
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "StrokePerfusionSegLib", "segment", "--case", str(case),
                                "--out", str(out), *options], check=True, stdout=subprocess.DEVNULL)
                seconds[name].append(time.perf_counter() - start)
                cpu[name].append(_children_cpu_s() - used)
                timings = json.loads((out / "bench" / "bench_report.json").read_text())["timings_s"]
                timings["start-up"] = seconds[name][-1] - timings.pop("total")
                for stage, value in timings.items():
                    stages[name].setdefault(stage, []).append(value)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"segment --case, {args.slices} x {args.size} x {args.size}, {args.rounds} interleaved rounds")
    for name, values in seconds.items():
        print(f"{name:<10} median {medians[name]:.2f} s ({', '.join(f'{v:.2f}' for v in values)}), "
              f"CPU {statistics.median(cpu[name]):.2f} s")
    print(f"model / threshold: {medians['model'] / medians['threshold']:.2f}x (target <= 1.3x)")
    print("median seconds per stage: " + ", ".join(commands))
    for stage in stages["model"]:
        print(f"  {stage:<16}" + "".join(f"{statistics.median(stages[name].get(stage, [0.0])):>10.2f}"
                                         for name in commands))
    return 0


if __name__ == "__main__":
    sys.exit(main())
