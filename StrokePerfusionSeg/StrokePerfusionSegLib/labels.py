"""Class labels, names and colours: the one source of truth for every file, tensor and report."""

from __future__ import annotations

from dataclasses import dataclass

BACKGROUND = 0
BRAIN = 1
PENUMBRA = 2
CORE = 3

#: Label value -> human-readable class name.
CLASS_NAMES = {BACKGROUND: "background", BRAIN: "brain", PENUMBRA: "penumbra", CORE: "core"}
NUM_CLASSES = 4


@dataclass(frozen=True)
class SegmentSpec:
    """How one lesion class appears as a Slicer segment / DICOM SEG segment.

    Colours are RGB in 0..1. Codes are SNOMED CT (scheme ``SCT``) as used by DICOM SEG and
    Slicer terminologies; the penumbra has no SNOMED CT concept, so it takes a private
    ``99SPS`` code (``docs/slicer.md``, Terminology).
    """

    label: int
    segment_id: str
    name: str
    color: tuple[float, float, float]
    category: tuple[str, str, str]  # (code value, scheme, meaning)
    type: tuple[str, str, str]


#: The two segments the product outputs, in display order.
LESION_SEGMENTS = (
    SegmentSpec(
        label=CORE,
        segment_id="IschemicCore",
        name="Ischemic core",
        color=(0.85, 0.10, 0.10),
        category=("49755003", "SCT", "Morphologically Altered Structure"),
        type=("55641003", "SCT", "Infarct"),
    ),
    SegmentSpec(
        label=PENUMBRA,
        segment_id="Penumbra",
        name="Penumbra",
        color=(0.20, 0.55, 0.95),
        category=("49755003", "SCT", "Morphologically Altered Structure"),
        # No SNOMED CT concept for the penumbra exists; "99" schemes are DICOM's private codes.
        type=("PENUMBRA", "99SPS", "Ischemic penumbra"),
    ),
)
SEGMENT_BY_LABEL = {spec.label: spec for spec in LESION_SEGMENTS}
