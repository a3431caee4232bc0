"""SF at width 1.0 / 512x512 has exactly the reference (Keras) architecture's size and compute.

The reference table below is written layer by layer from the published Keras model (VGG-16
without top per input, two 128-filter bottleneck convs, NIHSS dense layers, Conv2DTranspose
decoder with k*n filters per stage) independently of the torch code, and counted as Keras
counts parameters (kernel + bias per layer).
"""

from __future__ import annotations

import pytest

from StrokePerfusionSegLib.flops import model_cost
from StrokePerfusionSegLib.networks import ModelConfig

VGG16 = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
         (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
#: Output side of each VGG-16 convolution for a 512 input (pool after convs 2, 4, 7, 10, 13).
VGG16_SIDES = [512, 512, 256, 256, 128, 128, 128, 64, 64, 64, 32, 32, 32]


def reference_layers(n: int, nihss: bool, classes: int = 4):
    """(kind, in, out, kernel side, output side) of every weighted layer of the reference SF."""
    layers = []
    for _ in range(n):
        layers += [("conv", cin, cout, 3, side) for (cin, cout), side in zip(VGG16, VGG16_SIDES)]
        layers += [("conv", 512, 128, 3, 16), ("conv", 128, 128, 3, 16)]
    if nihss:
        layers += [("dense", 1, 100, 1, 1), ("dense", 100, 16 * 16, 1, 1)]
    bottleneck = 128 * n + int(nihss)
    layers.append(("transpose", bottleneck, 256, 2, 32))
    channels = 256 + 512 * n  # concatenated with every branch's block5_conv3
    for k, skip, side in ((128, 512, 64), (64, 256, 128), (32, 128, 256), (16, 64, 512)):
        filters = k * n
        layers += [("conv", channels, filters, 3, side // 2), ("conv", filters, filters, 3, side // 2),
                   ("transpose", filters, filters, 2, side)]
        channels = filters + skip * n
    layers += [("conv", channels, 16, 3, 512), ("conv", 16, 16, 3, 512), ("conv", 16, classes, 1, 512)]
    return layers


def keras_parameters(layers) -> int:
    return sum(cin * cout * k * k + cout for _, cin, cout, k, _ in layers)


def multiply_adds(layers) -> int:
    total = 0
    for kind, cin, cout, k, side in layers:
        if kind == "conv":
            total += side * side * cin * cout * k * k
        elif kind == "transpose":  # every input pixel scatters a k x k kernel
            total += (side // k) ** 2 * cin * cout * k * k
        else:
            total += cin * cout
    return total


@pytest.mark.parametrize("n, nihss", [(4, True), (4, False), (5, True)])
def test_sf_matches_reference_parameter_count_and_flops(n, nihss):
    inputs = ("cbf", "cbv", "ttp", "tmax", "mip")[:n]
    cost = model_cost(ModelConfig(arch="SF", inputs=inputs, use_nihss=nihss, width=1.0, image_size=512))
    layers = reference_layers(n, nihss)
    reference = keras_parameters(layers)
    print(f"SF n={n} nihss={nihss}: torch {cost.parameters:,} parameters, reference {reference:,}")
    assert cost.parameters == reference
    assert cost.flops_per_slice == 2 * multiply_adds(layers)


def test_vgg16_trunk_alone_matches_keras_count():
    # Keras' VGG16(include_top=False) has 14,714,688 parameters: the table must agree.
    trunk = [("conv", cin, cout, 3, s) for (cin, cout), s in zip(VGG16, VGG16_SIDES)]
    assert keras_parameters(trunk) == 14_714_688


def test_three_classes_change_only_the_last_layer():
    four = model_cost(ModelConfig(width=1.0, num_classes=4)).parameters
    three = model_cost(ModelConfig(width=1.0, num_classes=3)).parameters
    assert four - three == 16 + 1
