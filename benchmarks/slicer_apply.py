"""Time the non-GUI part of the panel's Apply: volume nodes in a scene -> segments and table.

Targets for a 20-slice 512x512 study with the default model: <= 10 s on a laptop CPU (issue 5);
warm (in the same process after a first Apply) <= 1.5 s (issue 14).
Runs on slicer-core. The study is the digital phantom (maps = ground truth, no CTP, so the
set-up is quick); the timed part starts with the volume nodes already in the scene, as after
loading a study in Slicer, and ends with the segmentation node and table filled. The method is
resolved as the panel's Logic does, through a ``MethodCache`` (the model loads on the first
Apply only); what resolving without it costs, as every Apply paid before, is timed in the same
run::

    python benchmarks/slicer_apply.py                       # default model, or a width-1/4 SF model
    python benchmarks/slicer_apply.py --method threshold
    python benchmarks/slicer_apply.py --size 256 --slices 8 --device cpu --repeats 3

Prints the study, the method, per-stage seconds of each run and the median of the warm runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time


def _method(name: str, image_size: int, folder: str):
    """The method to time, as the panel names it: ``name``, the registry default, or the
    folder of a small random-weight stand-in."""
    from StrokePerfusionSegLib.bundle import save_bundle

    if name != "default":
        return name, name
    try:
        from StrokePerfusionSegLib.registry import default_model_id, resolve_model

        model_id = default_model_id()
        resolve_model(model_id)
        return model_id, model_id
    except Exception as error:  # no default model shipped yet: time the architecture at 1/4 width
        import torch

        from StrokePerfusionSegLib.networks import ModelConfig, build_model

        print(f"default model not available ({error}); timing a random-weight SF model at width 0.25")
        torch.manual_seed(0)
        config = ModelConfig(arch="SF", use_nihss=True, width=0.25, image_size=image_size)
        path = save_bundle(folder, build_model(config), config, model_id="bench-sf-w025", version="0.0.0")
        return str(path), "random-weight SF, width 0.25"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="default", help="'default', 'threshold', a model id or a bundle folder")
    parser.add_argument("--size", type=int, default=512, help="in-plane pixels (default 512)")
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=2, help="runs (the first includes warm-up)")
    args = parser.parse_args(argv)

    import slicer

    from StrokePerfusionSegLib.methodcache import MethodCache
    from StrokePerfusionSegLib.mrml.nodes import add_case_volumes
    from StrokePerfusionSegLib.mrml.study import segment_volumes
    from StrokePerfusionSegLib.pipeline import resolve_method
    from StrokePerfusionSegLib.phantom import PhantomConfig, generate_case

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        config = PhantomConfig(size=args.size, slices=args.slices, maps="truth", with_ctp=False, with_rgb=False)
        case = generate_case("bench-lvo", "LVO", seed=1, config=config)
        print(f"study: {case.shape[0]} slices x {case.shape[1]}x{case.shape[2]}, spacing "
              f"{tuple(round(s, 3) for s in case.geometry.spacing_zyx)} mm (z, y, x); "
              f"phantom made in {time.perf_counter() - started:.1f} s")
        spec, label = _method(args.method, args.size, folder)
        print(f"method: {label}; device: {args.device}")
        scene = slicer.vtkMRMLScene()
        nodes = add_case_volumes(scene, case)
        inputs = {name: nodes[name] for name in ("cbf", "cbv", "ttp", "tmax", "mip")}
        segmentation = table = None
        totals, uncached = [], []
        methods = MethodCache()
        for run in range(1, args.repeats + 1):
            started = time.perf_counter()
            method = methods.resolve(spec)
            resolve_s = time.perf_counter() - started
            result = segment_volumes(
                scene, inputs, method=method, nihss=case.nihss or 10, device=args.device,
                segmentation_node=segmentation, table_node=table,
            )
            segmentation, table = result.segmentation_node, result.table_node
            stages = ", ".join(f"{key} {value:.2f}" for key, value in result.timings.items())
            print(f"run {run} on {result.device}: resolve {resolve_s:.3f}, {stages}")
            totals.append(resolve_s + result.timings["total"])
            started = time.perf_counter()
            resolve_method(spec)
            uncached.append(time.perf_counter() - started)
        warm = statistics.median(totals[1:]) if len(totals) > 1 else None
        print(f"Apply, volume nodes to segments: first {totals[0]:.2f} s (target <= 10 s), warm "
              + (f"median {warm:.2f} s (target <= 1.5 s)" if warm is not None else "not run (--repeats 2 or more)"))
        print(f"resolving the method without the panel's cache (every Apply before): median "
              f"{statistics.median(uncached):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
