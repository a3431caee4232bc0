"""Parameter counts and floating-point operations per slice of a network configuration.

FLOPs count one multiply-add as **2 FLOPs** and cover convolutions, transposed convolutions
and matrix products (torch's ``FlopCounterMode``); ReLU, pooling, bias additions and
concatenations are left out (under 1 % for these networks). Counting runs on the ``meta``
device: no weights or activations are allocated, so width-1.0 512x512 models count instantly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from .networks import ModelConfig, build_model


@dataclass(frozen=True)
class ModelCost:
    """Size and compute of a network for one input slice.

    Attributes
    ----------
    parameters : int
        All parameters (trainable or not).
    flops_per_slice : int
        FLOPs of one forward pass over one slice (multiply-add = 2 FLOPs).
    flops_by_module : dict
        FLOPs per top-level sub-module name (``trunks``, ``bottlenecks``, ``decoder`` ...).
    parameters_by_module : dict
        Parameters per top-level sub-module name.
    """

    parameters: int
    flops_per_slice: int
    flops_by_module: dict
    parameters_by_module: dict

    @property
    def gflops_per_slice(self) -> float:
        return self.flops_per_slice / 1e9


@lru_cache(maxsize=32)
def model_cost(config: ModelConfig) -> ModelCost:
    """Count the parameters and per-slice forward FLOPs of the network ``config`` describes."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_model(config).eval()
        images = torch.empty(1, len(config.inputs), 3, config.image_size, config.image_size)
        nihss = torch.empty(1) if config.use_nihss else None
    parameters = sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(images, nihss)
    counts = counter.get_flop_counts()
    # Keys are "Global" and dotted module paths; sum the leaf modules under each first-level
    # child of the root (ModuleDicts such as "trunks" are never called, so have no key).
    by_module: Counter = Counter()
    for name, operations in counts.items():
        parts = name.split(".")
        is_leaf = not any(other.startswith(name + ".") for other in counts)
        if len(parts) >= 2 and is_leaf:
            by_module[parts[1]] += sum(operations.values())
    parameters_by_module = {
        name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()
    }
    return ModelCost(parameters, int(counter.get_total_flops()), dict(by_module), parameters_by_module)
