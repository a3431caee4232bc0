"""Batch sizing: how many slices fit in one network batch of a given memory budget.

The estimate is of the activations alive at once in an inference forward pass, counted on the
``meta`` device (nothing allocated); :func:`predictor.slices_per_batch` divides the memory
budget by it. Parameter counts and FLOPs are :mod:`flops`.
"""

from __future__ import annotations

from functools import lru_cache

from .networks import ModelConfig, build_model


@lru_cache(maxsize=32)
def activation_elements_per_slice(config: ModelConfig) -> int:
    """Upper estimate of the activation elements alive at once in an inference forward pass.

    The skip features of every trunk live until the decoder reads them, and each is copied
    once more when concatenated; on top of that the largest layer holds its input and output
    and a concatenation may be being built. Estimate:
    ``1.25 * (2 * sum(skips) + 3 * max(layer output))`` elements per slice (multiply by the
    element size in bytes); the 1.25 margin covers temporaries and allocator slack, set from
    ``ru_maxrss`` measurements on the CPU (SF width 1/16 and 1/4 at 512: measured 126 and
    328 MB per slice, estimated 136 and 365 MB). The predictor divides its memory budget by this.
    """
    import torch

    from .networks.vgg import VGGBlock

    skip_elements, largest = [], [0]

    def record(module, _inputs, output):
        if isinstance(module, VGGBlock):
            skip_elements.append(output.numel())
        elif len(list(module.children())) == 0:
            largest[0] = max(largest[0], output.numel())

    with torch.device("meta"):
        model = build_model(config).eval()
        images = torch.empty(1, len(config.inputs), 3, config.image_size, config.image_size)
        nihss = torch.empty(1) if config.use_nihss else None
    hooks = [module.register_forward_hook(record) for module in model.modules()]
    with torch.no_grad():
        model(images, nihss)
    for hook in hooks:
        hook.remove()
    return int(1.25 * (2 * sum(skip_elements) + 3 * largest[0]))
