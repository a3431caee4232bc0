"""The case-folder format: round trip, atomic refusal of an existing folder, bad folders."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from StrokePerfusionSegLib import casefolder, imageio, mapspecs
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.imageio import Geometry

GEOMETRY = Geometry(spacing=(0.8, 0.9, 5.0), origin=(-10.0, 20.0, 30.0),
                    direction=(0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))


def _case(rng):
    shape = (3, 5, 6)
    return casefolder.Case(
        case_id="p001",
        geometry=GEOMETRY,
        maps={name: rng.random(shape, dtype=np.float32) for name in mapspecs.MAP_NAMES},
        group="LVO",
        nihss=14,
        dt_s=1.5,
        ctp=rng.normal(30.0, 20.0, (12,) + shape).astype(np.float32),
        rgb={"cbf": rng.integers(0, 255, shape + (3,), dtype=np.uint8)},
        label=rng.integers(0, 4, shape, dtype=np.uint8),
        meta={"source": {"generator": "test", "seed": 7}},
    )


def test_case_folder_round_trip(tmp_path):
    case = _case(np.random.default_rng(0))
    folder = casefolder.save_case(case, tmp_path / "p001")
    loaded = casefolder.load_case(folder, with_ctp=True, with_rgb=True)
    for name in mapspecs.MAP_NAMES:
        assert np.array_equal(loaded.maps[name], case.maps[name])
    assert np.array_equal(loaded.ctp, np.round(case.ctp))  # stored as whole HU
    assert np.array_equal(loaded.rgb["cbf"], case.rgb["cbf"])
    assert np.array_equal(loaded.label, case.label)
    assert (loaded.case_id, loaded.group, loaded.nihss, loaded.dt_s) == ("p001", "LVO", 14, 1.5)
    assert loaded.meta["source"] == {"generator": "test", "seed": 7}
    assert loaded.geometry.matches(GEOMETRY)
    document = json.loads((folder / "case.json").read_text())
    assert document["units"]["cbf"] == "ml/100g/min"
    assert sitk.ReadImage(str(folder / "ctp.nii.gz")).GetSpacing()[3] == pytest.approx(1.5)


def test_save_case_refuses_existing_folder_and_leaves_nothing(tmp_path):
    case = _case(np.random.default_rng(1))
    (tmp_path / "p001").mkdir()
    with pytest.raises(InputError, match="already exists"):
        casefolder.save_case(case, tmp_path / "p001")
    assert [p.name for p in tmp_path.iterdir()] == ["p001"]


def test_load_case_reports_missing_map_and_foreign_grid(tmp_path):
    case = _case(np.random.default_rng(2))
    folder = casefolder.save_case(case, tmp_path / "p001")
    (folder / "ttp.nii.gz").unlink()
    with pytest.raises(InputError, match="missing ttp.nii.gz"):
        casefolder.load_case(folder, maps=("cbf", "ttp"))
    other = Geometry(spacing=(1.0, 1.0, 5.0))
    imageio.write_array(case.maps["cbv"], other, folder / "cbv.nii.gz")
    with pytest.raises(InputError, match="cbv.nii.gz and cbf.nii.gz are on different grids"):
        casefolder.load_case(folder, maps=("cbf", "cbv"))


def test_labels_outside_range_are_rejected(tmp_path):
    case = _case(np.random.default_rng(3))
    case.label = case.label.copy()
    case.label[0, 0, 0] = 7
    folder = casefolder.save_case(case, tmp_path / "p001")
    with pytest.raises(InputError, match="outside 0..3"):
        casefolder.load_case(folder)
