"""``strokeperfusionseg model-info``: size and compute of a network, to pick one for the hardware."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "model-info",
        help="print a network's architecture summary, parameter count and GFLOPs per slice",
        description=(
            "Describe a segmentation network without building its weights: components, parameter "
            "count, GFLOPs per slice (multiply-add = 2 FLOPs) and activation memory per slice."
        ),
    )
    parser.add_argument("--arch", choices=("SF", "EF", "EFI"), default="SF",
                        help="slow fusion (paper), early fusion, inflated early fusion (default SF)")
    parser.add_argument("--inputs", default="cbf,cbv,ttp,tmax", metavar="MAPS",
                        help="comma-separated image inputs in branch order (default cbf,cbv,ttp,tmax)")
    parser.add_argument("--nihss", action="store_true", help="the model also reads the NIHSS score")
    parser.add_argument("--width", type=float, default=1.0, metavar="W",
                        help="channel width multiplier (1.0 = the paper; default 1.0)")
    parser.add_argument("--size", type=int, default=512, metavar="N",
                        help="network image size in pixels, a multiple of 32 (default 512)")
    parser.add_argument("--classes", type=int, choices=(3, 4), default=4, help="output classes (default 4)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run)


def describe(config) -> dict:
    """JSON-ready description of ``config``: components, parameters, GFLOPs and memory per slice."""
    from ..batchsizing import activation_elements_per_slice
    from ..flops import model_cost

    cost = model_cost(config)
    return {
        "config": config.to_dict(),
        "parameters": cost.parameters,
        "gflops_per_slice": round(cost.gflops_per_slice, 3),
        "flop_convention": "multiply-add = 2 FLOPs; convolutions and matrix products only",
        "activation_mb_per_slice_fp32": round(activation_elements_per_slice(config) * 4 / 2**20, 1),
        "weights_mb_fp32": round(cost.parameters * 4 / 2**20, 1),
        "components": [
            {"name": name, "parameters": parameters, "gflops_per_slice": round(cost.flops_by_module.get(name, 0) / 1e9, 3)}
            for name, parameters in cost.parameters_by_module.items()
        ],
    }


def run(args: argparse.Namespace) -> int:
    import json

    from ..networks import ModelConfig

    inputs = tuple(name.strip() for name in args.inputs.split(",") if name.strip())
    config = ModelConfig(arch=args.arch, inputs=inputs, use_nihss=args.nihss, width=args.width,
                         image_size=args.size, num_classes=args.classes)
    info = describe(config)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    label = f"{config.arch}({','.join(config.inputs)}{',NIHSS' if config.use_nihss else ''})"
    print(f"{label}  width {config.width:g}  {config.image_size}x{config.image_size}  {config.num_classes} classes")
    print(f"{'component':<18}{'parameters':>14}{'GFLOPs/slice':>14}")
    for component in info["components"]:
        print(f"{component['name']:<18}{component['parameters']:>14,}{component['gflops_per_slice']:>14.2f}")
    print(f"{'total':<18}{info['parameters']:>14,}{info['gflops_per_slice']:>14.2f}")
    print(f"weights {info['weights_mb_fp32']:.0f} MB (fp32); activations about "
          f"{info['activation_mb_per_slice_fp32']:.0f} MB per slice (fp32); {info['flop_convention']}")
    return 0
