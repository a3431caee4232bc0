"""Acute lesions and confounders as tissue states on the CTP grid.

Every voxel gets a state (:data:`NORMAL`, :data:`OLIGAEMIA`, :data:`PENUMBRA`, :data:`CORE`) and a
position 0..1 within it (how deep into the state it lies), plus the fraction of an old (chronic)
infarct. :func:`state_parameters` turns them into multipliers of normal CBF/CBV and arrival
delay and dispersion. The truth label comes from these states, never from computed maps:

* core: CBF 8-28 % of normal, CBV 30-60 %, delay 7-10 s, dispersion 1.5-2.5 s (Tmax ~10-13 s):
  irreversibly injured;
* penumbra: CBF 35-70 %, CBV 90-115 %, delay 5.5-8 s, dispersion 0.5-1.5 s (Tmax ~7-10 s):
  hypoperfused, salvageable;
* benign oligaemia: CBF 85-100 %, CBV 100-110 %, delay = Tmax 4-5.6 s, no dispersion: labelled brain.

So the truth agrees with the clinical rules (core rCBF < 30 %, hypoperfused Tmax > 6 s) on pure
tissue; noise, partial volume and the confounders make the computed maps disagree at times.

Groups: LVO has one territorial lesion (MCA, or MCA+ACA for a carotid-T occlusion) whose core
lies inside a wider penumbra inside an oligaemic rim; Non-LVO has 1-3 small distal lesions;
WIS has none. Confounders in any group: benign oligaemia, delay without ischaemia over a
hemisphere (stenosis with good collaterals), an old infarct (tissue replaced by CSF-like fluid,
not perfused, labelled background), and regional flow variation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

from .anatomy import Anatomy, upsample

NORMAL, OLIGAEMIA, PENUMBRA, CORE = 0, 1, 2, 3

#: Box of template space (RAS mm) covered by the smooth random fields, and their node spacing.
_FIELD_BOX = ((-100.0, 100.0), (-135.0, 100.0), (-80.0, 120.0))
_FIELD_NODE_MM = 10.0


@dataclass
class TissueState:
    """Per-voxel lesion state, shape (z, y, x).

    Attributes
    ----------
    state : uint8
        NORMAL / OLIGAEMIA / PENUMBRA / CORE.
    depth : float32
        Position 0..1 within the state (0 at its milder edge).
    base_delay_s : float32
        Arrival delay of normal tissue after the arterial input (s), before lesion effects.
    base_dispersion_s : float32
        Dispersion of normal tissue (s).
    flow_variation : float32
        Smooth regional multiplier of normal CBF and CBV (about 0.9-1.1).
    old_infarct : float32
        Fraction 0..1 of the voxel replaced by an old infarct.
    affected_artery : bool
        Arterial voxels downstream of an occlusion (filled late, through collaterals).
    record : dict
        JSON-ready description of every lesion and confounder (for case.json).
    """

    state: np.ndarray
    depth: np.ndarray
    base_delay_s: np.ndarray
    base_dispersion_s: np.ndarray
    flow_variation: np.ndarray
    old_infarct: np.ndarray
    affected_artery: np.ndarray
    record: dict = field(default_factory=dict)


def smooth_fields(anatomy: Anatomy, rng: np.random.Generator, channels: int) -> np.ndarray:
    """``channels`` smooth random fields (unit SD, ~20 mm correlation) on the working grid, (C, z, w, w).

    Defined in template space, so they deform with the head.
    """
    counts = [int((high - low) / _FIELD_NODE_MM) + 1 for low, high in _FIELD_BOX]
    noise = rng.standard_normal((channels, counts[2], counts[1], counts[0])).astype(np.float32)
    import torch  # here, not at import: the phantom package loads without PyTorch (the Slicer sample)

    noise = torch.nn.functional.avg_pool3d(torch.from_numpy(noise)[None], 3, stride=1, padding=1,
                                           count_include_pad=False)
    noise = noise / noise.flatten(2).std(dim=2)[..., None, None, None]
    grid = np.stack(
        [2.0 * (anatomy.mni[axis] - low) / (high - low) - 1.0 for axis, (low, high) in enumerate(_FIELD_BOX)],
        axis=-1,
    )
    sampled = torch.nn.functional.grid_sample(
        noise, torch.from_numpy(grid.astype(np.float32))[None], mode="bilinear", padding_mode="border",
        align_corners=True,
    )
    return sampled[0].numpy()


def territories(mni: np.ndarray, side: int) -> dict[str, np.ndarray]:
    """Soft vascular territories (0..1) of one hemisphere (``side`` +1 right, -1 left)."""
    x, y, z = mni
    hemisphere = expit((side * x - 3.0) / 1.5)
    aca = expit((16.0 - np.abs(x)) / 3.0) * expit((y + 25.0) / 6.0) * hemisphere
    pca = expit((-55.0 - y) / 6.0) * hemisphere
    mca = np.clip(hemisphere - np.maximum(aca, pca), 0.0, 1.0)
    return {"MCA": mca.astype(np.float32), "ACA": aca.astype(np.float32), "PCA": pca.astype(np.float32)}


def _quantile_thresholds(severity, candidates, fractions):
    """Severity levels that leave the given fractions of candidate voxels above them."""
    values = severity[candidates]
    if values.size == 0:
        return [np.inf] * len(fractions)
    step = max(1, values.size // 200_000)  # a subsample is plenty for quantiles
    return [float(np.quantile(values[::step], 1.0 - f)) if f > 0 else np.inf for f in fractions]


def _assign(state, depth, severity, where, levels):
    """Set states OLIGAEMIA/PENUMBRA/CORE where ``severity`` passes ``levels`` (3 ascending)."""
    bounds = list(levels) + [np.inf]
    for value, low, high in zip((OLIGAEMIA, PENUMBRA, CORE), bounds[:-1], bounds[1:]):
        inside = where & (severity >= low) & (severity < high) & (state < value)
        state[inside] = value
        span = (high - low) if np.isfinite(high) else max(float(np.max(severity[inside], initial=low)) - low, 1e-6)
        depth[inside] = np.clip((severity[inside] - low) / span, 0.0, 1.0)


def _random_tissue_point(anatomy: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Template RAS coordinates of a random parenchyma voxel of the slab."""
    candidates = np.flatnonzero(anatomy.work_parenchyma > 0.7)
    if candidates.size == 0:
        candidates = np.arange(anatomy.work_parenchyma.size)
    pick = int(candidates[rng.integers(candidates.size)])
    return anatomy.mni.reshape(3, -1)[:, pick].astype(float)


def _ellipsoid_distance(mni, centre, radii):
    """Normalised ellipsoid radius (1 on the surface) of every voxel."""
    return np.sqrt(sum(((mni[a] - centre[a]) / radii[a]) ** 2 for a in range(3)))


def simulate_lesions(anatomy: Anatomy, group: str, rng: np.random.Generator) -> TissueState:
    """Draw the acute lesion(s) of ``group`` and the confounders; see the module docstring.

    Smooth fields (severity, delay, territories) are evaluated on the working grid and
    interpolated to the full grid before thresholding, so lesion borders are full resolution.
    The stages below draw from ``rng`` in a fixed order: a seed gives the same phantom.
    """
    shape = anatomy.shape
    noise = smooth_fields(anatomy, rng, 3)
    state = np.zeros(shape, np.uint8)
    depth = np.zeros(shape, np.float32)
    parenchyma = (anatomy.gm + anatomy.wm) > 0.3
    record: dict = {"group": group, "lesions": [], "confounders": []}
    side = int(rng.choice([-1, 1]))
    record["side"] = "right" if side > 0 else "left"
    affected_artery = np.zeros(shape, bool)

    base_delay, base_dispersion, flow_variation = _delay_fields(anatomy, noise, rng, record)
    if group == "LVO":
        affected_artery = _territorial_lesion(anatomy, noise, side, parenchyma, state, depth, rng, record)
    elif group == "NonLVO":
        _distal_lesions(anatomy, noise, state, depth, rng, record)
    if rng.random() < 0.2:  # benign oligaemia away from any lesion
        _benign_oligaemia(anatomy, noise, state, depth, rng, record)
    old_infarct = np.zeros(shape, np.float32)
    if rng.random() < 0.2:  # chronic infarct: CSF-like cavity, not perfused, labelled background
        old_infarct = _old_infarct(anatomy, rng, record)

    state[~parenchyma] = NORMAL
    record["confounders"].append({"kind": "regional_flow_variation", "sd": 0.05})
    return TissueState(
        state=state, depth=depth, base_delay_s=base_delay, base_dispersion_s=base_dispersion,
        flow_variation=flow_variation, old_infarct=old_infarct, affected_artery=affected_artery, record=record,
    )


def _delay_fields(anatomy: Anatomy, noise: np.ndarray, rng: np.random.Generator, record: dict):
    """Full-grid bolus delay (s), dispersion (s) and flow variation factor of normal tissue.

    A quarter of patients get a delay without ischaemia (stenosis with good collaterals).
    """
    mni = anatomy.mni
    base_delay = np.float32(rng.uniform(0.0, 1.0)) + 0.4 * (1.0 + np.tanh(noise[1]))
    base_dispersion = np.zeros(mni.shape[1:], np.float32)
    if rng.random() < 0.25:
        delayed_side = int(rng.choice([-1, 1]))
        extra = float(rng.uniform(2.0, 3.5))
        weight = expit(delayed_side * mni[0] / 5.0)
        base_delay = base_delay + extra * weight
        base_dispersion = base_dispersion + 0.5 * weight
        record["confounders"].append({"kind": "delay_without_ischaemia", "extra_delay_s": extra, "dispersion_s": 0.5,
                                      "side": "right" if delayed_side > 0 else "left"})
    return upsample(np.stack([base_delay, base_dispersion, 1.0 + 0.05 * noise[2]]), anatomy.shape[-1])


def _territorial_lesion(anatomy: Anatomy, noise: np.ndarray, side: int, parenchyma: np.ndarray,
                        state: np.ndarray, depth: np.ndarray, rng: np.random.Generator, record: dict) -> np.ndarray:
    """An M1 or carotid-T occlusion's lesion written into ``state``/``depth``; returns the affected artery mask."""
    mni = anatomy.mni
    terr = territories(mni, side)
    carotid_t = bool(rng.random() < 0.25)
    weight = np.maximum(terr["MCA"], terr["ACA"]) if carotid_t else terr["MCA"]
    deep = np.array([side * 28.0, 0.0, 2.0])  # lentiform nucleus / insula: the core starts here
    distance = np.sqrt(sum((mni[a] - deep[a]) ** 2 for a in range(3)))
    severity = weight * (1.0 - 0.5 * distance / 70.0) + 0.12 * noise[0]
    lateral = (np.abs(mni[0]) > 30.0).astype(np.float32)
    weight, severity, lateral = upsample(np.stack([weight, severity, lateral]), anatomy.shape[-1])
    candidates = (weight > 0.5) & parenchyma
    hypoperfused = float(rng.uniform(0.6, 0.95))
    core_share = float(rng.beta(2.0, 3.0) * 0.7)
    rim = float(rng.uniform(0.1, 0.3))
    levels = _quantile_thresholds(
        severity, candidates, [min(hypoperfused + rim, 1.0), hypoperfused, hypoperfused * core_share]
    )
    _assign(state, depth, severity, weight > 0.2, levels)
    record["lesions"].append({
        "kind": "territorial", "occlusion": "carotid-T" if carotid_t else "M1",
        "territory": "MCA+ACA" if carotid_t else "MCA", "side": record["side"],
        "hypoperfused_share": hypoperfused, "core_share": core_share, "oligaemic_rim_share": rim,
    })
    return (weight > 0.5) & (anatomy.artery > 0.05) & (lateral > 0.5)


def _distal_lesions(anatomy: Anatomy, noise: np.ndarray, state: np.ndarray, depth: np.ndarray,
                    rng: np.random.Generator, record: dict) -> None:
    """One to three small ellipsoidal lesions (distal occlusions), most with a core."""
    for _ in range(int(rng.integers(1, 4))):
        centre = _random_tissue_point(anatomy, rng)
        radius = float(rng.uniform(5.0, 14.0))
        radii = radius * rng.uniform(0.7, 1.3, 3)
        with_core = bool(rng.random() < 0.7)
        distance = _ellipsoid_distance(anatomy.mni, centre, radii)
        severity = upsample((1.0 - distance + 0.1 * noise[0])[None], anatomy.shape[-1])[0]
        levels = [-0.3 if rng.random() < 0.5 else 0.0, 0.0, 0.55 if with_core else np.inf]
        _assign(state, depth, severity, severity > -0.3, levels)
        record["lesions"].append({"kind": "distal", "centre_mni_mm": centre.tolist(),
                                  "radii_mm": radii.tolist(), "with_core": with_core})


def _benign_oligaemia(anatomy: Anatomy, noise: np.ndarray, state: np.ndarray, depth: np.ndarray,
                      rng: np.random.Generator, record: dict) -> None:
    """A region of benign oligaemia in still-normal tissue."""
    centre = _random_tissue_point(anatomy, rng)
    radius = float(rng.uniform(15.0, 30.0))
    distance = _ellipsoid_distance(anatomy.mni, centre, (radius,) * 3)
    severity = upsample((1.0 - distance + 0.1 * noise[0])[None], anatomy.shape[-1])[0]
    _assign(state, depth, severity, (severity > 0) & (state == NORMAL), [0.0, np.inf, np.inf])
    record["confounders"].append({"kind": "benign_oligaemia", "centre_mni_mm": centre.tolist(),
                                  "radius_mm": radius})


def _old_infarct(anatomy: Anatomy, rng: np.random.Generator, record: dict) -> np.ndarray:
    """Full-grid fraction 0..1 of a chronic infarct cavity."""
    centre = _random_tissue_point(anatomy, rng)
    radius = float(rng.uniform(5.0, 12.0))
    distance = _ellipsoid_distance(anatomy.mni, centre, (radius,) * 3) * radius
    record["confounders"].append({"kind": "old_infarct", "centre_mni_mm": centre.tolist(), "radius_mm": radius})
    return upsample(np.clip((radius - distance) / 2.0 + 0.5, 0.0, 1.0)[None], anatomy.shape[-1])[0]


def state_parameters(tissue: TissueState) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Multipliers of normal CBF and CBV, and delay and dispersion in s, per voxel.

    Returns
    -------
    cbf_factor, cbv_factor, delay_s, dispersion_s : ndarray of float32, shape (z, y, x)
    """
    s, d = tissue.state, tissue.depth
    cbf = tissue.flow_variation.copy()
    cbv = tissue.flow_variation.copy()
    delay = tissue.base_delay_s.copy()
    dispersion = tissue.base_dispersion_s.copy()
    # (state, cbf factor at depth 0 and 1, cbv factor at 0 and 1, delay at 0 and 1, dispersion at 0 and 1)
    table = (
        (OLIGAEMIA, (1.0, 0.85), (1.0, 1.1), (4.0, 5.6), (0.0, 0.0)),
        (PENUMBRA, (0.7, 0.35), (1.15, 0.9), (5.5, 8.0), (0.5, 1.5)),
        (CORE, (0.28, 0.08), (0.6, 0.3), (7.0, 10.0), (1.5, 2.5)),
    )
    for value, cbf_range, cbv_range, delay_range, dispersion_range in table:
        where = s == value
        t = d[where]
        cbf[where] = cbf_range[0] + (cbf_range[1] - cbf_range[0]) * t
        cbv[where] = cbv_range[0] + (cbv_range[1] - cbv_range[0]) * t
        # A lesion is at least as late as the tissue's own arrival (e.g. on a delayed side).
        delay[where] = np.maximum(delay_range[0] + (delay_range[1] - delay_range[0]) * t, delay[where])
        dispersion[where] = dispersion_range[0] + (dispersion_range[1] - dispersion_range[0]) * t
    return cbf, cbv, delay, dispersion
