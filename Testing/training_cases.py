"""Splits of the shared tiny phantom cohort for the training tests.

Its three patients (one per group) all fall in the phantom's train split (a group of one goes
to train), so the training tests give them their own split: LVO and WIS train, Non-LVO
validates.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

SPLIT_BY_GROUP = {"LVO": "train", "WIS": "train", "NonLVO": "val"}


def split_case_list(cohort: Path, folder: Path) -> Path:
    """A CSV case list of ``cohort`` with :data:`SPLIT_BY_GROUP`, written in ``folder``."""
    cases = json.loads((cohort / "cohort.json").read_text())["cases"]
    path = folder / "cases.csv"
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["case", "nihss", "group", "split"])
        for case in cases:
            writer.writerow([cohort / case["id"], case["nihss"], case["group"], SPLIT_BY_GROUP[case["group"]]])
    return path


def resplit_cohort(cohort: Path) -> Path:
    """Rewrite ``cohort.json`` of a writable cohort copy with :data:`SPLIT_BY_GROUP`."""
    index = json.loads((cohort / "cohort.json").read_text())
    for case in index["cases"]:
        case["split"] = SPLIT_BY_GROUP[case["group"]]
    (cohort / "cohort.json").write_text(json.dumps(index))
    return cohort
