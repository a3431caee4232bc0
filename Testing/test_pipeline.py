"""One pipeline behind every front end: the command line, the batch runner and the Slicer glue
give identical labels and volumes for the same study, for scalar and colour-coded maps, NIfTI
and DICOM; the method says what it needs; notes travel to every output."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("slicer", reason="slicer-core (the 'mrml' extra) is not installed")

from slicer import vtkMRMLScene  # noqa: E402

from StrokePerfusionSegLib import imageio, pipeline  # noqa: E402
from StrokePerfusionSegLib.cli import main as cli_main  # noqa: E402
from StrokePerfusionSegLib.errors import InputError  # noqa: E402
from StrokePerfusionSegLib.mrml import nodes as mrml_nodes  # noqa: E402
from StrokePerfusionSegLib.mrml import segmentation as mrml_segmentation  # noqa: E402
from StrokePerfusionSegLib.mrml.study import segment_volumes  # noqa: E402
from StrokePerfusionSegLib.studyio import load_study  # noqa: E402

MAPS = ("cbf", "tmax", "mip")


def _summary(path):
    with open(path, newline="") as stream:
        return {row["id"]: row for row in csv.DictReader(stream)}


def _labels(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="module")
def inputs(lvo_case, tmp_path_factory):
    """The LVO case as NIfTI scalar files, NIfTI colour-coded files and DICOM scalar / colour series."""
    from StrokePerfusionSegLib.dicom.export import write_case_as_dicom

    root = tmp_path_factory.mktemp("frontends")
    scalar = {name: imageio.write_array(lvo_case.maps[name], lvo_case.geometry, root / "scalar" / f"{name}.nii.gz")
              for name in MAPS}
    colour = {name: imageio.write_array(lvo_case.rgb[name], lvo_case.geometry, root / "colour" / f"{name}_rgb.nii.gz")
              for name in MAPS}
    dicom_scalar = write_case_as_dicom(lvo_case, root / "dicom_scalar", maps=MAPS, with_ctp=False)
    dicom_colour = write_case_as_dicom(lvo_case, root / "dicom_colour", maps=("mip",), colour_maps=("cbf", "tmax"),
                                       with_ctp=False)
    return {"scalar": scalar, "colour": colour, "dicom_scalar": dicom_scalar, "dicom_colour": dicom_colour}


def _via_cli(kind, source, out):
    if kind.startswith("dicom"):
        arguments = ["--dicom", str(source)]
    else:
        arguments = [argument for name, path in source.items() for argument in (f"--{name}", str(path))]
    assert cli_main(["segment", *arguments, "--out", str(out), "--method", "threshold", "--format", "nifti"]) == 0
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    report = json.loads((folder / f"{folder.name}_report.json").read_text())
    return _labels(folder / f"{folder.name}_labels.nii.gz"), report["volumes"], report["notes"]


def _via_batch(kind, source, out, tmp_path):
    listing = tmp_path / f"{kind}.csv"
    with open(listing, "w", newline="") as stream:
        writer = csv.writer(stream)
        if kind.startswith("dicom"):
            writer.writerows([["id", "dicom"], ["study", str(source)]])
        else:
            writer.writerows([["id", *source], ["study", *(str(p) for p in source.values())]])
    assert cli_main(["segment", "--batch", str(listing), "--out", str(out), "--method", "threshold",
                     "--format", "nifti"]) == 0
    row = _summary(out / "summary.csv")["study"]
    return _labels(out / "study" / "study_labels.nii.gz"), row


def _via_slicer(kind, source):
    scene = vtkMRMLScene()
    if kind.startswith("dicom"):  # Slicer's DICOM module is not in slicer-core: load through the library
        study = load_study(dicom_dir=source, needed=MAPS)
        nodes = {name: mrml_nodes.add_volume_node(scene, study.maps[name], study.geometry, name) for name in MAPS}
    else:
        nodes = {name: mrml_nodes.load_volume_file(scene, path) for name, path in source.items()}
    result = segment_volumes(scene, nodes, method="threshold")
    return result.labels, mrml_segmentation.table_values(result.table_node), result.notes


@pytest.mark.parametrize("kind", ["scalar", "colour", "dicom_scalar", "dicom_colour"])
def test_cli_batch_and_slicer_give_identical_labels_and_volumes(kind, inputs, tmp_path):
    source = inputs[kind]
    cli_labels, cli_volumes, cli_notes = _via_cli(kind, source, tmp_path / "cli")
    batch_labels, row = _via_batch(kind, source, tmp_path / "batch", tmp_path)
    panel_labels, table, panel_notes = _via_slicer(kind, source)

    assert (cli_labels == 3).any() and (cli_labels == 2).any()
    np.testing.assert_array_equal(batch_labels, cli_labels)
    np.testing.assert_array_equal(panel_labels, cli_labels)
    assert float(row["core_ml"]) == pytest.approx(cli_volumes["core_ml"], abs=0.005)
    assert table["Ischemic core"] == pytest.approx(cli_volumes["core_ml"], rel=1e-9)
    assert table["Penumbra"] == pytest.approx(cli_volumes["penumbra_ml"], rel=1e-9)
    if "colour" in kind:  # one decoder, one note, in every front end's output
        decoded_by_the_panel = [] if kind.startswith("dicom") else [panel_notes]  # DICOM reaches it decoded
        for notes in (cli_notes, row["notes"].split(" | "), *decoded_by_the_panel):
            assert any("colour-coded" in note for note in notes), notes


def test_method_says_what_it_needs(tmp_path):
    import torch

    from StrokePerfusionSegLib.bundle import save_bundle
    from StrokePerfusionSegLib.networks import ModelConfig, build_model

    threshold = pipeline.resolve_method("threshold")
    assert threshold.required_maps == ("cbf", "tmax", "mip") and not threshold.uses_nihss
    assert pipeline.method_needs("threshold") == (threshold.required_maps, False)
    torch.manual_seed(0)
    config = ModelConfig(arch="SF", inputs=("cbf", "tmax"), use_nihss=True, width=1 / 16, image_size=32,
                         num_classes=3)
    folder = save_bundle(tmp_path, build_model(config), config, model_id="tiny-3class", version="0.1")
    method = pipeline.resolve_method(str(folder))
    assert method.reads == ("cbf", "tmax") and method.required_maps == ("cbf", "tmax", "mip")
    assert method.uses_nihss and method.display_name == "model tiny-3class 0.1"
    # The panel asks before PyTorch loads anything: the manifest says the same.
    assert pipeline.method_needs(str(folder)) == (method.required_maps, True)
    # So does the command line's method, whose model loads in the background.
    loading = pipeline.resolve_method(str(folder), background=True)
    assert (loading.reads, loading.required_maps, loading.uses_nihss, loading.display_name) == (
        method.reads, method.required_maps, method.uses_nihss, method.display_name)
    assert loading.bundle.config == method.bundle.config
    # And a Method made from a loaded Bundle (the library's callers).
    given = pipeline.resolve_method(method.bundle)
    assert (given.reads, given.required_maps, given.uses_nihss, given.bundle) == (
        method.reads, method.required_maps, method.uses_nihss, method.bundle)


def _tiny_bundle(folder):
    import torch

    from StrokePerfusionSegLib.bundle import save_bundle
    from StrokePerfusionSegLib.networks import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(arch="SF", inputs=("cbf", "tmax"), width=1 / 16, image_size=32, num_classes=3)
    return save_bundle(folder, build_model(config), config, model_id="tiny", version="0.1")


def test_model_loading_in_the_background_is_refused_where_it_is_needed(lvo_case, tmp_path):
    """Weights that fail their check: a method loading in the background resolves from the
    manifest; the same InputError comes where the model is first needed, for every study."""
    folder = _tiny_bundle(tmp_path)
    weights = folder / "weights.safetensors"
    damaged = bytearray(weights.read_bytes())
    damaged[-1] ^= 1
    weights.write_bytes(bytes(damaged))
    with pytest.raises(InputError, match="fails its sha256 check"):
        pipeline.resolve_method(str(folder))

    from StrokePerfusionSegLib.studyio import Study

    method = pipeline.resolve_method(str(folder), background=True)
    assert method.is_network and method.required_maps == ("cbf", "tmax", "mip")
    with pytest.raises(InputError, match="fails its sha256 check"):
        method.bundle
    assert not method.model_ready  # so the study's input errors still come first
    study = Study("s1", lvo_case.geometry, {name: lvo_case.maps[name] for name in MAPS})
    for _ in range(2):
        with pytest.raises(InputError, match="fails its sha256 check"):
            pipeline.segment_study(study, method, device="cpu")
    # The brain mask is made while the model loads: a study without brain tissue is refused
    # for that, before the model is waited for.
    no_brain = np.where(lvo_case.maps["mip"] > 300, lvo_case.maps["mip"], -1000.0).astype(np.float32)
    with pytest.raises(InputError, match="brain mask is empty"):
        pipeline.segment_study(Study("s2", lvo_case.geometry, {**study.maps, "mip": no_brain}), method, device="cpu")


def test_model_loading_in_the_background_gives_the_loaded_result(lvo_case, tmp_path):
    from StrokePerfusionSegLib.studyio import Study

    folder = _tiny_bundle(tmp_path)
    study = Study("s1", lvo_case.geometry, {name: lvo_case.maps[name] for name in MAPS})
    method = pipeline.resolve_method(str(folder), background=True)
    loading = pipeline.segment_study(study, method, device="cpu")
    # Loaded now: the next study's mask is made as with a model at hand (beside a GPU's network).
    assert method.model_ready and pipeline.resolve_method(str(folder)).model_ready
    loaded = pipeline.segment_study(study, pipeline.resolve_method(str(folder)), device="cpu")
    assert np.array_equal(loading.labels, loaded.labels) and loading.notes == loaded.notes
    assert {"wait_model", "segment"} <= set(loading.timings) and {"wait_model", "segment"} <= set(loaded.timings)


def test_manifest_that_disagrees_with_the_architecture_is_refused(tmp_path):
    folder = _tiny_bundle(tmp_path)
    manifest = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**manifest, "uses_nihss": True}))
    with pytest.raises(InputError, match="disagree with its architecture"):
        pipeline.resolve_method(str(folder))
    with pytest.raises(InputError, match="disagree with its architecture"):
        pipeline.resolve_method(str(folder), background=True).bundle
    (folder / "model.json").write_text(json.dumps({**manifest, "inputs": 4}))
    with pytest.raises(InputError, match="does not list its input maps"):
        pipeline.method_needs(str(folder))


def test_missing_map_and_nihss_named_before_any_work(lvo_case):
    from StrokePerfusionSegLib.studyio import Study

    study = Study("s1", lvo_case.geometry, {"cbf": lvo_case.maps["cbf"], "tmax": lvo_case.maps["tmax"]})
    with pytest.raises(InputError, match="needs MIP"):
        pipeline.segment_study(study, pipeline.resolve_method("threshold"))


def test_perfusion_notes_reach_the_report_and_the_summary(tiny_cohort, tmp_path):
    """A study computed from its CTP: the perfusion analysis' notes (here: a series cut short for
    CBF) travel to the JSON report and the batch CSV, and its brain mask is reused."""
    import shutil

    case = sorted(p for p in tiny_cohort.iterdir() if p.is_dir())[0]
    study_dir = tmp_path / "studies" / "short"
    study_dir.mkdir(parents=True)
    image = sitk.ReadImage(str(case / "ctp.nii.gz"))
    shutil.copy(case / "case.json", study_dir / "case.json")
    sitk.WriteImage(image[:, :, :, :14], str(study_dir / "ctp.nii.gz"))  # 14 s: the bolus is not over
    study = load_study(case_dir=study_dir, needed=("cbf", "tmax"))
    assert study.notes and study.brain_mask is not None
    assert cli_main(["segment", "--batch", str(study_dir.parent), "--out", str(tmp_path / "out"),
                     "--method", "threshold", "--format", "nifti"]) == 0
    row = _summary(tmp_path / "out" / "summary.csv")["short"]
    report = json.loads((tmp_path / "out" / "short" / "short_report.json").read_text())
    for note in study.notes:
        assert note in report["notes"] and note in row["notes"]
