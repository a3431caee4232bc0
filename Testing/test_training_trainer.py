"""strokeperfusionseg_training.trainer: smoke fit, early stopping, best checkpoint, gradual fine-tuning, resume."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch

from StrokePerfusionSegLib.networks import build_model
from strokeperfusionseg_training.checkpoints import EarlyStopping, RunCheckpoints
from strokeperfusionseg_training.config import TrainConfig
from autograd_graph import autograd_node_names
from training_cases import split_case_list
from strokeperfusionseg_training.trainer import (
    autocast_context, build_loss, build_optimizer, fit, in_training_layout, load_run_model, per_slice_loss,
    read_metrics,
)

PMS = ["cbf", "cbv", "ttp", "tmax"]


@pytest.fixture(scope="module")
def cases(tiny_cohort, tmp_path_factory):
    """The tiny phantom cohort as a CSV case list with a train and a val split."""
    return split_case_list(tiny_cohort, tmp_path_factory.mktemp("cases"))


def _config(image_size=32, **settings) -> TrainConfig:
    model = {"arch": "SF", "inputs": PMS, "use_nihss": True, "width": 1 / 16, "image_size": image_size}
    settings = {"stages": ["all"], "imagenet_weights": None, "lr": 1e-3, "max_epochs": 3, "patience": 25,
                "seed": 7} | settings
    return TrainConfig(model=model, **settings)


def _initial_model(config: TrainConfig):
    torch.manual_seed(config.seed)  # fit seeds the same way before building the model
    return build_model(config.model_config(), imagenet_weights=None)


def test_early_stopping_follows_a_scripted_loss_curve():
    curve = [1.0, 0.8, 0.9, 0.85, 0.7, 0.75, 0.72, 0.71, 0.69]
    stopper = EarlyStopping(patience=3)
    improved = []
    for epoch, loss in enumerate(curve):
        improved.append(stopper.step(loss, epoch))
        if stopper.should_stop:
            break
    assert improved == [True, True, False, False, True, False, False, False]
    assert (stopper.best, stopper.best_epoch, epoch) == (0.7, 4, 7)
    restored = EarlyStopping(patience=3)
    restored.load_state_dict(stopper.state_dict())
    assert restored == stopper
    assert not EarlyStopping(patience=2, min_delta=0.1).step(float("inf"), 0)


def test_smoke_fit_lowers_the_loss_and_keeps_the_best_checkpoint(cases, tmp_path):
    config = _config(image_size=64, max_epochs=6)
    summary = fit(config, cases, tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == 6 and summary["stop_reason"] == "max_epochs"
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert min(r["val_loss"] for r in rows) < rows[0]["val_loss"]
    best_row = min(rows, key=lambda r: r["val_loss"])
    assert summary["best_epoch"] == best_row["epoch"] and best_row["best"]
    assert summary["best_val_loss"] == pytest.approx(best_row["val_loss"])
    best = RunCheckpoints(tmp_path / "run").load_best()
    last = RunCheckpoints(tmp_path / "run").load_last()
    assert best["epoch"] == best_row["epoch"] and last["epoch"] == 5
    model, _ = load_run_model(tmp_path / "run")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, best["model"][name])
    assert (tmp_path / "run" / "tensorboard").is_dir()


def _changed(config, run_dir) -> dict:
    """Whether any parameter of each group moved away from its initial value during a run."""
    initial = _initial_model(config).state_dict()
    trained = RunCheckpoints(run_dir).load_last()["model"]
    changed = {"early_trunk": False, "late_trunk": False, "decoder": False}
    for name, tensor in initial.items():
        if ".blocks." in name:
            block = int(name.split(".blocks.")[1].split(".")[0])
            group = "late_trunk" if block >= 3 else "early_trunk"
        elif name.startswith("decoder."):
            group = "decoder"
        else:
            continue
        changed[group] |= not torch.equal(tensor, trained[name])
    return changed


@pytest.mark.parametrize("stage, early, late", [("frozen", False, False), ("later_half", False, True),
                                                 ("all", True, True)])
def test_fine_tuning_stage_decides_which_parameters_train(cases, tmp_path, stage, early, late):
    config = _config(stages=[stage], max_epochs=1)
    fit(config, cases, tmp_path / "run", progress=False)
    changed = _changed(config, tmp_path / "run")
    assert changed == {"early_trunk": early, "late_trunk": late, "decoder": True}


def test_gradual_fine_tuning_runs_each_stage_from_the_previous_best(cases, tmp_path):
    config = _config(stages=["frozen", "later_half", "all"], max_epochs=2)
    summary = fit(config, cases, tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run")
    assert [r["stage"] for r in rows] == ["frozen"] * 2 + ["later_half"] * 2 + ["all"] * 2
    assert summary["epochs_run"] == {"frozen": 2, "later_half": 2, "all": 2}
    assert summary["best_val_loss"] == pytest.approx(min(r["val_loss"] for r in rows))


def test_interrupted_run_resumes_to_the_uninterrupted_result(cases, tmp_path):
    config = _config(max_epochs=4, patience=2)
    fit(config, cases, tmp_path / "whole", progress=False)
    # "Interrupted" after two epochs: the time budget runs out, then the run is resumed.
    interrupted = _config(max_epochs=4, patience=2, max_minutes=0.0)
    first = fit(interrupted, cases, tmp_path / "resumed", progress=False)
    assert first["stop_reason"] == "time_limit" and len(read_metrics(tmp_path / "resumed")) == 1
    best_before = RunCheckpoints(tmp_path / "resumed").load_best()
    fit(config, cases, tmp_path / "resumed", progress=False)
    whole, resumed = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "resumed")
    assert [r["epoch"] for r in resumed] == [r["epoch"] for r in whole]
    for a, b in zip(whole, resumed):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    best_after = RunCheckpoints(tmp_path / "resumed").load_best()
    assert best_after["val_loss"] <= best_before["val_loss"]
    a, b = RunCheckpoints(tmp_path / "whole").load_best()["model"], best_after["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_resuming_with_other_settings_or_overwriting_is_refused(cases, tmp_path):
    from StrokePerfusionSegLib.errors import InputError

    fit(_config(max_epochs=1), cases, tmp_path / "run", progress=False)
    with pytest.raises(InputError, match="other settings \\(lr\\)"):
        fit(_config(max_epochs=1, lr=0.5), cases, tmp_path / "run", progress=False)
    with pytest.raises(InputError, match="already holds a run"):
        fit(_config(max_epochs=1), cases, tmp_path / "run", resume=False, progress=False)


def test_early_stopping_ends_each_stage_and_keeps_the_best(cases, tmp_path):
    # A learning rate this large kills the ReLUs: the validation loss stops improving at once.
    config = _config(stages=["later_half", "all"], lr=0.05, max_epochs=12, patience=2)
    summary = fit(config, cases, tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run")
    for stage in ("later_half", "all"):
        epochs = [r for r in rows if r["stage"] == stage]
        assert 3 <= len(epochs) < 12
        best = min(range(len(epochs)), key=lambda i: epochs[i]["val_loss"])
        assert len(epochs) - 1 - best == 2  # stopped after `patience` epochs without improvement
    assert summary["stop_reason"] == "early_stopping"
    assert summary["best_val_loss"] == pytest.approx(min(r["val_loss"] for r in rows))


def test_a_diverging_run_stops_with_advice(cases, tmp_path):
    from StrokePerfusionSegLib.errors import InputError

    with pytest.raises(InputError, match="training diverged .* lower the learning rate"):
        fit(_config(lr=5.0, max_epochs=3), cases, tmp_path / "run", progress=False)


def test_a_run_starts_from_a_bundle_of_the_same_model_and_refuses_another(cases, tmp_path):
    from StrokePerfusionSegLib.bundle import save_bundle
    from StrokePerfusionSegLib.errors import InputError

    config = _config(max_epochs=1, lr=1e-12)  # Adam moves each weight by about lr: ~nothing
    shipped = _initial_model(_config(seed=99))
    bundle = save_bundle(tmp_path, shipped, config.model_config(), model_id="shipped", version="1.0.0")
    fit(TrainConfig(**(config.to_dict() | {"init_from": str(bundle)})), cases, tmp_path / "tuned", progress=False)
    fit(config, cases, tmp_path / "fresh", progress=False)
    tuned, fresh = (dict(load_run_model(tmp_path / run)[0].named_parameters()) for run in ("tuned", "fresh"))
    for name, weight in shipped.named_parameters():
        torch.testing.assert_close(tuned[name], weight, rtol=0, atol=1e-6)
    assert any(not torch.allclose(fresh[name], weight) for name, weight in shipped.named_parameters())
    other_size = TrainConfig(**(_config(image_size=64).to_dict() | {"init_from": str(bundle)}))
    with pytest.raises(InputError, match="differs from the run's"):
        fit(other_size, cases, tmp_path / "mismatch", progress=False)


def _channels_last(model) -> bool:
    weights = [p for p in model.parameters() if p.dim() == 4]
    assert weights
    if all(w.is_contiguous() for w in weights):
        return False
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    return True


@pytest.mark.parametrize("capability, mkldnn, expected", [
    ("AVX2", True, True), ("AVX512", True, True), ("DEFAULT", True, False), ("AVX2", False, False),
])
def test_cpu_training_layout_follows_the_running_cpu(monkeypatch, capability, mkldnn, expected):
    """Channels-last where oneDNN has its vectorised kernels, in fp32 as in bf16."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: mkldnn)
    model = in_training_layout(_initial_model(_config()), torch.device("cpu"))
    assert _channels_last(model) == expected


def test_cuda_trains_channels_last_under_autocast(monkeypatch):
    """The CUDA path's decisions (no GPU here: the model is not moved, autocast not entered):
    channels-last whatever the CPU, bf16 autocast where the GPU has it, else fp16 with a gradient scaler."""
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    assert _channels_last(in_training_layout(_initial_model(_config()), cuda))
    for bf16, dtype in ((True, torch.bfloat16), (False, torch.float16)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "CUDA is not available": autocast disabled here
            context, needs_scaler = autocast_context("auto", cuda)
        assert isinstance(context, torch.autocast) and context.device == "cuda" and context.fast_dtype == dtype
        assert needs_scaler == (not bf16)
    context, needs_scaler = autocast_context("fp32", cuda)
    assert isinstance(context, contextlib.nullcontext) and not needs_scaler


def test_the_optimiser_updates_all_tensors_at_once_with_the_per_tensor_results():
    """One multi-tensor Adam update (on a CPU torch's default is a loop over the tensors):
    the same optimiser, identical weights."""
    config = _config()
    models = [_initial_model(config) for _ in range(2)]
    optimizers = [build_optimizer(models[0].parameters(), config),
                  torch.optim.Adam(models[1].parameters(), lr=config.lr, foreach=False)]
    assert optimizers[0].defaults["foreach"] and optimizers[0].defaults["lr"] == config.lr
    for step in range(3):
        for model, optimizer in zip(models, optimizers):
            for index, parameter in enumerate(model.parameters()):
                parameter.grad = torch.full_like(parameter, (-1.0) ** (index + step) * 1e-3 * (step + 1))
            optimizer.step()
    for trained, reference in zip(*(model.parameters() for model in models)):
        assert torch.equal(trained, reference)


def test_per_slice_losses_split_the_batch_once_with_the_indexed_values_and_gradients():
    """Indexing slice i of the logits costs the backward a zero-filled tensor of the whole
    batch's shape per slice; split hands the slices' gradients back in one concatenation."""
    config = _config()
    loss_fn = build_loss(config)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 4, 16, 16, generator=generator).contiguous(memory_format=torch.channels_last)
    logits.requires_grad_()
    target = torch.randint(0, 4, (4, 16, 16), generator=generator)
    weight = torch.rand(4, 4, generator=generator) + 0.5
    losses = per_slice_loss(loss_fn, logits, target, weight)
    assert "SliceBackward0" not in autograd_node_names(losses)
    (gradient,) = torch.autograd.grad(losses.mean(), logits)
    indexed = torch.stack([loss_fn(logits[i:i + 1], target[i:i + 1], sample_weights=weight[i:i + 1])
                           for i in range(4)])
    (indexed_gradient,) = torch.autograd.grad(indexed.mean(), logits)
    assert torch.equal(losses, indexed) and torch.equal(gradient, indexed_gradient)
