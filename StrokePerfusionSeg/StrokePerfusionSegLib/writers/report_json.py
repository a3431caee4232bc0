"""The machine-readable report of one segmented study (JSON, no patient identifiers).

Layout (``schema`` 1)::

    {"schema": 1, "software": {"name", "version"}, "study": {"id", "shape_zyx", "spacing_zyx_mm",
     "nihss"}, "inputs": {...Study.source}, "method": {"name": "dl"|"threshold", "model_id",
     "model_version", "device"}, "volumes": {"core_ml", "penumbra_ml", "hypoperfused_ml",
     "mismatch_ratio", "mismatch_volume_ml", "target_mismatch": {...flags}, "criteria": {...},
     "caveat"}, "timings_s": {...}, "notes": [...], "outputs": {...file names}}

``study.id`` is the label the user gave (folder or file name); no DICOM patient attribute is
ever copied into the report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import __version__
from ..volumes import LesionVolumes
from ..atomic import write_file_atomically

SCHEMA_VERSION = 1


def build_report(
    study,
    volumes: LesionVolumes,
    *,
    method: str,
    model_id: str | None = None,
    model_version: str | None = None,
    device: str | None = None,
    timings_s: Mapping[str, float] | None = None,
    notes: Sequence[str] = (),
    outputs: Mapping[str, str] | None = None,
) -> dict:
    """The report dictionary of a study (:class:`~StrokePerfusionSegLib.studyio.Study`)."""
    return {
        "schema": SCHEMA_VERSION,
        "software": {"name": "StrokePerfusionSeg", "version": __version__},
        "study": {
            "id": study.study_id,
            "shape_zyx": list(study.shape),
            "spacing_zyx_mm": [round(float(s), 6) for s in study.geometry.spacing_zyx],
            "nihss": study.nihss,
        },
        "inputs": study.source,
        "method": {"name": method, "model_id": model_id, "model_version": model_version, "device": device},
        "volumes": volumes.to_dict(),
        "timings_s": {k: round(float(v), 4) for k, v in (timings_s or {}).items()},
        "notes": list(notes),
        "outputs": dict(outputs or {}),
    }


def write_report_json(report: Mapping, path: str | os.PathLike) -> Path:
    """Write ``report`` as indented JSON, atomically."""

    def write(temporary: Path) -> None:
        temporary.write_text(json.dumps(report, indent=2) + "\n")

    return write_file_atomically(path, write)
