"""The paper's experiments as configs, and a runner for a whole grid.

An experiment file (``training/configs/*.json``) is::

    {"name": "...", "description": "...", "table": "validation split, as the paper's Table 2",
     "base": {<TrainConfig settings shared by every run>},
     "runs": [{"name": "SFG(PMs,N)", "set": {<dotted settings of this run>}}, ...]}

A plain training config (a TrainConfig dict) is an experiment of one run. Each run trains into
``<out>/<run name as a folder name>/`` (resumed when present, skipped when finished), is
exported as a bundle beside it and evaluated on the chosen split; the experiment's table
(``experiment.md``, ``experiment.csv``) compares every run with the thresholding method.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from StrokePerfusionSegLib.errors import InputError

from .config import TrainConfig, apply_overrides
from .names import folder_name

#: Folder of the experiment files shipped with the package.
CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class PlannedRun:
    name: str
    config: TrainConfig


def resolve_config_path(path: str | os.PathLike) -> Path:
    """A config path as given, or the name of a shipped config (``exp1_ftl_grid``)."""
    path = Path(path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (path.name if path.suffix == ".json" else f"{path.name}.json")
    if shipped.is_file():
        return shipped
    known = ", ".join(p.stem for p in sorted(CONFIG_DIR.glob("*.json")))
    raise InputError(f"config {path} not found; give a JSON file or one of: {known}")


def plan_experiment(path: str | os.PathLike, overrides: dict | None = None,
                    only: list[str] | None = None) -> tuple[dict, list[PlannedRun]]:
    """Read an experiment (or single-run) file and build every run's validated config.

    Every run's config (architecture, inputs, stages, loss) is validated here, before any
    training starts.
    """
    path = resolve_config_path(path)
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{path} is not valid JSON ({error})") from None
    overrides = overrides or {}
    if "runs" not in document:
        document = {"name": path.stem, "base": document, "runs": [{"name": path.stem, "set": {}}]}
    runs = []
    for entry in document["runs"]:
        if only and entry["name"] not in only:
            continue
        settings = apply_overrides(apply_overrides(document.get("base", {}), entry.get("set", {})), overrides)
        try:
            config = TrainConfig.from_dict(settings)
            config.model_config()
        except InputError as error:
            raise InputError(f"{path.name}, run '{entry['name']}': {error}") from None
        runs.append(PlannedRun(entry["name"], config))
    if not runs:
        names = ", ".join(entry["name"] for entry in document["runs"])
        raise InputError(f"no run of {path.name} matches --only {only}; runs are: {names}")
    return document, runs


def run_experiment(path, source, out_dir, *, overrides=None, only=None, device="auto", split="val",
                   progress=True, evaluate=True) -> Path:
    """Train, export and evaluate every run of an experiment; write its comparison table.

    Returns
    -------
    Path of ``experiment.md`` (or of ``out_dir`` when ``evaluate`` is False).
    """
    from . import evaluate as evaluation
    from .export import export_run
    from .trainer import fit

    document, runs = plan_experiment(path, overrides, only)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    methods = {}
    for run in runs:
        run_dir = out_dir / folder_name(run.name)
        if not (run_dir / "summary.json").is_file():
            fit(run.config, source, run_dir, device=device, progress=progress)
        model_id = folder_name(run.name).lower()
        bundle_dir = run_dir / "bundle" / model_id
        if not bundle_dir.is_dir():
            export_run(run_dir, run_dir / "bundle", model_id=model_id, version="0.0.0",
                       extra_training={"experiment": document.get("name")})
        methods[run.name] = bundle_dir
    if not evaluate:
        return out_dir
    report = evaluation.evaluate(methods, source, split=split, out_dir=out_dir / "evaluation", device=device,
                                 title=f"{document.get('name')}: {document.get('description', '')}")
    markdown = out_dir / "experiment.md"
    markdown.write_text(report.markdown)
    (out_dir / "experiment.csv").write_text((out_dir / "evaluation" / "summary.csv").read_text())
    return markdown
