"""Partial labels end to end: marginal loss, fit and evaluate on a converted ISLES 2018 look-alike."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from StrokePerfusionSegLib.casefolder import load_case, load_cohort
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.labels import BACKGROUND, BRAIN, CORE, PENUMBRA
from StrokePerfusionSegLib.labelschemes import SCHEMES, label_scheme
from StrokePerfusionSegLib.losses import FocalTverskyLoss, marginal_log_probabilities
from StrokePerfusionSegLib.phantom import lookalike
from strokeperfusionseg_training import evaluate
from strokeperfusionseg_training.__main__ import main as train_main
from strokeperfusionseg_training.config import TrainConfig
from strokeperfusionseg_training.trainer import fit, per_slice_loss
from programmer_errors import raises_programmer_error


def _one_hot_logits(labels: np.ndarray, confidence: float = 8.0) -> torch.Tensor:
    """Logits (1, 4, H, W) that put nearly all probability on ``labels`` (H, W)."""
    return confidence * torch.nn.functional.one_hot(torch.from_numpy(labels).long(), 4).permute(2, 0, 1)[None].float()


def test_marginal_probabilities_sum_the_allowed_classes():
    logits = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    sets = torch.from_numpy(np.stack([SCHEMES["core_penumbra"].class_sets(), SCHEMES["core"].class_sets()]))
    marginal = marginal_log_probabilities(logits, sets).exp()
    p = torch.softmax(logits, dim=1)
    torch.testing.assert_close(marginal[0], p[0])  # full labels: unchanged
    torch.testing.assert_close(marginal[1, BRAIN], p[1, BRAIN] + p[1, PENUMBRA])
    torch.testing.assert_close(marginal[1, CORE], p[1, CORE])
    assert float(marginal[1, PENUMBRA].max()) < 1e-30  # a value the scheme does not use
    torch.testing.assert_close(torch.softmax(marginal_log_probabilities(logits, sets), 1), marginal)
    with raises_programmer_error(match="do not fit"):
        marginal_log_probabilities(logits, sets[:, :, :3])


def test_core_only_labels_never_punish_penumbra_inside_the_brain():
    """With core-only labels, calling unlabelled brain 'penumbra' costs nothing; with full labels it does.

    So for final infarcts: after good reperfusion the rest of the brain may have been penumbra,
    without it the rest was not at risk.
    """
    truth = np.full((8, 8), BRAIN, np.uint8)
    truth[:2] = BACKGROUND
    truth[5:, 5:] = CORE
    says_penumbra = truth.copy()
    says_penumbra[2:4] = PENUMBRA
    loss = FocalTverskyLoss()
    target = torch.from_numpy(truth.astype(np.int64))[None]
    weight = torch.ones(1, 4)
    for scheme, penalised in (("core_penumbra", True), ("core", False), ("final_infarct_reperfused", False),
                              ("final_infarct_not_reperfused", True)):
        sets = torch.from_numpy(label_scheme(scheme).class_sets())[None]
        right = per_slice_loss(loss, _one_hot_logits(truth), target, weight, sets)
        wrong = per_slice_loss(loss, _one_hot_logits(says_penumbra), target, weight, sets)
        assert (float(wrong) > float(right) + 0.05) == penalised, scheme
    # ... but a missed core is punished under both.
    no_core = truth.copy()
    no_core[no_core == CORE] = BRAIN
    sets = torch.from_numpy(label_scheme("core").class_sets())[None]
    assert float(per_slice_loss(loss, _one_hot_logits(no_core), target, weight, sets)) > 0.5


@pytest.fixture(scope="module")
def converted(tiny_cohort, tmp_path_factory):
    """The tiny cohort as an ISLES 2018 look-alike, converted, with a CSV split (2 train, 1 val)."""
    cohort = load_cohort(tiny_cohort)
    cases = [load_case(cohort.case_folder(i), with_ctp=True) for i in cohort.ids()]
    root = tmp_path_factory.mktemp("isles") / "ISLES2018"
    lookalike.write_isles2018(cases, root)
    out = root.parent / "cohort"
    assert train_main(["cohort", "--from", "isles2018", str(root), "--out", str(out), "--no-progress"]) == 0
    split = {"train_case_1": "train", "train_case_3": "train", "train_case_2": "val"}
    listing = out / "cases.csv"
    with open(listing, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["case", "nihss", "group", "split"])
        for case_id, part in split.items():
            writer.writerow([case_id, "", "unknown", part])
    return listing


def test_fit_and_evaluate_on_core_only_labels(converted, tmp_path):
    model = {"arch": "SF", "inputs": ["cbf", "cbv", "ttp", "tmax"], "use_nihss": False, "width": 1 / 16,
             "image_size": 32}
    config = TrainConfig(model=model, stages=["all"], imagenet_weights=None, lr=1e-3, max_epochs=2, seed=3)
    summary = fit(config, converted, tmp_path / "run", progress=False)
    assert summary["epochs_run"] == {"all": 2} and np.isfinite(summary["best_val_loss"])
    report = evaluate.evaluate({"run": tmp_path / "run"}, converted, split="val", out_dir=tmp_path / "eval",
                               device="cpu")
    assert "ISLES challenge metrics" in report.markdown and "core lesion F1" in report.markdown
    assert "Hausdorff" not in report.markdown and "penumbra" not in report.markdown.split("Labels:")[0]
    assert {r["method"] for r in report.rows} == {"run", evaluate.THRESHOLD_NAME}
    assert all(set(r) == {"method", "case", "group", "core_dice", "core_abs_volume_difference_ml",
                          "core_lesion_f1", "core_abs_lesion_count_difference"} for r in report.rows)
    stored = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert stored["label_scheme"] == "core" and not (tmp_path / "eval" / "boxplots.png").exists()


def test_nihss_model_on_a_dataset_without_nihss_is_refused(converted, tmp_path):
    config = TrainConfig(model={"arch": "SF", "inputs": ["cbf", "cbv", "ttp", "tmax"], "use_nihss": True,
                                "width": 1 / 16, "image_size": 32}, stages=["all"], imagenet_weights=None,
                         max_epochs=1)
    with pytest.raises(InputError, match="NIHSS is missing"):
        fit(config, converted, tmp_path / "run", progress=False)


def test_full_labels_report_paper_tables_and_isles_metrics():
    truth = np.full((2, 10, 10), BRAIN, np.uint8)
    truth[:, :3] = PENUMBRA
    truth[:, 8:] = CORE
    rows = evaluate.metric_rows({"m": {"a": truth}}, {"a": (truth, (5.0, 1.0, 1.0), "LVO")})
    assert rows[0]["core_lesion_f1"] == 1.0 and rows[0]["penumbra_hd_mm"] == 0.0
    markdown = evaluate.markdown_tables(evaluate.summary_tables(rows))
    assert "Hausdorff distance" in markdown and "penumbra lesion F1" in markdown


def _final_infarct_and_prediction():
    """A stored final infarct (40 voxels) and a prediction of half of it as core, half as penumbra."""
    truth = np.full((1, 10, 10), BRAIN, np.uint8)
    truth[0, :4] = CORE
    predicted = np.full_like(truth, BRAIN)
    predicted[0, :2] = CORE
    predicted[0, 2:4] = PENUMBRA
    return truth, predicted


def test_final_infarct_is_scored_against_core_and_core_plus_penumbra():
    truth, predicted = _final_infarct_and_prediction()
    rows = evaluate.metric_rows({"m": {"a": predicted}}, {"a": (truth, (5.0, 1.0, 1.0), "LVO")},
                                label_scheme("final_infarct"))
    assert rows[0]["infarct_vs_core_dice"] == pytest.approx(2 * 20 / 60)
    assert rows[0]["infarct_vs_core_penumbra_dice"] == 1.0


def test_reperfusion_decides_the_expected_target_and_final_infarct_schemes_mix():
    from types import SimpleNamespace

    truth, predicted = _final_infarct_and_prediction()
    names = {"good": "final_infarct_reperfused", "poor": "final_infarct_not_reperfused", "unknown": "final_infarct"}
    cases = [(None, SimpleNamespace(meta={"label_scheme": name})) for name in names.values()]
    scheme = evaluate.cases_scheme(cases)
    assert [t.name for t in scheme.targets] == ["infarct_vs_core", "infarct_vs_core_penumbra", "infarct_vs_expected"]
    rows = evaluate.metric_rows({"m": {case: predicted for case in names}},
                                {case: (truth, (5.0, 1.0, 1.0), "LVO") for case in names}, scheme,
                                {case: label_scheme(name) for case, name in names.items()})
    by_case = {row["case"]: row for row in rows}
    assert by_case["good"]["infarct_vs_expected_dice"] == pytest.approx(2 * 20 / 60)
    assert by_case["poor"]["infarct_vs_expected_dice"] == 1.0 and "infarct_vs_expected_dice" not in by_case["unknown"]
    summary = evaluate.summary_tables(rows)["m"]["all"]["infarct_vs_expected_dice"]
    assert (summary.n, summary.missing) == (2, 1)
    assert "reperfusion was good" in evaluate.markdown_tables(evaluate.summary_tables(rows), scheme=scheme)
    with pytest.raises(InputError, match="mixes label schemes"):
        evaluate.cases_scheme(cases + [(None, SimpleNamespace(meta={"label_scheme": "core"}))])


def test_cohort_command_errors_exit_2(tmp_path, capsys):
    assert train_main(["cohort", "--from", "isles2019", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert train_main(["cohort", "--from", "isles2018", "--out", str(tmp_path / "o")]) == 2
    assert train_main(["cohort", "--out", str(tmp_path / "o")]) == 2
    assert "--patients" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_labels_outside_the_scheme_and_label_free_schemes_are_refused(converted, tmp_path):
    from StrokePerfusionSegLib.casefolder import save_case
    from strokeperfusionseg_training.data import CaseRecord, load_training_case

    case = load_case(converted.parent / "train_case_1")
    case.label[0, 0, 0] = PENUMBRA  # the core scheme has no value 2
    save_case(case, tmp_path / "bad")
    record = CaseRecord("bad", tmp_path / "bad", "unknown")
    with pytest.raises(InputError, match=r"values \[2\] are not defined by its label scheme 'core'"):
        load_training_case(record, ["cbf"], use_nihss=False)
    case.meta["label_scheme"] = "none"
    save_case(case, tmp_path / "none")
    with pytest.raises(InputError, match="marks no lesion"):
        load_training_case(CaseRecord("none", tmp_path / "none", "unknown"), ["cbf"], use_nihss=False)
    full, core_only = load_case(converted.parent / "train_case_2"), load_case(converted.parent / "train_case_3")
    full.meta["label_scheme"] = "core_penumbra"
    with pytest.raises(InputError, match="mixes label schemes"):
        evaluate.cases_scheme([(None, full), (None, core_only)])
    core_only.meta["label_scheme"] = "none"
    with pytest.raises(InputError, match="nothing to score"):
        evaluate.cases_scheme([(None, core_only)])
