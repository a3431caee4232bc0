"""Map colour coding, image geometry and the case-folder format."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from StrokePerfusionSegLib import casefolder, colourcoding, imageio, mapspecs
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.imageio import Geometry

GEOMETRY = Geometry(spacing=(0.8, 0.9, 5.0), origin=(-10.0, 20.0, 30.0),
                    direction=(0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))


@pytest.mark.parametrize("name", mapspecs.MAP_NAMES)
def test_rgb_round_trip_recovers_values_within_one_lut_step(name):
    low, high = mapspecs.MAP_SPECS[name].window
    values = np.linspace(low, high, 1000, dtype=np.float32).reshape(10, 10, 10)
    decoded = colourcoding.decode_rgb(colourcoding.encode_rgb(values, name), name)
    step = (high - low) / 255.0
    # Where neighbouring table entries round to the same colour the decoder picks either one.
    assert np.median(np.abs(decoded - values)) <= step
    assert np.abs(decoded - values).max() <= 4 * step


def test_encoding_clips_to_window_and_tolerates_nan():
    rgb = colourcoding.encode_rgb(np.array([-5.0, np.nan, 1e6]), "cbf")
    assert (rgb[0] == colourcoding.PERFUSION_LUT[0]).all() and (rgb[1] == colourcoding.PERFUSION_LUT[0]).all()
    assert (rgb[2] == colourcoding.PERFUSION_LUT[255]).all()


def test_decode_rejects_images_without_three_components():
    with pytest.raises(InputError, match="3 colour components"):
        colourcoding.decode_rgb(np.zeros((4, 4, 4), np.uint8), "cbf")


def test_unknown_map_name_lists_known_ones():
    with pytest.raises(InputError, match="cbf, cbv"):
        mapspecs.map_spec("rcbf")


def test_write_array_keeps_geometry_and_leaves_no_temporary(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    path = imageio.write_array(array, GEOMETRY, tmp_path / "cbf.nii.gz")
    image = sitk.ReadImage(str(path))
    assert np.allclose(image.GetSpacing(), GEOMETRY.spacing)
    assert np.allclose(image.GetOrigin(), GEOMETRY.origin, atol=1e-4)
    assert np.allclose(image.GetDirection(), GEOMETRY.direction, atol=1e-5)
    assert np.array_equal(sitk.GetArrayFromImage(image), array)
    assert [p.name for p in tmp_path.iterdir()] == ["cbf.nii.gz"]
    assert GEOMETRY.spacing_zyx == (5.0, 0.9, 0.8)
    assert GEOMETRY.voxel_volume_ml == pytest.approx(0.8 * 0.9 * 5.0 / 1000)


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        imageio.read_image(tmp_path / "absent.nii.gz")
    text = tmp_path / "colourcoding.txt"
    text.write_text("not an image")
    with pytest.raises(InputError, match="not a NIfTI"):
        imageio.read_image(text)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(InputError, match="broken.nii.gz"):
        imageio.read_image(broken)


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
    with pytest.raises(InputError, match="cbv.nii.gz does not share the grid"):
        casefolder.load_case(folder, maps=("cbf", "cbv"))


def test_labels_outside_range_are_rejected(tmp_path):
    case = _case(np.random.default_rng(3))
    case.label = case.label.copy()
    case.label[0, 0, 0] = 7
    folder = casefolder.save_case(case, tmp_path / "p001")
    with pytest.raises(InputError, match="outside 0..3"):
        casefolder.load_case(folder)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_truncated_nifti_is_refused(tmp_path, suffix):
    array = np.random.default_rng(4).random((4, 16, 16), dtype=np.float32)
    path = imageio.write_array(array, GEOMETRY, tmp_path / f"cbf{suffix}")
    assert np.array_equal(sitk.GetArrayFromImage(imageio.read_image(path)), array)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        imageio.read_image(path)


@pytest.mark.parametrize("value, expected", [(None, None), ("", None), (0, 0), ("14", 14), (14.0, 14), (42, 42)])
def test_nihss_accepts_whole_scores(value, expected):
    from StrokePerfusionSegLib.nihss import check_nihss

    assert check_nihss(value) == expected


@pytest.mark.parametrize("value", [-1, 43, 7.5, "seven", float("nan")])
def test_nihss_refuses_other_values_naming_them(value):
    from StrokePerfusionSegLib.nihss import check_nihss

    with pytest.raises(InputError, match="case P9: NIHSS .*0..42"):
        check_nihss(value, what="case P9: NIHSS")
