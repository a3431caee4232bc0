"""Cost of the checks on reading an image: plain ITK read vs ``imageio.read_image``.

    python -m benchmarks.read_checks                      # 512 x 512 x 20 x 40 int16 CTP, float32 map
    python -m benchmarks.read_checks --size 256 --repeats 5

``read_image`` checks the header before any voxel is read and then streams the NIfTI data once
as stored (gzip CRC, length, NaN/Inf of float voxels) before ITK reads it: one more
decompression pass. Both reads are timed alternately in the same run on the same files
(medians of ``--repeats``); the ratio is what to compare across machines.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import numpy as np
    import SimpleITK as sitk

    from StrokePerfusionSegLib import imageio

    rng = np.random.default_rng(0)
    geometry = imageio.Geometry((0.45, 0.45, 5.0))
    with tempfile.TemporaryDirectory() as folder:
        ctp = rng.normal(40, 10, (args.frames, args.slices, args.size, args.size)).astype(np.int16)
        files = {
            "ctp (int16, 4D)": imageio.write_array(ctp, geometry, Path(folder) / "ctp.nii.gz", dt_s=1.0),
            "map (float32, 3D)": imageio.write_array(
                rng.random((args.slices, args.size, args.size), dtype=np.float32) * 80, geometry,
                Path(folder) / "cbf.nii.gz"),
        }
        del ctp
        for name, path in files.items():
            plain, checked = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                sitk.ReadImage(str(path))
                plain.append(time.perf_counter() - start)
                start = time.perf_counter()
                imageio.read_image(path)
                checked.append(time.perf_counter() - start)
            plain_s, checked_s = statistics.median(plain), statistics.median(checked)
            megabytes = path.stat().st_size / 2**20
            print(f"{name}: {megabytes:.1f} MB compressed; ITK read {plain_s:.3f} s, read_image "
                  f"{checked_s:.3f} s, ratio {checked_s / plain_s:.2f} (median of {args.repeats})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
