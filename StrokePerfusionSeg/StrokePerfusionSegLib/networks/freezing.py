"""Trunk freezing by stage, for the paper's gradual fine-tuning (frozen -> later half -> all)."""

from __future__ import annotations

from torch import nn

from .vgg import VGG16Trunk

#: Fine-tuning stages in the order training goes through them.
STAGES = ("frozen", "later_half", "all")
#: Trunk blocks (0-based) trainable in the "later_half" stage: blocks 4 and 5, the deepest
#: 6 of the 13 convolutions (88 % of a trunk's parameters), the most task-specific features.
LATER_HALF_BLOCKS = (3, 4)


def set_trunk_trainable(model: nn.Module, stage: str) -> None:
    """Set ``requires_grad`` of every VGG-16 trunk parameter in ``model`` for a stage.

    Parameters
    ----------
    model : nn.Module
        A network from :func:`~StrokePerfusionSegLib.networks.build_model`.
    stage : {"frozen", "later_half", "all"}
        ``frozen``: no trunk parameter trains. ``later_half``: blocks 4-5 of each trunk train,
        blocks 1-3 stay frozen. ``all``: every trunk parameter trains.
        Parameters outside the trunks (EF's fusion conv, bottlenecks, NIHSS layers, decoder)
        always train.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown fine-tuning stage '{stage}': use one of {', '.join(STAGES)}")
    trunks = [module for module in model.modules() if isinstance(module, VGG16Trunk)]
    if not trunks:
        raise TypeError("model has no VGG-16 trunk to freeze: build it with networks.build_model")
    for trunk in trunks:
        for index, block in enumerate(trunk.blocks):
            trainable = stage == "all" or (stage == "later_half" and index in LATER_HALF_BLOCKS)
            block.requires_grad_(trainable)
