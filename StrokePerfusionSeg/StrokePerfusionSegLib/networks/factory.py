"""``build_model``: a network from a :class:`ModelConfig`, optionally ImageNet-initialised."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from .config import ModelConfig
from .early_fusion import EarlyFusionNet
from .pretrained import copy_into_trunk, load_vgg16_convolutions, resolve_imagenet_weights
from .slow_fusion import SlowFusionNet
from .vgg import VGG16Trunk

log = logging.getLogger(__name__)


def build_model(config: ModelConfig, *, imagenet_weights: str | Path | None = None) -> nn.Module:
    """Build the network a config describes.

    Parameters
    ----------
    config : ModelConfig
    imagenet_weights : None, "auto", str or Path
        ``None``: random (He) initialisation. ``"auto"``: torchvision's cached ImageNet VGG-16
        (``torch.hub.get_dir()/checkpoints/vgg16-397923af.pth``) when present, else random
        init with a logged message. A path: that torchvision VGG-16 state dict (missing file,
        or width != 1.0 -> :class:`InputError`). Nothing is ever downloaded.

    Returns
    -------
    nn.Module
        A :class:`SlowFusionNet` or :class:`EarlyFusionNet`, in training mode, on the current
        default device (build under ``torch.device("meta")`` to count without allocating).
        ``forward(images (B, n, 3, S, S), nihss (B,) or None) -> logits (B, C, S, S)``.
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"build_model takes a ModelConfig, got {type(config).__name__}")
    if config.arch == "SF":
        model = SlowFusionNet(config)
    else:
        model = EarlyFusionNet(config, inflated=config.arch == "EFI")
    path = resolve_imagenet_weights(imagenet_weights, width=config.width)
    if path is not None:
        convolutions = load_vgg16_convolutions(path)
        trunks = [module for module in model.modules() if isinstance(module, VGG16Trunk)]
        for trunk in trunks:
            copy_into_trunk(trunk, convolutions)
        log.info("initialised %d VGG-16 trunk(s) from ImageNet weights %s", len(trunks), path)
    return model


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with 2D convolution weights in channels-last (NHWC), the layout oneDNN and
    cuDNN convolve fastest, in place; models with 3D (EFI) weights stay NCDHW."""
    if not any(p.dim() == 5 for p in model.parameters()):
        model.to(memory_format=torch.channels_last)
    return model
