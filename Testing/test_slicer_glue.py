"""MRML glue on real MRML nodes (slicer-core): volume nodes -> segmentation node and table."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core (the 'mrml' extra) is not installed")

from StrokePerfusionSegLib import imageio, terminology  # noqa: E402
from StrokePerfusionSegLib.mrml import ctp as mrml_ctp  # noqa: E402
from StrokePerfusionSegLib.mrml import nodes as mrml_nodes  # noqa: E402
from StrokePerfusionSegLib.mrml import segmentation as mrml_segmentation  # noqa: E402
from StrokePerfusionSegLib.mrml.study import segment_volumes  # noqa: E402
from StrokePerfusionSegLib.errors import CancelledError, InputError  # noqa: E402
from StrokePerfusionSegLib.imageio import Geometry  # noqa: E402
from StrokePerfusionSegLib.labels import CORE, LESION_SEGMENTS, PENUMBRA  # noqa: E402
from StrokePerfusionSegLib.predictor import predict  # noqa: E402

#: An oblique, anisotropic grid: catches RAS/LPS and axis-order mistakes.
OBLIQUE = Geometry(spacing=(0.8, 0.7, 5.0), origin=(12.0, -30.0, 40.0), direction=(0, -1, 0, 1, 0, 0, 0, 0, 1))


@pytest.fixture
def scene():
    scene = slicer.vtkMRMLScene()
    yield scene
    scene.Clear(1)


@pytest.fixture
def lvo_nodes(scene, lvo_case):
    return mrml_nodes.add_case_volumes(scene, lvo_case)


@pytest.fixture
def lesion_nodes(scene, lvo_case):
    """The LVO case's grid and MIP, with CBF and Tmax drawn from its true labels.

    Thresholding then surely finds core and penumbra, whatever the quality of the maps computed
    from the tiny CTP, so the segments checked below are never empty.
    """
    from StrokePerfusionSegLib.casefolder import Case

    cbf = np.where(lvo_case.label == CORE, 5.0, 50.0).astype(np.float32)
    tmax = np.where(lvo_case.label >= PENUMBRA, 10.0, 1.0).astype(np.float32)
    maps = {"cbf": cbf, "tmax": tmax, "mip": lvo_case.maps["mip"]}
    return mrml_nodes.add_case_volumes(scene, Case(lvo_case.case_id, lvo_case.geometry, maps=maps))


def threshold_inputs(nodes):
    return {name: nodes[name] for name in ("cbf", "cbv", "ttp", "tmax", "mip") if name in nodes}


def multi_volume(scene, frames: np.ndarray, geometry: Geometry, frame_ms: float = 1000.0):
    """A multi-volume as Slicer's MultiVolume importer makes it: one component per frame."""
    from vtk.util import numpy_support

    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "multi-volume")
    mrml_nodes.set_node_array(node, frames[0], geometry)
    per_voxel = np.moveaxis(frames, 0, -1).reshape(-1, frames.shape[0])
    node.GetImageData().GetPointData().SetScalars(numpy_support.numpy_to_vtk(per_voxel.copy(), deep=True))
    node.GetImageData().SetNumberOfScalarComponents(frames.shape[0], node.GetImageData().GetInformation())
    node.SetAttribute("MultiVolume.FrameLabels", ",".join(f"{i * frame_ms:g}" for i in range(frames.shape[0])))
    return node


def count(scene, class_name):
    return scene.GetNumberOfNodesByClass(class_name)


# --- geometry ------------------------------------------------------------------------------


def test_slicer_reader_and_glue_agree_on_geometry(scene, tmp_path):
    """A NIfTI read by Slicer's own reader has the Geometry SimpleITK reports (RAS vs LPS)."""
    values = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    path = imageio.write_array(values, OBLIQUE, tmp_path / "cbf.nii.gz")
    node = mrml_nodes.load_volume_file(scene, path)
    assert mrml_nodes.geometry_from_node(node).matches(Geometry.from_image(sitk.ReadImage(str(path))))
    np.testing.assert_array_equal(mrml_nodes.array_from_node(node), values)
    # voxel (i=1, j=2, k=3) lies at the same patient point for both libraries
    image = sitk.ReadImage(str(path))
    lps = np.array(image.TransformIndexToPhysicalPoint((1, 2, 3)))
    ras = mrml_nodes.ijk_to_ras(mrml_nodes.geometry_from_node(node)) @ np.array([1, 2, 3, 1.0])
    np.testing.assert_allclose(ras[:3], lps * np.array([-1, -1, 1]), atol=1e-4)


def test_colour_volume_round_trip(scene, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (4, 6, 8, 3), dtype=np.uint8)
    node = mrml_nodes.load_volume_file(scene, imageio.write_array(rgb, OBLIQUE, tmp_path / "cbf_rgb.nii.gz"))
    assert node.IsA("vtkMRMLVectorVolumeNode")
    np.testing.assert_array_equal(mrml_nodes.array_from_node(node), rgb)


# --- terminology ---------------------------------------------------------------------------


def test_terminology_file_is_generated_from_labels():
    assert terminology.TERMINOLOGY_FILE.read_text() == terminology.terminology_json_text(), (
        "run `python tools/make_terminology.py` after changing labels.py"
    )


def test_terminology_loads_in_slicer_and_matches_segment_entries():
    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    assert mrml_segmentation.load_terminology(logic) == terminology.TERMINOLOGY_CONTEXT
    for spec in LESION_SEGMENTS:
        entry = slicer.vtkSlicerTerminologyEntry()
        assert logic.FindTypeInTerminologyBy3dSlicerLabel(terminology.TERMINOLOGY_CONTEXT, spec.name, entry)
        assert logic.SerializeTerminologyEntry(entry) == terminology.terminology_entry(spec)
        assert entry.GetTypeObject().GetCodeValue() == spec.type[0]
        rgb = entry.GetTypeObject().GetRecommendedDisplayRGBValue()
        np.testing.assert_allclose(np.array(rgb) / 255, spec.color, atol=1 / 255)


# --- the whole path ------------------------------------------------------------------------


def test_threshold_segmentation_of_the_lvo_case(scene, lvo_case, lesion_nodes):
    result = segment_volumes(scene, threshold_inputs(lesion_nodes), method="threshold")
    geometry = lvo_case.geometry
    maps = {name: mrml_nodes.array_from_node(node) for name, node in lesion_nodes.items()}
    expected = predict(maps, geometry.spacing_zyx, method="threshold", mip=maps["mip"]).labels
    np.testing.assert_array_equal(result.labels, expected)
    assert (result.labels == CORE).any() and (result.labels == PENUMBRA).any()

    node = result.segmentation_node
    segmentation = node.GetSegmentation()
    assert segmentation.GetSegmentIDs() == tuple(spec.segment_id for spec in LESION_SEGMENTS)
    for spec in LESION_SEGMENTS:
        segment = segmentation.GetSegment(spec.segment_id)
        assert segment.GetName() == spec.name
        np.testing.assert_allclose(segment.GetColor(), spec.color)
        assert segment.GetTerminology() == terminology.terminology_entry(spec)
    # reference geometry and source volume: the first input (CBF)
    assert node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole()) is lesion_nodes["cbf"]
    assert mrml_segmentation.source_volume_of(node, scene) is lesion_nodes["cbf"]
    # placed in the inputs' study
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(lesion_nodes["cbf"]))
    assert hierarchy.GetItemLevel(study) == "Study"
    for output in (node, result.table_node):
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(output)) == study

    # table volumes = voxel counts x voxel volume
    voxel_ml = float(np.prod(geometry.spacing)) / 1000
    values = mrml_segmentation.table_values(result.table_node)
    core_ml = np.count_nonzero(expected == CORE) * voxel_ml
    penumbra_ml = np.count_nonzero(expected == PENUMBRA) * voxel_ml
    assert values["Ischemic core"] == pytest.approx(core_ml)
    assert values["Penumbra"] == pytest.approx(penumbra_ml)
    assert values["Hypoperfused"] == pytest.approx(core_ml + penumbra_ml)
    assert values["Mismatch volume"] == pytest.approx(penumbra_ml)
    assert values["Mismatch ratio"] == pytest.approx((core_ml + penumbra_ml) / core_ml)
    assert values["Target mismatch (all criteria)"] == float(result.volumes.target_mismatch["target_mismatch"])
    assert "Decision support" in result.table_node.GetDescription()


def test_seg_nrrd_file_loads_in_slicer_as_the_panel_segments(scene, lvo_case, lesion_nodes, tmp_path):
    """The one .seg.nrrd writer's file, read by Slicer's own storage node and by slicerio, holds
    the segments the panel makes: names, colours, terminology, voxels, geometry."""
    from StrokePerfusionSegLib.writers import write_seg_nrrd

    slicerio = pytest.importorskip("slicerio")
    result = segment_volumes(scene, threshold_inputs(lesion_nodes), method="threshold")
    assert (result.labels == CORE).any() and (result.labels == PENUMBRA).any()
    path = write_seg_nrrd(result.labels, lvo_case.geometry, tmp_path / "lvo.seg.nrrd")
    assert [p.name for p in tmp_path.iterdir()] == ["lvo.seg.nrrd"]  # no temporary left

    loaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "loaded")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(loaded)
    panel = result.segmentation_node.GetSegmentation()
    for spec in LESION_SEGMENTS:
        segment = loaded.GetSegmentation().GetSegment(spec.segment_id)
        assert segment.GetName() == panel.GetSegment(spec.segment_id).GetName() == spec.name
        assert segment.GetTerminology() == panel.GetSegment(spec.segment_id).GetTerminology()
        np.testing.assert_allclose(segment.GetColor(), spec.color, atol=1e-6)

    segmentation = slicerio.read_segmentation(str(path))
    voxels = np.transpose(segmentation["voxels"], (2, 1, 0))  # slicerio: (i, j, k) -> (z, y, x)
    expected = np.where(np.isin(result.labels, (CORE, PENUMBRA)), result.labels, 0)
    np.testing.assert_array_equal(voxels, expected)
    ijk_to_lps = np.array(segmentation["ijkToLPS"])
    np.testing.assert_allclose(ijk_to_lps[:3, 3], lvo_case.geometry.origin, atol=1e-4)


def test_rerun_replaces_segments_and_keeps_user_segments(scene, lvo_nodes):
    first = segment_volumes(scene, threshold_inputs(lvo_nodes), method="threshold")
    node, table = first.segmentation_node, first.table_node
    node.GetSegmentation().AddEmptySegment("UserNote", "user note")
    counts = {c: count(scene, c) for c in ("vtkMRMLSegmentationNode", "vtkMRMLTableNode")}
    second = segment_volumes(
        scene, threshold_inputs(lvo_nodes), method="threshold", segmentation_node=node, table_node=table
    )
    assert second.segmentation_node is node and second.table_node is table
    assert {c: count(scene, c) for c in counts} == counts
    ids = node.GetSegmentation().GetSegmentIDs()
    assert sorted(ids) == sorted(["IschemicCore", "Penumbra", "UserNote"])
    assert table.GetNumberOfRows() == len(mrml_segmentation.volume_rows(second.volumes))


def test_colour_coded_inputs_give_the_scalar_result(scene, lvo_case):
    """RGB copies are decoded by the one colour decoder: the result matches segmenting the decoded maps."""
    from StrokePerfusionSegLib.colourcoding import decode_colour_map

    nodes = mrml_nodes.add_case_volumes(scene, lvo_case, colour_coded=True)
    assert all(node.IsA("vtkMRMLVectorVolumeNode") for node in nodes.values() if node.IsA("vtkMRMLVolumeNode"))
    result = segment_volumes(scene, threshold_inputs(nodes), method="threshold")
    decoded = {name: decode_colour_map(lvo_case.rgb[name], name).values for name in ("cbf", "tmax", "mip")}
    expected = predict(decoded, lvo_case.geometry.spacing_zyx, method="threshold", mip=decoded["mip"]).labels
    np.testing.assert_array_equal(result.labels, expected)
    assert any("colour-coded" in note for note in result.notes)


# --- model bundle --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A random-weight slow-fusion bundle at 1/16 width, reading the NIHSS."""
    import torch

    from StrokePerfusionSegLib.bundle import save_bundle
    from StrokePerfusionSegLib.networks import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(arch="SF", use_nihss=True, width=1 / 16, image_size=64)
    folder = tmp_path_factory.mktemp("bundles")
    return save_bundle(folder, build_model(config), config, model_id="tiny-sf", version="0.0.1")


def test_bundle_method_with_progress(scene, lvo_case, lvo_nodes, tiny_bundle):
    calls = []
    result = segment_volumes(
        scene, threshold_inputs(lvo_nodes), method=str(tiny_bundle), nihss=lvo_case.nihss or 10,
        device="cpu", progress=lambda done, total: calls.append((done, total)),
    )
    assert calls and calls[-1][0] == calls[-1][1] == lvo_case.shape[0]
    assert result.labels.shape == lvo_case.shape
    assert set(np.unique(result.labels)) <= {0, 1, 2, 3}
    assert result.segmentation_node.GetSegmentation().GetNumberOfSegments() == 2
    assert result.device == "cpu"


def test_panel_keeps_a_loaded_model_until_its_bundle_changes(scene, lvo_nodes, tiny_bundle, tmp_path):
    """The panel's MethodCache: one load per version of the bundle's files; a retrained bundle
    written over it, a touched file or a broken one are noticed at the next Apply."""
    import os
    import shutil

    import torch

    from StrokePerfusionSegLib.bundle import save_bundle
    from StrokePerfusionSegLib.methodcache import MethodCache
    from StrokePerfusionSegLib.networks import build_model

    folder = shutil.copytree(tiny_bundle, tmp_path / tiny_bundle.name)
    methods = MethodCache()

    def apply(method):
        return segment_volumes(scene, threshold_inputs(lvo_nodes), method=method, nihss=8, device="cpu").result

    first = methods.resolve(str(folder))
    assert methods.resolve(str(folder)) is first and methods.resolve("threshold").name == "threshold"
    cached, again, uncached = apply(methods.resolve(str(folder))), apply(methods.resolve(str(folder))), apply(str(folder))
    assert cached.method is again.method is first
    for result in (again, uncached):
        assert np.array_equal(result.labels, cached.labels)
        assert np.array_equal(result.probabilities, cached.probabilities)

    torch.manual_seed(1)  # a retrained model written over the bundle
    config = first.bundle.config
    save_bundle(tmp_path, build_model(config), config, model_id=first.name, version=first.version, overwrite=True)
    retrained = methods.resolve(str(folder))
    assert retrained is not first and methods.resolve(str(folder)) is retrained
    assert np.array_equal(apply(retrained).probabilities, apply(str(folder)).probabilities)
    assert not np.array_equal(apply(retrained).probabilities, cached.probabilities)

    weights = folder / "weights.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert methods.resolve(str(folder)) is not retrained
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InputError):
        methods.resolve(str(folder))


def test_nihss_required_by_the_model(scene, lvo_nodes, tiny_bundle):
    before = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="NIHSS"):
        segment_volumes(scene, threshold_inputs(lvo_nodes), method=str(tiny_bundle), nihss=None)
    with pytest.raises(InputError, match="0..42"):
        segment_volumes(scene, threshold_inputs(lvo_nodes), method=str(tiny_bundle), nihss=57)
    assert scene.GetNumberOfNodes() == before


def test_cancel_leaves_the_output_untouched(scene, lvo_nodes, tiny_bundle):
    first = segment_volumes(scene, threshold_inputs(lvo_nodes), method="threshold")
    node = first.segmentation_node
    mtime, before = node.GetSegmentation().GetMTime(), scene.GetNumberOfNodes()
    with pytest.raises(CancelledError):
        segment_volumes(
            scene, threshold_inputs(lvo_nodes), method=str(tiny_bundle), nihss=8, device="cpu",
            segmentation_node=node, cancel=lambda: True,
        )
    assert scene.GetNumberOfNodes() == before
    assert node.GetSegmentation().GetMTime() == mtime
    assert node.GetSegmentation().GetSegmentIDs() == ("IschemicCore", "Penumbra")


def test_scene_closed_while_running(scene, lvo_nodes, tiny_bundle):
    def close_scene():
        scene.Clear(0)  # what File > Close Scene does while the predictor polls
        return False

    with pytest.raises(InputError, match="scene"):
        segment_volumes(
            scene, threshold_inputs(lvo_nodes), method=str(tiny_bundle), nihss=8, device="cpu", cancel=close_scene
        )
    assert count(scene, "vtkMRMLSegmentationNode") == 0


def test_corrupt_bundle_is_a_clear_error(scene, lvo_nodes, tiny_bundle, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    weights = broken / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    before = scene.GetNumberOfNodes()
    with pytest.raises(InputError):
        segment_volumes(scene, threshold_inputs(lvo_nodes), method=str(broken), nihss=8)
    assert scene.GetNumberOfNodes() == before


# --- bad inputs ----------------------------------------------------------------------------


def test_no_inputs_and_missing_maps(scene, lvo_nodes):
    with pytest.raises(InputError, match="select"):
        segment_volumes(scene, {}, method="threshold")
    with pytest.raises(InputError, match="MIP"):
        segment_volumes(scene, {"cbf": lvo_nodes["cbf"], "tmax": lvo_nodes["tmax"]}, method="threshold")
    assert count(scene, "vtkMRMLSegmentationNode") == 0


def test_mismatched_grids_resampled_with_a_notice_or_refused(scene, lvo_case, lvo_nodes):
    shifted = Geometry(lvo_case.geometry.spacing, tuple(np.add(lvo_case.geometry.origin, (3.0, 0.0, 0.0))),
                       lvo_case.geometry.direction)
    moved = mrml_nodes.add_volume_node(scene, lvo_case.maps["tmax"], shifted, "moved Tmax")
    inputs = threshold_inputs(lvo_nodes) | {"tmax": moved}
    with pytest.raises(InputError, match="grid"):
        segment_volumes(scene, inputs, method="threshold", resample=False)
    assert count(scene, "vtkMRMLSegmentationNode") == 0
    result = segment_volumes(scene, inputs, method="threshold")
    assert any("resampled" in note and "TMAX" in note for note in result.notes)
    assert result.labels.shape == lvo_case.shape


def test_2d_and_4d_volumes_where_3d_is_expected(scene, lvo_case, lvo_nodes):
    flat = mrml_nodes.add_volume_node(scene, lvo_case.maps["cbf"][:1], lvo_case.geometry, "one slice")
    with pytest.raises(InputError, match="2D"):
        segment_volumes(scene, threshold_inputs(lvo_nodes) | {"cbf": flat}, method="threshold")
    frames = multi_volume(scene, np.zeros((7,) + lvo_case.shape, np.float32), lvo_case.geometry)
    with pytest.raises(InputError, match="4D"):
        segment_volumes(scene, threshold_inputs(lvo_nodes) | {"tmax": frames}, method="threshold")
    with pytest.raises(InputError, match="3D volume, not a 4D CTP"):
        mrml_ctp.ctp_from_node(lvo_nodes["cbf"])
    ctp, _, dt_s = mrml_ctp.ctp_from_node(frames)  # ... but it is a valid 4D CTP
    assert ctp.shape == (7,) + lvo_case.shape and dt_s == pytest.approx(1.0)
    assert count(scene, "vtkMRMLSegmentationNode") == 0


# --- 4D CTP and auto-fill ------------------------------------------------------------------


def test_maps_from_a_ctp_sequence(scene, lvo_case, lvo_nodes):
    from StrokePerfusionSegLib.perfusion import compute_perfusion_maps

    sequence = lvo_nodes["ctp"]
    ctp, geometry, dt_s = mrml_ctp.ctp_from_node(sequence)
    np.testing.assert_array_equal(ctp, lvo_case.ctp)
    assert dt_s == pytest.approx(lvo_case.dt_s) and geometry.matches(lvo_case.geometry)
    computed = mrml_ctp.compute_map_volumes(scene, sequence)
    nodes = computed.nodes
    assert set(nodes) == {"cbf", "cbv", "mtt", "ttp", "tmax", "mip"}
    expected = compute_perfusion_maps(lvo_case.ctp, lvo_case.dt_s, lvo_case.geometry.spacing_zyx).maps
    for name, node in nodes.items():
        np.testing.assert_allclose(mrml_nodes.array_from_node(node), expected[name], rtol=1e-5, atol=1e-5)
        assert mrml_nodes.geometry_from_node(node).matches(lvo_case.geometry)
    again = mrml_ctp.compute_map_volumes(scene, sequence).nodes
    assert all(again[name] is nodes[name] for name in nodes)  # updated in place, not piled up


def test_maps_from_a_ctp_by_the_method_asked_for(scene, lvo_case, lvo_nodes):
    from StrokePerfusionSegLib.perfusion import compute_perfusion_maps

    nodes = mrml_ctp.compute_map_volumes(scene, lvo_nodes["ctp"], perfusion_method="model").nodes
    spacing = lvo_case.geometry.spacing_zyx
    fitted = compute_perfusion_maps(lvo_case.ctp, lvo_case.dt_s, spacing, method="model").maps
    svd = compute_perfusion_maps(lvo_case.ctp, lvo_case.dt_s, spacing, method="bcsvd").maps
    cbf = mrml_nodes.array_from_node(nodes["cbf"])
    np.testing.assert_allclose(cbf, fitted["cbf"], rtol=1e-5, atol=1e-5)
    assert not np.allclose(cbf, svd["cbf"], rtol=0.01)
    with pytest.raises(InputError, match="unknown deconvolution method 'svd'"):
        mrml_ctp.compute_map_volumes(scene, lvo_nodes["ctp"], perfusion_method="svd")


def test_perfusion_notes_reach_apply(scene, lvo_case):
    """A series cut short before the bolus has passed: the analysis' notes come back with the map
    volumes, and an Apply on those volumes reports them."""
    short = mrml_nodes.add_ctp_sequence(scene, lvo_case.ctp[:14], lvo_case.geometry, lvo_case.dt_s, "short CTP")
    computed = mrml_ctp.compute_map_volumes(scene, short)
    assert computed.notes
    result = segment_volumes(scene, {name: computed.nodes[name] for name in ("cbf", "tmax", "mip")},
                             method="threshold")
    assert all(note in result.notes for note in computed.notes)


def test_auto_fill_only_where_unambiguous(scene, lvo_nodes, lvo_case):
    guessed = mrml_nodes.guess_map_nodes(scene)
    assert {name: node.GetName() for name, node in guessed.items()} == {
        name: lvo_nodes[name].GetName() for name in ("cbf", "cbv", "ttp", "tmax", "mip")
    }
    mrml_nodes.add_volume_node(scene, lvo_case.maps["cbf"], lvo_case.geometry, "second CBF")
    assert "cbf" not in mrml_nodes.guess_map_nodes(scene)
