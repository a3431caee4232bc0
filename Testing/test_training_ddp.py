"""Two gloo processes under torchrun, streaming slices from disk, train the same model as one process in memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

import pytest

from conftest import TINY_CONFIG, TINY_SEED
from StrokePerfusionSegLib.phantom import PhantomConfig, generate_cohort
from strokeperfusionseg_training.checkpoints import RunCheckpoints
from strokeperfusionseg_training.config import TrainConfig
from training_cases import split_case_list
from strokeperfusionseg_training.trainer import fit, read_metrics


@pytest.fixture(scope="module")
def truth_map_cohort(tmp_path_factory):
    """The tiny cohort's patients with the simulated (truth) maps as inputs.

    The comparison is about data parallelism, not perfusion: with computed maps Adam turns the
    two layouts' different gradient summation order into weight differences of up to ~7e-3 on
    parameters whose gradients nearly cancel (seen with the model fit's step-like maps), while
    the smooth truth maps keep the two runs within 1e-4.
    """
    root = tmp_path_factory.mktemp("ddp") / "cohort"
    config = PhantomConfig(**{**TINY_CONFIG, "maps": "truth"})
    return generate_cohort(root, 3, TINY_SEED, config, groups=("LVO", "NonLVO", "WIS"))


def test_two_process_gloo_run_matches_one_process(truth_map_cohort, tmp_path):
    cases = split_case_list(truth_map_cohort, tmp_path)
    # No dropout: its random masks are the one thing the two layouts draw differently.
    config = TrainConfig(
        model={"arch": "SF", "inputs": ["cbf", "cbv", "ttp", "tmax"], "use_nihss": True, "width": 1 / 16,
               "image_size": 32, "dropout": 0.0},
        stages=["all"], imagenet_weights=None, lr=1e-3, batch_size=2, max_epochs=2, seed=3,
    )
    fit(config, cases, tmp_path / "single", device="cpu", progress=False)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "strokeperfusionseg_training", "fit", str(tmp_path / "config.json"), "--cohort", str(cases),
         "--out", str(tmp_path / "ddp"), "--device", "cpu", "--no-progress", "--set", "streaming=true"],
        capture_output=True, text=True, env=environment, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    single, ddp = read_metrics(tmp_path / "single"), read_metrics(tmp_path / "ddp")
    assert len(single) == len(ddp) == 2
    for a, b in zip(single, ddp):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and abs(a["val_loss"] - b["val_loss"]) < 1e-4
    # The ranks built the slice cache beside the case list: one folder per case.
    assert len(list((tmp_path / ".slice-cache").iterdir())) == 3
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["device"] == "cpu x2"
    a = RunCheckpoints(tmp_path / "single").load_last()["model"]
    b = RunCheckpoints(tmp_path / "ddp").load_last()["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
