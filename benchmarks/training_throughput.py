"""Training throughput of a config: slices per second of one optimisation step (issue 4).

    python -m benchmarks.training_throughput                          # configs/default_model.json
    python -m benchmarks.training_throughput --config wide_model --device cuda --steps 20
    python -m benchmarks.training_throughput --set model.image_size=128 --set model.width=0.0625
    python -m benchmarks.training_throughput --layers                 # + each convolution's rate

Times forward, per-slice focal Tversky loss, backward and the Adam step on random inputs of the
config's shape, batch = the config's batch size, after two warm-up steps; the same step the
trainer runs (its precision and layout rules included). Use it to size epochs and time boxes.
Also prints the FLOP bound: a same-run matrix product's rate of the training dtype over 3x the
forward FLOPs per slice (forward + backward through activations and weights), and the fraction
of it reached. Steps and the product are timed in turns (``--rounds``), and the medians are
printed, so that other work on a shared machine slows both alike.

``--layers`` also times every distinct convolution of the model alone (forward + backward, its
input and layout as in the step) and prints its rate beside the product's: where the rate of
narrow layers stays far below the product's, no step can reach the bound.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _seconds(function, device, repeats: int) -> float:
    """Median seconds of ``function()`` over ``repeats`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        function()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def convolution_rates(model, images, nihss, autocast, device, repeats: int = 5) -> list[dict]:
    """Each distinct convolution of ``model`` timed alone, forward + backward.

    Returns one dict per distinct (layer shape, input shape, layout): ``layer``, ``input``,
    ``count`` (how many such convolutions one step runs), ``flops`` (forward FLOPs of one call)
    and ``seconds`` (median forward + backward of one call, gradients of the weights and, where
    the step needs it, of the input).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    calls = {}

    def record(module, inputs, output):
        x = inputs[0]
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        key = (repr(module), tuple(x.shape), "NHWC" if channels_last else "NCHW", x.requires_grad)
        if key in calls:
            calls[key]["count"] += 1
        else:
            calls[key] = {"module": module, "input": x.detach().clone(memory_format=torch.preserve_format)
                          .requires_grad_(x.requires_grad), "count": 1}

    convolutions = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Conv3d)
    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, convolutions)]
    with autocast:
        model(images, nihss)
    for hook in hooks:
        hook.remove()
    rows = []
    for (layer, shape, layout, _), call in calls.items():
        module, x = call["module"], call["input"]
        with autocast:
            gradient = torch.randn_like(module(x))

        def forward_backward():
            with autocast:
                out = module(x)
            out.backward(gradient)

        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad(), autocast:
            module(x)
        rows.append({"layer": layer, "input": f"{'x'.join(map(str, shape))} {layout}", "count": call["count"],
                     "flops": counter.get_total_flops(), "seconds": _seconds(forward_backward, device, repeats)})
    model.zero_grad(set_to_none=True)
    return rows


def _print_layers(rows: list[dict], rate: float, step_seconds: float) -> None:
    total_flops = sum(3 * r["flops"] * r["count"] for r in rows)
    total_seconds = sum(r["seconds"] * r["count"] for r in rows)
    print(f"\nconvolutions alone, forward + backward (GFLOP/s = 3x forward FLOPs / time; matmul {rate:.0f}):")
    print(f"{'layer':58s} {'input':24s} {'n':>3s} {'FLOPs %':>8s} {'time %':>7s} {'GFLOP/s':>8s} {'of mm':>6s}")
    for r in sorted(rows, key=lambda r: -r["seconds"] * r["count"]):
        gflops = 3 * r["flops"] / r["seconds"] / 1e9
        print(f"{r['layer'][:58]:58s} {r['input']:24s} {r['count']:3d} {3 * r['flops'] * r['count'] / total_flops:8.1%} "
              f"{r['seconds'] * r['count'] / total_seconds:7.1%} {gflops:8.1f} {gflops / rate:6.0%}")
    print(f"all convolutions: {total_seconds:.3f} s per step alone ({total_seconds / step_seconds:.0%} of the step), "
          f"{total_flops / total_seconds / 1e9:.1f} GFLOP/s = {total_flops / total_seconds / 1e9 / rate:.0%} of the "
          "matmul rate: the most any step of this model can reach of the FLOP bound here")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_throughput",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="default_model", help="training config (name or path)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=5, help="steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of steps and matrix product, in turns")
    parser.add_argument("--layers", action="store_true", help="also time each distinct convolution alone")
    args = parser.parse_args(argv)

    import torch

    from strokeperfusionseg_training.config import parse_override
    from strokeperfusionseg_training.experiments import plan_experiment
    from StrokePerfusionSegLib.commands.bench import MATMUL_SIZE, matmul_gflops
    from StrokePerfusionSegLib.cpufeatures import describe_bf16
    from StrokePerfusionSegLib.flops import model_cost
    from strokeperfusionseg_training.trainer import (
        Distributed, autocast_context, build_loss, build_optimizer, in_training_layout, optimizer_step,
        per_slice_loss, resolved_precision, select_device,
    )

    _, (run,) = plan_experiment(args.config, dict(parse_override(t) for t in args.overrides))
    config, model_config = run.config, run.config.model_config()
    device = select_device(args.device, Distributed())
    from StrokePerfusionSegLib.networks import build_model

    model = build_model(model_config, imagenet_weights=None).to(device).train()
    in_training_layout(model, device)
    optimizer = build_optimizer(model.parameters(), config)
    autocast, needs_scaler = autocast_context(config.precision, device)
    scaler = torch.amp.GradScaler("cuda") if needs_scaler else None
    loss_fn = build_loss(config).to(device)
    b, s, n = config.batch_size, model_config.image_size, len(model_config.inputs)
    images = torch.randn(b, n, 3, s, s, device=device)
    nihss = torch.full((b,), 10.0, device=device) if model_config.use_nihss else None
    target = torch.randint(0, model_config.num_classes, (b, s, s), device=device)
    weight = torch.ones(b, model_config.num_classes, device=device)

    def step():
        with autocast:
            logits = model(images, nihss)
        optimizer_step(per_slice_loss(loss_fn, logits, target, weight).mean(), optimizer, scaler)

    def steps():
        for _ in range(args.steps):
            step()

    precision = resolved_precision(config.precision, device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    flops_per_slice = model_cost(model_config).flops_per_slice
    step()
    rounds = []
    for _ in range(args.rounds):
        seconds = _seconds(steps, device, 1) / args.steps
        rate = matmul_gflops(device, dtype, MATMUL_SIZE[device.type], repeats=5)
        bound = rate * 1e9 / (3 * flops_per_slice)
        rounds.append((seconds, rate, bound, b / seconds / bound))
    seconds, rate, bound, fraction = (statistics.median(values) for values in zip(*rounds))
    parameters = sum(p.numel() for p in model.parameters())
    first_convolution = next(p for p in model.parameters() if p.dim() == 4)
    layout = "contiguous" if first_convolution.is_contiguous() else "channels-last"
    print(f"{model_config.arch} inputs={','.join(model_config.inputs)} nihss={model_config.use_nihss} "
          f"width={model_config.width} size={s} batch={b} params={parameters / 1e6:.2f}M device={device} "
          f"threads={torch.get_num_threads()} layout={layout}")
    print(f"precision {precision} (config: {config.precision}"
          f"{'; ' + describe_bf16() if device.type == 'cpu' else ''})")
    print(f"{seconds:.3f} s per step, {b / seconds:.1f} slices/s; FLOP bound {bound:.0f} slices/s "
          f"(matmul {MATMUL_SIZE[device.type]}^3 {precision} {rate:.0f} GFLOP/s): {fraction:.0%} of it "
          f"(medians of {args.rounds} rounds of {args.steps} steps; fractions {', '.join(f'{r[3]:.0%}' for r in rounds)})")
    if args.layers:
        _print_layers(convolution_rates(model, images, nihss, autocast, device), rate, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
