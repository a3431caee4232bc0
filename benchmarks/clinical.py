"""Clinical path benchmark (issue 6): a DICOM study folder to every output, time per stage.

    python -m benchmarks.clinical                         # 20 x 512 x 512, threshold and dl
    python -m benchmarks.clinical --method threshold
    python -m benchmarks.clinical --model PATH --device cuda

The study is a phantom case (tissue-truth maps, so no perfusion analysis is timed) written as
a DICOM folder (CTP left out): quantitative CBF, CBV, TTP, Tmax and MIP series, one file per
slice. The timed path is what ``strokeperfusionseg segment --dicom`` runs: scan and read the
folder, segment, then write seg.nrrd, NIfTI, DICOM SEG, JSON and the PNG/PDF report. Without
``--model`` the dl method uses the default bundled model, or, when none is installed, a
randomly initialised SF model of ``--width`` (said in the output). Target: <= 10 s on a 2-core
CPU with the default model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

MAPS = ("cbf", "cbv", "ttp", "tmax", "mip")


def make_study(folder: Path, size: int, slices: int, seed: int) -> Path:
    from StrokePerfusionSegLib import dicom
    from StrokePerfusionSegLib.phantom import PhantomConfig, generate_case

    config = PhantomConfig(size=size, slices=slices, frames=10, maps="truth", with_ctp=False, with_rgb=False)
    case = generate_case("bench", "LVO", seed, config)
    return dicom.write_case_as_dicom(case, folder / "study", maps=MAPS, with_ctp=False)


def dl_method(model: str | None, width: float, size: int, folder: Path):
    """(Method, description) for the network: the given/default bundle or a random one."""
    from StrokePerfusionSegLib.pipeline import resolve_method
    from StrokePerfusionSegLib.registry import default_model_id

    if model or default_model_id():
        method = resolve_method(model)
        return method, method.display_name
    import torch

    from StrokePerfusionSegLib.bundle import save_bundle
    from StrokePerfusionSegLib.networks import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(width=width, image_size=size, use_nihss=True)
    path = save_bundle(folder, build_model(config), config, model_id="bench-random", version="0")
    return resolve_method(str(path)), f"random SF model, width {width} (no default model installed)"


def run_once(study: Path, method, device: str, out: Path) -> dict:
    from StrokePerfusionSegLib.batch import Job, segment_job

    job = Job("bench", {"dicom_dir": study}, nihss=14)
    return segment_job(job, method, out, device=device, overwrite=True).timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.clinical", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="pixels per side (default 512)")
    parser.add_argument("--slices", type=int, default=20, help="slices (default 20)")
    parser.add_argument("--method", choices=("both", "threshold", "dl"), default="both")
    parser.add_argument("--model", help="bundle folder or model id for dl (default: the bundled default model)")
    parser.add_argument("--width", type=float, default=1.0, help="width of the random model when no model exists")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--repeats", type=int, default=2, help="runs per method; the first warms up (default 2)")
    args = parser.parse_args(argv)

    import torch

    with tempfile.TemporaryDirectory(prefix="bench-clinical-") as temporary:
        folder = Path(temporary)
        start = time.perf_counter()
        study = make_study(folder, args.size, args.slices, seed=7)
        files = sum(1 for _ in study.rglob("*.dcm"))
        print(f"study: {args.slices} x {args.size} x {args.size}, {files} DICOM files "
              f"(made in {time.perf_counter() - start:.1f} s); torch threads {torch.get_num_threads()}")
        methods = []
        if args.method in ("both", "threshold"):
            from StrokePerfusionSegLib.pipeline import THRESHOLD, resolve_method

            methods.append((resolve_method(THRESHOLD), "threshold (rCBF < 30 %, Tmax > 6 s)"))
        if args.method in ("both", "dl"):
            methods.append(dl_method(args.model, args.width, args.size, folder / "models"))
        for method, description in methods:
            for repeat in range(args.repeats):
                timings = run_once(study, method, args.device, folder / "out")
                stages = "  ".join(f"{k} {v:.2f} s" for k, v in timings.items())
                label = "warm-up" if repeat == 0 and args.repeats > 1 else "timed  "
                print(f"{description:48s} {label} {stages}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
