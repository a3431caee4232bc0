"""Terminology of the lesion segments: the context every output names, Slicer's entry strings
and the ``.term.json`` file, all generated from :data:`~StrokePerfusionSegLib.labels.LESION_SEGMENTS`.

The penumbra has no SNOMED CT concept, so its type is a private ``99SPS`` code: that is why the
segments live in a context of their own, :data:`TERMINOLOGY_CONTEXT`, which the module loads
into Slicer's Terminologies from :data:`TERMINOLOGY_FILE`. The ``.seg.nrrd`` writer, the MRML
segments and the terminology file all use this one context.
"""

from __future__ import annotations

import json
from pathlib import Path

from .labels import LESION_SEGMENTS, SegmentSpec

#: Terminology context of the lesion segments.
TERMINOLOGY_CONTEXT = "StrokePerfusionSeg lesions"
#: The context as a file Slicer's Terminologies logic loads (kept equal to :func:`terminology_json_text`).
TERMINOLOGY_FILE = Path(__file__).resolve().parents[1] / "Resources" / "StrokePerfusionSeg.term.json"
DCMQI_CONTEXT_SCHEMA = (
    "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/schemas/segment-context-schema.json#"
)


def _code(code: tuple[str, str, str]) -> str:
    value, scheme, meaning = code
    return f"{scheme}^{value}^{meaning}"


def terminology_entry(spec: SegmentSpec) -> str:
    """Slicer's serialized terminology entry of a lesion segment (context~category~type~...)."""
    return f"{TERMINOLOGY_CONTEXT}~{_code(spec.category)}~{_code(spec.type)}~^^~~^^~^^"


def terminology_document() -> dict:
    """The ``.term.json`` content (dcmqi segment-context schema) of the lesion segments."""
    categories: dict[tuple, dict] = {}
    for spec in LESION_SEGMENTS:
        value, scheme, meaning = spec.category
        category = categories.setdefault(
            spec.category,
            {"CodingSchemeDesignator": scheme, "CodeValue": value, "CodeMeaning": meaning,
             "showAnatomy": "false", "Type": []},
        )
        value, scheme, meaning = spec.type
        category["Type"].append(
            {
                "CodingSchemeDesignator": scheme,
                "CodeValue": value,
                "CodeMeaning": meaning,
                "recommendedDisplayRGBValue": [round(c * 255) for c in spec.color],
                "3dSlicerLabel": spec.name,
            }
        )
    return {
        "@schema": DCMQI_CONTEXT_SCHEMA,
        "SegmentationCategoryTypeContextName": TERMINOLOGY_CONTEXT,
        "SegmentationCodes": {"Category": list(categories.values())},
    }


def terminology_json_text() -> str:
    """The ``.term.json`` file content written to :data:`TERMINOLOGY_FILE`."""
    return json.dumps(terminology_document(), indent=2) + "\n"
