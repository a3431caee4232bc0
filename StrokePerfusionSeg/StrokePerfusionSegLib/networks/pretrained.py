"""ImageNet initialisation of VGG-16 trunks from torchvision's weights file, never downloaded.

torchvision publishes the ImageNet VGG-16 weights as ``vgg16-397923af.pth``, a state dict whose
``features.<i>.weight`` / ``features.<i>.bias`` entries are the 13 convolutions in order. This
module finds such a file (an explicit path, or torchvision's cache folder), loads it without
unpickling code (``torch.load(weights_only=True)``) and copies it into trunks, inflating the
kernels for 3D trunks (each 3x3 kernel repeated 3 times along depth and divided by 3, so a
depth-constant input gives the 2D response).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import InputError
from .vgg import VGG16Trunk

log = logging.getLogger(__name__)

#: File name torchvision gives the ImageNet VGG-16 weights in its cache.
TORCHVISION_VGG16_FILE = "vgg16-397923af.pth"


def torchvision_cache_file() -> Path:
    """Where torchvision keeps a downloaded VGG-16: ``<torch.hub.get_dir()>/checkpoints/``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_VGG16_FILE


def resolve_imagenet_weights(source: str | Path | None, *, width: float) -> Path | None:
    """The weights file to load, or ``None`` for random initialisation.

    Parameters
    ----------
    source : None, "auto", str or Path
        ``None``: random init. ``"auto"``: torchvision's cache file if present, else random
        init with a logged message. A path: that file, which must exist.
    width : float
        The model's width multiplier; ImageNet weights exist only for width 1.0.
    """
    if source is None:
        return None
    if isinstance(source, str) and source == "auto":
        if width != 1.0:
            log.warning(
                "ImageNet VGG-16 weights fit width 1.0 only; width %g keeps random initialisation",
                width,
            )
            return None
        path = torchvision_cache_file()
        if not path.is_file():
            log.warning(
                "ImageNet VGG-16 weights not found at %s (never downloaded): trunks keep random "
                "initialisation; place torchvision's %s there or pass its path",
                path,
                TORCHVISION_VGG16_FILE,
            )
            return None
        return path
    path = Path(source).expanduser()
    if width != 1.0:
        raise InputError(
            f"ImageNet VGG-16 weights fit width 1.0 only, not width {width:g}: "
            "use width 1.0 or leave imagenet_weights unset"
        )
    if not path.is_file():
        raise InputError(
            f"ImageNet weights file {path} not found: give the path of torchvision's "
            f"{TORCHVISION_VGG16_FILE} (it is never downloaded)"
        )
    return path


def load_vgg16_convolutions(path: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) of the 13 convolutions of a torchvision VGG-16 state dict file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt file, pickle with code, not a torch file
        raise InputError(
            f"cannot read ImageNet weights {path} ({error.__class__.__name__}): "
            f"give torchvision's {TORCHVISION_VGG16_FILE} state dict"
        ) from None
    if not isinstance(state, dict):
        raise InputError(f"ImageNet weights {path} hold no state dict: give torchvision's vgg16 weights")
    indices = sorted(
        {int(key.split(".")[1]) for key in state if key.startswith("features.") and key.endswith(".weight")}
    )
    if len(indices) != 13:
        raise InputError(
            f"ImageNet weights {path} have {len(indices)} feature convolutions, VGG-16 has 13: "
            "give torchvision's vgg16 (not vgg16_bn or another model) weights"
        )
    return [(state[f"features.{i}.weight"], state[f"features.{i}.bias"]) for i in indices]


@torch.no_grad()
def copy_into_trunk(trunk: VGG16Trunk, convolutions: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Copy VGG-16 convolution weights into ``trunk``, inflating them for a 3D trunk."""
    targets = trunk.convolutions()
    for index, (target, (weight, bias)) in enumerate(zip(targets, convolutions)):
        if trunk.spatial_dims == 3:
            weight = weight.unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3.0
        if target.weight.shape != weight.shape:
            raise InputError(
                f"ImageNet convolution {index + 1} has shape {tuple(weight.shape)}, the trunk "
                f"expects {tuple(target.weight.shape)}: use width 1.0 with 3-channel inputs"
            )
        target.weight.copy_(weight)
        target.bias.copy_(bias)
