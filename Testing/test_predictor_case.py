"""Predictor on the shared phantom LVO case: thresholding finds the lesion; a network bundle
runs end to end on the case's own grid from colour-coded maps and NIHSS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from StrokePerfusionSegLib.brainmask import brain_mask_from_mip
from StrokePerfusionSegLib.bundle import load_bundle, save_bundle
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.labels import PENUMBRA
from StrokePerfusionSegLib.networks import ModelConfig, build_model
from StrokePerfusionSegLib.predictor import predict


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def lesion_dice_and_chance(labels, truth, mask):
    found, expected = labels >= PENUMBRA, truth >= PENUMBRA
    # Dice expected from a mask of the same size placed at random inside the brain.
    chance = 2.0 * (found.sum() * expected.sum() / mask.sum()) / max(1, found.sum() + expected.sum())
    return dice(found, expected), chance


def test_threshold_method_finds_the_lvo_lesion(lvo_case):
    spacing = lvo_case.geometry.spacing_zyx
    result = predict(lvo_case.maps, spacing, method="threshold", mip=lvo_case.maps["mip"])
    mask = brain_mask_from_mip(lvo_case.maps["mip"], spacing)
    score, chance = lesion_dice_and_chance(result.labels, lvo_case.label, mask)
    print(f"threshold lesion Dice {score:.2f} (chance {chance:.2f})")
    assert result.probabilities is None and result.labels.shape == lvo_case.label.shape
    assert score > 0.5 and score > 3 * chance
    assert (result.labels[~mask] == 0).all()
    assert any("decision support" in note for note in result.notes)

    coded = {name: lvo_case.rgb[name] for name in ("cbf", "tmax")}
    decoded = predict(coded, spacing, method="threshold", mip=lvo_case.maps["mip"])
    assert any("decoded" in note for note in decoded.notes)
    assert dice(decoded.labels >= PENUMBRA, result.labels >= PENUMBRA) > 0.9


def test_threshold_method_needs_cbf_tmax_and_mip(lvo_case):
    spacing = lvo_case.geometry.spacing_zyx
    with pytest.raises(InputError, match="tmax"):
        predict({"cbf": lvo_case.maps["cbf"]}, spacing, method="threshold", mip=lvo_case.maps["mip"])
    with pytest.raises(InputError, match="MIP"):
        predict({name: lvo_case.maps[name] for name in ("cbf", "tmax")}, spacing, method="threshold")


def test_network_bundle_on_the_case_grid(lvo_case, tmp_path):
    torch.manual_seed(0)
    config = ModelConfig(inputs=("cbf", "cbv", "ttp", "tmax", "mip"), use_nihss=True,
                         width=1 / 16, image_size=32)
    bundle = load_bundle(save_bundle(tmp_path, build_model(config), config,
                                     model_id="case-test", version="0.0.1"))
    spacing = lvo_case.geometry.spacing_zyx
    steps = []
    coded = {name: lvo_case.rgb[name] for name in config.inputs}
    result = predict(coded, spacing, method=bundle, nihss=lvo_case.nihss,
                     mip=lvo_case.maps["mip"], progress=lambda done, total: steps.append(done))
    z, y, x = lvo_case.label.shape
    assert result.labels.shape == (z, y, x)
    assert result.probabilities.shape == (z, 4, y, x)
    mask = brain_mask_from_mip(lvo_case.maps["mip"], spacing)
    assert (result.labels[~mask] == 0).all() and (result.labels[mask] >= 1).all()
    assert steps[-1] == z
    assert any(f"resampled from {x}x{y} to 32x32" in note for note in result.notes)
