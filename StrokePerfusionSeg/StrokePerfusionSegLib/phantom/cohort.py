"""A phantom cohort: patients, their groups, a patient-level split stratified by group."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import __version__
from ..atomic import staged_folder
from ..casefolder import GROUPS, SPLITS, save_cohort_index
from ..errors import InputError
from .config import PhantomConfig
from .generator import TRUTH_UNITS, save_study, simulate


def case_seed(seed: int, index: int) -> int:
    """Seed of patient ``index`` of a cohort with ``seed`` (independent streams per patient)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def assign_groups(patients: int, config: PhantomConfig, rng: np.random.Generator,
                  groups: Sequence[str] | None = None) -> list[str]:
    """Group of every patient.

    With ``groups`` given, patients cycle through them in that order (equal shares, so three
    patients and three groups give one of each). Otherwise the counts follow
    ``config.group_counts`` (the paper's 77/60/15) by largest remainder, in random order.
    """
    if groups:
        unknown = [g for g in groups if g not in GROUPS]
        if unknown:
            raise InputError(f"unknown group(s) {', '.join(unknown)}: use {', '.join(GROUPS)}")
        return [groups[i % len(groups)] for i in range(patients)]
    names = [g for g in GROUPS if config.group_counts.get(g, 0) > 0]
    weights = np.array([config.group_counts[g] for g in names], dtype=float)
    exact = weights / weights.sum() * patients
    counts = np.floor(exact).astype(int)
    for extra in np.argsort(-(exact - counts), kind="stable")[: patients - counts.sum()]:
        counts[extra] += 1
    assigned = [name for name, count in zip(names, counts) for _ in range(count)]
    return [assigned[i] for i in rng.permutation(patients)]


def split_patients(case_groups: Sequence[str], fractions: Sequence[float], rng: np.random.Generator) -> list[str]:
    """Split label (train/val/test) per patient, stratified by group.

    Within each group the counts are ``round(fraction * n)`` for val and test, the rest train,
    so a group of one patient goes to train.
    """
    splits = [""] * len(case_groups)
    for group in dict.fromkeys(case_groups):
        members = [i for i, g in enumerate(case_groups) if g == group]
        order = [members[i] for i in rng.permutation(len(members))]
        n_val = int(round(fractions[1] * len(members)))
        n_test = int(round(fractions[2] * len(members)))
        n_train = max(len(members) - n_val - n_test, min(1, len(members)))
        n_val = min(n_val, len(members) - n_train)
        for position, member in enumerate(order):
            splits[member] = SPLITS[0] if position < n_train else SPLITS[1] if position < n_train + n_val else SPLITS[2]
    return splits


def patient_config(config: PhantomConfig, seed: int, methods: Sequence[dict] | None) -> PhantomConfig:
    """``config`` with the perfusion method of the patient with ``seed`` (:func:`case_seed`).

    With several ``methods`` (:func:`~.config.parse_perfusion_methods`) the patient's is drawn
    from its own random stream, so every other property of the patient stays as without it.
    """
    if not methods:
        return config
    choice = np.random.default_rng(np.random.SeedSequence([int(seed), 2])).integers(len(methods))
    return replace(config, **methods[choice])


def generate_cohort(
    out_dir: str | os.PathLike,
    patients: int,
    seed: int,
    config: PhantomConfig,
    groups: Sequence[str] | None = None,
    *,
    methods: Sequence[dict] | None = None,
    only_splits: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate ``patients`` phantom cases into ``out_dir`` with ``cohort.json``.

    The cohort is built in a hidden folder beside ``out_dir`` and renamed into place at the
    end, so an interruption leaves nothing behind. ``out_dir`` must not exist.

    Parameters
    ----------
    methods : sequence of dict, optional
        Perfusion methods of the computed maps (:func:`~.config.parse_perfusion_methods`),
        one drawn per patient (:func:`patient_config`); default ``config``'s own.
    only_splits : sequence of str, optional
        Simulate only the patients of these splits (e.g. ``("test",)``); the others keep their
        ids, groups and splits but are left out, so the kept patients are those of the full cohort.

    Returns
    -------
    Path
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    if not isinstance(patients, (int, np.integer)) or isinstance(patients, bool) or patients < 1:
        raise InputError(f"--patients must be a whole number >= 1, got {patients}")
    unknown = sorted(set(only_splits or ()) - set(SPLITS))
    if unknown:
        raise InputError(f"unknown split(s) {', '.join(unknown)}: use {', '.join(SPLITS)}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2**32 - 1]))
    case_groups = assign_groups(int(patients), config, rng, groups)
    splits = split_patients(case_groups, config.split, rng)
    if only_splits and not set(splits) & set(only_splits):
        raise InputError(f"no patient of {patients} falls in split(s) {', '.join(only_splits)}: give more patients")
    with staged_folder(out_dir) as staging:
        index = []
        for number, (group, split) in enumerate(zip(case_groups, splits)):
            if only_splits and split not in only_splits:
                continue
            case_id = f"P{number + 1:04d}"
            patient_seed = case_seed(seed, number)
            study = simulate(case_id, group, patient_seed, patient_config(config, patient_seed, methods))
            save_study(study, staging / case_id)
            index.append({"id": case_id, "group": group, "nihss": study.case.nihss, "split": split})
            if progress is not None:
                progress(number + 1, int(patients))
        save_cohort_index(staging, index, extra={
            "generator": "StrokePerfusionSegLib.phantom", "version": __version__, "seed": int(seed),
            "config": config.to_dict(), "groups_requested": list(groups) if groups else None,
            "truth_maps": sorted(f"truth_{name}" for name in TRUTH_UNITS),
            "perfusion_methods": [replace(config, **m).map_method for m in methods] if methods else None,
            "only_splits": list(only_splits) if only_splits else None,
        })
    return out_dir
