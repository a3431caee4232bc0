"""Settings of the digital CT-perfusion phantom (acquisition, maps, cohort make-up)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..casefolder import GROUPS
from ..errors import InputError
from ..perfusionmethods import DEFAULT_METHOD, METHODS
from ..perfusion.curves import CORRECTABLE

MAP_SOURCES = ("computed", "truth")
#: Suffix of a perfusion-method name that asks for the SVD bias correction ("bcsvd+correction").
CORRECTION_SUFFIX = "+correction"

#: Group proportions of the paper's cohort (77 LVO, 60 Non-LVO, 15 WIS of 152 patients).
PAPER_GROUP_COUNTS = {"LVO": 77, "NonLVO": 60, "WIS": 15}
#: Patient-level split fractions of the paper (89/30/33 of 152).
PAPER_SPLIT = (0.58, 0.20, 0.22)


@dataclass(frozen=True)
class PhantomConfig:
    """What the phantom simulates and how.

    Attributes
    ----------
    size : int
        In-plane matrix (pixels per side). The field of view stays ``fov_mm``, so 512 gives
        0.43 mm pixels (the paper's scanner) and smaller sizes give larger pixels.
    slices : int
        Number of axial slices (13-27 is typical for CTP; any >= 2 is allowed).
    frames : int
        Number of time frames (>= 10).
    dt_s : float
        Frame interval in s (may be non-integer).
    noise_hu : float
        Standard deviation of the quantum noise added to every voxel of every frame, in HU.
    maps : {"computed", "truth"}
        ``computed``: maps from the simulated CTP by
        :func:`StrokePerfusionSegLib.perfusion.compute_perfusion_maps`; ``truth``: the
        simulated tissue parameters themselves (faster; no perfusion analysis needed).
    perfusion_method : {"bcsvd", "osvd", "tikhonov", "model"}
        Deconvolution used when ``maps == "computed"`` (default: the product's,
        :data:`~StrokePerfusionSegLib.perfusionmethods.DEFAULT_METHOD`).
    correct_bias : bool
        Apply the exponential-residue bias correction to the SVD methods' maps
        (``compute_perfusion_maps(correct_bias=...)``; the model fit has none).
    fov_mm : float
        In-plane field of view in mm.
    slice_mm : float
        Slice thickness and spacing in mm.
    with_ctp, with_rgb : bool
        Keep the 4D CTP and the colour-coded map copies in the returned case (and its folder).
    group_counts : dict
        Relative group frequencies used when a cohort's groups are not given.
    split : (train, val, test)
        Fractions of the patient-level split, applied within each group.
    """

    size: int = 512
    slices: int = 20
    frames: int = 40
    dt_s: float = 1.0
    noise_hu: float = 3.0
    maps: str = "computed"
    perfusion_method: str = DEFAULT_METHOD
    correct_bias: bool = True
    fov_mm: float = 220.0
    slice_mm: float = 5.0
    with_ctp: bool = True
    with_rgb: bool = True
    group_counts: dict = field(default_factory=lambda: dict(PAPER_GROUP_COUNTS))
    split: tuple = PAPER_SPLIT

    def __post_init__(self):
        self.validate()

    @property
    def pixel_mm(self) -> float:
        """In-plane pixel size in mm."""
        return self.fov_mm / self.size

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad setting and its allowed range."""
        _require(_whole(self.size, 16, 1024), f"--size must be a whole number 16..1024, got {self.size}")
        _require(_whole(self.slices, 2, 64), f"--slices must be a whole number 2..64, got {self.slices}")
        _require(_whole(self.frames, 10, 200), f"--frames must be a whole number 10..200, got {self.frames}")
        _require(_within(self.dt_s, 0.1, 5.0), f"--dt must be 0.1..5 s, got {self.dt_s}")
        _require(_within(self.noise_hu, 0.0, 100.0), f"--noise-hu must be 0..100 HU, got {self.noise_hu}")
        _require(self.maps in MAP_SOURCES, f"--maps must be one of {', '.join(MAP_SOURCES)}, got '{self.maps}'")
        _require(self.perfusion_method in METHODS,
                 f"perfusion method must be one of {', '.join(METHODS)}, got '{self.perfusion_method}'")
        _require(isinstance(self.correct_bias, bool), f"correct_bias must be true or false, got {self.correct_bias!r}")
        _require(_within(self.fov_mm, 150.0, 400.0), f"field of view must be 150..400 mm, got {self.fov_mm}")
        _require(_within(self.slice_mm, 0.5, 10.0), f"slice thickness must be 0.5..10 mm, got {self.slice_mm}")
        counts = self.group_counts
        _require(set(counts) <= set(GROUPS) and all(v >= 0 for v in counts.values()) and sum(counts.values()) > 0,
                 f"group counts must be >= 0 for groups {', '.join(GROUPS)}, got {counts}")
        _require(len(self.split) == 3 and all(f >= 0 for f in self.split)
                 and math.isclose(sum(self.split), 1.0, abs_tol=1e-6),
                 f"split must be three fractions (train, val, test) summing to 1, got {self.split}")

    @property
    def map_method(self) -> str:
        """The maps' method as :func:`parse_perfusion_methods` spells it (``"bcsvd+correction"``)."""
        corrected = self.correct_bias and self.perfusion_method in CORRECTABLE
        return self.perfusion_method + (CORRECTION_SUFFIX if corrected else "")

    def to_dict(self) -> dict:
        """JSON-ready settings (recorded in every ``case.json``)."""
        document = asdict(self)
        document["split"] = list(self.split)
        return document


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


def _whole(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _within(value, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high


def parse_groups(text: str) -> tuple[str, ...]:
    """``"LVO,NonLVO"`` -> ``("LVO", "NonLVO")``; an :class:`InputError` for unknown names."""
    groups = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [g for g in groups if g not in GROUPS]
    if not groups or unknown:
        raise InputError(
            f"bad --groups '{text}': give a comma-separated list of {', '.join(GROUPS)}"
        )
    return tuple(dict.fromkeys(groups))


def parse_perfusion_methods(text: str) -> tuple[dict, ...]:
    """``"bcsvd+correction,model"`` -> ``({"perfusion_method": "bcsvd", "correct_bias": True}, ...)``.

    Each name is a method of :data:`StrokePerfusionSegLib.perfusion.METHODS`, for an SVD method
    optionally followed by ``+correction`` (the exponential-residue bias correction); a bare
    SVD name means its plain maps. The dictionaries are :class:`PhantomConfig` fields.
    """
    spellings = [m + suffix for m in METHODS for suffix in ("", CORRECTION_SUFFIX) if m in CORRECTABLE or not suffix]
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in spellings]
    if not names or unknown:
        raise InputError(f"bad --perfusion-method '{text}': give a comma-separated list of {', '.join(spellings)}")
    return tuple({"perfusion_method": name.removesuffix(CORRECTION_SUFFIX),
                  "correct_bias": name.endswith(CORRECTION_SUFFIX)} for name in dict.fromkeys(names))
