"""``strokeperfusionseg segment`` end to end: single studies, batches with broken cases, shards."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from StrokePerfusionSegLib import cli, dicom
from StrokePerfusionSegLib.casefolder import load_cohort
from StrokePerfusionSegLib.batch import Job, shard_jobs
from StrokePerfusionSegLib.errors import EXIT_USER_ERROR


def run_cli(*args) -> int:
    return cli.main(["segment", *map(str, args)])


def read_summary(path):
    with open(path, newline="") as stream:
        return {row["id"]: row for row in csv.DictReader(stream)}


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A small random SF model with NIHSS (the real default model may not be installed)."""
    import torch

    from StrokePerfusionSegLib.bundle import save_bundle
    from StrokePerfusionSegLib.networks import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(width=1 / 16, image_size=64, use_nihss=True)
    return save_bundle(tmp_path_factory.mktemp("models"), build_model(config), config, model_id="tiny-clinical", version="0.0.1")


@pytest.fixture(scope="module")
def broken_bundle(tiny_bundle, tmp_path_factory):
    """``tiny_bundle`` with one weight byte changed: its manifest reads well, its sha256 check fails."""
    folder = shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("broken") / tiny_bundle.name)
    weights = folder / "weights.safetensors"
    damaged = bytearray(weights.read_bytes())
    damaged[-1] ^= 1
    weights.write_bytes(bytes(damaged))
    return folder


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["segment", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--dicom /data/study1" in text and "--shard 1/2" in text


def test_program_ends_without_teardown_keeping_its_output_and_status(tiny_cohort, tmp_path):
    """The ``strokeperfusionseg`` program exits as soon as its work is done: what it printed
    reaches the pipes and its status is kept, but no interpreter teardown (an atexit handler)
    runs."""
    import subprocess
    import sys

    case = sorted(p for p in tiny_cohort.iterdir() if p.is_dir())[0]
    program = "import atexit; atexit.register(print, 'torn down'); from StrokePerfusionSegLib.cli import run; run()"
    command = [sys.executable, "-c", program, "segment", "--case", str(case), "--method", "threshold",
               "--format", "nifti", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"results in {tmp_path / case.name}" in done.stdout and "torn down" not in done.stdout
    refused = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert refused.returncode == EXIT_USER_ERROR and "--overwrite" in refused.stderr
    assert "torn down" not in refused.stdout


def test_case_folder_with_threshold(tiny_cohort, tmp_path, capsys):
    cohort = load_cohort(tiny_cohort)
    case = cohort.case_folder(cohort.ids(group="LVO")[0])
    assert run_cli("--case", case, "--method", "threshold", "--out", tmp_path) == 0
    out = tmp_path / case.name
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{case.name}{suffix}" for suffix in
                           (".seg.nrrd", "_labels.nii.gz", "_report.json", "_report.png", "_report.pdf"))
    report = json.loads((out / f"{case.name}_report.json").read_text())
    printed = capsys.readouterr().out
    assert f"core {report['volumes']['core_ml']:.2f} ml" in printed
    assert report["method"]["name"] == "threshold"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder left"
    # a second run refuses to overwrite, and says how
    assert run_cli("--case", case, "--method", "threshold", "--out", tmp_path) == EXIT_USER_ERROR
    assert "--overwrite" in capsys.readouterr().err


def test_dicom_study_with_network_writes_dicom_seg(lvo_case, tiny_bundle, tmp_path):
    import highdicom as hd

    folder = dicom.write_case_as_dicom(lvo_case, tmp_path / "in" / "study1", maps=("cbf", "cbv", "ttp", "tmax", "mip"),
                                       with_ctp=False)
    # the model reads the NIHSS score: without it the user is told to give it
    assert run_cli("--dicom", folder, "--model", tiny_bundle, "--device", "cpu", "--out", tmp_path / "out") == EXIT_USER_ERROR
    assert run_cli("--dicom", folder, "--model", tiny_bundle, "--nihss", 12, "--device", "cpu",
                   "--format", "dicom-seg,seg.nrrd", "--out", tmp_path / "out") == 0
    out = tmp_path / "out" / "study1"
    assert sorted(p.name for p in out.iterdir()) == ["study1.seg.nrrd", "study1_report.json", "study1_seg.dcm"]
    report = json.loads((out / "study1_report.json").read_text())
    assert report["method"] == {"name": "dl", "model_id": "tiny-clinical", "model_version": "0.0.1", "device": "cpu"}
    assert hd.seg.segread(out / "study1_seg.dcm").number_of_segments == 2


def test_raw_ctp_file_maps_computed_first(tiny_cohort, tmp_path):
    cohort = load_cohort(tiny_cohort)
    ctp = cohort.case_folder(cohort.ids(group="LVO")[0]) / "ctp.nii.gz"
    assert run_cli("--ctp", ctp, "--method", "threshold", "--format", "nifti", "--out", tmp_path) == 0
    report = json.loads((tmp_path / "ctp" / "ctp_report.json").read_text())
    assert report["inputs"]["kind"] == "ctp" and report["inputs"]["maps"]["tmax"]["kind"] == "computed"
    assert report["timings_s"]["perfusion"] > 0


def test_perfusion_options_reach_the_ctp_analysis_and_the_outputs(tiny_cohort, tmp_path):
    """--perfusion-method/--kh/--rho go through a batch job and load_study to the analysis; the report,
    its notes and the summary say how the maps were made."""
    from StrokePerfusionSegLib.perfusionmethods import DEFAULT_METHOD

    cohort = load_cohort(tiny_cohort)
    ctp = cohort.case_folder(cohort.ids(group="LVO")[0]) / "ctp.nii.gz"
    table = tmp_path / "studies.csv"
    table.write_text(f"id,ctp\nfitted,{ctp}\n")
    out = tmp_path / "batch"
    assert run_cli("--batch", table, "--perfusion-method", "model", "--kh", "1", "--rho", "1",
                   "--method", "threshold", "--format", "nifti", "--out", out) == 0
    report = json.loads((out / "fitted" / "fitted_report.json").read_text())
    assert report["inputs"]["maps"]["cbf"] | {"from": None} == {
        "from": None, "kind": "computed", "method": "model", "kh": 1.0, "rho_g_per_ml": 1.0}
    said = "perfusion maps computed from the raw CTP: method model, kh 1, rho 1 g/ml"
    assert said in report["notes"] and said in read_summary(out / "summary.csv")["fitted"]["notes"]
    # A single --ctp study without the options: the defaults, recorded the same way.
    assert run_cli("--ctp", ctp, "--method", "threshold", "--format", "nifti", "--out", tmp_path / "one") == 0
    report = json.loads((tmp_path / "one" / "ctp" / "ctp_report.json").read_text())
    assert report["inputs"]["maps"]["cbf"]["method"] == DEFAULT_METHOD
    assert report["inputs"]["maps"]["cbf"]["kh"] == 0.73 and report["inputs"]["maps"]["cbf"]["rho_g_per_ml"] == 1.04


def test_batch_with_broken_cases_and_summary(tiny_cohort, tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    for case in sorted(p for p in tiny_cohort.iterdir() if p.is_dir()):
        (studies / case.name).symlink_to(case, target_is_directory=True)
    (studies / "broken-notdicom").mkdir()
    (studies / "broken-notdicom" / "notes.txt").write_text("not an image")
    lvo = load_cohort(tiny_cohort).case_folder(load_cohort(tiny_cohort).ids(group="LVO")[0])
    shutil.copytree(lvo, studies / "broken-case")
    (studies / "broken-case" / "tmax.nii.gz").write_bytes(b"truncated download")
    out = tmp_path / "out"
    code = run_cli("--batch", studies, "--method", "threshold", "--format", "seg.nrrd", "--out", out)
    assert code == EXIT_USER_ERROR  # some studies had input problems, none crashed
    rows = read_summary(out / "summary.csv")
    assert set(rows) == {p.name for p in studies.iterdir()}
    assert rows["broken-notdicom"]["status"] == "input-error"
    assert "no CT perfusion series" in rows["broken-notdicom"]["message"]
    assert rows["broken-case"]["status"] == "input-error" and "tmax.nii.gz" in rows["broken-case"]["message"]
    good = [name for name, row in rows.items() if not name.startswith("broken")]
    assert all(rows[name]["status"] == "ok" and (out / name / f"{name}.seg.nrrd").is_file() for name in good)
    assert not (out / "broken-notdicom").exists(), "nothing partial written"


def test_batch_from_csv_with_shard(tiny_cohort, tmp_path):
    cases = sorted(p for p in tiny_cohort.iterdir() if p.is_dir())
    table = tmp_path / "studies.csv"
    table.write_text("id,case,nihss\n" + "".join(f"s{i},{case},{7 + i}\n" for i, case in enumerate(cases)))
    out = tmp_path / "out"
    codes = [run_cli("--batch", table, "--method", "threshold", "--format", "nifti", "--out", out, "--shard", f"{k}/2")
             for k in (1, 2)]
    assert codes == [0, 0]
    first, second = read_summary(out / "summary-shard-1-of-2.csv"), read_summary(out / "summary-shard-2-of-2.csv")
    assert set(first) | set(second) == {f"s{i}" for i in range(len(cases))}
    assert not set(first) & set(second)
    report = json.loads((out / "s1" / "s1_report.json").read_text())
    assert report["study"]["nihss"] == 8


@pytest.mark.parametrize("total", [1, 2, 3, 5, 8])
def test_shards_cover_every_case_once(total):
    jobs = [Job(f"case{i:02d}", {}) for i in range(13)]
    seen = [job.study_id for k in range(1, total + 1) for job in shard_jobs(jobs, k, total)]
    assert sorted(seen) == sorted(job.study_id for job in jobs)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "threshold"], "give exactly one input"),
        (["--case", "{case}", "--format", "dicom-seg"], "DICOM SEG needs a DICOM input"),
        (["--case", "{case}", "--format", "pdf"], "unknown --format pdf"),
        (["--case", "{case}", "--shard", "1/2"], "--shard splits a --batch"),
        (["--batch", "{cohort}", "--shard", "3/2"], "K must be between 1 and N"),
        (["--case", "{case}", "--out", "{file}/sub"], "cannot write to output folder"),
        (["--case", "{case}", "--nihss", "50"], "outside 0..42"),
        (["--case", "{damaged}"], "cbf.nii.gz"),
        (["--cbf", "{case}/cbf.nii.gz", "--tmax", "{case}/tmax.nii.gz", "--kh", "1"], "map files were given"),
        (["--case", "{case}", "--perfusion-method", "model"], "has its perfusion maps"),
        (["--ctp", "{case}/ctp.nii.gz", "--rho", "0"], "rho must be a positive number"),
        (["--case", "{case}", "--method", "dl", "--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--case", "{case}", "--method", "dl", "--model", "{broken}"], "fails its sha256 check"),
        (["--batch", "{cohort}", "--method", "dl", "--model", "{broken}"], "fails its sha256 check"),
        # the model loads while the study is read, so the study's own error comes first
        (["--case", "{damaged}", "--method", "dl", "--model", "{broken}"], "cbf.nii.gz"),
    ],
)
def test_user_errors_exit_2(args, message, tiny_cohort, broken_bundle, tmp_path, capsys):
    """One line naming the problem, exit 2, and no output folder left behind (not even empty;
    no summary.csv either: a model that fails to load stops a batch before its first row)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    case = sorted(p for p in tiny_cohort.iterdir() if p.is_dir())[0]
    damaged = shutil.copytree(case, tmp_path / "damaged")  # refused while loading, after the checks
    (damaged / "cbf.nii.gz").write_bytes(b"not an image")
    values = {"case": case, "cohort": tiny_cohort, "file": blocker, "damaged": damaged, "broken": broken_bundle}
    args = [a.format(**values) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    if "--method" not in args:
        args += ["--method", "threshold"]
    assert run_cli(*args) == EXIT_USER_ERROR
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()
