"""Regenerate the module's sample study, ``StrokePerfusionSeg/Resources/SampleData/phantom-lvo``.

    python tools/make_sample_study.py

The digital phantom's LVO patient (seed 5, 128x128, 8 slices) as a case folder with the maps
the panel takes (CBF, CBV, TTP, Tmax, MIP) and ``case.json`` (NIHSS, dt): no CTP, no truth.
Shipped so that the SampleData entry and the module's self-test need neither a download nor
PyTorch (the phantom simulates with PyTorch).
"""

import dataclasses
from pathlib import Path

from StrokePerfusionSegLib.casefolder import save_case
from StrokePerfusionSegLib.phantom import PhantomConfig, generate_case

FOLDER = Path(__file__).resolve().parents[1] / "StrokePerfusionSeg" / "Resources" / "SampleData" / "phantom-lvo"
MAPS = ("cbf", "cbv", "ttp", "tmax", "mip")


def main() -> None:
    case = generate_case("phantom-lvo", "LVO", seed=5, config=PhantomConfig(size=128, slices=8))
    sample = dataclasses.replace(
        case, maps={name: case.maps[name] for name in MAPS}, ctp=None, label=None, rgb={}
    )
    print(save_case(sample, FOLDER, overwrite=True))


if __name__ == "__main__":
    main()
