"""VGG-16 convolutional trunk (no classifier) that returns its skip features.

Layer layout follows Simonyan & Zisserman's configuration "D" as in torchvision's ``vgg16``:
five blocks of 3x3 convolutions + ReLU (64, 64 | 128, 128 | 256 x3 | 512 x3 | 512 x3 channels at
width 1.0), each block closed by a 2x2 max pooling. The trunk works in 2D (``spatial_dims=2``) or
as an I3D-style inflated 3D trunk (``spatial_dims=3``) whose first axis after the channels is a
depth axis over stacked input maps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

#: Reference channel counts of each block's convolutions (width 1.0).
VGG16_BLOCKS: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)
#: Keras names of the skip features, one per block (the last convolution of each block).
SKIP_NAMES = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3")


class VGGBlock(nn.Sequential):
    """3x3 convolutions, each followed by ReLU (``conv1``, ``relu1``, ``conv2``, ...)."""

    def __init__(self, in_channels: int, out_channels: Sequence[int], spatial_dims: int = 2):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        for index, channels in enumerate(out_channels, start=1):
            self.add_module(f"conv{index}", conv(in_channels, channels, kernel_size=3, padding=1))
            self.add_module(f"relu{index}", nn.ReLU(inplace=True))
            in_channels = channels


class VGG16Trunk(nn.Module):
    """VGG-16 feature extractor returning the skip feature of every block and the pooled output.

    Parameters
    ----------
    channels : callable
        Maps a reference channel count (width 1.0) to the built count, e.g.
        :meth:`ModelConfig.channels`.
    in_channels : int
        Channels of the input image (3 for RGB-like inputs).
    spatial_dims : {2, 3}
        2: input ``(B, C, H, W)``. 3: inflated trunk, input ``(B, C, D, H, W)`` with 3x3x3
        convolutions; pooling keeps depth in blocks 1-3 and halves it (rounding up) in
        blocks 4-5, as in the reference EFI model.

    Shapes
    ------
    forward(x) -> (skips, pooled): ``skips[i]`` is block ``i+1``'s last convolution output at
    ``H / 2**i`` (block1_conv2 ... block5_conv3), ``pooled`` is block5_pool at ``H / 32``.
    """

    def __init__(
        self,
        channels: Callable[[int], int] = int,
        *,
        in_channels: int = 3,
        spatial_dims: int = 2,
    ):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims = spatial_dims
        self.blocks = nn.ModuleList()
        self.pools = nn.ModuleList()
        for index, reference in enumerate(VGG16_BLOCKS):
            widths = [channels(c) for c in reference]
            self.blocks.append(VGGBlock(in_channels, widths, spatial_dims))
            in_channels = widths[-1]
            if spatial_dims == 2:
                self.pools.append(nn.MaxPool2d(2))
            else:
                depth = 2 if index >= 3 else 1
                kernel = (depth, 2, 2)
                self.pools.append(nn.MaxPool3d(kernel, stride=kernel, ceil_mode=True))
        self.out_channels = in_channels
        #: Channels of each skip feature, in :data:`SKIP_NAMES` order.
        self.skip_channels = tuple(channels(reference[-1]) for reference in VGG16_BLOCKS)
        init_relu_convolutions(self)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = []
        for block, pool in zip(self.blocks, self.pools):
            x = block(x)
            skips.append(x)
            x = pool(x)
        return skips, x

    def convolutions(self) -> list[nn.Module]:
        """The 13 convolutions in network order (the order of torchvision's ``features``)."""
        return [module for block in self.blocks for module in block if not isinstance(module, nn.ReLU)]


def inflated_depths(num_inputs: int) -> tuple[tuple[int, ...], int]:
    """Depth of each skip feature and of the pooled output of an inflated trunk.

    Parameters
    ----------
    num_inputs : int
        Number of maps stacked on the depth axis.

    Returns
    -------
    (skip_depths, pooled_depth)
        ``skip_depths`` in :data:`SKIP_NAMES` order.
    """
    depth, skips = num_inputs, []
    for index in range(len(VGG16_BLOCKS)):
        skips.append(depth)
        if index >= 3:
            depth = -(-depth // 2)
    return tuple(skips), depth


def init_relu_convolutions(module: nn.Module) -> None:
    """He-normal weights (fan-out, as torchvision's VGG) and zero biases for every (transposed)
    convolution and linear layer in ``module``.

    The reference used Keras' Glorot-uniform; He scaling keeps activations at a stable scale
    through deep ReLU stacks without batch norm, which matters when no ImageNet weights exist.
    """
    for layer in module.modules():
        # Meta tensors (size and FLOP counting) hold no values to initialise.
        if isinstance(layer, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)) and not layer.weight.is_meta:
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
