"""One phantom patient: anatomy + bolus + lesions -> 4D CTP in HU, maps, truth label, NIHSS.

The forward model per voxel (all fractions from :mod:`.anatomy`)::

    HU(t) = baseline + tissue * C_tissue(t) + artery * C_art(t) + vein * C_vein(t) + noise

``baseline`` mixes grey 35, white 29, CSF 12, blood 40, bone, scalp 40 and air -1000 HU by
fraction; ``C_tissue`` comes from :func:`StrokePerfusionSegLib.tracer.tissue_curves` with the
voxel's CBF, CBV (MTT), delay, dispersion and transit-time distribution. The distribution is
drawn per patient and region (grey and white matter, :func:`sample_residues`) from several
families, exponential, gamma (lambda 2-10), near box (gamma lambda 100) and lognormal, so that
the phantom does not share the exponential residue that the SVD bias correction assumes; every
tissue voxel also sees the patient's arterial dispersion on top of its lesion's. The
parameters are quantised (MTT 0.2 s, delay 0.1 s, dispersion 0.5 s) so that each distinct set
is simulated once and voxels gather their curve from a table; the truth maps hold the
quantised values, so they are exactly what was simulated, and Tmax is where each voxel's own
dispersed residue peaks. Quantum noise is white Gaussian with SD ``noise_hu`` per voxel and frame.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__, imageio, labels, tracer
from ..atomic import staged_folder
from ..casefolder import GROUPS, Case, save_case
from ..errors import InputError
from ..mapspecs import MAP_NAMES
from ..colourcoding import encode_rgb
from .anatomy import Anatomy, build_anatomy, sample_pose
from .bolus import Bolus, sample_bolus
from .config import PhantomConfig
from .lesions import CORE, PENUMBRA, TissueState, simulate_lesions, state_parameters

#: Truth parameter maps written as ``truth_<name>.nii.gz`` beside the case, with their units.
TRUTH_UNITS = {
    "cbf": "ml/100g/min",
    "cbv": "ml/100g",
    "mtt": "s",
    "delay": "s",
    "dispersion": "s",
    "tmax": "s",
}
#: Quantisation steps of the simulated parameters (s).
MTT_STEP_S, DELAY_STEP_S, DISPERSION_STEP_S = 0.2, 0.1, 0.5
_MTT_RANGE_S, _DELAY_MAX_S, _DISPERSION_MAX_S = (1.0, 40.0), 25.0, 5.0
#: Below this parenchyma fraction a voxel is not simulated as perfused tissue.
_MIN_TISSUE_FRACTION = 0.02
#: Parenchyma fraction from which a voxel is labelled brain (CSF-dominated voxels are background).
BRAIN_FRACTION = 0.5
#: NIHSS model: intercept, points per ml core, per ml penumbra, SD of the noise, per group.
NIHSS_MODEL = {
    "LVO": (6.0, 0.10, 0.05, 3.5),
    "NonLVO": (2.0, 0.25, 0.10, 2.5),
    "WIS": (1.0, 0.0, 0.0, 2.0),
}


@dataclass(frozen=True)
class TissueProperties:
    """Normal perfusion and CT densities of one patient (recorded in case.json)."""

    gm_cbf: float
    gm_cbv: float
    wm_cbf: float
    wm_cbv: float
    gm_hu: float
    wm_hu: float
    csf_hu: float
    blood_hu: float
    bone_hu: float
    scalp_hu: float
    air_hu: float
    old_infarct_hu: float
    collateral_delay_s: float
    collateral_fraction: float


#: Transit-time distribution families of the phantom: name -> (tracer kind, shape range).
RESIDUE_FAMILIES = {
    "exponential": ("exponential", None),
    "gamma": ("gamma", (2.0, 10.0)),
    "near box": ("gamma", (100.0, 100.0)),
    "lognormal": ("lognormal", (0.4, 1.0)),
}
#: Regions that draw their own distribution; a voxel takes its majority parenchyma's.
RESIDUE_REGIONS = ("grey", "white")
#: Range (s) of each patient's arterial dispersion time constant, seen by all its tissue.
ARTERIAL_DISPERSION_S = (0.0, 1.5)


def sample_residues(seed: int) -> dict:
    """Transit-time distribution of each region and the arterial dispersion of one patient.

    Drawn from their own random stream (``[seed, 1]``), so the rest of the patient is the same
    as before they existed. Returns a JSON-ready dict: ``{"grey": {"family", "kind", "shape"},
    "white": {...}, "arterial_dispersion_s": float}``.
    """
    rng = np.random.default_rng([seed, 1])
    names = list(RESIDUE_FAMILIES)
    residues: dict = {}
    for region in RESIDUE_REGIONS:
        name = names[int(rng.integers(len(names)))]
        kind, bounds = RESIDUE_FAMILIES[name]
        shape = None if bounds is None else float(rng.uniform(*bounds))
        residues[region] = {"family": name, "kind": kind, "shape": shape}
    residues["arterial_dispersion_s"] = float(rng.uniform(*ARTERIAL_DISPERSION_S))
    return residues


def sample_tissue(rng: np.random.Generator) -> TissueProperties:
    """Published phantom values (``docs/phantom.md``) with per-patient spread."""
    return TissueProperties(
        gm_cbf=float(rng.uniform(50.0, 62.0)),
        gm_cbv=float(rng.uniform(3.3, 4.0)),
        wm_cbf=float(rng.uniform(22.0, 28.0)),
        wm_cbv=float(rng.uniform(1.7, 2.1)),
        gm_hu=35.0 + float(rng.uniform(-1.5, 1.5)),
        wm_hu=29.0 + float(rng.uniform(-1.5, 1.5)),
        csf_hu=12.0 + float(rng.uniform(-1.5, 1.5)),
        blood_hu=40.0,
        bone_hu=float(rng.uniform(800.0, 1300.0)),
        scalp_hu=40.0,
        air_hu=-1000.0,
        old_infarct_hu=15.0,
        collateral_delay_s=float(rng.uniform(5.0, 8.0)),
        collateral_fraction=float(rng.uniform(0.3, 0.7)),
    )


@dataclass
class PhantomStudy:
    """A generated patient: the case (as written to disk), its truth maps and stage timings.

    ``truth`` maps :data:`TRUTH_UNITS` names to (z, y, x) float32 arrays of the simulated
    parameters (0 outside perfused tissue). ``timings`` holds wall-clock seconds per stage
    (``anatomy_s``, ``curves_s``, ``assembly_s``, ``noise_s``, ``maps_s``: maps, truth maps and colour coding) and
    ``cpu_timings`` the process CPU seconds of the same stages (all threads). ``anatomy`` is
    the tissue, vessel and bone composition of every voxel (e.g. to find pure arterial voxels).
    """

    case: Case
    truth: dict[str, np.ndarray]
    anatomy: Anatomy
    timings: dict[str, float] = field(default_factory=dict)
    cpu_timings: dict[str, float] = field(default_factory=dict)


class _Stopwatch:
    """Records wall and CPU seconds of consecutive stages into two dicts."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._restart()

    def _restart(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, stage: str) -> None:
        self.wall[f"{stage}_s"] = time.perf_counter() - self._wall
        self.cpu[f"{stage}_s"] = time.process_time() - self._cpu
        self._restart()


def _quantise(values, step, low, high):
    return np.clip(np.round(values / step), round(low / step), round(high / step)).astype(np.int32)


def perfusion_parameters(
    anatomy: Anatomy, tissue_state: TissueState, tissue: TissueProperties, arterial_dispersion_s: float = 0.0
):
    """Per-voxel CBF (ml/100g/min), quantised MTT/delay/dispersion indices and residue region.

    Returns
    -------
    cbf : float32 (z, y, x)
        Flow of the voxel's parenchyma fraction (partial volume included); 0 where not perfused.
    mtt_i, delay_i, dispersion_i : int32 (z, y, x)
        Parameters in units of :data:`MTT_STEP_S`, :data:`DELAY_STEP_S`, :data:`DISPERSION_STEP_S`;
        the dispersion adds ``arterial_dispersion_s`` (s) to the lesions' own.
    region : int32 (z, y, x)
        Index into :data:`RESIDUE_REGIONS` of the voxel's majority parenchyma.
    perfused : bool (z, y, x)
    """
    cbf_factor, cbv_factor, delay, dispersion = state_parameters(tissue_state)
    intact = 1.0 - tissue_state.old_infarct
    normal_cbf = anatomy.gm * tissue.gm_cbf + anatomy.wm * tissue.wm_cbf
    normal_cbv = anatomy.gm * tissue.gm_cbv + anatomy.wm * tissue.wm_cbv
    perfused = (anatomy.gm + anatomy.wm) * intact > _MIN_TISSUE_FRACTION
    cbf = np.where(perfused, normal_cbf * intact * cbf_factor, 0.0).astype(np.float32)
    mtt = 60.0 * normal_cbv * cbv_factor / np.maximum(normal_cbf * cbf_factor, 1e-6)
    return (
        cbf,
        _quantise(mtt, MTT_STEP_S, *_MTT_RANGE_S),
        _quantise(delay, DELAY_STEP_S, 0.0, _DELAY_MAX_S),
        _quantise(dispersion + arterial_dispersion_s, DISPERSION_STEP_S, 0.0, _DISPERSION_MAX_S),
        (anatomy.wm > anatomy.gm).astype(np.int32),
        perfused,
    )


def curve_table(bolus: Bolus, t_s, mtt_i, delay_i, dispersion_i, region, perfused, residues: dict):
    """Simulate each distinct parameter set once, with its region's transit-time distribution.

    Returns
    -------
    table : float32 (T, U + 1)
        Tissue concentration (HU above baseline) of each set at CBF 60 ml/100g/min; column 0
        is all zeros (not perfused).
    index : int32 (z, y, x)
        Column of each voxel.
    sets : int32 (U, 4)
        The (mtt, delay, dispersion, region) indices of each column 1..U.
    """
    n_delay = round(_DELAY_MAX_S / DELAY_STEP_S) + 1
    n_dispersion = round(_DISPERSION_MAX_S / DISPERSION_STEP_S) + 1
    n_region = len(RESIDUE_REGIONS)
    code = ((mtt_i.astype(np.int64) * n_delay + delay_i) * n_dispersion + dispersion_i) * n_region + region
    code = np.where(perfused, code, -1)
    # Dense look-up instead of a sort: codes are small integers.
    used = np.zeros(int(code.max(initial=0)) + 1, dtype=bool)
    used[code[perfused]] = True
    distinct = np.flatnonzero(used)
    column = np.zeros(used.size, dtype=np.int32)
    column[distinct] = np.arange(1, distinct.size + 1, dtype=np.int32)
    index = np.where(perfused, column[np.maximum(code, 0)], 0).astype(np.int32)
    parameters = distinct // n_region
    sets = np.stack([parameters // (n_delay * n_dispersion), (parameters // n_dispersion) % n_delay,
                     parameters % n_dispersion, distinct % n_region], axis=1).astype(np.int32)
    aif = bolus.arterial(t_s)
    reference_cbf = 60.0
    table = np.zeros((t_s.size, len(sets) + 1), dtype=np.float32)
    for r, name in enumerate(RESIDUE_REGIONS):
        rows = np.flatnonzero(sets[:, 3] == r)
        if rows.size == 0:
            continue
        mtt_s = sets[rows, 0] * MTT_STEP_S
        curves = tracer.tissue_curves(
            aif, t_s, np.full(rows.size, reference_cbf), reference_cbf * mtt_s / 60.0,
            sets[rows, 1] * DELAY_STEP_S, sets[rows, 2] * DISPERSION_STEP_S,
            kind=residues[name]["kind"], shape=residues[name]["shape"],
        )
        table[:, 1 + rows] = curves / reference_cbf
    return table, index, sets


def _baseline_hu(anatomy: Anatomy, old_infarct: np.ndarray, tissue: TissueProperties) -> np.ndarray:
    intact = 1.0 - old_infarct
    air = np.clip(1.0 - anatomy.gm - anatomy.wm - anatomy.csf - anatomy.artery - anatomy.vein
                  - anatomy.bone - anatomy.scalp, 0.0, 1.0)
    return (
        (anatomy.gm * tissue.gm_hu + anatomy.wm * tissue.wm_hu) * intact
        + (anatomy.gm + anatomy.wm) * old_infarct * tissue.old_infarct_hu
        + anatomy.csf * tissue.csf_hu
        + (anatomy.artery + anatomy.vein) * tissue.blood_hu
        + anatomy.bone * tissue.bone_hu
        + anatomy.scalp * tissue.scalp_hu
        + air * tissue.air_hu
    ).astype(np.float32)


def truth_label(anatomy: Anatomy, tissue_state: TissueState) -> np.ndarray:
    """0 background, 1 brain (parenchyma >= 50 % of the voxel), 2 penumbra, 3 core."""
    parenchyma = (anatomy.gm + anatomy.wm) * (1.0 - tissue_state.old_infarct) >= BRAIN_FRACTION
    label = np.where(parenchyma, labels.BRAIN, labels.BACKGROUND).astype(np.uint8)
    label[parenchyma & (tissue_state.state == PENUMBRA)] = labels.PENUMBRA
    label[parenchyma & (tissue_state.state == CORE)] = labels.CORE
    return label


def draw_nihss(group: str, core_ml: float, penumbra_ml: float, rng: np.random.Generator) -> int:
    """NIHSS 0..42 from group and lesion volumes plus noise (real but imperfect signal)."""
    intercept, per_core, per_penumbra, sd = NIHSS_MODEL[group]
    score = intercept + per_core * core_ml + per_penumbra * penumbra_ml + rng.normal(0.0, sd)
    if group == "WIS":
        score = abs(score)  # stroke mimics: symptoms without an infarct
    return int(np.clip(np.round(score), 0, 42))


def _vessels(anatomy: Anatomy, tissue_state: TissueState, bolus: Bolus, tissue: TissueProperties, t_s):
    """Vessel fractions (3, voxels) and their curves (3, T): open arteries, collateral-filled
    arteries downstream of an occlusion, venous sinuses."""
    curves = np.stack([
        bolus.arterial(t_s),
        tissue.collateral_fraction * bolus.arterial(t_s, delay_s=tissue.collateral_delay_s, broadening=1.5),
        bolus.venous(t_s),
    ]).astype(np.float32)
    fractions = np.stack([
        np.where(tissue_state.affected_artery, 0.0, anatomy.artery),
        np.where(tissue_state.affected_artery, anatomy.artery, 0.0),
        anatomy.vein,
    ]).reshape(3, -1)
    return fractions, curves


def _assemble(ctp, table, index, cbf, baseline, vessel_fractions, vessel_curves) -> None:
    """Fill ``ctp`` (T, z, y, x) frame by frame: baseline + CBF-scaled tissue curve + vessels.

    Vessels (a few % of voxels) are added sparsely. torch's gathers use both cores and need
    no (T, z, y, x) temporaries.
    """
    import torch  # here, not at import: the phantom package loads without PyTorch (the Slicer sample)

    frames = torch.from_numpy(ctp).view(ctp.shape[0], -1)
    table_t = torch.from_numpy(table)
    index_t = torch.from_numpy(index.ravel().astype(np.int64))
    cbf_t = torch.from_numpy(cbf.ravel())
    baseline_t = torch.from_numpy(baseline.ravel())
    vessel_voxels = np.flatnonzero(vessel_fractions.max(axis=0) > 1e-3)
    vessel_t = torch.from_numpy(np.ascontiguousarray((vessel_fractions[:, vessel_voxels].T @ vessel_curves).T,
                                                     dtype=np.float32))
    vessel_voxels_t = torch.from_numpy(vessel_voxels.astype(np.int64))
    for frame in range(ctp.shape[0]):
        out = frames[frame]
        torch.index_select(table_t[frame], 0, index_t, out=out)
        out.mul_(cbf_t).add_(baseline_t)
        out.index_add_(0, vessel_voxels_t, vessel_t[frame])


def add_noise(ctp: np.ndarray, sd_hu: float, seed: int) -> None:
    """Add white Gaussian quantum noise of ``sd_hu`` to every voxel of every frame, in place."""
    if sd_hu <= 0:
        return
    import torch

    generator = torch.Generator().manual_seed(seed)
    noise = torch.empty(ctp.shape[1:], dtype=torch.float32)
    for frame in ctp:
        noise.normal_(0.0, sd_hu, generator=generator)
        torch.from_numpy(frame).add_(noise)


def simulate(case_id: str, group: str, seed: int, config: PhantomConfig) -> PhantomStudy:
    """Generate one patient; see the module docstring. Deterministic for ``seed``."""
    if group not in GROUPS:
        raise InputError(f"unknown group '{group}': use one of {', '.join(GROUPS)}")
    watch = _Stopwatch()
    rng = np.random.default_rng(seed)
    pose = sample_pose(rng, config)
    bolus = sample_bolus(rng)
    tissue = sample_tissue(rng)
    anatomy = build_anatomy(config, pose)
    tissue_state = simulate_lesions(anatomy, group, rng)
    watch.lap("anatomy")
    t_s = np.arange(config.frames) * config.dt_s
    residues = sample_residues(seed)
    cbf, mtt_i, delay_i, dispersion_i, region, perfused = perfusion_parameters(
        anatomy, tissue_state, tissue, residues["arterial_dispersion_s"]
    )
    table, index, sets = curve_table(bolus, t_s, mtt_i, delay_i, dispersion_i, region, perfused, residues)
    vessel_fractions, vessel_curves = _vessels(anatomy, tissue_state, bolus, tissue, t_s)
    baseline = _baseline_hu(anatomy, tissue_state.old_infarct, tissue)
    watch.lap("curves")
    ctp = np.empty((config.frames,) + anatomy.shape, dtype=np.float32)
    _assemble(ctp, table, index, cbf, baseline, vessel_fractions, vessel_curves)
    watch.lap("assembly")
    noise_seed = int(rng.integers(2**63 - 1))
    add_noise(ctp, config.noise_hu, noise_seed)
    watch.lap("noise")
    truth = truth_maps(cbf, sets, index, perfused, residues)
    label = truth_label(anatomy, tissue_state)
    if config.maps == "computed":
        from ..perfusion import compute_perfusion_maps

        result = compute_perfusion_maps(ctp, config.dt_s, anatomy.geometry.spacing_zyx, method=config.perfusion_method,
                                        correct_bias=config.correct_bias)
        maps = {name: np.asarray(result.maps[name], dtype=np.float32) for name in MAP_NAMES}
    else:
        ttp = np.where(perfused, t_s[np.argmax(table, axis=0)][index], 0.0).astype(np.float32)
        maps = {"cbf": truth["cbf"], "cbv": truth["cbv"], "mtt": truth["mtt"], "ttp": ttp,
                "tmax": truth["tmax"], "mip": ctp.max(axis=0)}
    rgb = {name: encode_rgb(values, name) for name, values in maps.items()} if config.with_rgb else {}
    watch.lap("maps")

    voxel_ml = anatomy.geometry.voxel_volume_ml
    core_ml = float(np.count_nonzero(label == labels.CORE) * voxel_ml)
    penumbra_ml = float(np.count_nonzero(label == labels.PENUMBRA) * voxel_ml)
    nihss = draw_nihss(group, core_ml, penumbra_ml, rng)
    source = {
        "generator": "StrokePerfusionSegLib.phantom",
        "version": __version__,
        "seed": int(seed),
        "config": config.to_dict(),
        "pose": pose.to_dict(),
        "bolus": bolus.to_dict(),
        "tissue": asdict(tissue),
        "lesions": tissue_state.record,
        "residues": residues,
        "quantisation_s": {"mtt": MTT_STEP_S, "delay": DELAY_STEP_S, "dispersion": DISPERSION_STEP_S},
        "noise": {"kind": "white gaussian", "sd_hu": config.noise_hu, "seed": noise_seed},
        "nihss_model": dict(zip(("intercept", "per_core_ml", "per_penumbra_ml", "sd"), NIHSS_MODEL[group])),
        "label": {"brain_fraction": BRAIN_FRACTION, "csf_and_old_infarct": "background"},
        "maps": config.maps,
        "map_method": config.map_method if config.maps == "computed" else None,
        "truth_maps": {f"truth_{name}": unit for name, unit in TRUTH_UNITS.items()},
    }
    case = Case(
        case_id=case_id,
        geometry=anatomy.geometry,
        maps=maps,
        group=group,
        nihss=nihss,
        dt_s=float(config.dt_s),
        ctp=ctp if config.with_ctp else None,
        rgb=rgb,
        label=label,
        meta={"source": source, "truth_volumes_ml": {"core": core_ml, "penumbra": penumbra_ml}},
    )
    return PhantomStudy(case=case, truth=truth, anatomy=anatomy, timings=watch.wall, cpu_timings=watch.cpu)


def dispersed_residue_peak(
    mtt_s: np.ndarray, dispersion_s: np.ndarray, step_s: float = 0.05, *, kind: str = "exponential",
    shape: float | None = None,
) -> np.ndarray:
    """Time (s) after arrival at which the dispersed residue peaks, per (MTT, dispersion) pair.

    Found by running the forward model (:func:`~StrokePerfusionSegLib.tracer.tissue_curves`,
    residue ``kind`` and ``shape``) on a unit impulse and taking the peak, to ``step_s``; each
    distinct pair once. (Much faster than :func:`~StrokePerfusionSegLib.tracer.residue_peak`
    for many pairs.)
    """
    pairs, inverse = np.unique(np.stack([mtt_s, dispersion_s], axis=1), axis=0, return_inverse=True)
    peaks = np.zeros(len(pairs))
    dispersed = pairs[:, 1] > 0
    if np.any(dispersed):
        # The peak lies before 3 dispersion times + MTT/2 for every pair the phantom uses.
        horizon = float(np.max(3.0 * pairs[dispersed, 1] + pairs[dispersed, 0] / 2.0)) + 1.0
        grid = np.arange(0.0, horizon + step_s, step_s)
        # The impulse sits one step in: the model starts from rest at the first sample.
        impulse = np.zeros(grid.size + 1)
        impulse[1] = 1.0
        grid = np.append(grid, grid[-1] + step_s)
        curves = tracer.tissue_curves(impulse, grid, np.full(int(dispersed.sum()), 60.0), pairs[dispersed, 0],
                                      np.zeros(int(dispersed.sum())), pairs[dispersed, 1], kind=kind, shape=shape)
        peaks[dispersed] = grid[np.argmax(curves, axis=0)] - step_s
    return peaks[inverse.ravel()]


def truth_maps(
    cbf: np.ndarray, sets: np.ndarray, index: np.ndarray, perfused: np.ndarray, residues: dict
) -> dict[str, np.ndarray]:
    """The simulated parameters as maps (0 outside perfused tissue); see :data:`TRUTH_UNITS`.

    ``tmax`` is where the voxel's own dispersed residue (its region's distribution) peaks
    after the delay, i.e. what an ideal deconvolution against the undispersed arterial input
    finds. ``mtt`` is the distribution's mean and ``cbv = cbf * mtt / 60``.
    """
    mtt_s = sets[:, 0] * MTT_STEP_S
    dispersion_s = sets[:, 2] * DISPERSION_STEP_S
    peak_time_s = np.zeros(len(sets))
    for r, name in enumerate(RESIDUE_REGIONS):
        rows = sets[:, 3] == r
        if rows.any():
            peak_time_s[rows] = dispersed_residue_peak(
                mtt_s[rows], dispersion_s[rows], kind=residues[name]["kind"], shape=residues[name]["shape"]
            )
    per_set = {
        "mtt": mtt_s,
        "delay": sets[:, 1] * DELAY_STEP_S,
        "dispersion": dispersion_s,
        "tmax": sets[:, 1] * DELAY_STEP_S + peak_time_s,
    }
    maps = {"cbf": cbf}
    for name, values in per_set.items():
        column = np.concatenate([[0.0], values]).astype(np.float32)
        maps[name] = column[index]
    maps["cbv"] = (cbf * maps["mtt"] / 60.0).astype(np.float32)
    return {name: np.where(perfused, maps[name], 0.0).astype(np.float32) for name in TRUTH_UNITS}


def generate_case(case_id: str, group: str, seed: int, config: PhantomConfig) -> Case:
    """Generate one patient as a :class:`~StrokePerfusionSegLib.casefolder.Case` (see :func:`simulate`)."""
    return simulate(case_id, group, seed, config).case


def save_study(study: PhantomStudy, folder: str | os.PathLike) -> Path:
    """Write the case folder plus ``truth_<name>.nii.gz``, atomically; an existing folder is an error."""
    with staged_folder(folder) as staging:
        save_case(study.case, staging, overwrite=True)
        for name, values in study.truth.items():
            imageio.write_array(values, study.case.geometry, staging / f"truth_{name}.nii.gz")
    return Path(folder)


def load_truth(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the ``truth_<name>.nii.gz`` maps of a phantom case folder."""
    folder = Path(folder)
    return {name: imageio.read_array(folder / f"truth_{name}.nii.gz")[0] for name in TRUTH_UNITS}
