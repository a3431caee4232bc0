"""Reproduce the phantom's brain template resource from the MNI152 files that nilearn ships.

The phantom needs real grey/white matter anatomy but must not depend on nilearn at run time.
This script was run once to produce ``StrokePerfusionSegLib/data/templates/mni152_2mm_*.nii.gz``
(uint8 probabilities x 255 at 2 mm, ICBM 2009a non-linear symmetric, RAS):

    pip download nilearn --no-deps -d /tmp/nl
    cd /tmp/nl && unzip -o nilearn-*.whl 'nilearn/datasets/data/mni_icbm152_*'
    python -m StrokePerfusionSegLib.phantom.make_template /tmp/nl/nilearn/datasets/data

CSF is not among nilearn's files: it is the intracranial space (grey + white matter with the
holes filled and small gaps closed) minus grey and white matter, so it holds the ventricles and
the sulcal/cisternal CSF.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .template import TEMPLATE_DIR, TEMPLATE_FILES

SOURCE_PATTERN = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
TARGET_SPACING_MM = 2.0


def _downsample(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """Average-then-resample a 1 mm probability image onto a ``spacing_mm`` grid (same extent)."""
    factor = spacing_mm / image.GetSpacing()[0]
    smoothed = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), factor * 0.5)
    size = [int(round(n / factor)) for n in image.GetSize()]
    # Keep the physical centre of the volume where it was.
    first_centre = np.array(image.GetOrigin()) + (factor - 1.0) / 2.0 * np.array(
        image.GetDirection()).reshape(3, 3) @ np.array(image.GetSpacing())
    return sitk.Resample(
        smoothed, size, sitk.Transform(), sitk.sitkLinear, tuple(first_centre),
        (spacing_mm,) * 3, image.GetDirection(), 0.0, sitk.sitkFloat32,
    )


def intracranial_mask(parenchyma: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Intracranial space from a parenchyma probability (0..1): threshold, close, fill holes.

    The 10 mm closing bridges the interhemispheric fissure and the widest sulci, which open
    to the outside near the vertex, so they count as CSF rather than outside the skull.
    """
    radius = max(1, int(round(10.0 / spacing_mm)))
    ball = ndimage.generate_binary_structure(3, 1)
    mask = ndimage.binary_closing(parenchyma > 0.1, ball, iterations=radius, border_value=0)
    return ndimage.binary_fill_holes(mask)


def make_template(source_dir: Path, target_dir: Path = TEMPLATE_DIR) -> dict[str, Path]:
    """Write the 2 mm grey/white/CSF probability images; return their paths by tissue."""
    images = {name: sitk.ReadImage(str(source_dir / SOURCE_PATTERN.format(name))) for name in ("gm", "wm")}
    small = {name: _downsample(image, TARGET_SPACING_MM) for name, image in images.items()}
    probability = {name: sitk.GetArrayFromImage(image) / 255.0 for name, image in small.items()}
    parenchyma = np.clip(probability["gm"] + probability["wm"], 0.0, 1.0)
    icv = intracranial_mask(parenchyma, TARGET_SPACING_MM)
    probability["csf"] = np.where(icv, 1.0 - parenchyma, 0.0)
    target_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, values in probability.items():
        image = sitk.GetImageFromArray(np.round(np.clip(values, 0, 1) * 255).astype(np.uint8))
        image.CopyInformation(small["gm"])
        written[name] = target_dir / TEMPLATE_FILES[name]
        sitk.WriteImage(image, str(written[name]), True)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source_dir", type=Path, help="nilearn/datasets/data folder of an unpacked nilearn wheel")
    args = parser.parse_args(argv)
    for name, path in make_template(args.source_dir).items():
        print(f"{name}: {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
