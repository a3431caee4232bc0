"""``ModelConfig``: the hyper-parameters that define a segmentation network.

A config is what a model bundle records in ``model.json`` (:meth:`ModelConfig.to_dict`) and what
:func:`~StrokePerfusionSegLib.networks.build_model` turns back into a network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..encoding import ENCODINGS
from ..errors import InputError
from ..labels import NUM_CLASSES
from ..mapspecs import MAP_NAMES, PERFUSION_MAP_INPUTS

#: Architectures: slow fusion (one trunk per input), early fusion, inflated early fusion.
ARCHITECTURES = ("SF", "EF", "EFI")
#: Output resolution divisor of the VGG-16 trunk (five 2x2 poolings).
TRUNK_STRIDE = 32


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a segmentation network.

    Parameters
    ----------
    arch : {"SF", "EF", "EFI"}
        ``SF`` slow fusion (one VGG-16 trunk per image input, the paper's proposed model),
        ``EF`` early fusion (inputs stacked on channels), ``EFI`` inflated early fusion
        (inputs stacked on a depth axis, I3D-style 3D trunk).
    inputs : tuple of str
        Image inputs in branch order, names from :data:`StrokePerfusionSegLib.mapspecs.MAP_NAMES`.
        The paper's "PMs" are ``("cbf", "cbv", "ttp", "tmax")``; "PMs+M" appends ``"mip"``.
    use_nihss : bool
        Feed the NIHSS score (0..42) at the bottleneck.
    width : float
        Channel multiplier of every convolution (1.0 = the paper; 0.125 or less for CPU work).
        Scaled channel counts are rounded and never fall below 4.
    image_size : int
        Side of the square network input in pixels, a multiple of 32.
    num_classes : {3, 4}
        4: background, brain, penumbra, core (the label values of :mod:`..labels`);
        3: healthy tissue, penumbra, core (background is then decided by the brain mask alone).
    dropout : float
        Dropout probability after each branch's bottleneck convolutions.
    encoding : {"rgb", "scalar"}
        Input encoding the model was trained with.
    """

    arch: str = "SF"
    inputs: tuple[str, ...] = PERFUSION_MAP_INPUTS
    use_nihss: bool = False
    width: float = 1.0
    image_size: int = 512
    num_classes: int = NUM_CLASSES
    dropout: float = 0.25
    encoding: str = "rgb"

    def __post_init__(self):
        if not (isinstance(self.inputs, (list, tuple)) and all(isinstance(name, str) for name in self.inputs)):
            raise InputError(f"model inputs {self.inputs!r} are not a list of map names: e.g. cbf,cbv,ttp,tmax")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.arch not in ARCHITECTURES:
            raise InputError(
                f"unknown architecture '{self.arch}': use one of {', '.join(ARCHITECTURES)}"
            )
        if not self.inputs:
            raise InputError("a model needs at least one image input: e.g. cbf,cbv,ttp,tmax")
        unknown = [name for name in self.inputs if name not in MAP_NAMES]
        if unknown:
            raise InputError(
                f"unknown model input '{unknown[0]}': use names from {', '.join(MAP_NAMES)}"
            )
        if len(set(self.inputs)) != len(self.inputs):
            raise InputError(f"model inputs {','.join(self.inputs)} repeat a map: list each once")
        if not isinstance(self.use_nihss, bool):
            raise InputError(f"use_nihss must be true or false, got {self.use_nihss!r}")
        if not (isinstance(self.width, (int, float)) and 0.0 < self.width <= 4.0):
            raise InputError(f"width {self.width!r} out of range: use a multiplier in (0, 4]")
        if (
            not isinstance(self.image_size, int)
            or self.image_size < TRUNK_STRIDE
            or self.image_size % TRUNK_STRIDE
        ):
            raise InputError(
                f"image size {self.image_size!r} is not a positive multiple of {TRUNK_STRIDE}: "
                "use e.g. 512, 256 or 64"
            )
        if self.num_classes not in (3, 4):
            raise InputError(f"num_classes {self.num_classes!r} not supported: use 3 or 4")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout {self.dropout!r} out of range: use 0 <= dropout < 1")
        if self.encoding not in ENCODINGS:
            raise InputError(
                f"unknown input encoding '{self.encoding}': use one of {', '.join(ENCODINGS)}"
            )

    @property
    def bottleneck_size(self) -> int:
        """Side in pixels of the feature maps after the trunk's last pooling."""
        return self.image_size // TRUNK_STRIDE

    def channels(self, reference: int) -> int:
        """``reference`` channels (the paper's count at width 1.0) scaled by :attr:`width`."""
        return max(4, int(round(reference * self.width)))

    def to_dict(self) -> dict:
        """JSON-ready dictionary (``inputs`` as a list)."""
        values = asdict(self)
        values["inputs"] = list(self.inputs)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an :class:`InputError`."""
        if not isinstance(values, dict):
            raise InputError(f"model config must be a JSON object, got {type(values).__name__}")
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(
                f"unknown model config key '{unknown[0]}': this version knows {', '.join(sorted(known))}"
            )
        return cls(**values)
