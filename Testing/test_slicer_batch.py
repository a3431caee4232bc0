"""The headless Slicer batch script runs the one batch runner (as CI runs it: plain Python + slicer-core)."""

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
from StrokePerfusionSegLib.cli import main as cli_main  # noqa: E402
from StrokePerfusionSegLib.imageio import Geometry  # noqa: E402
from StrokePerfusionSegLib.labels import CORE, PENUMBRA  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "StrokePerfusionSeg" / "Resources" / "Scripts" / "batch_segment.py"


def read_rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as stream:
        return {row["id"]: row for row in csv.DictReader(stream)}


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
        [sys.executable, str(SCRIPT), "--", "--batch", str(root), "--out", str(output), "--method", "threshold",
         "--format", "seg.nrrd,nifti"],
        capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 2, completed.stderr  # one study's input is at fault, the batch went on
    assert "broken" in completed.stderr
    rows = read_rows(output / "summary.csv")
    assert rows["broken"]["status"] == "input-error" and "cbf.nii.gz" in rows["broken"]["message"]
    assert not (output / "broken").exists()
    for folder in good:
        case = load_case(root / folder)
        row = rows[folder]
        assert row["status"] == "ok", row
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(output / folder / f"{folder}_labels.nii.gz")))
        segmentation = slicerio.read_segmentation(str(output / folder / f"{folder}.seg.nrrd"))
        names = {segment["name"]: segment["labelValue"] for segment in segmentation["segments"]}
        assert names == {"Ischemic core": CORE, "Penumbra": PENUMBRA}
        voxels = np.transpose(segmentation["voxels"], (2, 1, 0))
        np.testing.assert_array_equal(voxels, np.where(labels >= PENUMBRA, labels, 0))
        voxel_ml = float(np.prod(case.geometry.spacing)) / 1000
        assert float(row["core_ml"]) == pytest.approx(np.count_nonzero(labels == CORE) * voxel_ml, abs=6e-3)
        assert float(row["penumbra_ml"]) == pytest.approx(np.count_nonzero(labels == PENUMBRA) * voxel_ml, abs=6e-3)
    assert not [p for p in output.iterdir() if p.name.startswith(".")]


def test_flat_map_set_and_single_case_folder(tiny_cohort, tmp_path):
    case_folder = sorted(p for p in tiny_cohort.iterdir() if p.is_dir())[0]
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("cbf", "tmax", "mip"):
        shutil.copy(case_folder / f"{name}.nii.gz", flat / f"patient7_{name}.nii.gz")
    common = ["--method", "threshold", "--format", "nifti"]
    assert cli_main(["segment", "--batch", str(flat), "--out", str(tmp_path / "out_flat"), *common]) == 0
    rows = read_rows(tmp_path / "out_flat" / "summary.csv")
    assert [(key, row["status"]) for key, row in rows.items()] == [("patient7", "ok")]
    assert (tmp_path / "out_flat" / "patient7" / "patient7_labels.nii.gz").is_file()

    assert cli_main(["segment", "--batch", str(case_folder), "--out", str(tmp_path / "out_single"), *common]) == 0
    single = read_rows(tmp_path / "out_single" / "summary.csv")
    assert single[case_folder.name]["core_ml"] == rows["patient7"]["core_ml"]  # same maps, same result


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
    for source, out in ((studies, "out_dicom"), (nifti.parent, "out_nifti")):
        assert cli_main(["segment", "--batch", str(source), "--out", str(tmp_path / out),
                         "--method", "threshold", "--format", "nifti"]) == 0
    images = [sitk.ReadImage(str(tmp_path / out / "study1" / "study1_labels.nii.gz")) for out in ("out_dicom", "out_nifti")]
    assert Geometry.from_image(images[0]).matches(Geometry.from_image(images[1]))
    labels = [sitk.GetArrayFromImage(image) for image in images]
    assert np.mean(labels[0] != labels[1]) < 1e-3


def test_bad_usage_exits_2(tmp_path, capsys):
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--batch", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 2 and "no such folder" in completed.stderr
    (tmp_path / "empty").mkdir()
    assert cli_main(["segment", "--batch", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "holds no studies" in capsys.readouterr().err


def test_model_without_pytorch_exits_2_naming_the_install(tmp_path):
    """Slicer without PyTorch: a model is bad usage (exit 2) with the way to install it, not a traceback."""
    blocker = (
        "import runpy, sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    case = SCRIPT.parents[1] / "SampleData" / "phantom-lvo"  # the module's sample study
    completed = subprocess.run(
        [sys.executable, "-c", blocker, str(SCRIPT), "--", "--batch", str(case), "--out", str(tmp_path / "out"),
         "--method", "dl", "--model", "sf-pmsn-small", "--format", "nifti"],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "PyTorch extension" in completed.stderr and "Traceback" not in completed.stderr
