"""strokeperfusionseg_training.evaluate and .export: tables from known predictions, the whole report, bundles."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from StrokePerfusionSegLib.labels import BRAIN, CORE, PENUMBRA
from strokeperfusionseg_training import evaluate
from strokeperfusionseg_training.config import TrainConfig
from training_cases import split_case_list
from strokeperfusionseg_training.trainer import fit

SPACING = (5.0, 1.0, 1.0)  # (z, y, x) mm: one voxel is 0.005 ml


def _truth(penumbra_rows: slice, core_rows: slice | None) -> np.ndarray:
    label = np.full((2, 20, 20), BRAIN, np.uint8)
    label[:, penumbra_rows, 2:12] = PENUMBRA
    if core_rows is not None:
        label[:, core_rows, 2:12] = CORE
    return label


def test_tables_from_known_predictions():
    lvo_a = _truth(slice(0, 10), slice(10, 14))  # penumbra 200 voxels, core 80
    lvo_b = _truth(slice(0, 8), slice(8, 12))
    nonlvo = _truth(slice(0, 4), None)
    wis = np.full((2, 20, 20), BRAIN, np.uint8)
    truths = {"a": (lvo_a, SPACING, "LVO"), "b": (lvo_b, SPACING, "LVO"),
              "c": (nonlvo, SPACING, "NonLVO"), "d": (wis, SPACING, "WIS")}
    half_penumbra = lvo_a.copy()
    half_penumbra[:, 5:10] = BRAIN  # keeps 100 of 200 penumbra voxels: Dice 2*100/(100+200)
    predictions = {
        "perfect": {k: v[0] for k, v in truths.items()},
        "partial": {"a": half_penumbra, "b": lvo_b, "c": np.full_like(nonlvo, BRAIN), "d": wis},
    }
    rows = evaluate.metric_rows(predictions, truths)
    tables = evaluate.summary_tables(rows)
    perfect, partial = tables["perfect"], tables["partial"]
    assert perfect["LVO"]["penumbra_dice"].mean == 1.0 and perfect["all"]["core_dice"].mean == 1.0
    assert partial["LVO"]["penumbra_dice"].mean == pytest.approx((2 / 3 + 1) / 2)
    assert partial["LVO"]["penumbra_dice"].sd == pytest.approx(np.std([2 / 3, 1], ddof=1))
    assert partial["NonLVO"]["penumbra_dice"].mean == 0.0
    assert partial["all"]["penumbra_dice"].mean == pytest.approx((2 / 3 + 1 + 0 + 1) / 4)
    # |dV| in ml: 100 missing penumbra voxels of 0.005 ml in case a, 0 in b.
    assert partial["LVO"]["penumbra_abs_volume_difference_ml"].mean == pytest.approx(0.25)
    assert partial["NonLVO"]["penumbra_abs_volume_difference_ml"].mean == pytest.approx(2 * 4 * 10 * 0.005)
    # An empty prediction of a lesion leaves the Hausdorff distance undefined, counted apart.
    assert partial["NonLVO"]["penumbra_hd_mm"].missing == 1
    markdown = evaluate.markdown_tables(tables, title="known", split="test")
    assert "| Method | LVO penumbra | LVO core | Non-LVO penumbra | Non-LVO core | All penumbra | All core |" in markdown
    assert "| partial | 0.83 ± 0.24 | 1.00 ± 0.00 | 0.00 ± – |" in markdown
    assert "WIS penumbra" in markdown and "(1 undef.)" in markdown
    assert "LVO 2, Non-LVO 1, WIS 1, All 4 patients" in markdown


@pytest.fixture(scope="module")
def trained_run(tiny_cohort, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("evaluate") / "run"
    config = TrainConfig(model={"arch": "SF", "inputs": ["cbf", "cbv", "ttp", "tmax"], "use_nihss": True,
                                "width": 1 / 16, "image_size": 32},
                         stages=["all"], imagenet_weights=None, lr=1e-3, max_epochs=2, seed=1)
    fit(config, split_case_list(tiny_cohort, run_dir.parent), run_dir, progress=False)
    return run_dir


def test_report_files_beside_the_thresholding_baseline(trained_run, tiny_cohort, tmp_path):
    import matplotlib.image

    report = evaluate.evaluate({"tiny SF": trained_run}, split_case_list(tiny_cohort, tmp_path), split="train", out_dir=tmp_path / "report",
                               device="cpu")
    assert list(report.tables) == ["tiny SF", evaluate.THRESHOLD_NAME]
    with open(tmp_path / "report" / "per_case.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {r["method"] for r in rows} == {"tiny SF", evaluate.THRESHOLD_NAME}
    assert all(0.0 <= float(r["penumbra_dice"]) <= 1.0 for r in rows)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert set(summary["methods"]) == {"tiny SF", evaluate.THRESHOLD_NAME}
    for name in ("boxplots.png", "montage_tiny_SF.png"):
        assert matplotlib.image.imread(tmp_path / "report" / name).ndim == 3
    assert (tmp_path / "report" / "report.md").read_text().startswith("# Evaluation")


def test_exported_bundle_predicts_like_the_run(trained_run, tiny_cohort, tmp_path):
    from StrokePerfusionSegLib.bundle import load_bundle
    from StrokePerfusionSegLib.casefolder import load_case
    from StrokePerfusionSegLib.predictor import predict
    from strokeperfusionseg_training.export import export_run

    folder = export_run(trained_run, tmp_path, model_id="tiny-sf", version="0.0.1",
                        evaluation={"split": "train"})
    bundle = load_bundle(folder)
    manifest = json.loads((folder / "model.json").read_text())
    assert manifest["training"]["best_epoch"] == json.loads((trained_run / "summary.json").read_text())["best_epoch"]
    assert manifest["training"]["settings"]["seed"] == 1
    run_model = evaluate.load_method(trained_run)
    case = load_case(next(p for p in tiny_cohort.iterdir() if p.is_dir()))
    images = {n: case.maps[n] for n in ("cbf", "cbv", "ttp", "tmax")}
    nihss = case.nihss or 0
    a = predict(images, case.geometry.spacing_zyx, method=bundle, nihss=nihss, device="cpu").probabilities
    b = predict(images, case.geometry.spacing_zyx, method=run_model, nihss=nihss, device="cpu").probabilities
    np.testing.assert_allclose(a, b, atol=1e-5)
