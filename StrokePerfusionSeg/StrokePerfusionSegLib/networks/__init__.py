"""Segmentation networks of the paper: slow fusion (SF), early fusion (EF) and inflated early
fusion (EFI) over VGG-16 trunks, built from a :class:`ModelConfig`."""

from .config import ARCHITECTURES, ENCODINGS, ModelConfig
from .early_fusion import EarlyFusionNet
from .factory import build_model, to_channels_last
from .freezing import STAGES, set_trunk_trainable
from .pretrained import TORCHVISION_VGG16_FILE, torchvision_cache_file
from .slow_fusion import SlowFusionNet
from .vgg import SKIP_NAMES, VGG16Trunk

__all__ = [
    "ARCHITECTURES",
    "ENCODINGS",
    "STAGES",
    "SKIP_NAMES",
    "TORCHVISION_VGG16_FILE",
    "EarlyFusionNet",
    "ModelConfig",
    "SlowFusionNet",
    "VGG16Trunk",
    "build_model",
    "set_trunk_trainable",
    "to_channels_last",
    "torchvision_cache_file",
]
