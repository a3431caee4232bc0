"""The shipped per-dataset training configs load by name and fit their dataset's converted look-alike."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from StrokePerfusionSegLib.casefolder import load_case, load_cohort
from StrokePerfusionSegLib.phantom import lookalike
from strokeperfusionseg_training.__main__ import main as train_main
from strokeperfusionseg_training.experiments import plan_experiment
from strokeperfusionseg_training.trainer import fit

#: Shipped config -> (dataset, look-alike writer, what the config must say).
CONFIGS = {
    "isles2018_model": ("isles2018", lookalike.write_isles2018, {"use_nihss": False, "streaming": False}),
    "isles2024_model": ("isles2024", lookalike.write_isles2024, {"use_nihss": True, "streaming": True}),
}


@pytest.fixture(scope="module")
def phantom_cases(tiny_cohort):
    cohort = load_cohort(tiny_cohort)
    return [load_case(cohort.case_folder(i), with_ctp=True) for i in cohort.ids()]


def _converted(dataset, writer, cases, folder):
    """The look-alike converted by the command, with a CSV split: two train cases, one val."""
    assert train_main(["cohort", "--from", dataset, str(writer(cases, folder / "source")), "--out",
                       str(folder / "cohort"), "--no-progress"]) == 0
    ids = [entry["id"] for entry in load_cohort(folder / "cohort").cases]
    listing = folder / "cases.csv"
    with open(listing, "w", newline="") as stream:
        writer_ = csv.writer(stream)
        writer_.writerow(["case", "nihss", "group", "split"])
        for case_id, split in zip(sorted(ids), ("train", "val", "train")):
            entry = next(e for e in load_cohort(folder / "cohort").cases if e["id"] == case_id)
            writer_.writerow([f"cohort/{case_id}", "" if entry["nihss"] is None else entry["nihss"],
                              entry["group"], split])
    return listing


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_dataset_config_loads_by_name_and_fits_its_lookalike(name, phantom_cases, tmp_path):
    dataset, writer, expected = CONFIGS[name]
    _, (run,) = plan_experiment(name)
    assert run.config.model["use_nihss"] is expected["use_nihss"] and run.config.streaming is expected["streaming"]
    _, (short,) = plan_experiment(name, {"model.image_size": 32, "max_epochs": 1, "num_workers": 0})
    cases = _converted(dataset, writer, phantom_cases, tmp_path)
    summary = fit(short.config, cases, tmp_path / "run", device="cpu", progress=False)
    assert summary["epochs_run"] == {"all": 1} and np.isfinite(summary["best_val_loss"])
    assert summary["n_train_slices"] > 0 and (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
