"""strokeperfusionseg_training.experiments: the shipped experiment files and the grid runner."""

from __future__ import annotations

import pytest

from StrokePerfusionSegLib.errors import InputError
from strokeperfusionseg_training.experiments import plan_experiment, run_experiment
from training_cases import split_case_list


@pytest.mark.parametrize("name, runs, first", [("exp1_ftl_grid", 16, "SFF(PMs) gamma=1 alpha=1 beta=1"),
                                               ("exp2_sf_inputs", 12, "SFF(PMs)"),
                                               ("exp3_fusion", 3, "SFG(PMs,N)")])
def test_shipped_experiments_plan_valid_runs(name, runs, first):
    document, planned = plan_experiment(name)
    assert len(planned) == runs and planned[0].name == first
    assert len({p.name for p in planned}) == runs
    configs = [p.config for p in planned]
    if name == "exp1_ftl_grid":
        assert {(c.ftl_gamma, c.ftl_alpha, c.ftl_beta) for c in configs} >= {(4 / 3, 0.7, 0.3), (1, 1, 1)}
        assert all(c.stages == ["frozen"] and c.model_config().inputs == ("cbf", "cbv", "ttp", "tmax") for c in configs)
    if name == "exp2_sf_inputs":
        gradual = next(c for p, c in zip(planned, configs) if p.name == "SFG(PMs,M,N)")
        assert gradual.stages == ["frozen", "later_half", "all"]
        assert gradual.model_config().inputs[-1] == "mip" and gradual.model_config().use_nihss
    if name == "exp3_fusion":
        assert [c.model_config().arch for c in configs] == ["SF", "EF", "EFI"]
    assert all(c.lr == 1e-5 and c.batch_size == 2 and c.patience == 25 for c in configs)


def test_a_bad_run_is_refused_before_training_naming_it(tmp_path):
    (tmp_path / "bad.json").write_text('{"base": {}, "runs": [{"name": "ok", "set": {}},'
                                       ' {"name": "broken", "set": {"model.arch": "ViT"}}]}')
    with pytest.raises(InputError, match="run 'broken': unknown architecture 'ViT'"):
        plan_experiment(tmp_path / "bad.json")


def test_runner_trains_exports_and_tabulates(tiny_cohort, tmp_path):
    overrides = {"model.width": 1 / 16, "model.image_size": 32, "max_epochs": 1, "imagenet_weights": None,
                 "stages": ["all"], "lr": 1e-3}
    table = run_experiment("exp3_fusion", split_case_list(tiny_cohort, tmp_path), tmp_path / "exp3",
                           overrides=overrides, only=["SFG(PMs,N)", "EFG(PMs,N)"], device="cpu", progress=False)
    text = table.read_text()
    assert "| SFG(PMs,N) |" in text and "| EFG(PMs,N) |" in text and "| Thresholding" in text
    assert (tmp_path / "exp3" / "EFG_PMs_N" / "bundle" / "efg_pms_n" / "model.json").is_file()
