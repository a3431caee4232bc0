"""``strokeperfusionseg bench``: time the predictor on a synthetic study and compare the FLOP
rate achieved with a large matrix product's on the same machine.

The study is synthetic (maps drawn in their windows, an elliptic head in the MIP): speed does
not depend on content. The model has random weights for the same reason. Figures printed:
parameters, GFLOPs per slice, seconds per study and per slice for each precision, the achieved
GFLOP/s as a fraction of the matrix-product rate of the same dtype, and peak memory (process
resident set from ``ru_maxrss`` on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU).
"""

from __future__ import annotations

import argparse

#: Targets for SF(PMs,N) width 1.0 on a 20-slice 512x512 study: the network's FLOP rate as a
#: fraction of a same-run matrix product of the same dtype, peak memory, and seconds on a GPU.
TARGETS = {"fraction_of_matmul": {"fp32": 0.85, "bf16": 0.75}, "peak_memory_mb": 3072.0,
           "gpu_seconds_per_study": 0.3}
#: Side of the square matrix product whose rate is the reference, per device type.
MATMUL_SIZE = {"cpu": 3072, "cuda": 8192}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", choices=("SF", "EF", "EFI"), default="SF", help="architecture (default SF)")
    parser.add_argument("--inputs", default="cbf,cbv,ttp,tmax", metavar="MAPS",
                        help="comma-separated image inputs (default cbf,cbv,ttp,tmax)")
    parser.add_argument("--nihss", action=argparse.BooleanOptionalAction, default=True,
                        help="the model reads the NIHSS score (default yes: SF(PMs,N))")
    parser.add_argument("--width", type=float, default=1.0, metavar="W", help="width multiplier (default 1.0)")
    parser.add_argument("--size", type=int, default=512, metavar="N",
                        help="network and study image size in pixels (default 512)")
    parser.add_argument("--slices", type=int, default=20, help="slices in the study (default 20)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--precisions", default="fp32,bf16", metavar="LIST",
                        help="comma-separated precisions to time: fp32, bf16, fp16 (default fp32,bf16)")
    parser.add_argument("--memory-budget-mb", type=float, default=2048.0, metavar="MB",
                        help="activation memory per batch given to the predictor (default 2048)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per precision; the best is kept")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time inference on a synthetic study (seconds per study, FLOP rate, peak memory)",
        description=__doc__.split("\n\n")[0].replace("``", ""),
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def synthetic_study(slices: int, size: int, seed: int = 0):
    """Maps ``{name: (slices, size, size) float32}`` inside their windows and an elliptic-head MIP (HU)."""
    import numpy as np

    from ..mapspecs import MAP_NAMES, map_spec

    rng = np.random.default_rng(seed)
    images = {}
    for name in MAP_NAMES:
        low, high = map_spec(name).window
        images[name] = rng.uniform(low, high, (slices, size, size)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot((yy - size / 2) / (0.45 * size), (xx - size / 2) / (0.38 * size))
    head = np.where(radius < 0.9, 35.0, np.where(radius < 1.0, 600.0, -1000.0)).astype(np.float32)
    images["mip"] = np.repeat(head[None], slices, axis=0) + rng.normal(0, 2, (slices, size, size)).astype(np.float32)
    return images


def matmul_gflops(device, dtype, size: int, repeats: int = 3) -> float:
    """Best GFLOP/s of a ``size``-cubed matrix product (2 * size**3 FLOPs) on ``device``."""
    import time

    import torch

    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def peak_memory_mb(device) -> float:
    import resource
    import sys

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KB on Linux


def run_benchmark(config, *, slices: int, device: str, precisions, memory_budget_mb: float,
                  repeats: int = 1, log=print) -> dict:
    """Time :func:`predictor.predict` on a synthetic study for each precision; figures as a dict."""
    import torch

    from ..bundle import Bundle
    from ..cpufeatures import describe_bf16, usable_cores
    from ..flops import model_cost
    from ..networks import build_model
    from ..predictor import _autocast_dtype, _resolve_device, slices_per_batch

    torch_device = _resolve_device(device)
    if torch_device.type == "cpu":
        torch.set_num_threads(usable_cores())
    dtypes = {precision: _autocast_dtype(precision, torch_device) for precision in precisions}
    cost = model_cost(config)
    result = {
        "device": torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "cpu_bf16": describe_bf16(),
        "config": config.to_dict(),
        "slices": slices,
        "parameters": cost.parameters,
        "gflops_per_slice": cost.gflops_per_slice,
        "memory_before_model_mb": peak_memory_mb(torch_device),
        "runs": [],
    }
    # The reference rate is measured before and after the study runs and the best kept, so a
    # moment of contention from other processes does not inflate the fraction.
    matmul_size = MATMUL_SIZE[torch_device.type]

    def measure_rates(rates):
        for precision, dtype in dtypes.items():
            rate = matmul_gflops(torch_device, dtype or torch.float32, matmul_size, repeats=5)
            rates[precision] = max(rate, rates.get(precision, 0.0))
        return rates

    rates = measure_rates({})

    torch.manual_seed(0)
    model = build_model(config).eval()
    bundle = Bundle(model=model, config=config, manifest={"id": "benchmark"}, path=None)
    study, mip = _benchmark_study(config, slices)
    for precision, dtype in dtypes.items():
        if torch_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(torch_device)
        best = _best_timings(bundle, study, mip, device=str(torch_device), precision=precision,
                             memory_budget_mb=memory_budget_mb, repeats=repeats)
        achieved = cost.flops_per_slice * slices / best["network_s"] / 1e9
        result["runs"].append({
            "precision": precision,
            "slices_per_batch": slices_per_batch(config, memory_budget_mb, dtype),
            "seconds_per_study": best["total_s"],
            "checks_seconds": best["checks_s"],
            "encode_seconds": best["encode_s"],
            "network_seconds": best["network_s"],
            "postprocess_seconds": best["postprocess_s"],
            "seconds_per_slice": best["network_s"] / slices,
            "achieved_gflops": achieved,
            "peak_memory_mb": peak_memory_mb(torch_device),
        })
        log(f"{precision}: {best['total_s']:.2f} s per study (checks and brain mask "
            f"{best['checks_s']:.2f} s, encoding {best['encode_s']:.2f} s, network "
            f"{best['network_s']:.2f} s, post-processing {best['postprocess_s']:.2f} s), {achieved:.0f} GFLOP/s")
    measure_rates(rates)
    for run in result["runs"]:
        run["matmul_gflops"] = rates[run["precision"]]
        run["fraction_of_matmul"] = run["achieved_gflops"] / run["matmul_gflops"]
    for precision, rate in rates.items():
        log(f"matrix product {matmul_size}^3 {precision}: {rate:.0f} GFLOP/s (best before/after)")
    return result


def _benchmark_study(config, slices: int) -> tuple:
    """The synthetic study's maps the model reads (the MIP too when it is an input), and the MIP (HU)."""
    images = synthetic_study(slices, config.image_size)
    mip = images.pop("mip")
    study = {name: images[name] for name in config.inputs if name != "mip"}
    if "mip" in config.inputs:
        study["mip"] = mip
    return study, mip


def _best_timings(bundle, study: dict, mip, *, device: str, precision: str,
                  memory_budget_mb: float, repeats: int) -> dict:
    """Stage timings (s) of the fastest of ``repeats`` predictions, after a one-slice warm-up."""
    from ..predictor import predict

    nihss = 12 if bundle.config.use_nihss else None
    settings = dict(method=bundle, nihss=nihss, device=device, precision=precision, memory_budget_mb=memory_budget_mb)
    warm = {name: values[:1] for name, values in study.items()}
    predict(warm, (5.0, 0.45, 0.45), mip=mip[:1], **settings)
    best = None
    for _ in range(repeats):
        timings = predict(study, (5.0, 0.45, 0.45), mip=mip, **settings).timings
        if best is None or timings["total_s"] < best["total_s"]:
            best = timings
    return best


def run(args: argparse.Namespace) -> int:
    import json

    from ..errors import InputError
    from ..networks import ModelConfig

    if args.slices < 1 or args.repeats < 1:
        raise InputError("--slices and --repeats must be at least 1")
    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    config = ModelConfig(arch=args.arch, inputs=tuple(s.strip() for s in args.inputs.split(",") if s.strip()),
                         use_nihss=args.nihss, width=args.width, image_size=args.size)
    quiet = args.json
    result = run_benchmark(config, slices=args.slices, device=args.device, precisions=precisions,
                           memory_budget_mb=args.memory_budget_mb, repeats=args.repeats,
                           log=(lambda *_: None) if quiet else print)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    label = f"{config.arch}({','.join(config.inputs)}{',N' if config.use_nihss else ''})"
    print(f"\n{label} width {config.width:g}, {args.slices} slices of {config.image_size}x{config.image_size}"
          f" on {result['device']} ({result['threads']} threads; {result['cpu_bf16']})")
    print(f"parameters {result['parameters']:,}; {result['gflops_per_slice']:.1f} GFLOPs per slice "
          "(multiply-add = 2 FLOPs)")
    print(f"{'precision':<10}{'s/study':>9}{'s/slice':>9}{'GFLOP/s':>9}{'matmul':>9}{'fraction':>9}{'peak MB':>9}")
    for run_ in result["runs"]:
        print(f"{run_['precision']:<10}{run_['seconds_per_study']:>9.2f}{run_['seconds_per_slice']:>9.3f}"
              f"{run_['achieved_gflops']:>9.0f}{run_['matmul_gflops']:>9.0f}{run_['fraction_of_matmul']:>9.0%}"
              f"{run_['peak_memory_mb']:>9.0f}")
    fractions = ", ".join(f"{p} >= {f:.0%}" for p, f in TARGETS["fraction_of_matmul"].items())
    gpu = f", <= {TARGETS['gpu_seconds_per_study']:g} s per study on a GPU" if result["device"] != "cpu" else ""
    print(f"targets (SF(PMs,N) width 1.0, 20x512x512): fraction of the same dtype's matmul rate {fractions}; "
          f"<= {TARGETS['peak_memory_mb']:.0f} MB peak{gpu}")
    return 0
