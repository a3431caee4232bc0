"""What the values of a case's ``label.nii.gz`` mean: the label scheme a dataset declares.

The network always predicts the four classes of :mod:`.labels` (background, brain, penumbra,
core). Public datasets rarely label all four: ISLES 2018 marks the infarct on DWI taken
shortly after the CTP (core only), ISLES 2024 the final infarct on follow-up MRI, UniToBrain
no lesion at all. A scheme says, for every stored label value, which of the four classes the
voxel may belong to. Training uses it to compare the network's summed probabilities of those
classes with the label (a marginal loss, :func:`.losses.marginal_log_probabilities`), so it
never teaches a class the dataset does not label; evaluation reports only the targets the
scheme lists.

A case folder names its scheme in ``case.json`` (``"label_scheme"``); folders without one are
fully labelled (``core_penumbra``), as the phantom's are.

What a final infarct means depends on reperfusion: after good reperfusion (mTICI 2b-3) the
tissue that dies is about the core at admission, without it (mTICI 0-2a) about core plus
penumbra. ISLES 2024 cases whose reperfusion is known get the scheme that says so
(``final_infarct_reperfused`` / ``final_infarct_not_reperfused``, :func:`final_infarct_scheme`);
the three final-infarct schemes form one family, which evaluation may mix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .labels import BACKGROUND, BRAIN, CORE, NUM_CLASSES, PENUMBRA

DEFAULT_SCHEME = "core_penumbra"


@dataclass(frozen=True)
class EvaluationTarget:
    """One comparison evaluation may report: predicted classes against stored label values."""

    name: str
    predicted: tuple[int, ...]
    stored: tuple[int, ...]


@dataclass(frozen=True)
class LabelScheme:
    """The meaning of stored label values.

    Attributes
    ----------
    name : str
    description : str
        One line for reports and ``docs/datasets.md``.
    classes : dict of int to tuple of int
        Stored value -> the network classes a voxel with that value may be. Each stored value
        lies among its own classes, so the loss weighs it with that class's weight.
    targets : tuple of EvaluationTarget
        What evaluation reports (none: the labels support no lesion metric).
    family : str
        Schemes of one family may be mixed in one evaluation (its targets joined); default:
        the scheme's own name.
    """

    name: str
    description: str
    classes: dict
    targets: tuple = ()
    family: str = ""

    def __post_init__(self):
        if not self.family:
            object.__setattr__(self, "family", self.name)

    @property
    def is_complete(self) -> bool:
        """True when every stored value names exactly one class (nothing to marginalise)."""
        return all(classes == (value,) for value, classes in self.classes.items())

    @property
    def has_lesion_labels(self) -> bool:
        return bool(self.targets)

    def class_sets(self) -> np.ndarray:
        """``(NUM_CLASSES, NUM_CLASSES)`` float32: row = stored value, 1 where the class is allowed.

        Stored values the scheme does not use get an all-zero row.
        """
        table = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.float32)
        for value, classes in self.classes.items():
            table[value, list(classes)] = 1.0
        return table

    def check_values(self, label: np.ndarray, what: str) -> None:
        """:class:`InputError` when ``label`` holds a value the scheme does not define."""
        found = set(np.unique(label).tolist())
        unknown = sorted(found - set(self.classes))
        if unknown:
            raise InputError(
                f"{what}: label values {unknown} are not defined by its label scheme '{self.name}' "
                f"(values {sorted(self.classes)}); relabel it or declare another scheme in case.json"
            )


INFARCT_VS_CORE = EvaluationTarget("infarct_vs_core", (CORE,), (CORE,))
INFARCT_VS_CORE_PENUMBRA = EvaluationTarget("infarct_vs_core_penumbra", (PENUMBRA, CORE), (CORE,))

SCHEMES = {
    scheme.name: scheme
    for scheme in (
        LabelScheme(
            "core_penumbra",
            "background, brain, penumbra and core all labelled (the phantom, RAPID-style references)",
            {BACKGROUND: (BACKGROUND,), BRAIN: (BRAIN,), PENUMBRA: (PENUMBRA,), CORE: (CORE,)},
            (EvaluationTarget("penumbra", (PENUMBRA,), (PENUMBRA,)), EvaluationTarget("core", (CORE,), (CORE,))),
        ),
        LabelScheme(
            "core",
            "ischemic core only (infarct on DWI acquired shortly after the CTP); the rest of the "
            "brain may be brain or penumbra",
            {BACKGROUND: (BACKGROUND,), BRAIN: (BRAIN, PENUMBRA), CORE: (CORE,)},
            (EvaluationTarget("core", (CORE,), (CORE,)),),
        ),
        LabelScheme(
            "final_infarct",
            "final infarct on follow-up imaging, reperfusion unknown: infarcted tissue was penumbra or core "
            "at admission, the rest of the brain brain or salvaged penumbra",
            {BACKGROUND: (BACKGROUND,), BRAIN: (BRAIN, PENUMBRA), CORE: (PENUMBRA, CORE)},
            # Which prediction the final infarct should match depends on reperfusion: both are reported.
            (INFARCT_VS_CORE, INFARCT_VS_CORE_PENUMBRA),
        ),
        LabelScheme(
            "final_infarct_reperfused",
            "final infarct after good reperfusion (mTICI 2b-3): about the core at admission; the rest of "
            "the brain was brain or penumbra that reperfusion saved",
            {BACKGROUND: (BACKGROUND,), BRAIN: (BRAIN, PENUMBRA), CORE: (CORE,)},
            (INFARCT_VS_CORE, INFARCT_VS_CORE_PENUMBRA, EvaluationTarget("infarct_vs_expected", (CORE,), (CORE,))),
            family="final_infarct",
        ),
        LabelScheme(
            "final_infarct_not_reperfused",
            "final infarct without good reperfusion (mTICI 0-2a): about core plus penumbra at admission; "
            "the rest of the brain was not at risk",
            {BACKGROUND: (BACKGROUND,), BRAIN: (BRAIN,), CORE: (PENUMBRA, CORE)},
            (INFARCT_VS_CORE, INFARCT_VS_CORE_PENUMBRA,
             EvaluationTarget("infarct_vs_expected", (PENUMBRA, CORE), (CORE,))),
            family="final_infarct",
        ),
        LabelScheme(
            "none",
            "no lesion label (reference perfusion maps only)",
            {BACKGROUND: (BACKGROUND,), BRAIN: (BRAIN, PENUMBRA, CORE)},
        ),
    )
}


def label_scheme(name: str | None) -> LabelScheme:
    """The scheme called ``name`` (None: :data:`DEFAULT_SCHEME`)."""
    name = DEFAULT_SCHEME if name is None else name
    if name not in SCHEMES:
        raise InputError(f"unknown label scheme '{name}': use one of {', '.join(SCHEMES)}")
    return SCHEMES[name]


def final_infarct_scheme(reperfused: bool | None) -> str:
    """The final-infarct scheme's name for a case whose reperfusion was good (True), poor
    (False) or is unknown (None)."""
    return {True: "final_infarct_reperfused", False: "final_infarct_not_reperfused", None: "final_infarct"}[reperfused]
