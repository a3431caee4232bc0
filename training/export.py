"""A trained run becomes a model bundle (``model.json`` + ``weights.safetensors``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from StrokePerfusionSegLib.errors import InputError

#: Training-summary keys copied into the bundle's ``model.json``.
SUMMARY_KEYS = ("stop_reason", "best_val_loss", "best_stage", "best_epoch", "epochs_run", "wall_s",
                "device", "torch", "n_train_slices", "n_val_slices", "cases")


def training_summary(run_dir: str | os.PathLike) -> dict:
    """What a bundle records about how its weights were trained (summary + the run's settings)."""
    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    if not path.is_file():
        raise InputError(f"{run_dir} has no summary.json: the run did not finish; resume it first")
    summary = json.loads(path.read_text())
    document = {key: summary[key] for key in SUMMARY_KEYS if key in summary}
    settings = dict(summary["config"])
    settings.pop("model", None)
    document["settings"] = settings
    split_path = run_dir / "split.json"
    if split_path.is_file():
        document["split"] = {k: v for k, v in json.loads(split_path.read_text()).items() if k != "groups"}
    return document


def export_run(run_dir: str | os.PathLike, parent: str | os.PathLike, *, model_id: str, version: str,
               evaluation: dict | None = None, extra_training: dict | None = None) -> Path:
    """Write the best model of ``run_dir`` as the bundle folder ``parent/<model_id>/``.

    Parameters
    ----------
    run_dir : path
        A finished run folder of :func:`strokeperfusionseg_training.trainer.fit`.
    parent : path
        Folder that receives the bundle, written atomically by ``bundle.save_bundle``.
    model_id, version : str
    evaluation : dict, optional
        Evaluation summary (``summary.json`` of :func:`strokeperfusionseg_training.evaluate.evaluate`).
    extra_training : dict, optional
        More training facts to record (cohort, command line, seeds).

    Returns
    -------
    Path of the bundle folder.
    """
    from StrokePerfusionSegLib.bundle import save_bundle

    from .trainer import load_run_model

    model, config = load_run_model(run_dir)
    training = training_summary(run_dir) | dict(extra_training or {})
    return save_bundle(parent, model, config.model_config(), model_id=model_id, version=version,
                       training=training, evaluation=evaluation)
