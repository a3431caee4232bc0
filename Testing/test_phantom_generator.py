"""The digital CTP phantom: determinism, groups, truth, tracer physics, NIHSS, bad settings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from StrokePerfusionSegLib import labels, tracer
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.phantom import PhantomConfig, generate_case, simulate
from StrokePerfusionSegLib.phantom.bolus import Bolus
from StrokePerfusionSegLib.phantom.generator import NIHSS_MODEL, dispersed_residue_peak, draw_nihss

TINY = PhantomConfig(size=64, slices=4, frames=30, maps="truth")


@pytest.fixture(scope="module")
def lvo_study():
    return simulate("lvo", "LVO", 11, TINY)


def test_same_seed_gives_identical_case():
    first, second = generate_case("a", "NonLVO", 5, TINY), generate_case("a", "NonLVO", 5, TINY)
    np.testing.assert_array_equal(first.ctp, second.ctp)
    np.testing.assert_array_equal(first.label, second.label)
    for name in first.maps:
        np.testing.assert_array_equal(first.maps[name], second.maps[name])
    assert first.nihss == second.nihss and first.case_json() == second.case_json()


def test_different_seeds_give_different_heads_and_curves():
    first, second = generate_case("a", "LVO", 5, TINY), generate_case("a", "LVO", 6, TINY)
    assert first.meta["source"]["pose"] != second.meta["source"]["pose"]
    assert not np.array_equal(first.label, second.label)
    assert np.abs(first.ctp - second.ctp).mean() > 1.0


def test_every_generator_parameter_is_recorded(lvo_study):
    source = lvo_study.case.case_json()["source"]
    assert source["seed"] == 11 and source["config"]["size"] == 64
    for key in ("pose", "bolus", "tissue", "lesions", "noise", "nihss_model", "quantisation_s"):
        assert source[key], key
    assert 14.0 <= source["bolus"]["peak_time_s"] <= 20.0
    assert 250.0 <= source["bolus"]["peak_hu"] <= 450.0


def test_wis_has_no_lesion_label():
    for seed in (1, 2):
        case = generate_case("w", "WIS", seed, TINY)
        assert set(np.unique(case.label)) <= {labels.BACKGROUND, labels.BRAIN}
        assert np.count_nonzero(case.label == labels.BRAIN) > 1000


def test_lvo_core_lies_inside_a_wider_penumbra(lvo_study):
    label = lvo_study.case.label
    core = label == labels.CORE
    hypoperfused = label >= labels.PENUMBRA
    assert core.sum() > 20 and hypoperfused.sum() > 2 * core.sum()
    # In-plane ring around the core, within brain: hypoperfused, not normal brain.
    ring = ndimage.binary_dilation(core, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool)) & ~core
    ring &= label >= labels.BRAIN
    assert np.mean(label[ring] == labels.PENUMBRA) > 0.8


def test_non_lvo_lesions_are_small():
    for seed in (3, 4, 5):
        case = generate_case("n", "NonLVO", seed, TINY)
        lesion_ml = np.count_nonzero(case.label >= labels.PENUMBRA) * case.geometry.voxel_volume_ml
        assert 0.0 < lesion_ml < 25.0, lesion_ml


def test_truth_maps_match_the_clinical_definitions_on_lesion_tissue(lvo_study):
    truth, label = lvo_study.truth, lvo_study.case.label
    brain = label == labels.BRAIN
    assert np.median(truth["tmax"][label == labels.CORE]) > 6.0
    assert np.median(truth["tmax"][label == labels.PENUMBRA]) > 6.0
    assert np.median(truth["cbf"][label == labels.CORE]) < 0.3 * np.median(truth["cbf"][brain])
    np.testing.assert_allclose(truth["cbv"], truth["cbf"] * truth["mtt"] / 60.0, rtol=1e-5, atol=1e-6)
    assert np.all(truth["tmax"] >= truth["delay"])
    # With truth maps requested, the case maps are the truth.
    np.testing.assert_array_equal(lvo_study.case.maps["tmax"], truth["tmax"])


def test_tissue_curves_are_the_tracer_model_of_the_truth_maps():
    study = simulate("q", "LVO", 12, PhantomConfig(size=64, slices=4, frames=30, maps="truth", noise_hu=0.0))
    case, truth = study.case, study.truth
    bolus_record = {k: v for k, v in case.meta["source"]["bolus"].items() if k != "peak_time_s"}
    t_s = np.arange(30) * 1.0
    aif = Bolus(**bolus_record).arterial(t_s)
    concentration = case.ctp - case.ctp[0]
    # Tissue voxels of every state, away from vessels (which add their own curves).
    tissue = (case.label >= labels.BRAIN) & (study.anatomy.artery + study.anatomy.vein < 1e-6)
    voxels = np.argwhere(tissue)[:: max(1, int(tissue.sum()) // 300)]
    z, y, x = voxels.T
    # Each voxel follows the transit-time distribution case.json records for its majority parenchyma.
    residues = case.meta["source"]["residues"]
    white = study.anatomy.wm[z, y, x] > study.anatomy.gm[z, y, x]
    for region, members in (("grey", ~white), ("white", white)):
        kind, shape = residues[region]["kind"], residues[region]["shape"]
        picked = (z[members], y[members], x[members])
        expected = tracer.tissue_curves(aif, t_s, truth["cbf"][picked], truth["cbv"][picked],
                                        truth["delay"][picked], truth["dispersion"][picked], kind=kind, shape=shape)
        np.testing.assert_allclose(concentration[(slice(None),) + picked], expected, atol=1e-3)
    assert {labels.BRAIN, labels.PENUMBRA, labels.CORE} <= set(case.label[z, y, x].tolist())


def test_dispersed_residue_peak_matches_the_analytic_solution():
    mtt, dispersion = np.array([4.0, 8.0, 12.0, 5.0]), np.array([0.5, 2.0, 3.0, 0.0])
    expected = np.where(dispersion > 0, np.log(mtt / np.maximum(dispersion, 1e-9)) * mtt * dispersion
                        / (mtt - dispersion), 0.0)
    np.testing.assert_allclose(dispersed_residue_peak(mtt, dispersion), expected, atol=0.06)


def test_ctp_baselines_bolus_and_noise():
    quiet = simulate("q", "WIS", 8, PhantomConfig(size=64, slices=4, frames=30, maps="truth", noise_hu=0.0)).case
    noisy = simulate("q", "WIS", 8, PhantomConfig(size=64, slices=4, frames=30, maps="truth", noise_hu=5.0)).case
    brain = quiet.label == labels.BRAIN
    assert 27.0 < np.median(quiet.ctp[0][brain]) < 37.0  # grey 35 / white 29 HU before the bolus
    enhancement = quiet.ctp.max(axis=0) - quiet.ctp[0]
    assert enhancement.max() > 150.0  # arteries and sinus
    assert 0.5 < np.median(enhancement[brain]) < 40.0  # tissue enhances a few HU
    difference = noisy.ctp - quiet.ctp
    assert abs(float(difference.std()) - 5.0) < 0.1 and abs(float(difference.mean())) < 0.05
    np.testing.assert_array_equal(noisy.label, quiet.label)


def test_nihss_is_bounded_and_follows_lesion_volume():
    rng = np.random.default_rng(0)
    volumes = rng.uniform(0.0, 150.0, 300)
    scores = np.array([draw_nihss("LVO", v / 3, v, rng) for v in volumes])
    assert scores.min() >= 0 and scores.max() <= 42
    assert np.corrcoef(volumes, scores)[0, 1] > 0.6
    assert all(0 <= draw_nihss(g, 500.0, 500.0, rng) <= 42 for g in NIHSS_MODEL)
    # Over a few generated cases, the bigger lesions come with the higher scores.
    cases = [generate_case("c", group, seed, TINY) for group, seed in
             (("LVO", 1), ("LVO", 2), ("NonLVO", 3), ("WIS", 4), ("LVO", 5), ("WIS", 6))]
    lesion = [np.count_nonzero(c.label >= labels.PENUMBRA) for c in cases]
    assert np.corrcoef(lesion, [c.nihss for c in cases])[0, 1] > 0.3


@pytest.mark.parametrize("settings", [
    dict(size=8), dict(size=64.5), dict(slices=1), dict(frames=5), dict(dt_s=0.0),
    dict(noise_hu=-1.0), dict(maps="vendor"), dict(split=(0.5, 0.5, 0.5)),
])
def test_bad_settings_are_input_errors(settings):
    with pytest.raises(InputError):
        PhantomConfig(**settings)


def test_unknown_group_is_an_input_error():
    with pytest.raises(InputError, match="group"):
        simulate("x", "TIA", 1, TINY)
