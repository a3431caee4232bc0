"""U-Net-like decoder that fuses the skip features of every branch at each level ("slow fusion")."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

#: Reference filters (width 1.0, per image branch) of the four decoder stages, deepest first.
STAGE_FILTERS = (128, 64, 32, 16)
#: Reference filters of the first transposed convolution and of the two head convolutions.
FIRST_UP_FILTERS = 256
HEAD_FILTERS = 16


def _up(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2),
        nn.ReLU(inplace=True),
    )


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
    )


class DecoderStage(nn.Module):
    """Two 3x3 convs + ReLU, a 2x2 stride-2 transposed conv + ReLU, then concatenation with
    the skip features of that resolution.

    Shapes: ``x (B, in_channels, h, w)``, ``skip (B, skip_channels, 2h, 2w)``
    -> ``(B, channels + skip_channels, 2h, 2w)``.
    """

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.convs = _double_conv(in_channels, channels)
        self.up = _up(channels, channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.up(self.convs(x)), skip], dim=1)


class SlowFusionDecoder(nn.Module):
    """Decoder of the reference SF model (also used by EF/EFI with one branch).

    Parameters
    ----------
    in_channels : int
        Channels at the bottleneck (branch outputs + 1 NIHSS map when used).
    skip_channels : sequence of 5 int
        Channels of the concatenated skip features of all branches, from block1_conv2 to
        block5_conv3.
    branches : int
        Number of image branches ``n``: stage ``i`` has ``STAGE_FILTERS[i] * n`` filters.
    num_classes : int
    channels : callable
        Width scaling of reference channel counts (:meth:`ModelConfig.channels`).

    Shapes
    ------
    forward(x (B, in_channels, H/32, W/32), skips [block1..block5]) -> logits (B, num_classes, H, W)
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: Sequence[int],
        branches: int,
        num_classes: int,
        channels: Callable[[int], int] = int,
    ):
        super().__init__()
        first = channels(FIRST_UP_FILTERS)
        self.first_up = _up(in_channels, first)
        in_channels = first + skip_channels[4]
        self.stages = nn.ModuleList()
        for filters, skip in zip(STAGE_FILTERS, reversed(skip_channels[:4])):
            stage_channels = channels(filters) * branches
            self.stages.append(DecoderStage(in_channels, stage_channels))
            in_channels = stage_channels + skip
        head = channels(HEAD_FILTERS)
        self.head = nn.Sequential(
            _double_conv(in_channels, head), nn.Conv2d(head, num_classes, kernel_size=1)
        )

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([self.first_up(x), skips[4]], dim=1)
        for stage, skip in zip(self.stages, reversed(skips[:4])):
            x = stage(x, skip)
        return self.head(x)
