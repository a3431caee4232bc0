"""Latency of a trained bundle on a clinical-size study, resampling included (issue 4).

    python -m benchmarks.model_latency                        # the registry's default model
    python -m benchmarks.model_latency --model path/to/bundle --slices 20 --size 512 --device cpu

Builds a study of ``--slices`` x ``--size`` x ``--size`` voxels (0.43 x 0.43 x 5 mm) with maps
in their physiological ranges and a MIP, and times ``predictor.predict`` (encoding, resampling
to the model's image size and back, network, brain mask, labels) ``--repeats`` times, each
run followed by ``predict(method="threshold")`` on the same study as the same-run reference
(the target: the default model within 1.3x of thresholding).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def synthetic_study(slices: int, size: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (slices, size, size)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    head = (yy**2 + xx**2 < 0.16)[None].repeat(slices, axis=0)
    maps = {
        "cbf": rng.uniform(10, 70, shape), "cbv": rng.uniform(1, 5, shape),
        "ttp": rng.uniform(10, 30, shape), "tmax": rng.uniform(0, 10, shape),
    }
    maps = {name: (values * head).astype(np.float32) for name, values in maps.items()}
    mip = np.where(head, 60.0, -1000.0).astype(np.float32)
    return maps, mip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.model_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="bundle folder or registry id (default: the default model)")
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    from StrokePerfusionSegLib.bundle import load_bundle
    from StrokePerfusionSegLib.predictor import predict
    from StrokePerfusionSegLib.registry import resolve_model

    bundle = load_bundle(resolve_model(args.model))
    maps, mip = synthetic_study(args.slices, args.size)
    images = {name: maps[name] for name in bundle.config.inputs}
    nihss = 12 if bundle.config.use_nihss else None
    seconds, threshold_seconds = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        prediction = predict(images, (5.0, 0.43, 0.43), method=bundle, nihss=nihss, mip=mip, device=args.device)
        seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        predict(maps, (5.0, 0.43, 0.43), method="threshold", mip=mip)
        threshold_seconds.append(time.perf_counter() - start)
    print(f"model {bundle.manifest.get('id')} {bundle.manifest.get('version')}: {bundle.config.arch} "
          f"width {bundle.config.width} image size {bundle.config.image_size}, device {prediction.device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"study {args.slices} x {args.size} x {args.size}: best {min(seconds):.2f} s, "
          f"median {statistics.median(seconds):.2f} s over {args.repeats} runs "
          f"(last run: {', '.join(f'{k} {v:.2f}' for k, v in prediction.timings.items())})")
    reference = statistics.median(threshold_seconds)
    print(f"thresholding on the same study: median {reference:.2f} s; model / thresholding "
          f"{statistics.median(seconds) / reference:.2f}x")
    return 0


if __name__ == "__main__":
    from StrokePerfusionSegLib.errors import EXIT_USER_ERROR, InputError

    try:
        sys.exit(main())
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
