"""How each stage of segmenting a study grows with its size: cost exponents from 128 to 512 px.

    python -m benchmarks.scaling                        # the default model, 20 slices, 128/256/512 px
    python -m benchmarks.scaling --sizes 128,256,512 --slices 20 --repeats 3 --model path/to/bundle

For each in-plane size the study keeps its field of view (0.43 mm pixels at 512, so the brain
mask's 2 mm opening disk grows in pixels as the grid gets finer, as on real scans) and times the
stages of :func:`predictor.predict` separately: brain mask, network input (encoding and
resampling to the model's size), the network on that input (independent of the study's grid),
probabilities back to the grid with the labels, and RAPID-like thresholding. Prints the median
seconds per size and, per stage, the exponent ``k`` of ``seconds ~ voxels**k`` fitted in log-log
over the sizes, and per step from one size to the next: ``k`` near 1 is linear in voxels, near
0 a fixed cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

FIELD_OF_VIEW_MM = 220.0


def exponent(voxels, seconds) -> float:
    """Least-squares slope of log(seconds) over log(voxels)."""
    import numpy as np

    return float(np.polyfit(np.log(voxels), np.log(seconds), 1)[0])


def stage_functions(bundle, slices: int, size: int):
    """``{stage: zero-argument callable}`` for one synthetic study of ``slices x size x size``."""
    import torch

    from StrokePerfusionSegLib.brainmask import brain_mask_from_mip
    from StrokePerfusionSegLib.commands.bench import synthetic_study
    import numpy as np

    from StrokePerfusionSegLib.predictor import SliceResampler, network_input, padding_values, to_grid
    from StrokePerfusionSegLib.thresholding import threshold_segmentation

    config = bundle.config
    pixel = FIELD_OF_VIEW_MM / size
    spacing = (5.0, pixel, pixel)
    study = synthetic_study(slices, size)
    images = {name: study[name] for name in config.inputs}
    resampler = SliceResampler((size, size), config.image_size, padding_values(config))
    model = bundle.model.eval()
    x = network_input(images, config, resampler, "cpu")
    nihss = torch.full((slices,), 12.0) if config.use_nihss else None
    with torch.no_grad():
        probabilities = torch.softmax(model(x, nihss), dim=1)
    mask = brain_mask_from_mip(study["mip"], spacing)

    def back_to_grid():
        labels = np.empty((slices, size, size), np.uint8)
        grid = np.empty((slices, config.num_classes, size, size), np.float32)
        to_grid(probabilities, resampler, True, config.num_classes, torch.from_numpy(labels), torch.from_numpy(grid))

    def network():
        with torch.no_grad():
            model(x, nihss)

    return {
        "brain mask": lambda: brain_mask_from_mip(study["mip"], spacing),
        "network input": lambda: network_input(images, config, resampler, "cpu"),
        "network (model size)": network,
        "back to grid + labels": back_to_grid,
        "thresholding": lambda: threshold_segmentation(study["cbf"], study["tmax"], mask, spacing),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="bundle folder or registry id (default: the default model)")
    parser.add_argument("--sizes", default="128,256,512", help="in-plane sizes in pixels (default 128,256,512)")
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds over every stage and size after one warm-up round; medians are kept")
    args = parser.parse_args(argv)

    import torch

    from StrokePerfusionSegLib.bundle import load_bundle
    from StrokePerfusionSegLib.registry import resolve_model

    bundle = load_bundle(resolve_model(args.model))
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"model {bundle.manifest.get('id')} {bundle.manifest.get('version')} "
          f"({bundle.config.arch} width {bundle.config.width} at {bundle.config.image_size} px), "
          f"{args.slices} slices, field of view {FIELD_OF_VIEW_MM:g} mm, torch threads {torch.get_num_threads()}")
    # Rounds go over every size in turn, so that a change in the machine's load between rounds
    # moves all sizes alike instead of bending the exponents.
    stages = {size: stage_functions(bundle, args.slices, size) for size in sizes}
    seconds: dict[str, dict[int, list[float]]] = {}
    for round_index in range(args.repeats + 1):
        for size in sizes:
            for stage, function in stages[size].items():
                start = time.perf_counter()
                function()
                if round_index:  # the first round warms up
                    seconds.setdefault(stage, {}).setdefault(size, []).append(time.perf_counter() - start)
    table = {stage: [statistics.median(by_size[size]) for size in sizes] for stage, by_size in seconds.items()}
    voxels = [args.slices * size * size for size in sizes]
    steps = [f"{a}->{b}" for a, b in zip(sizes, sizes[1:])] if len(sizes) > 2 else []
    print(f"{'stage':<24}" + "".join(f"{f'{s} px':>10}" for s in sizes) + f"{'exponent':>10}"
          + "".join(f"{step:>12}" for step in steps))
    for stage, seconds in table.items():
        per_step = [exponent(voxels[i : i + 2], seconds[i : i + 2]) for i in range(len(steps))]
        print(f"{stage:<24}" + "".join(f"{t:>10.3f}" for t in seconds) + f"{exponent(voxels, seconds):>10.2f}"
              + "".join(f"{k:>12.2f}" for k in per_step))
    print("seconds are medians; exponent k of seconds ~ voxels**k (1 = linear in voxels, 0 = fixed cost), "
          "fitted over all sizes and per step between sizes (at the model's own size nothing is resampled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
