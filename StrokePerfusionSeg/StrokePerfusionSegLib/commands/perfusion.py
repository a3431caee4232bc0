"""``strokeperfusionseg perfusion``: parametric maps from a 4D CT perfusion NIfTI file.

Writes a case folder (``cbf``, ``cbv``, ``mtt``, ``ttp``, ``tmax``, ``mip`` and
``brain_mask`` as ``.nii.gz``, plus ``case.json`` with how the maps were made) atomically:
everything goes to a hidden temporary folder that is renamed into place at the end.
"""

from __future__ import annotations

import argparse

from ..perfusionmethods import DEFAULT_METHOD, METHODS

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "perfusion",
        help="compute CBF, CBV, MTT, TTP, Tmax and MIP maps from a 4D CT perfusion series",
        description=(
            "Compute perfusion maps from a 4D CT perfusion NIfTI file (HU) with an automatic (or given) "
            "arterial input function, by deconvolution or a model fit (--method)."
        ),
    )
    parser.add_argument("--ctp", required=True, metavar="FILE", help="4D CT perfusion series (.nii or .nii.gz, HU)")
    parser.add_argument(
        "--dt", type=float, metavar="S", help="frame interval in s (default: the file's 4th spacing)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="new folder for the maps (must not exist)")
    parser.add_argument(
        "--method",
        choices=METHODS,
        default=DEFAULT_METHOD,
        help="bcsvd (block-circulant SVD), osvd (oscillation-limited), tikhonov (GCV) or model (model fit over "
        f"gamma and lognormal residues); default {DEFAULT_METHOD}. docs/perfusion.md compares them",
    )
    parser.add_argument(
        "--aif-voxel", metavar="Z,Y,X", help="use this voxel (array indices) as the arterial input"
    )
    parser.add_argument(
        "--smoothing-mm",
        type=float,
        default=None,
        metavar="MM",
        help="in-plane Gaussian sigma of the noise smoothing in mm (default 1.5; 0 = none)",
    )
    parser.add_argument(
        "--no-bias-correction",
        action="store_true",
        help="report plain max(R), its time and the plain area-ratio CBV, without correcting the SVD truncation "
        "and the washout a short series misses",
    )
    add_factor_arguments(parser)
    parser.set_defaults(handler=run)


def add_factor_arguments(parser) -> None:
    """``--kh`` and ``--rho`` (None when not given: the defaults), shared with ``segment``."""
    parser.add_argument(
        "--kh",
        type=float,
        default=None,
        metavar="RATIO",
        help="small- to large-vessel haematocrit factor ratio (1 - Hct_small) / (1 - Hct_large) "
        "(default 0.73; 1 leaves it out)",
    )
    parser.add_argument(
        "--rho", type=float, default=None, metavar="G_PER_ML",
        help="brain tissue density in g/ml (default 1.04; 1 gives flow and volume per ml of tissue)",
    )


def _aif_voxel(text: str | None):
    from ..errors import InputError

    if text is None:
        return None
    try:
        index = tuple(int(part) for part in text.split(","))
    except ValueError:
        index = ()
    if len(index) != 3:
        raise InputError(f"--aif-voxel '{text}' is not three integers: write it as z,y,x (e.g. 2,40,31)")
    return index


def run(args: argparse.Namespace) -> int:
    import time
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from .. import imageio
    from ..errors import InputError

    started = time.perf_counter()
    source = Path(args.ctp)
    out = Path(args.out)
    if out.exists():
        raise InputError(f"output folder {out} already exists: remove it or choose another --out")
    if source.is_file() and not source.name.lower().endswith(NIFTI_SUFFIXES):
        raise InputError(f"{source.name} is not a NIfTI file: give the 4D series as .nii or .nii.gz")
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The series is inflated without holding the GIL: the analysis' imports (scipy,
        # 0.5-1 s) run meanwhile instead of after it.
        reading = pool.submit(imageio.read_voxels, source)
        import numpy as np

        from ..atomic import staged_folder
        from ..casefolder import Case, save_case
        from ..perfusion import compute_perfusion_maps
        from ..perfusion.curves import CORRECTABLE
        from ..perfusion.maps import DEFAULT_SMOOTHING_MM
        from ..tracer import KH, RHO

        ctp, header = reading.result()
    if header.GetDimension() != 4:
        raise InputError(
            f"{source.name} is {header.GetDimension()}D; give the 4D CT perfusion series (x, y, z, time)"
        )
    dt_s = imageio.checked_frame_interval_s(source, header, args.dt)
    geometry = imageio.Geometry.from_image(header)
    smoothing = DEFAULT_SMOOTHING_MM if args.smoothing_mm is None else args.smoothing_mm
    if smoothing < 0:
        raise InputError(f"--smoothing-mm must be 0 or more, got {smoothing:g}")
    kh = KH if args.kh is None else args.kh
    rho = RHO if args.rho is None else args.rho
    read_s = time.perf_counter() - started

    result = compute_perfusion_maps(
        ctp,
        dt_s,
        geometry.spacing_zyx,
        method=args.method,
        aif_voxel=_aif_voxel(args.aif_voxel),
        correct_bias=not args.no_bias_correction,
        smoothing_mm=smoothing,
        kh=kh,
        rho=rho,
    )
    provenance = {
        "ctp": str(source),
        "method": result.method,
        "smoothing_mm": smoothing,
        "bias_correction": not args.no_bias_correction and result.method in CORRECTABLE,
        "kh": kh,
        "rho_g_per_ml": rho,
        "baseline_frames": result.bolus.baseline_frames,
        "aif_voxels_zyx": result.aif_voxels.tolist(),
        "aif_peak_hu": float(result.aif_curve.max()),
        "vof_scale": result.vof_scale,
        "vof_voxels_zyx": result.vof_voxels.tolist(),
        "notes": result.notes,
    }
    case = Case(out.name, geometry, maps=result.maps, dt_s=dt_s, meta={"source": provenance})

    clock = time.perf_counter()
    with staged_folder(out) as staging:
        save_case(case, staging, overwrite=True)
        imageio.write_array(result.brain_mask.astype(np.uint8), geometry, staging / "brain_mask.nii.gz")
    write_s = time.perf_counter() - clock

    brain = result.brain_mask
    first = result.aif_voxels[0].tolist()
    print(f"perfusion maps written to {out} ({result.method}, dt {dt_s:g} s, {ctp.shape[0]} frames)")
    print(
        f"  AIF: {len(result.aif_voxels)} voxel(s) around z,y,x = {first[0]},{first[1]},{first[2]}; "
        f"peak {result.aif_curve.max():.0f} HU above baseline; VOF scale {result.vof_scale:.2f}"
    )
    print(
        f"  brain: {int(brain.sum())} voxels; mean CBF {result.maps['cbf'][brain].mean():.1f} ml/100g/min, "
        f"mean CBV {result.maps['cbv'][brain].mean():.2f} ml/100g"
    )
    stages = {"read": read_s, **{k.removesuffix("_s"): v for k, v in result.timings.items()}, "write": write_s}
    print("  timings: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in stages.items()))
    for note in result.notes:
        print(f"  note: {note}")
    return 0
