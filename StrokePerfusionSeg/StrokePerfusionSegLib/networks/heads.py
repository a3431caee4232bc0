"""Small modules between the trunks and the decoder: branch bottleneck and NIHSS embedding."""

from __future__ import annotations

import torch
from torch import nn

#: Reference filters of each branch's bottleneck convolutions (width 1.0).
BOTTLENECK_FILTERS = 128


class BranchBottleneck(nn.Sequential):
    """Two 3x3 convolutions + ReLU, then dropout, after a trunk's block5_pool.

    Shapes: ``(B, in_channels, h, w) -> (B, channels, h, w)``.
    """

    def __init__(self, in_channels: int, channels: int, dropout: float):
        super().__init__(
            nn.Conv2d(in_channels, channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )


class NihssEmbedding(nn.Module):
    """NIHSS score -> Dense(100, ReLU) -> Dense(h*w, ReLU) -> one ``h x w`` feature map.

    The score enters as the raw integer (0..42), as in the reference model.

    Shapes: ``(B,) -> (B, 1, size, size)``.
    """

    def __init__(self, size: int, hidden: int = 100):
        super().__init__()
        self.size = size
        self.dense1 = nn.Linear(1, hidden)
        self.dense2 = nn.Linear(hidden, size * size)

    def forward(self, nihss: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.dense1(nihss.reshape(-1, 1)))
        x = torch.relu(self.dense2(x))
        return x.reshape(-1, 1, self.size, self.size)
