"""strokeperfusionseg_training.data: splits, case lists, slice datasets, augmentation, epoch plans, bad input."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from StrokePerfusionSegLib import casefolder, imageio
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.imageio import Geometry
from strokeperfusionseg_training import data
from strokeperfusionseg_training.config import TrainConfig
from strokeperfusionseg_training.trainer import fit
from training_cases import resplit_cohort, split_case_list

PMS = ("cbf", "cbv", "ttp", "tmax")


def _config(**settings) -> TrainConfig:
    model = {"arch": "SF", "inputs": list(PMS), "use_nihss": True, "width": 1 / 16, "image_size": 32}
    model.update(settings.pop("model", {}))
    return TrainConfig(model=model, stages=["all"], imagenet_weights=None, max_epochs=1, **settings)


@pytest.fixture
def cohort_copy(tiny_cohort, tmp_path):
    """A writable copy of the tiny phantom cohort."""
    root = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, root)
    return resplit_cohort(root)


def _first_case(root, split="train"):
    return casefolder.load_cohort(root).ids(split=split)[0]


def test_stratified_split_keeps_group_proportions():
    # Ids repeat across the two parts of a joined cohort; folders do not.
    groups = ["LVO"] * 50 + ["NonLVO"] * 30 + ["WIS"] * 20
    records = [data.CaseRecord(f"P{i // 2:04d}", Path(f"part-{i % 2}") / f"P{i // 2:04d}", g)
               for i, g in enumerate(groups)]
    split = data.stratified_split(records, seed=3)
    counts = Counter((r.group, r.split) for r in split)
    for group, n in (("LVO", 50), ("NonLVO", 30), ("WIS", 20)):
        assert counts[(group, "train")] == round(0.58 * n)
        assert counts[(group, "train")] + counts[(group, "val")] == round(0.78 * n)
        assert sum(counts[(group, s)] for s in ("train", "val", "test")) == n
    assert split == data.stratified_split(records, seed=3)
    assert [r.split for r in split] != [r.split for r in data.stratified_split(records, seed=4)]


def test_csv_case_list_joins_cohorts_with_relative_folders(tiny_cohort, tmp_path):
    shutil.copytree(tiny_cohort, tmp_path / "lists" / "tiny")
    csv_path = data.write_case_list([tmp_path / "lists" / "tiny"], tmp_path / "lists" / "cases.csv")
    cohort = casefolder.load_cohort(tiny_cohort)
    records = data.load_records(csv_path)
    assert [r.case_id for r in records] == [f"tiny/{i}" for i in cohort.ids()]
    assert [(r.group, r.nihss, r.split) for r in records] == [(c["group"], c["nihss"], c["split"]) for c in cohort.cases]
    assert all((r.folder / "cbf.nii.gz").is_file() for r in records)
    (tmp_path / "bad.csv").write_text("folder,group\nx,LVO\n")
    with pytest.raises(InputError, match="missing column"):
        data.load_records(tmp_path / "bad.csv")


def test_slice_dataset_encodes_resizes_and_weights_nonlvo(tiny_cohort):
    records = data.records_from_cohort(tiny_cohort)
    cases = [data.load_training_case(r, PMS, use_nihss=True) for r in records]
    model_config = _config().model_config()
    dataset = data.SliceDataset(cases, model_config)
    assert len(dataset) == sum(c.slices.shape[0] for c in cases)
    item = dataset[0]
    assert item["images"].shape == (4, 3, 32, 32) and item["images"].dtype == torch.float32
    assert item["target"].shape == (32, 32) and int(item["target"].max()) <= 3
    for index in range(len(dataset)):
        group = dataset.case_of(index).record.group
        weight = dataset[index]["weight"]
        assert weight.tolist() == ([1, 1, 6, 6] if group == "NonLVO" else [1, 1, 1, 1])
    lesion_only = data.SliceDataset(cases, model_config, lesion_slices_only=True)
    assert all(lesion_only.case_of(i).record.group != "WIS" for i in range(len(lesion_only)))
    assert len(lesion_only) < len(dataset)


def test_augmentation_moves_image_and_label_together():
    image = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(2, 3, 1, 1)
    target = torch.arange(16).reshape(4, 4)
    augment = data.Augmentation(intensity_jitter=0.0)
    seen = set()
    for seed in range(40):
        moved_image, moved_target = augment(image, target, seed)
        assert torch.equal(moved_image[0, 0], moved_target.float())
        seen.add(tuple(moved_target.flatten().tolist()))
    assert len(seen) == 8  # the 8 symmetries of the square: 4 rotations x flips
    jittered, _ = data.Augmentation(rotations=False, flips=False, intensity_jitter=0.05)(image, target, 1)
    assert not torch.equal(jittered, image) and torch.allclose(jittered, image, rtol=0.06, atol=0.06)


def test_epoch_plan_shards_the_same_global_batches():
    single = data.epoch_plan(11, 4, seed=5, epoch=2)
    ranks = [data.epoch_plan(11, 4, seed=5, epoch=2, world_size=2, rank=r) for r in (0, 1)]
    assert len(single) == 12 and sorted({k for k, _ in single}) == list(range(11))
    interleaved = [key for b in range(3) for r in (0, 1) for key in ranks[r][2 * b:2 * b + 2]]
    assert interleaved == single
    assert data.epoch_plan(11, 4, seed=5, epoch=3) != single
    with pytest.raises(InputError, match="multiple"):
        data.epoch_plan(11, 3, seed=0, epoch=0, world_size=2)


def _assert_refused(config, source, run_dir, match):
    with pytest.raises(InputError, match=match):
        fit(config, source, run_dir, progress=False)
    assert not (run_dir / "checkpoints").exists()


def test_missing_map_file_is_refused_naming_the_case(cohort_copy, tmp_path):
    case_id = _first_case(cohort_copy)
    (cohort_copy / case_id / "ttp.nii.gz").unlink()
    _assert_refused(_config(), cohort_copy, tmp_path / "run", f"case {case_id}: missing ttp.nii.gz")


def test_missing_label_is_refused(cohort_copy, tmp_path):
    case_id = _first_case(cohort_copy, "val")
    (cohort_copy / case_id / "label.nii.gz").unlink()
    _assert_refused(_config(), cohort_copy, tmp_path / "run", f"case {case_id}: no label.nii.gz")


def test_inconsistent_shapes_are_refused(cohort_copy, tmp_path):
    case_id = _first_case(cohort_copy)
    path = cohort_copy / case_id / "cbv.nii.gz"
    array, geometry, _ = imageio.read_array(path)
    imageio.write_array(array[:, :-2], geometry, path)
    _assert_refused(_config(), cohort_copy, tmp_path / "run", f"case {case_id}: .*differ in shape")


def test_inconsistent_spacing_is_refused(cohort_copy, tmp_path):
    case_id = _first_case(cohort_copy)
    path = cohort_copy / case_id / "tmax.nii.gz"
    array, geometry, _ = imageio.read_array(path)
    imageio.write_array(array, Geometry(tuple(s * 2 for s in geometry.spacing), geometry.origin,
                                        geometry.direction), path)
    _assert_refused(_config(), cohort_copy, tmp_path / "run", f"case {case_id}: tmax.nii.gz and cbf.nii.gz are on different grids")


def test_labels_outside_0_to_3_are_refused(cohort_copy, tmp_path):
    case_id = _first_case(cohort_copy)
    path = cohort_copy / case_id / "label.nii.gz"
    label, geometry, _ = imageio.read_array(path)
    label = label.copy()
    label[0, 0, 0] = 7
    imageio.write_array(label.astype(np.uint8), geometry, path)
    _assert_refused(_config(), cohort_copy, tmp_path / "run", f"case {case_id}: label.nii.gz has values outside 0..3")


def test_missing_nihss_is_refused_only_when_the_model_reads_it(cohort_copy, tmp_path):
    index = json.loads((cohort_copy / "cohort.json").read_text())
    index["cases"][0]["nihss"] = None
    (cohort_copy / "cohort.json").write_text(json.dumps(index))
    case_id = index["cases"][0]["id"]
    if index["cases"][0]["split"] not in ("train", "val"):
        pytest.skip("first case is not used for training")
    _assert_refused(_config(), cohort_copy, tmp_path / "run", f"case {case_id}: NIHSS is missing")
    records = data.load_records(cohort_copy)
    assert data.load_training_cases(records, PMS, use_nihss=False)["train"]


def test_empty_split_is_refused(cohort_copy, tmp_path):
    index = json.loads((cohort_copy / "cohort.json").read_text())
    for case in index["cases"]:
        case["split"] = "train" if case["split"] == "val" else case["split"]
    (cohort_copy / "cohort.json").write_text(json.dumps(index))
    _assert_refused(_config(), cohort_copy, tmp_path / "run", "the val split is empty")


@pytest.mark.parametrize("model, match", [({"arch": "UNet"}, "unknown architecture 'UNet'"),
                                          ({"inputs": ["cbf", "adc"]}, "unknown model input 'adc'")])
def test_unknown_architecture_or_input_is_refused(tiny_cohort, tmp_path, model, match):
    with pytest.raises(InputError, match=match):
        _config(model=model).model_config()
    _assert_refused(_config(model=model), split_case_list(tiny_cohort, tmp_path), tmp_path / "run", match)


def test_unknown_setting_and_stage_are_refused():
    with pytest.raises(InputError, match="unknown training setting"):
        TrainConfig.from_dict({"learning_rate": 1e-3})
    with pytest.raises(InputError, match="unknown training stage"):
        TrainConfig(stages=["thawed"])
    with pytest.raises(InputError, match="ftl_gamma must be positive"):
        TrainConfig(ftl_gamma=0.0)
