"""What every segmentation network shares: its config, input checks and NIHSS fusion."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .heads import NihssEmbedding


class SegmentationNetwork(nn.Module):
    """Base of the SF / EF / EFI networks.

    Subclasses build their layers and implement :meth:`forward` with the signature
    ``forward(images (B, n_branches, 3, H, W) float32, nihss (B,) or None) -> logits
    (B, num_classes, H, W)``; softmax is left to the loss and the predictor.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.nihss_embedding = NihssEmbedding(config.bottleneck_size) if config.use_nihss else None

    def check_inputs(self, images: torch.Tensor, nihss: torch.Tensor | None) -> None:
        """Raise ValueError when the tensors do not fit this network.

        A caller's mistake, not a user's: the predictor encodes, resamples and checks the NIHSS
        before it calls the network.
        """
        config = self.config
        expected = (len(config.inputs), 3, config.image_size, config.image_size)
        if images.ndim != 5 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"network images have shape {tuple(images.shape)}, expected (B, {', '.join(map(str, expected))}) "
                f"for inputs {','.join(config.inputs)}: encode the maps with encoding.encode_inputs "
                "and resample to the model's image size"
            )
        if config.use_nihss and nihss is None:
            raise ValueError("this model reads the NIHSS score: pass nihss, a (B,) tensor of 0..42")
        if nihss is not None and nihss.shape != (images.shape[0],):
            raise ValueError(
                f"nihss has shape {tuple(nihss.shape)}, expected ({images.shape[0]},): one score per image"
            )

    def fuse_bottleneck(self, features: list[torch.Tensor], nihss: torch.Tensor | None) -> torch.Tensor:
        """Concatenate branch features ``(B, c, h, w)`` and, when used, the NIHSS map on channels."""
        if self.nihss_embedding is not None:
            features = [*features, self.nihss_embedding(nihss.to(features[0].dtype))]
        return torch.cat(features, dim=1)
