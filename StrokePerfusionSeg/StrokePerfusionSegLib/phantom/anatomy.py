"""A patient's head on the CTP grid: the MNI152 template deformed, scaled, rotated and sliced.

Everything anatomical is defined once in template (MNI, RAS, mm) space: grey/white matter and
CSF probabilities, the signed distance to the intracranial boundary (which places skull, scalp
and the venous sinuses), and arteries drawn as tubes along MCA/ACA/PCA-like polylines. Each
patient gets a random pose (scale, rotation, shift) and a smooth random elastic displacement;
every output voxel is traced back to a template position and all fields are sampled there in
one trilinear pass. Voxel values are tissue fractions, so partial volume at CSF, vessel and
skull borders comes out of the sampling itself.

The template has 2 mm voxels, so fields are sampled on a working grid of at most
:data:`WORK_SIZE` pixels per side (0.86 mm at the clinical 220 mm field of view) and
interpolated bilinearly to the full matrix: four times cheaper at 512 and no detail lost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from ..imageio import Geometry
from .config import PhantomConfig
from .template import load_template

#: Arteries as polylines in MNI RAS mm for the right hemisphere (x > 0); mirrored for the left.
#: (name, territory, radius in mm, points)
ARTERIES = (
    ("M1", "MCA", 1.6, ((8, 2, -14), (28, 4, -10), (40, 2, -4))),
    ("M2 superior", "MCA", 1.2, ((40, 2, -4), (44, -8, 10), (46, -22, 24), (44, -38, 36))),
    ("M2 inferior", "MCA", 1.2, ((40, 2, -4), (50, -14, 0), (54, -34, 6), (52, -52, 12))),
    ("ACA", "ACA", 1.2, ((4, 6, -12), (3, 24, -2), (3, 34, 16), (3, 24, 36), (3, 0, 48), (3, -30, 50))),
    ("PCA", "PCA", 1.3, ((6, -18, -14), (18, -32, -8), (20, -52, -2), (12, -74, 4))),
)
#: Centre of the dural venous sinuses' tube, as a distance inside the intracranial boundary (mm).
SINUS_DEPTH_MM = 4.0
SINUS_HALF_WIDTH_MM = 3.5
#: Largest in-plane size of the working grid on which template-space fields are evaluated.
WORK_SIZE = 256

_CHANNELS = ("gm", "wm", "csf", "boundary_mm", "artery", "vein")


@dataclass(frozen=True)
class HeadPose:
    """Per-patient placement of the template head in the scanner (all recorded in case.json).

    ``scale`` multiplies template sizes (x, y, z); ``rotation_deg`` turns about the
    template origin (x: pitch/gantry tilt, y: roll, z: yaw); ``shift_mm`` moves the head
    in-plane; ``slab_centre_mm`` is the template z at the middle slice; ``elastic_mm`` is
    the RMS of the smooth random displacement, ``elastic_seed`` its noise seed.
    """

    scale: tuple[float, float, float]
    rotation_deg: tuple[float, float, float]
    shift_mm: tuple[float, float]
    slab_centre_mm: float
    elastic_mm: float
    elastic_seed: int
    skull_mm: float
    scalp_mm: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Anatomy:
    """Tissue composition of every voxel of the CTP grid, shape ``(z, y, x)`` float32 fractions.

    ``gm + wm + csf`` is the intracranial fraction (vessels are part of it), ``bone`` and
    ``scalp`` lie outside it, the rest is air. ``mni`` (3, z, w, w) holds the template RAS
    coordinates (mm) of the working grid (see :func:`upsample`), so lesions and territories
    can be defined in template space and follow the deformation; ``work_parenchyma``
    (z, w, w) is ``gm + wm`` there.
    """

    geometry: Geometry
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    bone: np.ndarray
    scalp: np.ndarray
    artery: np.ndarray
    vein: np.ndarray
    mni: np.ndarray
    work_parenchyma: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.gm.shape


def sample_pose(rng: np.random.Generator, config: PhantomConfig) -> HeadPose:
    """Draw a plausible head placement; the slab covers the MCA level upwards."""
    coverage = config.slices * config.slice_mm
    # Clinical slabs start near the skull base (MNI z ~ -20) and rise with coverage; thin
    # slabs are kept on the basal ganglia / MCA level where lesions matter most.
    centre = float(np.clip(-20.0 + coverage / 2.0, -5.0, 40.0) + rng.uniform(-3.0, 3.0))
    return HeadPose(
        scale=tuple(float(v) for v in rng.uniform(0.86, 1.0, 3)),
        rotation_deg=(float(rng.uniform(-12, 12)), float(rng.uniform(-5, 5)), float(rng.uniform(-8, 8))),
        shift_mm=tuple(float(v) for v in rng.uniform(-6, 6, 2)),
        slab_centre_mm=centre,
        elastic_mm=float(rng.uniform(2.0, 5.0)),
        elastic_seed=int(rng.integers(2**31)),
        skull_mm=float(rng.uniform(5.0, 8.0)),
        scalp_mm=float(rng.uniform(3.0, 6.0)),
    )


def grid_geometry(config: PhantomConfig, pose: HeadPose) -> Geometry:
    """The CTP grid: ``size`` x ``size`` pixels over ``fov_mm``, slices centred on the slab (LPS)."""
    pixel = config.pixel_mm
    half = (config.size - 1) / 2.0 * pixel
    bottom = pose.slab_centre_mm - (config.slices - 1) / 2.0 * config.slice_mm
    return Geometry(spacing=(pixel, pixel, config.slice_mm), origin=(-half, -half, bottom))


def _rotation(degrees) -> np.ndarray:
    rx, ry, rz = np.deg2rad(degrees)
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    about_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    about_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return about_z @ about_y @ about_x


def _elastic_field(pose: HeadPose, config: PhantomConfig, coarse_shape: tuple[int, int, int]) -> np.ndarray:
    """Smooth random displacement (3, *coarse_shape) in mm, correlation length ~20-40 mm."""
    node_mm = 20.0
    nodes_xy = int(np.ceil(config.fov_mm / node_mm)) + 1
    nodes_z = int(np.ceil(config.slices * config.slice_mm / node_mm)) + 2
    noise = np.random.default_rng(pose.elastic_seed).standard_normal((3, nodes_z, nodes_xy, nodes_xy))
    noise = ndimage.gaussian_filter(noise, sigma=(0, 1, 1, 1), mode="nearest")
    noise *= pose.elastic_mm / max(float(noise.std()), 1e-6)
    import torch  # here, not at import: the phantom package loads without PyTorch (the Slicer sample)

    field = torch.nn.functional.interpolate(
        torch.from_numpy(noise.astype(np.float32))[None], size=coarse_shape, mode="trilinear", align_corners=True
    )
    return field[0].numpy()


def work_size(config: PhantomConfig) -> int:
    """In-plane size of the working grid (see the module docstring)."""
    return min(config.size, WORK_SIZE)


def upsample(fields: np.ndarray, size: int) -> np.ndarray:
    """Bilinear in-plane interpolation of (C, z, w, w) working-grid fields to (C, z, size, size).

    Working and full grids share their corner pixels (``align_corners``), as
    :func:`template_coordinates` assumes.
    """
    fields = np.asarray(fields, dtype=np.float32)
    if fields.shape[-1] == size:
        return fields
    import torch

    full = torch.nn.functional.interpolate(
        torch.from_numpy(fields).permute(1, 0, 2, 3), size=(size, size), mode="bilinear", align_corners=True
    )
    return full.permute(1, 0, 2, 3).contiguous().numpy()


def template_coordinates(config: PhantomConfig, pose: HeadPose, geometry: Geometry, size: int) -> np.ndarray:
    """Template RAS coordinates (mm) of a ``size`` x ``size`` grid over the slab, (3, z, size, size).

    The pose is affine and the elastic field smooth, so both are evaluated on a coarse
    in-plane grid and interpolated bilinearly to full size (exact for the affine part).
    """
    coarse = min(config.size, 64)
    along = np.linspace(0, config.size - 1, coarse)
    x_lps = geometry.origin[0] + along * geometry.spacing[0]
    y_lps = geometry.origin[1] + along * geometry.spacing[1]
    z_lps = geometry.origin[2] + np.arange(config.slices) * geometry.spacing[2]
    z, y, x = np.meshgrid(z_lps, y_lps, x_lps, indexing="ij")
    ras = np.stack([-x - pose.shift_mm[0], -y - pose.shift_mm[1], z])  # LPS -> RAS, head shift
    inverse = _rotation(pose.rotation_deg).T
    mni = np.einsum("ij,j...->i...", inverse, ras) / np.array(pose.scale)[:, None, None, None]
    mni += _elastic_field(pose, config, mni.shape[1:])
    return upsample(mni, size)


def _segment_distance(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distance (mm) from points (n, 3) to the segment start-end."""
    direction = end - start
    along = np.clip((points - start) @ direction / float(direction @ direction), 0.0, 1.0)
    return np.linalg.norm(points - start - along[:, None] * direction, axis=1)


def artery_fraction(ras_points: np.ndarray) -> np.ndarray:
    """Vessel fraction 0..1 of the :data:`ARTERIES` tubes (both sides) at points (n, 3) mm."""
    fraction = np.zeros(len(ras_points), dtype=np.float32)
    for _, _, radius, polyline in ARTERIES:
        for side in (1.0, -1.0):
            nodes = np.array(polyline, dtype=float) * np.array([side, 1.0, 1.0])
            for start, end in zip(nodes[:-1], nodes[1:]):
                # Only points near the segment can be reached by its Gaussian profile.
                margin = 4.0 * radius
                near = np.all((ras_points > np.minimum(start, end) - margin)
                              & (ras_points < np.maximum(start, end) + margin), axis=1)
                profile = np.exp(-0.5 * (_segment_distance(ras_points[near], start, end) / radius) ** 2)
                fraction[near] = np.maximum(fraction[near], profile)
    return fraction


def sinus_fraction(ras_points: np.ndarray, depth_mm: np.ndarray) -> np.ndarray:
    """Venous sinus fraction 0..1: superior sagittal (midline, top and back), torcular, transverse.

    ``depth_mm`` is the distance inside the intracranial boundary; the sinuses run in the dura
    along the inner table of the skull.
    """
    x, y, z = ras_points.T
    shell = np.exp(-0.5 * ((depth_mm - SINUS_DEPTH_MM) / SINUS_HALF_WIDTH_MM) ** 2)
    sagittal = np.exp(-0.5 * (x / SINUS_HALF_WIDTH_MM) ** 2) * ((z > 15.0) | (y < -70.0))
    transverse = (y < -65.0) * np.exp(-0.5 * ((z + 10.0) / 5.0) ** 2)
    return (shell * np.maximum(sagittal, transverse)).astype(np.float32)


@lru_cache(maxsize=1)
def _template_fields() -> tuple[torch.Tensor, np.ndarray]:
    """Channels :data:`_CHANNELS` on the template grid, (1, C, k, j, i), and its RAS->index map."""
    import torch

    template = load_template()
    inside = template.intracranial
    spacing = template.spacing_mm
    boundary = (ndimage.distance_transform_edt(~inside) - ndimage.distance_transform_edt(inside)) * spacing
    k, j, i = np.indices(inside.shape)
    index = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    ras = (template.index_to_ras @ index)[:3].T
    artery = np.where(inside.ravel(), artery_fraction(ras), 0.0).reshape(inside.shape)
    vein = sinus_fraction(ras, -boundary.ravel()).reshape(inside.shape) * inside
    # Vessels displace tissue (the M1 runs in the Sylvian cistern, the sinuses in the dura).
    vessels = np.clip(artery + vein, 0.0, 1.0)
    tissue = [template.gm * (1 - vessels), template.wm * (1 - vessels), template.csf * (1 - vessels)]
    stack = np.stack(tissue + [boundary, artery, vein]).astype(np.float32)
    return torch.from_numpy(stack)[None], template.ras_to_index


def build_anatomy(config: PhantomConfig, pose: HeadPose) -> Anatomy:
    """Sample the template fields at the patient's pose onto the CTP grid."""
    geometry = grid_geometry(config, pose)
    mni = template_coordinates(config, pose, geometry, work_size(config))
    fields, ras_to_index = _template_fields()
    index = np.einsum("ij,j...->i...", ras_to_index[:3, :3].astype(np.float32), mni)
    index += ras_to_index[:3, 3].astype(np.float32)[:, None, None, None]
    sizes = fields.shape[2:][::-1]  # (i, j, k) extents
    normalised = np.stack([2.0 * index[a] / (sizes[a] - 1) - 1.0 for a in range(3)], axis=-1)
    import torch

    sampled = torch.nn.functional.grid_sample(
        fields, torch.from_numpy(normalised.astype(np.float32))[None], mode="bilinear",
        padding_mode="border", align_corners=True,
    )[0].numpy()
    values = dict(zip(_CHANNELS, upsample(sampled, config.size)))
    # Scaling the head scales its skull: distances are in template mm; convert with the mean scale.
    outside_mm = values["boundary_mm"] * float(np.mean(pose.scale))
    # Bone fills what the (2 mm, interpolated) intracranial edge leaves, then the scalp.
    free = np.clip(1.0 - values["gm"] - values["wm"] - values["csf"] - values["artery"] - values["vein"], 0.0, 1.0)
    bone = free * _band(outside_mm, -2.0, pose.skull_mm)
    scalp = (free - bone) * _band(outside_mm, pose.skull_mm, pose.skull_mm + pose.scalp_mm)
    return Anatomy(
        geometry=geometry, gm=values["gm"], wm=values["wm"], csf=values["csf"], bone=bone, scalp=scalp,
        artery=values["artery"], vein=values["vein"], mni=mni, work_parenchyma=sampled[0] + sampled[1],
    )


def _band(distance_mm: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fraction 0..1 of a voxel inside ``low < distance <= high`` with 1 mm soft edges."""
    return (np.clip(distance_mm - low + 0.5, 0.0, 1.0) * np.clip(high - distance_mm + 0.5, 0.0, 1.0)).astype(np.float32)
