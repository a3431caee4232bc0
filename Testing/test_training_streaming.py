"""strokeperfusionseg_training.slicecache: slices streamed from disk give the in-memory batches and fit."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from StrokePerfusionSegLib import casefolder, imageio
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.labels import PENUMBRA
from strokeperfusionseg_training import data, slicecache
from strokeperfusionseg_training.checkpoints import RunCheckpoints
from strokeperfusionseg_training.config import TrainConfig
from strokeperfusionseg_training.trainer import fit, read_metrics
from training_cases import resplit_cohort

PMS = ("cbf", "cbv", "ttp", "tmax")


def _config(**settings) -> TrainConfig:
    model = {"arch": "SF", "inputs": list(PMS), "use_nihss": True, "width": 1 / 16, "image_size": 32,
             "dropout": 0.0}
    return TrainConfig(model=model, stages=["all"], imagenet_weights=None, max_epochs=1, batch_size=2, lr=1e-3,
                       seed=5, **settings)


@pytest.fixture
def cohort(tiny_cohort, tmp_path):
    root = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, root)
    return resplit_cohort(root)


def _batches(cases, model_config, keys, workers):
    dataset = data.SliceDataset(cases, model_config, augmentation=data.Augmentation())
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, sampler=keys, num_workers=workers)
    return list(loader)


def test_streamed_slices_give_the_in_memory_batches_with_workers_and_a_bounded_cache(cohort, tmp_path):
    records = data.load_records(cohort)
    model_config = _config().model_config()
    in_memory = data.load_training_cases(records, PMS, use_nihss=True)
    streamed = slicecache.load_streamed_cases(records, PMS, tmp_path / "cache", use_nihss=True, cache_mb=0.2)
    train_memory, train_disk = in_memory["train"], streamed["train"]
    assert all(isinstance(c.slices, slicecache.DiskSlices) for c in train_disk)
    keys = data.epoch_plan(sum(c.slices.shape[0] for c in train_memory), 2, seed=1, epoch=0)
    keys += keys[-2:]  # the last two items again: read from the in-memory slice cache
    expected = _batches(train_memory, model_config, keys, workers=0)
    for workers in (0, 2):
        found = _batches(train_disk, model_config, keys, workers=workers)
        assert len(found) == len(expected) > 1
        for a, b in zip(expected, found):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lru = train_disk[0].slices.lru
    assert 0 < lru.bytes <= lru.max_bytes < sum(c.slices.shape[0] for c in train_disk) * 4 * 64 * 64 * 4
    for memory_case, disk_case in zip(train_memory, train_disk):
        assert disk_case.slices.lesion_slices() == memory_case.slices.lesion_slices()
        assert disk_case.scheme == memory_case.scheme


def test_the_cache_is_reused_rebuilt_when_a_case_changes_and_checks_as_in_memory(cohort, tmp_path):
    records = data.load_records(cohort)
    cache = slicecache.default_cache_dir(cohort)
    assert cache == cohort / ".slice-cache"
    first = slicecache.load_streamed_cases(records, PMS, cache, use_nihss=True)["train"][0]
    label_file = first.slices.folder / "label.npy"
    written = label_file.stat().st_mtime_ns
    again = slicecache.load_streamed_cases(records, PMS, cache, use_nihss=True)["train"][0]
    assert again.slices.folder == first.slices.folder and label_file.stat().st_mtime_ns == written

    case = casefolder.load_case(first.record.folder, with_label=True)
    changed = case.label.copy()
    changed[0] = 0
    imageio.write_array(changed, case.geometry, first.record.folder / "label.nii.gz")
    rebuilt = slicecache.load_streamed_cases(records, PMS, cache, use_nihss=True)["train"][0]
    np.testing.assert_array_equal(rebuilt.slices.read(0, PMS)[1], changed[0])

    meta = json.loads((first.record.folder / "case.json").read_text())
    meta["label_scheme"] = "core"  # value 2 (penumbra) is not defined by the core scheme
    (first.record.folder / "case.json").write_text(json.dumps(meta))
    assert (case.label == PENUMBRA).any()
    for load in (lambda: data.load_training_cases(records, PMS, use_nihss=True),
                 lambda: slicecache.load_streamed_cases(records, PMS, cache, use_nihss=True)):
        with pytest.raises(InputError, match=r"values \[2\] are not defined by its label scheme 'core'"):
            load()
    assert json.loads((first.slices.folder / "manifest.json").read_text())["label_scheme"] == "core_penumbra"
    with pytest.raises(InputError, match="cache_mb"):
        _config(cache_mb=-1)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(InputError, match="cannot create the slice cache .* slice_cache_dir"):
        slicecache.load_streamed_cases(records, PMS, tmp_path / "a-file" / "cache", use_nihss=True)


def test_a_streaming_fit_is_the_in_memory_fit(cohort, tmp_path):
    fit(_config(), cohort, tmp_path / "memory", device="cpu", progress=False)
    fit(_config(streaming=True, slice_cache_dir=str(tmp_path / "cache")), cohort, tmp_path / "disk",
        device="cpu", progress=False)
    assert read_metrics(tmp_path / "memory")[0]["val_loss"] == read_metrics(tmp_path / "disk")[0]["val_loss"]
    a, b = (RunCheckpoints(tmp_path / run).load_last()["model"] for run in ("memory", "disk"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any((tmp_path / "cache").iterdir()) and not (cohort / ".slice-cache").exists()
