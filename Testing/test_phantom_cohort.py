"""Phantom cohorts on disk: files, geometry, units, split, and the `phantom` command line."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import SimpleITK as sitk

from StrokePerfusionSegLib import cli, labels
from StrokePerfusionSegLib.casefolder import load_case, load_cohort
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.mapspecs import MAP_NAMES
from StrokePerfusionSegLib.perfusion import compute_perfusion_maps
from StrokePerfusionSegLib.phantom import (PhantomConfig, assign_groups, generate_cohort, load_truth,
                                           parse_groups, split_patients)


def test_tiny_cohort_files_read_back_with_simpleitk(tiny_cohort):
    cohort = load_cohort(tiny_cohort)
    assert sorted(cohort.ids()) == ["P0001", "P0002", "P0003"]
    assert sorted(c["group"] for c in cohort.cases) == ["LVO", "NonLVO", "WIS"]
    folder = cohort.case_folder(cohort.ids(group="LVO")[0])
    ctp = sitk.ReadImage(str(folder / "ctp.nii.gz"))
    assert ctp.GetDimension() == 4 and ctp.GetSize() == (64, 64, 4, 30)
    np.testing.assert_allclose(ctp.GetSpacing(), (220 / 64, 220 / 64, 5.0, 1.0), rtol=1e-5)
    for name in MAP_NAMES:
        image = sitk.ReadImage(str(folder / f"{name}.nii.gz"))
        assert image.GetPixelID() == sitk.sitkFloat32 and image.GetSize() == (64, 64, 4)
        np.testing.assert_allclose(image.GetSpacing(), (220 / 64, 220 / 64, 5.0), rtol=1e-5)
        assert np.isfinite(sitk.GetArrayViewFromImage(image)).all()
        rgb = sitk.ReadImage(str(folder / f"{name}_rgb.nii.gz"))
        assert rgb.GetNumberOfComponentsPerPixel() == 3 and rgb.GetPixelID() == sitk.sitkVectorUInt8
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "label.nii.gz")))
    assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1, 2, 3}
    document = json.loads((folder / "case.json").read_text())
    assert document["group"] == "LVO" and 0 <= document["nihss"] <= 42 and document["dt_s"] == 1.0
    assert document["units"]["cbf"] == "ml/100g/min" and document["units"]["ctp"] == "HU"
    assert document["source"]["seed"] > 0 and document["source"]["maps"] == "computed"


def test_truth_maps_are_written_beside_the_case(tiny_cohort):
    folder = tiny_cohort / "P0001"
    truth = load_truth(folder)
    assert set(truth) == {"cbf", "cbv", "mtt", "delay", "dispersion", "tmax"}
    case = load_case(folder)
    assert all(values.shape == case.shape for values in truth.values())
    assert truth["cbf"][case.label == labels.BRAIN].mean() > 15.0


def test_lvo_case_fixture_holds_ctp_rgb_and_label(lvo_case):
    assert lvo_case.group == "LVO" and lvo_case.ctp.shape == (30, 4, 64, 64)
    assert set(lvo_case.rgb) == set(MAP_NAMES) and lvo_case.label.max() == labels.CORE


def test_paper_proportions_and_stratified_split():
    rng = np.random.default_rng(0)
    groups = assign_groups(152, PhantomConfig(), rng)
    assert Counter(groups) == {"LVO": 77, "NonLVO": 60, "WIS": 15}
    splits = split_patients(groups, (0.58, 0.20, 0.22), rng)
    counts = Counter(splits)
    assert abs(counts["train"] - 89) <= 2 and abs(counts["val"] - 30) <= 2 and abs(counts["test"] - 33) <= 2
    for group in ("LVO", "NonLVO", "WIS"):
        in_group = [s for g, s in zip(groups, splits) if g == group]
        assert set(in_group) == {"train", "val", "test"}
    assert assign_groups(5, PhantomConfig(), rng, ("WIS", "LVO")) == ["WIS", "LVO", "WIS", "LVO", "WIS"]


def test_cohort_is_deterministic_and_refuses_existing_folder(tmp_path):
    config = PhantomConfig(size=32, slices=2, frames=12, maps="truth", with_rgb=False)
    first = generate_cohort(tmp_path / "a", 2, 9, config)
    second = generate_cohort(tmp_path / "b", 2, 9, config)
    index = [json.loads((root / "cohort.json").read_text())["cases"] for root in (first, second)]
    assert index[0] == index[1]
    a, b = (load_case(root / "P0002", with_ctp=True) for root in (first, second))
    np.testing.assert_array_equal(a.ctp, b.ctp)
    with pytest.raises(InputError, match="already exists"):
        generate_cohort(first, 1, 9, config)
    with pytest.raises(InputError, match="patients"):
        generate_cohort(tmp_path / "c", 0, 9, config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # nothing partial left


def test_parse_groups():
    assert parse_groups("LVO, WIS") == ("LVO", "WIS")
    for bad in ("", "LVO,stroke", ","):
        with pytest.raises(InputError, match="--groups"):
            parse_groups(bad)


def test_cli_writes_a_cohort_end_to_end(tmp_path, capsys):
    out = tmp_path / "cohort"
    arguments = ["phantom", "--out", str(out), "--patients", "2", "--seed", "3", "--size", "32", "--slices", "2",
                 "--frames", "12", "--dt", "1.5", "--maps", "truth", "--groups", "NonLVO,LVO"]
    assert cli.main(arguments) == 0
    cohort = load_cohort(out)
    assert [c["group"] for c in cohort.cases] == ["NonLVO", "LVO"]
    case = load_case(cohort.case_folder("P0002"), with_ctp=True)
    assert case.ctp.shape == (12, 2, 32, 32) and case.dt_s == 1.5
    assert "wrote 2 patients" in capsys.readouterr().out
    # Same folder again: a one-line error, exit 2, the cohort untouched.
    assert cli.main(arguments) == 2
    assert "already exists" in capsys.readouterr().err
    assert len(load_cohort(out).cases) == 2


def test_cli_perfusion_method_makes_and_records_the_maps(tmp_path):
    out = tmp_path / "cohort"
    assert cli.main(["phantom", "--out", str(out), "--patients", "1", "--seed", "5", "--size", "48", "--slices", "2",
                     "--frames", "24", "--groups", "LVO", "--perfusion-method", "bcsvd"]) == 0
    case = load_case(out / "P0001", with_ctp=True)
    assert case.meta["source"]["map_method"] == "bcsvd"
    plain = compute_perfusion_maps(case.ctp, case.dt_s, case.geometry.spacing_zyx, method="bcsvd", correct_bias=False)
    corrected = compute_perfusion_maps(case.ctp, case.dt_s, case.geometry.spacing_zyx, method="bcsvd")
    # 24 frames end before the washout, so the correction changes only Tmax here.
    brain = (plain.maps["tmax"] > 0) & (case.maps["tmax"] > 0)
    errors = [np.median(np.abs(case.maps["tmax"][brain] / m.maps["tmax"][brain] - 1)) for m in (plain, corrected)]
    assert errors[0] < 0.1 and 5 * errors[0] < errors[1], errors


@pytest.mark.parametrize("bad", [
    ["--groups", "LVO,Stroke"], ["--patients", "0"], ["--size", "4"], ["--slices", "1"], ["--maps", "vendor"],
    ["--perfusion-method", "model+correction"],
])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, bad):
    arguments = ["phantom", "--out", str(tmp_path / "c"), "--patients", "1", "--seed", "1", "--size", "32",
                 "--slices", "2", "--frames", "12", "--maps", "truth"]
    arguments += bad
    if bad[0] == "--maps":  # argparse rejects the choice itself
        with pytest.raises(SystemExit) as stop:
            cli.main(arguments)
        assert stop.value.code == 2
    else:
        assert cli.main(arguments) == 2
        assert capsys.readouterr().err.startswith("error: ")
    assert list(tmp_path.iterdir()) == []
