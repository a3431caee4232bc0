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


def fused_skips(branch_skips: Sequence[Sequence[torch.Tensor]], up_channels: Sequence[int]) -> list:
    """Every level's skip features of all branches, laid out for the decoder (:func:`joined`).

    Parameters
    ----------
    branch_skips : per branch, the skip features ``(B, c, h, w)`` of every level
    up_channels : per level, the channels the decoder's up-convolution will fill

    Returns
    -------
    list, one entry per level:

    * without autograd (inference): a ``(B, up + n * c, h, w)`` tensor in the skips' dtype and
      memory format, channels ``[0, up)`` left for the decoder, then each branch's skip in
      branch order: ``cat([up, cat(skips)])`` with the skips copied once instead of twice, and
      the per-branch features freed before the decoder runs;
    * with autograd (training): the level's skips, concatenated behind the up-convolution's
      output in one ``cat``. Writes into a buffer would cost the backward pass a copy of the
      whole buffer's gradient per write (one autograd ``CopySlices`` node each); ``cat``'s
      backward hands out views. The values are the same copies either way.
    """
    if torch.is_grad_enabled():
        return [tuple(skips) for skips in zip(*branch_skips)]
    fused = []
    for level, skips in enumerate(zip(*branch_skips)):
        first = skips[0]
        channels_last = first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last)
        buffer = torch.empty(
            (first.shape[0], up_channels[level] + sum(s.shape[1] for s in skips), *first.shape[2:]),
            dtype=first.dtype, device=first.device,
            memory_format=torch.channels_last if channels_last else torch.contiguous_format,
        )
        start = up_channels[level]
        for skip in skips:
            buffer[:, start : start + skip.shape[1]] = skip
            start += skip.shape[1]
        fused.append(buffer)
    return fused


def joined(up: torch.Tensor, level) -> torch.Tensor:
    """``up`` on channels in front of one level of :func:`fused_skips`: ``cat([up, *skips], 1)``."""
    if isinstance(level, torch.Tensor):
        level[:, : up.shape[1]] = up
        return level
    return torch.cat([up, *level], dim=1)


class DecoderStage(nn.Module):
    """Two 3x3 convs + ReLU, a 2x2 stride-2 transposed conv + ReLU, put in front of the
    skip features of that resolution (:func:`fused_skips`, :func:`joined`).

    Shapes: ``x (B, in_channels, h, w)``, ``fused``: one level of :func:`fused_skips` at ``2h``
    -> ``(B, channels + skip_channels, 2h, 2w)``.
    """

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.channels = channels
        self.convs = _double_conv(in_channels, channels)
        self.up = _up(channels, channels)

    def forward(self, x: torch.Tensor, fused) -> torch.Tensor:
        return joined(self.up(self.convs(x)), fused)


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
    forward(x (B, in_channels, H/32, W/32), fused [block1..block5]) -> logits (B, num_classes, H, W),
    ``fused = fused_skips(per-branch skips, decoder.up_channels)``
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

    @property
    def up_channels(self) -> tuple[int, ...]:
        """Channels the decoder puts in front of each level's skips, block1 to block5 order."""
        return (*(stage.channels for stage in reversed(self.stages)), self.first_up[0].out_channels)

    def forward(self, x: torch.Tensor, fused: Sequence) -> torch.Tensor:
        """``fused``: the skips of every level as :func:`fused_skips` lays them out for this decoder."""
        x = joined(self.first_up(x), fused[4])
        for stage, level in zip(self.stages, reversed(fused[:4])):
            x = stage(x, level)
        return self.head(x)
