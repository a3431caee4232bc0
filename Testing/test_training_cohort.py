"""`strokeperfusionseg-train cohort`: the perfusion method(s) of the maps and test-split-only cohorts."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from StrokePerfusionSegLib.casefolder import load_case, load_cohort
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.perfusion import compute_perfusion_maps
from StrokePerfusionSegLib.phantom import PhantomConfig, generate_cohort, parse_perfusion_methods
from strokeperfusionseg_training.__main__ import main as train_main

#: 48 x 48 pixels, 2 slices, 24 frames: seconds per patient, maps computed from the CTP.
SMALL = ["--size", "48", "--slices", "2", "--frames", "24", "--workers", "1"]


def _rows(csv_path):
    with open(csv_path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_parse_perfusion_methods():
    assert parse_perfusion_methods("bcsvd+correction, model") == (
        {"perfusion_method": "bcsvd", "correct_bias": True},
        {"perfusion_method": "model", "correct_bias": False},
    )
    assert parse_perfusion_methods("osvd,osvd") == ({"perfusion_method": "osvd", "correct_bias": False},)
    for bad in ("", "model+correction", "svd", "bcsvd+corr"):
        with pytest.raises(InputError, match="--perfusion-method"):
            parse_perfusion_methods(bad)
    assert PhantomConfig(perfusion_method="bcsvd").map_method == "bcsvd+correction"
    assert PhantomConfig(perfusion_method="bcsvd", correct_bias=False).map_method == "bcsvd"
    assert PhantomConfig(perfusion_method="model").map_method == "model"


def test_each_patient_gets_maps_of_its_drawn_method(tmp_path):
    out = tmp_path / "mixed"
    arguments = ["cohort", "--out", str(out), "--patients", "4", "--seed", "5", "--with-ctp", *SMALL]
    assert train_main([*arguments, "--perfusion-method", "bcsvd+correction,model"]) == 0
    cases = [load_case(out / row["case"], with_ctp=True, with_label=True) for row in _rows(out / "cases.csv")]
    drawn = [case.meta["source"]["map_method"] for case in cases]
    assert sorted(set(drawn)) == ["bcsvd+correction", "model"]
    assert json.loads((out / "part-0" / "cohort.json").read_text())["perfusion_methods"] == [
        "bcsvd+correction", "model"]
    for case, label in zip(cases, drawn):
        # Recomputed from the stored (rounded) CTP, the drawn method's CBF is the closer by far.
        errors = {}
        for method, correct in (("bcsvd", True), ("model", False)):
            again = compute_perfusion_maps(case.ctp, case.dt_s, case.geometry.spacing_zyx, method=method,
                                           correct_bias=correct).maps["cbf"]
            both = (again > 0) & (case.maps["cbf"] > 0)
            errors[method + "+correction" * correct] = np.median(np.abs(case.maps["cbf"][both] / again[both] - 1))
        assert errors[label] < 0.1 and 5 * errors[label] < max(errors.values()), errors
    # The same patients with one method: same CTP and label, the maps of the other method differ.
    single = tmp_path / "single"
    assert train_main([*arguments[:2], str(single), *arguments[3:], "--perfusion-method", "bcsvd+correction"]) == 0
    for case, label in zip(cases, drawn):
        same = load_case(single / "part-0" / case.case_id, with_ctp=True, with_label=True)
        np.testing.assert_array_equal(same.ctp, case.ctp)
        np.testing.assert_array_equal(same.label, case.label)
        assert same.nihss == case.nihss
        assert np.array_equal(same.maps["cbf"], case.maps["cbf"]) == (label == "bcsvd+correction")


def test_only_the_test_split_of_the_same_cohort(tmp_path):
    config = PhantomConfig(size=32, slices=2, frames=12, maps="truth", with_rgb=False)
    full = load_cohort(generate_cohort(tmp_path / "full", 10, 3, config))
    test = load_cohort(generate_cohort(tmp_path / "test", 10, 3, config, only_splits=("test",)))
    expected = [c for c in full.cases if c["split"] == "test"]
    assert expected and test.cases == expected
    for entry in expected:
        a, b = (load_case(c.case_folder(entry["id"]), with_label=True) for c in (full, test))
        np.testing.assert_array_equal(a.label, b.label)
        np.testing.assert_array_equal(a.maps["tmax"], b.maps["tmax"])
    with pytest.raises(InputError, match="split"):
        generate_cohort(tmp_path / "none", 1, 3, config, only_splits=("test",))
    with pytest.raises(InputError, match="unknown split"):
        generate_cohort(tmp_path / "bad", 4, 3, config, only_splits=("holdout",))


@pytest.mark.parametrize("bad, message", [
    (["--perfusion-method", "model+correction"], "--perfusion-method"),
    (["--only-split", "test", "--split-seed", "1"], "--split-seed"),
])
def test_bad_cohort_options_exit_2_and_write_nothing(tmp_path, capsys, bad, message):
    out = tmp_path / "c"
    assert train_main(["cohort", "--out", str(out), "--patients", "2", "--seed", "1", *SMALL, *bad]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
