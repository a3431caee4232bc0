"""EF and EFI: early-fusion baselines of the paper's Exp-3 (one trunk over all inputs)."""

from __future__ import annotations

import torch
from torch import nn

from .base import SegmentationNetwork
from .config import ModelConfig
from .decoder import SlowFusionDecoder, fused_skips
from .heads import BOTTLENECK_FILTERS, BranchBottleneck
from .vgg import VGG16Trunk, inflated_depths, init_relu_convolutions


class EarlyFusionNet(SegmentationNetwork):
    """Early fusion over one VGG-16 trunk, plain (EF) or inflated (EFI).

    EF (``inflated=False``): the ``n`` 3-channel inputs are stacked on channels (``3n``), a
    3x3 conv + ReLU reduces them to 3 channels and one 2D VGG-16 trunk follows.

    EFI (``inflated=True``): the inputs are stacked on a depth axis ``(B, 3, n, S, S)`` and run
    through an I3D-style 3D trunk (3x3x3 kernels; depth kept by the pooling of blocks 1-3 and
    halved, rounding up, by blocks 4-5). Depth is collapsed for the 2D decoder by folding it into
    channels: a feature ``(B, C, D, h, w)`` becomes ``(B, C*D, h, w)``, so every depth position
    keeps its own decoder weights (the reference reshaped the same way at the bottleneck).

    Both use the SF bottleneck, NIHSS fusion and decoder with ``n = 1`` branch.

    Shapes
    ------
    forward(images (B, n, 3, S, S), nihss (B,) or None) -> logits (B, num_classes, S, S)
    """

    def __init__(self, config: ModelConfig, *, inflated: bool):
        super().__init__(config)
        self.inflated = inflated
        branches = len(config.inputs)
        if inflated:
            self.fusion = None
            self.trunk = VGG16Trunk(config.channels, spatial_dims=3)
            skip_depths, pooled_depth = inflated_depths(branches)
        else:
            self.fusion = nn.Sequential(
                nn.Conv2d(3 * branches, 3, kernel_size=3, padding=1), nn.ReLU(inplace=True)
            )
            self.trunk = VGG16Trunk(config.channels)
            skip_depths, pooled_depth = (1,) * 5, 1
        bottleneck = config.channels(BOTTLENECK_FILTERS)
        self.bottleneck = BranchBottleneck(
            self.trunk.out_channels * pooled_depth, bottleneck, config.dropout
        )
        self.decoder = SlowFusionDecoder(
            in_channels=bottleneck + int(config.use_nihss),
            skip_channels=[c * d for c, d in zip(self.trunk.skip_channels, skip_depths)],
            branches=1,
            num_classes=config.num_classes,
            channels=config.channels,
        )
        for module in (self.fusion, self.bottleneck, self.decoder, self.nihss_embedding):
            if module is not None:
                init_relu_convolutions(module)

    def forward(self, images: torch.Tensor, nihss: torch.Tensor | None = None) -> torch.Tensor:
        self.check_inputs(images, nihss)
        if self.inflated:
            skips, pooled = self.trunk(images.transpose(1, 2))
            skips = [skip.flatten(1, 2) for skip in skips]
            pooled = pooled.flatten(1, 2)
        else:
            skips, pooled = self.trunk(self.fusion(images.flatten(1, 2)))
        fused = fused_skips([skips], self.decoder.up_channels)
        del skips
        return self.decoder(self.fuse_bottleneck([self.bottleneck(pooled)], nihss), fused)
