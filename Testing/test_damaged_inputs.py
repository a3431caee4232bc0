"""Damaged inputs, generated: every one is refused with exit 2 and one line naming the file
and the fix, without a traceback, without writing anything, and without touching the input.

Each case below takes a small valid study (the tiny phantom's LVO maps, or that study as DICOM,
or its CTP), damages one thing the way real exports, copies and hostile users do, and runs the
real command line on it. The library-level faults (bundles, the registry, the predictor's
shared input check, locks and a full disk) are pinned in the same terms further down.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from StrokePerfusionSegLib import cli, dicom
from StrokePerfusionSegLib.atomic import staged_folder
from StrokePerfusionSegLib.casefolder import load_cohort
from StrokePerfusionSegLib.errors import EXIT_USER_ERROR, InputError

MAPS = ("cbf", "cbv", "ttp", "tmax", "mip")


# --- the valid studies that get damaged ------------------------------------------------------


@pytest.fixture(scope="module")
def lvo_folder(tiny_cohort):
    cohort = load_cohort(tiny_cohort)
    return cohort.case_folder(cohort.ids(group="LVO")[0])


@pytest.fixture
def case(lvo_folder, tmp_path):
    """A case folder with the five maps and case.json (no CTP, so nothing is recomputed)."""
    folder = tmp_path / "in" / "P0001"
    folder.mkdir(parents=True)
    for name in MAPS:
        shutil.copy(lvo_folder / f"{name}.nii.gz", folder)
    shutil.copy(lvo_folder / "case.json", folder)
    return folder


@pytest.fixture(scope="module")
def dicom_study(lvo_case, tmp_path_factory):
    return dicom.write_case_as_dicom(lvo_case, tmp_path_factory.mktemp("dicom") / "study", maps=MAPS, with_ctp=False)


def fingerprint(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(capsys, out: Path, inputs: Path, before: dict, *args) -> str:
    """Run ``segment``; check exit 2, one line, no traceback, nothing written, input untouched."""
    code = cli.main(["segment", *map(str, args), "--method", "threshold", "--out", str(out)])
    captured = capsys.readouterr()
    message = captured.err.strip()
    assert code == EXIT_USER_ERROR, message
    assert message.startswith("error: ") and "\n" not in message, message
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists() or not any(out.iterdir()), "nothing partial is written"
    assert fingerprint(inputs) == before, "the input is left untouched"
    return message


# --- NIfTI damage ---------------------------------------------------------------------------


def _nifti(path: Path) -> bytearray:
    return bytearray(gzip.decompress(path.read_bytes()))


def _set_header(path: Path, offset: int, fmt: str, *values) -> None:
    raw = _nifti(path)
    struct.pack_into(fmt, raw, offset, *values)
    path.write_bytes(gzip.compress(bytes(raw)))


def _flip_mid_stream(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


def _with_value(path: Path, value: float, where=(1, 30, 30)) -> None:
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    array[where] = value
    copy = sitk.GetImageFromArray(array)
    copy.CopyInformation(image)
    sitk.WriteImage(copy, str(path), True)


NIFTI_DAMAGE = {
    "zero bytes": (lambda p: p.write_bytes(b""), "empty"),
    "PNG under a NIfTI name": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200)), "PNG"),
    "truncated copy": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated"),
    "64 flipped bytes mid-stream": (_flip_mid_stream, "damaged"),
    "gzip CRC wrong": (lambda p: p.write_bytes(p.read_bytes()[:-8] + b"\0\0\0\0" + p.read_bytes()[-4:]), "damaged"),
    "NaN voxel": (lambda p: _with_value(p, np.nan), "NaN"),
    "infinite voxel": (lambda p: _with_value(p, np.inf), "NaN or infinite"),
    "2D image": (lambda p: sitk.WriteImage(sitk.Image(8, 8, sitk.sitkFloat32), str(p)), "2D"),
    "5D header": (lambda p: _set_header(p, 40, "<6h", 5, 64, 64, 1, 2, 2), "5D"),
    "gzip bomb header": (lambda p: _set_header(p, 40, "<4h", 3, 32000, 32000, 32000), "more than this computer"),
    "zero voxel size": (lambda p: _set_header(p, 80, "<f", 0.0), "voxel size"),
}


@pytest.mark.parametrize("damage", list(NIFTI_DAMAGE))
def test_damaged_map_file(damage, case, tmp_path, capsys):
    edit, words = NIFTI_DAMAGE[damage]
    edit(case / "cbf.nii.gz")
    message = refused(capsys, tmp_path / "out", case, fingerprint(case), "--case", case)
    assert "cbf.nii.gz" in message and words in message


# --- case.json and map contents -------------------------------------------------------------


CASE_JSON_DAMAGE = {
    "a list": ("[]", "JSON list"),
    "null": ("null", "JSON null"),
    "binary": (b"\x00\xff\xfe\x80binary", "not UTF-8"),
    "not JSON": ("{nihss: 3", "not valid JSON"),
    "nihss true": ('{"nihss": true}', "nihss True"),
    "nihss 99": ('{"nihss": 99}', "outside 0..42"),
    "dt_s text": ('{"dt_s": "abc"}', "dt_s"),
    "id leaving OUT": ('{"id": "../escaped"}', "not a plain folder name"),
    "empty id": ('{"id": ""}', "not a plain folder name"),
}


@pytest.mark.parametrize("damage", list(CASE_JSON_DAMAGE))
def test_damaged_case_json(damage, case, tmp_path, capsys):
    content, words = CASE_JSON_DAMAGE[damage]
    path = case / "case.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    message = refused(capsys, tmp_path / "out", case, fingerprint(case), "--case", case)
    assert "case.json" in message and words in message
    assert not (tmp_path / "escaped").exists()


def _rewrite_maps(case: Path, change) -> None:
    for name in MAPS:
        image = sitk.ReadImage(str(case / f"{name}.nii.gz"))
        array = change(name, sitk.GetArrayFromImage(image))
        copy = sitk.GetImageFromArray(np.ascontiguousarray(array))
        copy.SetSpacing(image.GetSpacing())
        sitk.WriteImage(copy, str(case / f"{name}.nii.gz"), True)


MAP_CONTENT_DAMAGE = {
    "all-zero CBF": (lambda name, a: a * 0 if name == "cbf" else a, "one value everywhere"),
    "all-negative CBF": (lambda name, a: -1.0 - np.abs(a) if name == "cbf" else a, "no positive flow"),
    "1x1x1 maps": (lambda name, a: a[:1, 30:31, 30:31], "pixels per slice"),
}


@pytest.mark.parametrize("damage", list(MAP_CONTENT_DAMAGE))
def test_maps_no_study_looks_like(damage, case, tmp_path, capsys):
    change, words = MAP_CONTENT_DAMAGE[damage]
    _rewrite_maps(case, change)
    assert words in refused(capsys, tmp_path / "out", case, fingerprint(case), "--case", case)


# --- DICOM damage -----------------------------------------------------------------------------


def _files(folder: Path, description: str) -> list:
    (series,) = [s for s in dicom.scan_folder(folder).series if s.description.lower() == description.lower()]
    return series.headers


def _edit_series(folder: Path, description: str, edit) -> None:
    for header in _files(folder, description):
        dataset = pydicom.dcmread(header.filename)
        edit(dataset)
        dataset.save_as(header.filename)


def _edit_bytes(folder: Path, description: str, edit) -> None:
    for header in _files(folder, description):
        path = Path(header.filename)
        path.write_bytes(edit(path.read_bytes()))


def _invalid_spacing(data: bytes) -> bytes:
    at = data.index(b"\x28\x00\x30\x00DS")
    length = struct.unpack("<H", data[at + 6 : at + 8])[0]
    return data[: at + 6] + struct.pack("<H", 8) + b"abc\\abc " + data[at + 8 + length :]


def _giant_private_tag(data: bytes) -> bytes:
    at = data.index(b"\xe0\x7f\x10\x00")  # PixelData
    return data[:at] + b"\x09\x00\x10\x10UN\x00\x00" + struct.pack("<I", 0xFFFFFFF0) + b"xx" + data[at:]


DICOM_DAMAGE = {
    "Columns one less than the pixels": (lambda f: _edit_series(f, "CBF", lambda d: setattr(d, "Columns", d.Columns - 1)),
                                         "bytes of pixel data"),
    "no PixelData": (lambda f: _edit_series(f, "CBF", lambda d: d.__delitem__("PixelData")), "no pixel data"),
    "Rows and Columns 65535": (lambda f: _edit_series(f, "CBF", lambda d: (setattr(d, "Rows", 65535),
                                                                           setattr(d, "Columns", 65535))), "65535"),
    "invalid VR": (lambda f: _edit_bytes(f, "CBF", lambda b: b.replace(b"\x08\x00\x3e\x10LO", b"\x08\x00\x3e\x10ZZ")),
                   "invalid value"),
    "PixelSpacing abc": (lambda f: _edit_bytes(f, "CBF", _invalid_spacing), "PixelSpacing"),
    "private tag of 0xFFFFFFF0 bytes": (lambda f: _edit_bytes(f, "CBF", _giant_private_tag), "no pixel data"),
    "Tmax of another patient": (lambda f: _edit_series(f, "Tmax", lambda d: setattr(d, "PatientID", "B")), "PatientID"),
    "Tmax of another study": (lambda f: _edit_series(f, "Tmax", lambda d: setattr(d, "StudyInstanceUID", "1.2.3")),
                              "StudyInstanceUID"),
    "Tmax in another frame of reference": (
        lambda f: _edit_series(f, "Tmax", lambda d: setattr(d, "FrameOfReferenceUID", "1.2.3")), "FrameOfReferenceUID"),
}


@pytest.mark.parametrize("damage", list(DICOM_DAMAGE))
def test_damaged_dicom_study(damage, dicom_study, tmp_path, capsys):
    folder = shutil.copytree(dicom_study, tmp_path / "in" / "study")
    edit, words = DICOM_DAMAGE[damage]
    edit(folder)
    message = refused(capsys, tmp_path / "out", folder, fingerprint(folder), "--dicom", folder, "--resample")
    assert words in message
    if "another" in damage:
        assert "--resample" not in message, "never steer towards combining two acquisitions"


# --- CTP frame interval -------------------------------------------------------------------------


@pytest.mark.parametrize("pixdim_t", [0.0, -1.5, float("nan")])
def test_ctp_without_usable_frame_interval(pixdim_t, lvo_folder, tmp_path, capsys):
    source = tmp_path / "in" / "ctp.nii.gz"
    source.parent.mkdir()
    shutil.copy(lvo_folder / "ctp.nii.gz", source)
    _set_header(source, 92, "<f", pixdim_t)  # pixdim[4]
    before = fingerprint(source.parent)
    code = cli.main(["perfusion", "--ctp", str(source), "--out", str(tmp_path / "maps")])
    message = capsys.readouterr().err.strip()
    assert code == EXIT_USER_ERROR and "\n" not in message and "ctp.nii.gz" in message and "--dt" in message
    assert not (tmp_path / "maps").exists() and fingerprint(source.parent) == before


# --- model bundles and the registry -------------------------------------------------------------


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory):
    import torch

    from StrokePerfusionSegLib.bundle import save_bundle
    from StrokePerfusionSegLib.networks import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(width=1 / 16, image_size=64)
    return save_bundle(tmp_path_factory.mktemp("models"), build_model(config), config, model_id="fuzz", version="0.0.1")


def _rewrite_bundle(folder: Path, manifest_change=None, tensors_change=None) -> None:
    from safetensors.torch import load_file, save_file

    from StrokePerfusionSegLib.bundle import sha256_file

    manifest = json.loads((folder / "model.json").read_text())
    if tensors_change:
        state = load_file(folder / "weights.safetensors")
        save_file({name: tensors_change(t) for name, t in state.items()}, folder / "weights.safetensors")
        manifest["weights"]["sha256"] = sha256_file(folder / "weights.safetensors")
    if manifest_change:
        manifest_change(manifest)
    (folder / "model.json").write_text(json.dumps(manifest))


BUNDLE_DAMAGE = {
    "integer inputs": (dict(manifest_change=lambda m: m["architecture"].update(inputs=[1, 2, 3, 4])), "inputs"),
    "inputs a number": (dict(manifest_change=lambda m: (m["architecture"].update(inputs=4), m.update(inputs=4))),
                        "inputs"),
    "all-NaN weights": (dict(tensors_change=lambda t: t.float().fill_(float("nan")) if t.is_floating_point() else t),
                        "NaN"),
}


@pytest.mark.parametrize("damage", list(BUNDLE_DAMAGE))
def test_damaged_bundle(damage, small_bundle, tmp_path):
    from StrokePerfusionSegLib.bundle import load_bundle

    folder = shutil.copytree(small_bundle, tmp_path / "fuzz")
    changes, words = BUNDLE_DAMAGE[damage]
    _rewrite_bundle(folder, **changes)
    with pytest.raises(InputError, match=words) as error:
        load_bundle(folder)
    assert "\n" not in str(error.value) and str(folder) in str(error.value)


def test_zip_bomb_is_not_unpacked(tmp_path):
    from StrokePerfusionSegLib.registry import install_archive

    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bomb:
        bomb.writestr("bomb/weights.safetensors", bytes(64 << 20))  # 64 MiB of zeros in ~64 KiB
    with pytest.raises(InputError, match="would unpack to 64 MiB"):
        install_archive(archive, "bomb", tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())


def test_download_stops_at_the_registry_size(small_bundle, tmp_path):
    from StrokePerfusionSegLib.registry import RegistryEntry, download_model

    served = tmp_path / "served.zip"
    served.write_bytes(bytes(3 << 20))
    entry = RegistryEntry(id="fuzz", version="0.0.1", url=served.as_uri(), sha256="0" * 64, size_bytes=1 << 20)
    with pytest.raises(InputError, match="past the 1048576 bytes"):
        download_model(entry, tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir()), "the partial download is removed"


@pytest.mark.parametrize("path", ["../../../../etc", "/etc", "a\\..\\..", "."])
def test_registry_path_stays_in_the_models_folder(path, tmp_path):
    from StrokePerfusionSegLib.registry import load_registry

    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"models": [{"id": "m", "version": "1", "bundled": True, "path": path}]}))
    with pytest.raises(InputError, match="leaves the models folder"):
        load_registry(registry)


# --- outputs: two writers, killed runs, full disks, links -----------------------------------------


def test_second_writer_of_a_study_is_refused(case, tmp_path):
    """While one run writes OUT/P0001, a second run of the same study exits 2 at once."""
    from StrokePerfusionSegLib.atomic import folder_lock

    out = tmp_path / "out"
    with folder_lock(out / "P0001"):  # the first run, between loading and writing
        second = subprocess.run(
            [sys.executable, "-m", "StrokePerfusionSegLib", "segment", "--case", str(case), "--method", "threshold",
             "--out", str(out), "--overwrite"], capture_output=True, text=True, timeout=300)
    assert second.returncode == EXIT_USER_ERROR, second.stderr
    assert "being written by another run" in second.stderr and "Traceback" not in second.stderr
    assert not (out / "P0001").exists()
    assert cli.main(["segment", "--case", str(case), "--method", "threshold", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["P0001"], "the lock is released and removed"


def test_killed_run_staging_is_removed_by_the_next_writer(tmp_path):
    stale = tmp_path / ".P0001.tmp-killed"
    stale.mkdir()
    (stale / "half.nii.gz").write_bytes(b"half")
    with staged_folder(tmp_path / "P0001") as staging:
        (staging / "done.txt").write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P0001"]


def test_results_retired_by_a_killed_overwrite_are_put_back(tmp_path):
    """Killed between retiring the old results and renaming the new: the old ones come back."""
    retired = tmp_path / ".P0001.old-killed" / "P0001"
    retired.mkdir(parents=True)
    (retired / "previous.txt").write_text("previous")
    with pytest.raises(InputError, match="already exists"):  # a rerun without --overwrite finds them
        with staged_folder(tmp_path / "P0001"):
            pass
    with pytest.raises(RuntimeError):
        with staged_folder(tmp_path / "P0001", overwrite=True):
            raise RuntimeError("the rerun fails")
    assert (tmp_path / "P0001" / "previous.txt").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P0001"]


@pytest.mark.parametrize("kind", ["dangling link", "link to a folder", "a file"])
def test_output_that_is_a_link_or_file_is_refused_before_work(kind, tmp_path):
    target = tmp_path / "P0001"
    if kind == "dangling link":
        target.symlink_to(tmp_path / "nowhere")
    elif kind == "link to a folder":
        (tmp_path / "elsewhere").mkdir()
        target.symlink_to(tmp_path / "elsewhere")
    else:
        target.write_text("x")
    with pytest.raises(InputError, match="symbolic link|not a folder"):
        with staged_folder(target, overwrite=True):
            pytest.fail("no work may start")


_FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
import matplotlib
matplotlib.use("Agg")
import numpy as np
from matplotlib.figure import Figure
from StrokePerfusionSegLib.errors import run_command
from StrokePerfusionSegLib.atomic import staged_folder
from StrokePerfusionSegLib.writers.report_visual import write_visual_report

def work():
    figure = Figure()
    figure.add_subplot().plot(np.random.default_rng(0).random(20000))
    with staged_folder(sys.argv[1]) as staging:
        (staging / "small.txt").write_text("fits")
        write_visual_report(figure, None, staging / "report.pdf")  # matplotlib fails oddly on a full disk
sys.exit(run_command(work, name="fuzz"))
"""


def test_full_disk_is_a_clear_exit_2_with_nothing_written(tmp_path):
    """A file-size limit stands in for a full disk (the same failed write, EFBIG for ENOSPC)."""
    result = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path / "P0001")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == EXIT_USER_ERROR, result.stderr
    assert result.stderr.startswith("error: no space left to write") and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_intact_nifti_is_verified_by_its_crc_without_a_second_decompression(lvo_folder):
    """The cheap path (CRC over ITK's array) is the one intact scalar files take."""
    from StrokePerfusionSegLib import imageio

    for name in ("cbf.nii.gz", "ctp.nii.gz", "label.nii.gz"):
        path = lvo_folder / name
        layout = imageio._check_nifti_header(path)
        assert imageio._read_matches_stored(path, layout, sitk.ReadImage(str(path))), name


@pytest.mark.parametrize("output", ["COHORT/P0001", "COHORT", "COHORT/P0001/results", "."])
def test_output_overlapping_an_input_is_refused(output, tmp_path, monkeypatch):
    from StrokePerfusionSegLib.atomic import check_apart

    (tmp_path / "COHORT" / "P0001").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "COHORT")
    with pytest.raises(InputError, match="overlaps the input"):
        check_apart(tmp_path / output if output != "." else output, [tmp_path / "COHORT" / "P0001"])
    check_apart(tmp_path / "results", [tmp_path / "COHORT" / "P0001"])  # beside it is fine


# --- ids and output confinement through the command line --------------------------------------


def test_case_given_as_dot_is_named_after_its_folder(case, tmp_path, monkeypatch, capsys):
    out = tmp_path / "results"
    (out / "P0002").mkdir(parents=True)  # another patient's results must survive
    (out / "P0002" / "keep.txt").write_text("P0002")
    monkeypatch.chdir(case)
    assert cli.main(["segment", "--case", ".", "--method", "threshold", "--format", "nifti",
                     "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["P0001", "P0002"]
    assert (out / "P0002" / "keep.txt").read_text() == "P0002"


@pytest.mark.parametrize("out_of", ["the cohort", "the case"])
def test_overwrite_never_replaces_the_input_study(out_of, case, capsys):
    cohort = case.parent
    out = cohort if out_of == "the cohort" else case
    before = fingerprint(cohort)
    code = cli.main(["segment", "--case", str(case), "--method", "threshold", "--out", str(out), "--overwrite"])
    message = capsys.readouterr().err.strip()
    assert code == EXIT_USER_ERROR and "overlaps the input" in message and "\n" not in message
    assert fingerprint(cohort) == before


def test_hidden_ctp_file_name_gives_no_empty_id(lvo_folder, tmp_path, capsys):
    source = tmp_path / "in" / ".hidden.nii.gz"
    source.parent.mkdir()
    shutil.copy(lvo_folder / "ctp.nii.gz", source)
    message = refused(capsys, tmp_path / "out", source.parent, fingerprint(source.parent), "--ctp", source)
    assert "'.hidden'" in message and "not a plain folder name" in message


@pytest.mark.parametrize("dt", ["0", "-1", "nan"])
def test_segment_dt_option_is_checked(dt, lvo_folder, tmp_path, capsys):
    source = tmp_path / "in" / "ctp.nii.gz"
    source.parent.mkdir()
    shutil.copy(lvo_folder / "ctp.nii.gz", source)
    message = refused(capsys, tmp_path / "out", source.parent, fingerprint(source.parent), "--ctp", source, "--dt", dt)
    assert "--dt" in message and "not a positive number of seconds" in message


def test_dangling_link_at_the_study_output_is_refused_before_work(case, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "P0001").symlink_to(tmp_path / "gone")
    code = cli.main(["segment", "--case", str(case), "--method", "threshold", "--out", str(out), "--overwrite"])
    assert code == EXIT_USER_ERROR and "symbolic link" in capsys.readouterr().err


def test_batch_rows_for_unsafe_ids_links_and_bad_case_json(case, tmp_path, capsys):
    import csv

    studies = tmp_path / "studies"
    studies.mkdir()
    (studies / "loop").symlink_to(studies / "loop")
    (studies / "dangling").symlink_to(tmp_path / "gone")
    listed = shutil.copytree(case, studies / "listed")
    (listed / "case.json").write_text("[]")
    table = tmp_path / "studies.csv"
    table.write_text(f"id,case\n../escaped,{case}\n{tmp_path / 'abs'},{case}\nok,{case}\nlisted,{listed}\n")
    out = tmp_path / "out"
    assert cli.main(["segment", "--batch", str(table), "--method", "threshold", "--format", "nifti",
                     "--out", str(out), "--overwrite"]) == EXIT_USER_ERROR
    rows = {row["id"]: row for row in csv.DictReader(open(out / "summary.csv"))}
    assert {rows[i]["status"] for i in ("../escaped", str(tmp_path / "abs"), "listed")} == {"input-error"}
    assert rows["ok"]["status"] == "ok" and "case.json" in rows["listed"]["message"]
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "abs").exists()
    assert sorted(p.name for p in out.iterdir()) == ["ok", "summary.csv"]

    out_folder = tmp_path / "out-folder"
    assert cli.main(["segment", "--batch", str(studies), "--method", "threshold", "--format", "nifti",
                     "--out", str(out_folder)]) == EXIT_USER_ERROR
    rows = {row["id"]: row for row in csv.DictReader(open(out_folder / "summary.csv"))}
    assert rows["loop"]["status"] == rows["dangling"]["status"] == "input-error"
    assert "leads nowhere" in rows["loop"]["message"]


def test_batch_output_inside_the_batch_folder_is_refused(case, capsys):
    code = cli.main(["segment", "--batch", str(case.parent), "--method", "threshold", "--out", str(case.parent)])
    assert code == EXIT_USER_ERROR and "lies in the batch folder" in capsys.readouterr().err


def test_ctrl_c_in_a_batch_says_what_is_kept(tiny_cohort, tmp_path):
    """SIGINT after the first study: exit 130, finished studies complete and listed, no staging."""
    import csv
    import signal
    import time

    out = tmp_path / "out"
    batch = subprocess.Popen(
        [sys.executable, "-m", "StrokePerfusionSegLib", "segment", "--batch", str(tiny_cohort), "--method",
         "threshold", "--format", "nifti", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "summary.csv").exists() and batch.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    batch.send_signal(signal.SIGINT)
    _, stderr = batch.communicate(timeout=120)
    if batch.returncode == 0:
        pytest.skip("the batch finished before the interrupt arrived")
    assert batch.returncode == 130, stderr
    assert "finished before it are kept" in stderr and "nothing was written" not in stderr
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert rows and all((out / row["id"] / f"{row['id']}_labels.nii.gz").is_file() for row in rows)
    assert {p.name for p in out.iterdir()} == {"summary.csv", *(row["id"] for row in rows)}, "nothing partial"


@pytest.mark.parametrize("damage", list(NIFTI_DAMAGE))
def test_damaged_file_read_as_voxels(damage, lvo_folder, tmp_path):
    """The ISA-L path of ``read_voxels`` (the perfusion command's read) refuses what ``read_image`` refuses."""
    from StrokePerfusionSegLib import imageio

    path = tmp_path / "cbf.nii.gz"
    shutil.copy(lvo_folder / "cbf.nii.gz", path)
    edit, words = NIFTI_DAMAGE[damage]
    edit(path)
    with pytest.raises(InputError) as refusal:
        imageio.read_voxels(path)
    assert "cbf.nii.gz" in str(refusal.value) and words in str(refusal.value)
