"""Image files: geometry kept on write, no temporary left, errors naming the file."""

import numpy as np
import pytest
import SimpleITK as sitk

from StrokePerfusionSegLib import imageio
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.imageio import Geometry

from programmer_errors import raises_programmer_error

GEOMETRY = Geometry(spacing=(0.8, 0.9, 5.0), origin=(-10.0, 20.0, 30.0),
                    direction=(0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))


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


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_truncated_nifti_is_refused(tmp_path, suffix):
    array = np.random.default_rng(4).random((4, 16, 16), dtype=np.float32)
    path = imageio.write_array(array, GEOMETRY, tmp_path / f"cbf{suffix}")
    assert np.array_equal(sitk.GetArrayFromImage(imageio.read_image(path)), array)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        imageio.read_image(path)


def test_arrays_without_an_image_layout_are_programmer_errors():
    with raises_programmer_error(ValueError, match="frame interval"):
        imageio.array_to_image(np.zeros((2, 3, 4, 5), np.float32), GEOMETRY)
    with raises_programmer_error(ValueError, match="cannot store"):
        imageio.array_to_image(np.zeros((4, 5), np.float32), GEOMETRY)
