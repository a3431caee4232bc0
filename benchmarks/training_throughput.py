"""Training throughput of a config: slices per second of one optimisation step (issue 4).

    python -m benchmarks.training_throughput                          # configs/default_model.json
    python -m benchmarks.training_throughput --config wide_model --device cuda --steps 20
    python -m benchmarks.training_throughput --set model.image_size=128 --set model.width=0.0625

Times forward, per-slice focal Tversky loss, backward and the Adam step on random inputs of the
config's shape, batch = the config's batch size, after two warm-up steps; the same step the
trainer runs (its precision and channels-last rules included). Use it to size epochs and time
boxes. Also prints the FLOP bound: a same-run matrix product's rate of the training dtype over
3x the forward FLOPs per slice (forward + backward through activations and weights), and the
fraction of it reached.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_throughput",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="default_model", help="training config (name or path)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)

    import torch

    from strokeperfusionseg_training.config import parse_override
    from strokeperfusionseg_training.experiments import plan_experiment
    from StrokePerfusionSegLib.commands.bench import MATMUL_SIZE, matmul_gflops
    from StrokePerfusionSegLib.cpufeatures import describe_bf16
    from StrokePerfusionSegLib.flops import model_cost
    from strokeperfusionseg_training.trainer import (
        Distributed, autocast_context, build_loss, in_training_layout, optimizer_step, per_slice_loss,
        resolved_precision, select_device,
    )

    _, (run,) = plan_experiment(args.config, dict(parse_override(t) for t in args.overrides))
    config, model_config = run.config, run.config.model_config()
    device = select_device(args.device, Distributed())
    from StrokePerfusionSegLib.networks import build_model

    model = build_model(model_config, imagenet_weights=None).to(device).train()
    in_training_layout(model, config.precision, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
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

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    parameters = sum(p.numel() for p in model.parameters())
    print(f"{model_config.arch} inputs={','.join(model_config.inputs)} nihss={model_config.use_nihss} "
          f"width={model_config.width} size={s} batch={b} params={parameters / 1e6:.2f}M device={device} "
          f"threads={torch.get_num_threads()}")
    precision = resolved_precision(config.precision, device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    rate = matmul_gflops(device, dtype, MATMUL_SIZE[device.type], repeats=5)
    bound = rate * 1e9 / (3 * model_cost(model_config).flops_per_slice)
    print(f"precision {precision} (config: {config.precision}"
          f"{'; ' + describe_bf16() if device.type == 'cpu' else ''})")
    print(f"{seconds:.3f} s per step, {b / seconds:.1f} slices/s; FLOP bound {bound:.0f} slices/s "
          f"(matmul {MATMUL_SIZE[device.type]}^3 {precision} {rate:.0f} GFLOP/s): {b / seconds / bound:.0%} of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
