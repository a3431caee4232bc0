"""Session-wide fixtures shared by every test suite: a tiny phantom cohort and its LVO case."""

from __future__ import annotations

import pytest

#: Settings of the shared tiny cohort: 64x64 pixels, 4 slices, 30 frames, maps computed from the CTP.
TINY_CONFIG = dict(size=64, slices=4, frames=30, dt_s=1.0, noise_hu=3.0, maps="computed")
TINY_SEED = 20240521


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory):
    """Path of a cohort of 3 phantom cases (P0001 LVO, P0002 NonLVO, P0003 WIS).

    Each case folder holds ctp, the six maps, their ``_rgb`` copies, label, truth_* maps and
    case.json; treat it as read-only (it is shared by the whole session).
    """
    from StrokePerfusionSegLib.phantom import PhantomConfig, generate_cohort

    root = tmp_path_factory.mktemp("phantom") / "tiny_cohort"
    return generate_cohort(root, 3, TINY_SEED, PhantomConfig(**TINY_CONFIG), groups=("LVO", "NonLVO", "WIS"))


@pytest.fixture(scope="session")
def lvo_case(tiny_cohort):
    """The LVO case of :func:`tiny_cohort` loaded with ctp, rgb copies and label."""
    from StrokePerfusionSegLib.casefolder import load_case, load_cohort

    cohort = load_cohort(tiny_cohort)
    (case_id,) = cohort.ids(group="LVO")
    return load_case(cohort.case_folder(case_id), with_ctp=True, with_rgb=True, with_label=True)
