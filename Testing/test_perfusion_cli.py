"""``strokeperfusionseg perfusion`` end to end, and every bad input as a one-line InputError."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from StrokePerfusionSegLib import cli, imageio
from StrokePerfusionSegLib.casefolder import load_case
from StrokePerfusionSegLib.errors import EXIT_USER_ERROR, InputError
from StrokePerfusionSegLib.perfusion import compute_perfusion_maps, make_reference_study
from StrokePerfusionSegLib.perfusionmethods import DEFAULT_METHOD

TISSUES = [(60.0, 4.0, 0.0, 0.0), (25.0, 2.0, 2.0, 0.0)]
GEOMETRY = imageio.Geometry(spacing=(1.0, 1.0, 5.0), origin=(-20.0, 10.0, 3.0))


@pytest.fixture(scope="module")
def study():
    return make_reference_study(TISSUES, block=6, slices=2, dt_s=1.5, frames=36)


@pytest.fixture(scope="module")
def ctp_file(study, tmp_path_factory):
    path = tmp_path_factory.mktemp("ctp") / "ctp.nii.gz"
    imageio.write_array(study.ctp_hu, GEOMETRY, path, dt_s=study.dt_s)
    return path


def run(*args) -> int:
    return cli.main(["perfusion", *map(str, args)])


def test_cli_writes_readable_maps_with_the_input_geometry(ctp_file, study, tmp_path, capsys):
    out = tmp_path / "maps"
    assert run("--ctp", ctp_file, "--out", out, "--smoothing-mm", 0) == 0
    summary = capsys.readouterr().out
    assert "AIF" in summary and "VOF scale" in summary and "mean CBF" in summary and "timings" in summary
    names = {"cbf", "cbv", "mtt", "ttp", "tmax", "mip", "brain_mask"}
    assert {p.name for p in out.iterdir()} == {f"{n}.nii.gz" for n in names} | {"case.json"}
    cbf = sitk.ReadImage(str(out / "cbf.nii.gz"))
    assert cbf.GetSpacing() == pytest.approx(GEOMETRY.spacing) and cbf.GetOrigin() == pytest.approx(GEOMETRY.origin)
    case = load_case(out)
    inside = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "brain_mask.nii.gz"))).astype(bool) & study.tissue
    assert np.median(np.abs(case.maps["cbf"][inside] / study.truth["cbf"][inside] - 1)) <= 0.10
    assert case.dt_s == 1.5  # taken from the file's 4th spacing
    source = json.loads((out / "case.json").read_text())["source"]
    assert source["method"] == DEFAULT_METHOD and len(source["aif_voxels_zyx"]) > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_cli_manual_aif_osvd_and_explicit_dt(ctp_file, study, tmp_path):
    artery = ",".join(str(i) for i in np.argwhere(study.artery)[0])
    assert run("--ctp", ctp_file, "--out", tmp_path / "m", "--dt", 1.5, "--method", "osvd", "--aif-voxel", artery) == 0
    source = load_case(tmp_path / "m").meta["source"]
    assert source["method"] == "osvd" and source["aif_voxels_zyx"] == [[int(i) for i in artery.split(",")]]


def test_cli_model_fit_with_kh_and_rho_left_out(ctp_file, study, tmp_path):
    assert run("--ctp", ctp_file, "--out", tmp_path / "d", "--smoothing-mm", 0) == 0
    assert run("--ctp", ctp_file, "--out", tmp_path / "p", "--smoothing-mm", 0, "--kh", 1, "--rho", 1) == 0
    default, plain = load_case(tmp_path / "d"), load_case(tmp_path / "p")
    brain = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "d" / "brain_mask.nii.gz"))).astype(bool)
    inside = brain & study.tissue
    np.testing.assert_allclose(plain.maps["cbf"][inside], default.maps["cbf"][inside] * 1.04 / 0.73, rtol=1e-4)
    assert plain.meta["source"]["kh"] == 1.0 and default.meta["source"]["rho_g_per_ml"] == 1.04
    assert run("--ctp", ctp_file, "--out", tmp_path / "m", "--method", "model", "--smoothing-mm", 0) == 0
    model = load_case(tmp_path / "m")
    assert model.meta["source"]["method"] == "model" and model.meta["source"]["bias_correction"] is False
    assert np.median(np.abs(model.maps["cbf"][inside] / study.truth["cbf"][inside] - 1)) <= 0.10


@pytest.mark.parametrize("option", [("--kh", 0), ("--rho", -1.04)])
def test_non_positive_kh_or_rho_is_refused(ctp_file, tmp_path, capsys, option):
    assert run("--ctp", ctp_file, "--out", tmp_path / "o", *option) == EXIT_USER_ERROR
    assert option[0].removeprefix("--") in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _write(array, path, dt_s=1.5):
    imageio.write_array(array, GEOMETRY, path, dt_s=dt_s if array.ndim == 4 else None)
    return path


def _without_vessels(study):
    """The study with no artery or vein enhancing (the strip above the tissue kept unenhanced)."""
    series = study.ctp_hu.copy()
    series[:, :, :4] = series[:1, :, :4]
    return series


#: Bad input -> function(study, folder) writing it and returning its path. (NaN and infinity
#: cannot travel this way: ITK's NIfTI reader turns them into 0; the library test below has them.)
BAD_FILES = {
    "3D given": lambda s, d: _write(s.ctp_hu[0], d / "volume.nii.gz"),
    "8 frames": lambda s, d: _write(s.ctp_hu[:8], d / "short.nii.gz"),
    "no bolus": lambda s, d: _write(np.repeat(s.ctp_hu[:1], 20, axis=0), d / "flat.nii.gz"),
    "no AIF": lambda s, d: _write(_without_vessels(s), d / "no_artery.nii.gz"),
    "not NIfTI": lambda s, d: (d / "notes.txt", (d / "notes.txt").write_text("not an image"))[0],
    "unreadable": lambda s, d: (d / "cut.nii.gz", (d / "cut.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage"))[0],
    "missing file": lambda s, d: d / "absent.nii.gz",
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_exit_2_with_one_line_and_write_nothing(case, study, tmp_path, capsys):
    path = BAD_FILES[case](study, tmp_path)
    out = tmp_path / "out"
    assert run("--ctp", path, "--out", out) == EXIT_USER_ERROR
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and "\n" not in message and "Traceback" not in message
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("dt", ["0", "-1", "nan", "1500"])
def test_non_positive_or_implausible_dt_is_refused(ctp_file, tmp_path, capsys, dt):
    assert run("--ctp", ctp_file, "--out", tmp_path / "out", "--dt", dt) == EXIT_USER_ERROR
    assert "--dt" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_existing_output_folder_is_refused_and_left_alone(ctp_file, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run("--ctp", ctp_file, "--out", out) == EXIT_USER_ERROR
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_malformed_aif_voxel_is_refused(ctp_file, tmp_path, capsys):
    assert run("--ctp", ctp_file, "--out", tmp_path / "o", "--aif-voxel", "1,2") == EXIT_USER_ERROR
    assert run("--ctp", ctp_file, "--out", tmp_path / "o", "--aif-voxel", "0,999,0") == EXIT_USER_ERROR
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(dt_s=None), "dt"),
        (dict(dt_s=-1.0), "dt"),
        (dict(ctp_hu=np.zeros((2, 8, 8))), "4D"),
        (dict(method="fft"), "method"),
        (dict(spacing=(0.0, 1.0, 1.0)), "spacing"),
    ],
)
def test_library_refuses_bad_arguments(study, change, words):
    arguments = dict(ctp_hu=study.ctp_hu, dt_s=1.5, spacing=study.spacing, method="bcsvd") | change
    with pytest.raises(InputError, match=words):
        compute_perfusion_maps(**arguments)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_library_refuses_nan_and_infinity(study, value):
    series = study.ctp_hu.copy()
    series[5, 0, 6, 6] = value
    with pytest.raises(InputError, match="NaN or infinite"):
        compute_perfusion_maps(series, 1.5, study.spacing)
