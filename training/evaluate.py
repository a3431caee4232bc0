"""Evaluation reports in the layout of the paper's Tables 1-3, thresholding alongside.

:func:`evaluate` segments every case of a split with each method (model bundles, run folders,
and the RAPID-like thresholding baseline), scores them with
:func:`StrokePerfusionSegLib.metrics.case_metrics` and writes to ``out_dir``:

``per_case.csv``
    one row per method and patient: every metric of ``case_metrics`` (penumbra and core).
``summary.csv`` / ``summary.json``
    mean, SD, n and undefined count per method, group (LVO, NonLVO, WIS, all) and metric.
``report.md``
    the tables: Dice and Hausdorff distance per class for LVO, Non-LVO and all patients, and
    the absolute volume difference ``|Vgt - Vpred|`` (ml) for LVO, Non-LVO, WIS and all, as in
    the paper's Table 3 (Tables 1 and 2 are the same layout on the validation split); then the
    ISLES challenge metrics (Dice, absolute volume difference, lesion-wise F1, absolute lesion
    count difference; :mod:`StrokePerfusionSegLib.lesionmetrics`) of every target the cases'
    label scheme supports.
``boxplots.png``
    Dice per class and group, methods side by side.
``montage_<method>.png``
    the best and worst patients of a method (mean lesion Dice): Tmax, truth and every
    method's labels on the slice with the most lesion.

Conventions (from :mod:`StrokePerfusionSegLib.metrics`): Dice 1 when truth and prediction are
both empty (WIS patients), Hausdorff undefined (skipped, counted) when one of them is empty.

Cases whose label scheme is partial (a public dataset's core-only or final-infarct masks,
:mod:`StrokePerfusionSegLib.labelschemes`) get only the ISLES table of the scheme's targets:
the paper's per-class tables, box plots and montages need core and penumbra labels. Schemes of
one family (ISLES 2024's final infarct with reperfusion good, poor or unknown) may be mixed: each
case is scored on its own scheme's targets and the table joins them (``infarct_vs_expected``:
core where reperfusion was good, core + penumbra where it was poor; cases of unknown
reperfusion are left out of it and counted).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

import numpy as np
from StrokePerfusionSegLib import labels as label_values
from StrokePerfusionSegLib.casefolder import write_json
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.labelschemes import DEFAULT_SCHEME, LabelScheme, label_scheme
from StrokePerfusionSegLib.lesionmetrics import ISLES_KEYS, isles_metrics
from StrokePerfusionSegLib.thresholding import ThresholdParams

from . import data
from .names import folder_name

THRESHOLD = "threshold"
#: The final-infarct target that follows each case's reperfusion.
EXPECTED_TARGET = "infarct_vs_expected"
#: Name the thresholding baseline has in tables.
THRESHOLD_NAME = f"Thresholding ({ThresholdParams().summary})"
REGIONS = ("penumbra", "core")
#: (metric key suffix, table title, groups shown, decimals) of the report's tables.
TABLES = (
    ("dice", "Dice coefficient (mean ± SD) ⇑", ("LVO", "NonLVO", "all"), 2),
    ("hd_mm", "Hausdorff distance, mm (mean ± SD) ⇓", ("LVO", "NonLVO", "all"), 1),
    ("abs_volume_difference_ml", "|ΔV| = |Vgt - Vpred|, ml (mean ± SD) ⇓", ("LVO", "NonLVO", "WIS", "all"), 1),
)
GROUP_TITLES = {"LVO": "LVO", "NonLVO": "Non-LVO", "WIS": "WIS", "unknown": "group unknown", "all": "All"}
#: (ISLES metric key, column title, decimals) of the ISLES table.
ISLES_COLUMNS = (("dice", "Dice ⇑", 2), ("abs_volume_difference_ml", "abs. volume diff. ml ⇓", 1),
                 ("lesion_f1", "lesion F1 ⇑", 2), ("abs_lesion_count_difference", "abs. lesion count diff. ⇓", 1))


@dataclass(frozen=True)
class RunModel:
    """A run folder's best model, usable wherever the predictor takes a bundle."""

    model: object
    config: object


@dataclass
class EvaluationReport:
    rows: list[dict]
    tables: dict  # method -> group -> metric -> metrics.Summary
    markdown: str
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)

    def summary(self) -> dict:
        """JSON-ready ``{method: {group: {metric: {mean, sd, n, undefined}}}}``."""
        return {
            method: {group: {metric: {"mean": _finite_or_none(s.mean), "sd": _finite_or_none(s.sd), "n": s.n,
                                      "undefined": s.missing} for metric, s in metrics.items()}
                     for group, metrics in groups.items()}
            for method, groups in self.tables.items()
        }


def _finite_or_none(value: float):
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def load_method(spec, *, device: str = "cpu"):
    """A model to evaluate from a bundle folder, a registry id, a run folder, or ``"threshold"``."""
    if isinstance(spec, str) and spec == THRESHOLD:
        return THRESHOLD
    if hasattr(spec, "model") and hasattr(spec, "config"):
        return spec
    path = Path(spec)
    if (path / "checkpoints" / "best.pt").is_file():
        from .trainer import load_run_model

        model, config = load_run_model(path, device=device)
        return RunModel(model, config.model_config())
    from StrokePerfusionSegLib.bundle import load_bundle

    return load_bundle(spec, device=device)


def cases_scheme(cases) -> LabelScheme:
    """The label scheme the report follows: the cases' one scheme, or the schemes of one family
    with their targets joined; mixed families or label-free cohorts are refused."""
    names = sorted({case.meta.get("label_scheme", DEFAULT_SCHEME) for _, case in cases})
    schemes = [label_scheme(name) for name in names]
    if len({scheme.family for scheme in schemes}) > 1:
        raise InputError(f"the split mixes label schemes ({', '.join(names)}): evaluate each dataset apart")
    scheme = schemes[0]
    if len(schemes) > 1:
        targets = {target.name: target for each in schemes for target in each.targets}
        scheme = replace(label_scheme(scheme.family), targets=tuple(targets.values()),
                         description=f"{label_scheme(scheme.family).description}; per case: {', '.join(names)}")
    if not scheme.has_lesion_labels:
        raise InputError(f"the cases' labels mark no lesion ({scheme.description}): nothing to score; "
                         "segment them instead")
    return scheme


def _load_cases(source, split: str, split_file=None) -> list:
    import json

    from StrokePerfusionSegLib import casefolder

    records = data.load_records(source)
    if split_file is not None:
        chosen = set(json.loads(Path(split_file).read_text()).get(split, []))
        records = [r for r in records if r.case_id in chosen]
    else:
        records = [r for r in records if r.split == split]
    if not records:
        raise InputError(f"the {split} split of {source} is empty; choose another split or re-split the cohort")
    cases = []
    for record in records:
        case = casefolder.load_case(record.folder, with_label=True)
        if case.label is None:
            raise InputError(f"case {record.case_id}: no label.nii.gz; evaluation needs the ground truth")
        label_scheme(case.meta.get("label_scheme")).check_values(case.label, f"case {record.case_id}")
        cases.append((record, case))
    return cases


def predict_labels(method, record, case, *, device: str = "auto") -> np.ndarray:
    """Labels ``(z, y, x)`` uint8 of one case by one method (the product's predictor)."""
    from StrokePerfusionSegLib.predictor import predict

    spacing = case.geometry.spacing_zyx
    mip = case.maps.get("mip")
    if method == THRESHOLD:
        images = {name: case.maps[name] for name in ("cbf", "tmax") if name in case.maps}
        return predict(images, spacing, method=THRESHOLD, mip=mip).labels
    missing = [name for name in method.config.inputs if name not in case.maps]
    if missing:
        raise InputError(f"case {record.case_id}: missing {', '.join(missing)} that the model reads")
    images = {name: case.maps[name] for name in method.config.inputs}
    nihss = record.nihss if method.config.use_nihss else None
    return predict(images, spacing, method=method, nihss=nihss, mip=mip, device=device).labels


def metric_rows(predictions: Mapping[str, Mapping[str, np.ndarray]], truths: Mapping[str, tuple],
                scheme: LabelScheme | None = None, case_schemes: Mapping[str, LabelScheme] | None = None) -> list[dict]:
    """One row per method and case: method, case, group, then the metrics the labels support.

    Fully labelled cases get ``case_metrics`` (penumbra and core); every case gets the ISLES
    metrics ``<target>_<key>`` of each target of its label scheme.

    Parameters
    ----------
    predictions : {method name: {case id: labels (z, y, x)}}
    truths : {case id: (labels (z, y, x), spacing (z, y, x) mm, group)}
    scheme : LabelScheme, optional
        The scheme of every case (default: fully labelled) ...
    case_schemes : {case id: LabelScheme}, optional
        ... unless a case has its own here.
    """
    from StrokePerfusionSegLib.metrics import case_metrics

    default = scheme or label_scheme(None)
    case_schemes = case_schemes or {}
    rows = []
    for method, by_case in predictions.items():
        for case_id, (truth, spacing, group) in truths.items():
            scheme = case_schemes.get(case_id, default)
            predicted = by_case[case_id]
            row = {"method": method, "case": case_id, "group": group}
            if scheme.is_complete:
                row.update(case_metrics(predicted, truth, spacing, regions=REGIONS))
            for target in scheme.targets:
                scores = isles_metrics(np.isin(predicted, target.predicted), np.isin(truth, target.stored), spacing)
                row.update({f"{target.name}_{key}": value for key, value in scores.items()})
            rows.append(row)
    return rows


def summary_tables(rows: list[dict]) -> dict:
    """``{method: {group: {metric: Summary}}}`` over every numeric metric of ``rows``."""
    from StrokePerfusionSegLib.metrics import group_table

    methods = list(dict.fromkeys(row["method"] for row in rows))
    # Every row's metrics: cases of one scheme family may lack a target (a missing value counts as undefined).
    metrics = [key for key in dict.fromkeys(k for row in rows for k in row) if key not in ("method", "case", "group")]
    return {m: group_table([r for r in rows if r["method"] == m], metrics=metrics) for m in methods}


def _cell(summary, decimals: int) -> str:
    if summary is None or summary.n == 0:
        return "–"
    sd = "–" if math.isnan(summary.sd) else f"{summary.sd:.{decimals}f}"
    text = f"{summary.mean:.{decimals}f} ± {sd}"
    return text + (f" ({summary.missing} undef.)" if summary.missing else "")


def isles_table(tables: dict, scheme: LabelScheme) -> list[str]:
    """Markdown lines of the ISLES metrics (all patients) of every target of ``scheme``."""
    lines = ["## ISLES challenge metrics, all patients (mean ± SD)", "",
             f"Labels: {scheme.description} (scheme `{scheme.name}`).", ""]
    header = ["Method"] + [f"{target.name} {title}" for target in scheme.targets for _, title, _ in ISLES_COLUMNS]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for method, by_group in tables.items():
        cells = [_cell(by_group.get("all", {}).get(f"{target.name}_{key}"), decimals)
                 for target in scheme.targets for key, _, decimals in ISLES_COLUMNS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Lesions are 26-connected components; a predicted and a true lesion match at IoU >= 0.5; "
              "F1 and Dice are 1 when both masks are empty.", ""]
    if EXPECTED_TARGET in {target.name for target in scheme.targets}:
        lines += [f"{EXPECTED_TARGET}: the final infarct against the predicted core where reperfusion was good "
                  "(mTICI 2b-3), against the predicted core + penumbra where it was poor (0-2a); cases of unknown "
                  "reperfusion are left out (counted as 'undef.').", ""]
    return lines


def markdown_tables(tables: dict, *, title: str | None = None, split: str | None = None,
                    scheme: LabelScheme | None = None) -> str:
    """The paper-style Markdown tables (one per metric family, methods as rows), then the ISLES
    table; only the ISLES table when ``scheme`` is partial."""
    scheme = scheme or label_scheme(None)
    lines = [f"# {title}" if title else "# Evaluation", ""]
    if split:
        counts = next(iter(tables.values()))
        sizes = ", ".join(f"{GROUP_TITLES[g]} {max(s.n + s.missing for s in counts[g].values())}"
                          for g in GROUP_TITLES if g in counts)
        lines += [f"Split: **{split}** ({sizes} patients).", ""]
    if not scheme.is_complete:
        return "\n".join(lines + isles_table(tables, scheme))
    for key, heading, groups, decimals in TABLES:
        lines += [f"## {heading}", ""]
        header = ["Method"] + [f"{GROUP_TITLES[g]} {region}" for g in groups for region in REGIONS]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for method, by_group in tables.items():
            cells = [_cell(by_group.get(g, {}).get(f"{region}_{key}"), decimals) for g in groups for region in REGIONS]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Dice is 1 when truth and prediction are both empty (WIS patients); the Hausdorff distance "
              "(MONAI, boundary voxels, mm) is undefined when one of them is empty and such cases are "
              "left out of its mean (counted as 'undef.').", ""]
    return "\n".join(lines + isles_table(tables, scheme))


def _write_csv(rows: list[dict], path: Path) -> Path:
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _summary_rows(report_summary: dict) -> list[dict]:
    return [{"method": method, "group": group, "metric": metric, **values}
            for method, groups in report_summary.items() for group, metrics in groups.items()
            for metric, values in metrics.items()]


def plot_boxplots(rows: list[dict], path: Path) -> Path:
    """Dice per class (one panel each) and group, methods side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in rows))
    groups = [g for g in ("LVO", "NonLVO", "WIS") if any(r["group"] == g for r in rows)] + ["all"]
    figure, axes = plt.subplots(1, len(REGIONS), figsize=(5 * len(REGIONS), 4), squeeze=False)
    width = 0.8 / len(methods)
    for axis, region in zip(axes[0], REGIONS):
        for m, method in enumerate(methods):
            values = [[r[f"{region}_dice"] for r in rows if r["method"] == method and g in (r["group"], "all")]
                      for g in groups]
            positions = [g + (m - (len(methods) - 1) / 2) * width for g in range(len(groups))]
            boxes = axis.boxplot(values, positions=positions, widths=width * 0.9, patch_artist=True,
                                 manage_ticks=False)
            for box in boxes["boxes"]:
                box.set_facecolor(f"C{m}")
            axis.plot([], [], color=f"C{m}", linewidth=8, label=method)
        axis.set_xticks(range(len(groups)), [GROUP_TITLES[g] for g in groups])
        axis.set_ylim(-0.02, 1.02)
        axis.set_title(f"{region} Dice")
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].legend(loc="lower left", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _overlay(mip_slice: np.ndarray, label_slice: np.ndarray) -> np.ndarray:
    from StrokePerfusionSegLib import colourcoding

    rgb = colourcoding.encode_rgb(mip_slice, "mip").astype(np.float32) / 255.0
    for label, spec in label_values.SEGMENT_BY_LABEL.items():
        inside = label_slice == label
        rgb[inside] = 0.45 * rgb[inside] + 0.55 * np.asarray(spec.color)
    return rgb


def plot_montage(method: str, rows: list[dict], cases: dict, predictions: dict, path: Path, count: int = 2) -> Path | None:
    """Best and worst ``count`` lesion patients of ``method``: Tmax, truth, every method's labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from StrokePerfusionSegLib import colourcoding

    scored = sorted((0.5 * (r["penumbra_dice"] + r["core_dice"]), r["case"]) for r in rows
                    if r["method"] == method and r["group"] != "WIS")
    if not scored:
        return None
    chosen = [("worst", c) for _, c in scored[:count]] + [("best", c) for _, c in scored[::-1][:count]]
    chosen = list(dict.fromkeys(chosen))
    columns = ["Tmax", "truth", *predictions]
    figure, axes = plt.subplots(len(chosen), len(columns), figsize=(2.4 * len(columns), 2.5 * len(chosen)),
                                squeeze=False)
    for row_axes, (kind, case_id) in zip(axes, chosen):
        case = cases[case_id]
        lesion = np.isin(case.label, (label_values.PENUMBRA, label_values.CORE)).sum(axis=(1, 2))
        z = int(lesion.argmax())
        mip = case.maps.get("mip", np.zeros_like(case.label, dtype=np.float32))[z]
        panels = [colourcoding.encode_rgb(case.maps["tmax"][z], "tmax") if "tmax" in case.maps else mip,
                  _overlay(mip, case.label[z])] + [_overlay(mip, predictions[m][case_id][z]) for m in predictions]
        for axis, title, panel in zip(row_axes, columns, panels):
            axis.imshow(panel, cmap="gray")
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_title(title if title in ("Tmax", "truth") else title[:22], fontsize=7)
        score = next(s for s, c in scored if c == case_id)
        row_axes[0].set_ylabel(f"{kind}: {case_id}\nmean Dice {score:.2f}, z={z}", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def evaluate(methods: Mapping[str, object], source, *, split: str = "test", split_file=None, out_dir=None,
             device: str = "auto",
             with_threshold: bool = True, montage_case_count: int = 2, title: str | None = None) -> EvaluationReport:
    """Evaluate methods on a split of a cohort, beside the thresholding baseline.

    Parameters
    ----------
    methods : {name: bundle folder | registry id | run folder | loaded bundle}
    source : path
        Cohort folder or CSV case list with a split column.
    split : {"train", "val", "test"}
        The paper reports Tables 1-2 on ``val`` and Table 3 on ``test``.
    split_file : path, optional
        A run's ``split.json``: take the split's case ids from it (for sources the trainer
        split itself) instead of the source's split column.
    out_dir : path, optional
        Where the files listed in the module docstring go (nothing is written when None).
    with_threshold : bool
        Add the thresholding method as a row (default; the product's baseline).
    """
    loaded = {name: load_method(spec, device="cpu") for name, spec in methods.items()}
    if with_threshold:
        loaded[THRESHOLD_NAME] = THRESHOLD
    if not loaded:
        raise InputError("nothing to evaluate: give at least one --model or keep the thresholding baseline")
    cases = _load_cases(source, split, split_file)
    scheme = cases_scheme(cases)
    predictions = {name: {record.case_id: predict_labels(method, record, case, device=device)
                          for record, case in cases} for name, method in loaded.items()}
    truths = {record.case_id: (case.label, case.geometry.spacing_zyx, record.group) for record, case in cases}
    case_schemes = {record.case_id: label_scheme(case.meta.get("label_scheme")) for record, case in cases}
    rows = metric_rows(predictions, truths, scheme, case_schemes)
    tables = summary_tables(rows)
    report = EvaluationReport(rows, tables, markdown_tables(tables, title=title, split=split, scheme=scheme))
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        report.out_dir = out_dir
        summary = report.summary()
        report.files = [
            _write_csv(rows, out_dir / "per_case.csv"),
            _write_csv(_summary_rows(summary), out_dir / "summary.csv"),
            write_json({"split": split, "label_scheme": scheme.name, "methods": summary}, out_dir / "summary.json"),
        ]
        if scheme.is_complete:
            report.files.append(plot_boxplots(rows, out_dir / "boxplots.png"))
            report.markdown += "\n![Dice per group](boxplots.png)\n"
        by_id = {record.case_id: case for record, case in cases}
        for name, method in loaded.items():
            if method == THRESHOLD or not scheme.is_complete:
                continue
            montage = plot_montage(name, rows, by_id, predictions,
                                   out_dir / f"montage_{folder_name(name)}.png", montage_case_count)
            if montage is not None:
                report.files.append(montage)
                report.markdown += f"\n![Best and worst patients of {name}]({montage.name})\n"
        (out_dir / "report.md").write_text(report.markdown)
        report.files.append(out_dir / "report.md")
    return report

