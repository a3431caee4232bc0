"""SF: the paper's multi-input slow-fusion network (one VGG-16 trunk per input image)."""

from __future__ import annotations

import torch
from torch import nn

from .base import SegmentationNetwork
from .config import ModelConfig
from .decoder import SlowFusionDecoder, fused_skips
from .heads import BOTTLENECK_FILTERS, BranchBottleneck
from .vgg import VGG16Trunk, init_relu_convolutions


class SlowFusionNet(SegmentationNetwork):
    """Slow fusion: separate trunks, fused at the bottleneck and at every skip level.

    Each image input (``config.inputs``, e.g. CBF, CBV, TTP, Tmax, MIP) has its own VGG-16
    trunk (no weight sharing) and bottleneck (two 3x3 convs + dropout). The NIHSS map (when
    used) joins the concatenated bottleneck; the decoder concatenates every branch's skip
    feature at each resolution (:class:`SlowFusionDecoder` with ``n`` = number of branches).

    Shapes
    ------
    forward(images (B, n, 3, S, S), nihss (B,) or None) -> logits (B, num_classes, S, S),
    with ``S = config.image_size``.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        branches = len(config.inputs)
        self.trunks = nn.ModuleDict({name: VGG16Trunk(config.channels) for name in config.inputs})
        trunk = next(iter(self.trunks.values()))
        bottleneck = config.channels(BOTTLENECK_FILTERS)
        self.bottlenecks = nn.ModuleDict(
            {
                name: BranchBottleneck(trunk.out_channels, bottleneck, config.dropout)
                for name in config.inputs
            }
        )
        self.decoder = SlowFusionDecoder(
            in_channels=branches * bottleneck + int(config.use_nihss),
            skip_channels=[branches * c for c in trunk.skip_channels],
            branches=branches,
            num_classes=config.num_classes,
            channels=config.channels,
        )
        for module in (self.bottlenecks, self.decoder, self.nihss_embedding):
            if module is not None:
                init_relu_convolutions(module)

    def forward(self, images: torch.Tensor, nihss: torch.Tensor | None = None) -> torch.Tensor:
        self.check_inputs(images, nihss)
        branch_skips, branch_features = [], []
        for index, name in enumerate(self.config.inputs):
            skips, pooled = self.trunks[name](images[:, index])
            branch_skips.append(skips)
            branch_features.append(self.bottlenecks[name](pooled))
        fused = fused_skips(branch_skips, self.decoder.up_channels)
        del branch_skips, skips  # in inference, frees the per-branch features before the decoder runs
        return self.decoder(self.fuse_bottleneck(branch_features, nihss), fused)
