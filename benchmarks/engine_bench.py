"""Timings of the engine pieces on a clinical-size study (20 x 512 x 512, 0.43 x 0.43 x 5 mm).

Prints one line per step: input encoding (both encodings), the loss forward + backward,
RAPID-like thresholding, lesion volumes, the case metrics, and a bundle save / validate /
load round trip of the paper's SF(PMs) model (width 1.0 unless --width says otherwise).

    python benchmarks/engine_bench.py [--slices 20] [--size 512] [--width 1.0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _timed(label: str, function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    print(f"{label:<44s} {time.perf_counter() - start:8.3f} s")
    return result


def _study(slices: int, size: int, seed: int = 0):
    """Elliptic brain, CBF/Tmax with a lesion in the +x hemisphere, and a shifted 'prediction'."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size - 0.5
    brain = np.broadcast_to((y / 0.42) ** 2 + (x / 0.34) ** 2 <= 1, (slices, size, size)).copy()
    lesion = np.broadcast_to(((y + 0.05) / 0.2) ** 2 + ((x - 0.17) / 0.12) ** 2 <= 1, brain.shape)
    core = np.broadcast_to(((y + 0.05) / 0.08) ** 2 + ((x - 0.2) / 0.06) ** 2 <= 1, brain.shape)
    cbf = np.where(brain, rng.normal(50, 5, brain.shape), 0).astype(np.float32)
    cbf[lesion & brain] *= 0.6
    cbf[core & brain] = 5.0
    tmax = np.where(lesion & brain, 9.0, 1.5).astype(np.float32)
    maps = {
        "cbf": cbf,
        "cbv": np.where(brain, 4.0, 0).astype(np.float32),
        "ttp": np.where(brain, 20.0, 0).astype(np.float32),
        "tmax": tmax,
    }
    return maps, brain


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--width", type=float, default=1.0, help="SF width for the bundle round trip")
    args = parser.parse_args(argv)

    from StrokePerfusionSegLib.bundle import load_bundle, save_bundle
    from StrokePerfusionSegLib.bundleformat import validate_bundle
    from StrokePerfusionSegLib.encoding import encode_inputs
    from StrokePerfusionSegLib.losses import FocalTverskyLoss
    from StrokePerfusionSegLib.metrics import case_metrics
    from StrokePerfusionSegLib.networks import ModelConfig, build_model
    from StrokePerfusionSegLib.thresholding import threshold_segmentation
    from StrokePerfusionSegLib.volumes import lesion_volumes

    spacing = (5.0, 0.4366, 0.4366)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (timings scale with it)")
    print(f"study {args.slices} x {args.size} x {args.size}, spacing {spacing} mm, "
          f"torch threads {torch.get_num_threads()}")
    maps, brain = _study(args.slices, args.size)
    inputs = ("cbf", "cbv", "ttp", "tmax")
    encoded = _timed("encode_inputs rgb (scalar maps in)", encode_inputs, maps, inputs, "rgb")
    _timed("encode_inputs scalar", encode_inputs, maps, inputs, "scalar")
    print(f"{'  encoded input size':<44s} {encoded.nbytes / 2**20:8.1f} MiB")

    logits = torch.randn(2, 4, args.size, args.size, requires_grad=True)
    targets = torch.randint(0, 4, (2, args.size, args.size))

    def loss_step():
        FocalTverskyLoss()(logits, targets).backward()

    _timed("FocalTverskyLoss fwd+bwd, batch 2", loss_step)

    labels = _timed("threshold_segmentation", threshold_segmentation, maps["cbf"], maps["tmax"], brain, spacing)
    volumes = _timed("lesion_volumes", lesion_volumes, labels, spacing)
    print(f"{'  core / penumbra (ml)':<44s} {volumes.core_ml:8.1f} / {volumes.penumbra_ml:.1f}")
    prediction = np.roll(labels, 6, axis=2)
    _timed("import monai.metrics (once per process)", __import__, "monai.metrics")
    row = _timed("case_metrics (penumbra, core)", case_metrics, prediction, labels, spacing)
    print(f"{'  core Dice / HD95 (mm)':<44s} {row['core_dice']:8.3f} / {row['core_hd95_mm']:.2f}")

    config = ModelConfig(arch="SF", width=args.width, image_size=args.size)
    model = build_model(config)
    with tempfile.TemporaryDirectory() as folder:
        path = _timed(
            f"save_bundle SF width {args.width}", save_bundle, folder, model, config, model_id="bench", version="0"
        )
        size_mb = (Path(path) / "weights.safetensors").stat().st_size / 2**20
        print(f"{'  weights file':<44s} {size_mb:8.1f} MiB")
        _timed("validate_bundle (sha256 + tensor shapes)", validate_bundle, path)
        _timed("load_bundle", load_bundle, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
