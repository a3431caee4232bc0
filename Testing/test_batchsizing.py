"""Batch sizing: the activation estimate counts the layers a real forward pass produces."""

from __future__ import annotations

import pytest

from StrokePerfusionSegLib.batchsizing import activation_elements_per_slice
from StrokePerfusionSegLib.networks import ModelConfig


def measured_activation_terms(config: ModelConfig) -> tuple[int, int]:
    """(sum of VGG block outputs, largest leaf-layer output) of a real forward on the meta device."""
    import torch

    from StrokePerfusionSegLib.networks import build_model
    from StrokePerfusionSegLib.networks.vgg import VGGBlock

    skips, largest = [], [0]

    def record(module, _inputs, output):
        if isinstance(module, VGGBlock):
            skips.append(output.numel())
        elif not list(module.children()):
            largest[0] = max(largest[0], output.numel())

    with torch.device("meta"):
        model = build_model(config).eval()
        images = torch.empty(1, len(config.inputs), 3, config.image_size, config.image_size)
        nihss = torch.empty(1) if config.use_nihss else None
    for module in model.modules():
        module.register_forward_hook(record)
    with torch.no_grad():
        model(images, nihss)
    return sum(skips), largest[0]


@pytest.mark.parametrize("config", [
    ModelConfig(arch="SF", use_nihss=True, width=0.0625, image_size=128, encoding="scalar"),
    ModelConfig(arch="SF", inputs=("cbf", "cbv", "ttp", "tmax", "mip"), width=1.0, image_size=512),
    ModelConfig(arch="SF", inputs=("cbf",), width=0.25, image_size=64, num_classes=3),
    ModelConfig(arch="EF", use_nihss=True, width=0.5, image_size=256),
    ModelConfig(arch="EFI", inputs=("cbf", "cbv", "ttp", "tmax", "mip"), width=0.125, image_size=96),
])
def test_activation_estimate_counts_the_layers_of_a_real_forward(config):
    skips, largest = measured_activation_terms(config)
    assert activation_elements_per_slice(config) == int(1.25 * (2 * skips + 3 * largest))
