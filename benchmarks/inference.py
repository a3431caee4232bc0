"""Inference benchmark of the segmentation network (issue 3).

    python -m benchmarks.inference                      # SF(PMs,N) width 1.0, 20 x 512 x 512
    python -m benchmarks.inference --width 0.125 --size 256 --slices 20
    python -m benchmarks.inference --device cuda --precisions bf16,fp16,fp32

Same as ``strokeperfusionseg bench`` (the logic lives in
:mod:`StrokePerfusionSegLib.commands.bench` so installed copies have it too), in a process that
keeps freed memory for reuse as the program does (:mod:`StrokePerfusionSegLib.processheap`).
"""

from __future__ import annotations

import argparse
import sys

from StrokePerfusionSegLib.commands import bench
from StrokePerfusionSegLib.processheap import retain_freed_memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference", description=__doc__.split("\n\n")[0])
    bench.add_arguments(parser)
    retain_freed_memory()
    return bench.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
