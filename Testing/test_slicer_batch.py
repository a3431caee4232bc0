"""Headless batch script over case folders and flat map sets, run as CI runs it (plain Python + slicer-core)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("slicer", reason="slicer-core (the 'mrml' extra) is not installed")
slicerio = pytest.importorskip("slicerio")

from StrokePerfusionSegLib import batch  # noqa: E402
from StrokePerfusionSegLib.casefolder import load_case  # noqa: E402
from StrokePerfusionSegLib.imageio import Geometry  # noqa: E402
from StrokePerfusionSegLib.labels import CORE, PENUMBRA  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "StrokePerfusionSeg" / "Resources" / "Scripts" / "batch_segment.py"


def read_rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as stream:
        return {row["case"]: row for row in csv.DictReader(stream)}


@pytest.fixture
def studies(tiny_cohort, tmp_path):
    """The tiny cohort plus one study whose CBF file is not an image."""
    root = tmp_path / "studies"
    shutil.copytree(tiny_cohort, root)
    good = sorted(p for p in root.iterdir() if p.is_dir())
    broken = root / "broken"
    shutil.copytree(good[0], broken)
    (broken / "case.json").write_text((good[0] / "case.json").read_text().replace(good[0].name, "broken"))
    (broken / "cbf.nii.gz").write_bytes(b"this is not a NIfTI file")
    return root, [p.name for p in good]


def test_batch_script_over_folder_with_a_broken_case(studies, tmp_path):
    root, good = studies
    output = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--", "--input", str(root), "--output", str(output)],
        capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 1, completed.stderr  # one study failed, the batch went on
    assert "broken" in completed.stderr
    rows = read_rows(output / batch.VOLUMES_CSV)
    assert rows["broken"]["status"] == "error" and "cbf.nii.gz" in rows["broken"]["message"]
    assert not (output / "broken.seg.nrrd").exists()
    for folder in good:
        case = load_case(root / folder)
        row = rows[case.case_id]
        assert row["status"] == "ok", row
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(output / f"{case.case_id}_label.nii.gz")))
        segmentation = slicerio.read_segmentation(str(output / f"{case.case_id}.seg.nrrd"))
        names = {segment["name"]: segment["labelValue"] for segment in segmentation["segments"]}
        assert names == {"Ischemic core": CORE, "Penumbra": PENUMBRA}
        voxels = np.transpose(segmentation["voxels"], (2, 1, 0))
        np.testing.assert_array_equal(voxels, np.where(labels >= PENUMBRA, labels, 0))
        voxel_ml = float(np.prod(case.geometry.spacing)) / 1000
        assert float(row["core_ml"]) == pytest.approx(np.count_nonzero(labels == CORE) * voxel_ml, abs=1e-3)
        assert float(row["penumbra_ml"]) == pytest.approx(np.count_nonzero(labels == PENUMBRA) * voxel_ml, abs=1e-3)
    assert not [p for p in output.iterdir() if p.name.startswith(".tmp")]


def test_flat_map_set_and_single_case_folder(tiny_cohort, tmp_path):
    case_folder = sorted(p for p in tiny_cohort.iterdir() if p.is_dir())[0]
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in batch.BATCH_MAPS:
        shutil.copy(case_folder / f"{name}.nii.gz", flat / f"patient7_{name}.nii.gz")
    rows = batch.run_batch(flat, tmp_path / "out_flat")
    assert [(row["case"], row["status"]) for row in rows] == [("patient7", "ok")]
    assert (tmp_path / "out_flat" / "patient7.seg.nrrd").is_file()

    single = batch.run_batch(case_folder, tmp_path / "out_single")
    assert [row["status"] for row in single] == ["ok"]
    assert single[0]["core_ml"] == rows[0]["core_ml"]  # same maps, same result


def test_dicom_study_folder(lvo_case, tmp_path):
    """A DICOM study (quantitative map series) gives the result of the same maps as NIfTI.

    DICOM stores the maps as rescaled integers, so a few voxels at the brain mask's edge may differ.
    """
    from StrokePerfusionSegLib.dicom.export import write_case_as_dicom
    from StrokePerfusionSegLib.imageio import write_array

    studies = tmp_path / "dicom"
    write_case_as_dicom(lvo_case, studies / "study1", maps=("cbf", "tmax", "mip"), with_ctp=False)
    nifti = tmp_path / "nifti" / "study1"
    for name in ("cbf", "tmax", "mip"):
        write_array(lvo_case.maps[name], lvo_case.geometry, nifti / f"{name}.nii.gz")
    from_dicom = batch.run_batch(studies, tmp_path / "out_dicom")
    from_nifti = batch.run_batch(nifti, tmp_path / "out_nifti")
    assert [row["status"] for row in from_dicom + from_nifti] == ["ok", "ok"], (from_dicom, from_nifti)
    images = [sitk.ReadImage(str(tmp_path / out / "study1_label.nii.gz")) for out in ("out_dicom", "out_nifti")]
    assert Geometry.from_image(images[0]).matches(Geometry.from_image(images[1]))
    labels = [sitk.GetArrayFromImage(image) for image in images]
    assert np.mean(labels[0] != labels[1]) < 1e-3


def test_bad_usage_exits_2(tmp_path, capsys):
    assert batch.main(["--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert batch.main(["--input", str(tmp_path / "empty"), "--output", str(tmp_path / "out")]) == 2
