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


@pytest.mark.parametrize("gzip_module", ["isal.igzip", "gzip"])
def test_nifti_gz_is_itk_nifti_gzipped_and_read_back(tmp_path, monkeypatch, gzip_module):
    """ITK's own uncompressed NIfTI, byte for byte, in one plain gzip member (ISA-L or the standard library)."""
    import gzip
    import importlib

    monkeypatch.setattr(imageio, "GzipFile", importlib.import_module(gzip_module).GzipFile)
    ctp = np.random.default_rng(0).integers(-1000, 1500, (5, 2, 3, 4)).astype(np.int16)  # (t, z, y, x)
    path = imageio.write_array(ctp, GEOMETRY, tmp_path / "ctp.nii.gz", dt_s=1.5)
    sitk.WriteImage(imageio.array_to_image(ctp, GEOMETRY, dt_s=1.5), str(tmp_path / "itk.nii"), False)
    stored = path.read_bytes()
    assert stored[:4] == b"\x1f\x8b\x08\x00" and stored[4:8] == bytes(4)  # no name, no time: reproducible files
    assert gzip.decompress(stored) == (tmp_path / "itk.nii").read_bytes()
    layout = imageio._check_nifti_header(path)
    image = imageio.read_image(path)
    assert imageio._read_matches_stored(path, layout, image)  # the CRC fast path accepts it
    assert np.array_equal(sitk.GetArrayViewFromImage(image), ctp)
    assert imageio.frame_interval_s(path, image) == 1.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctp.nii.gz", "itk.nii"]


def test_failed_nifti_gz_write_leaves_nothing(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imageio, "GzipFile", full_disk)
    with pytest.raises(InputError, match="no space left"):
        imageio.write_array(np.zeros((2, 3, 4), np.float32), GEOMETRY, tmp_path / "cbf.nii.gz")
    assert list(tmp_path.iterdir()) == []


def _itk_read(path):
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


@pytest.mark.parametrize("isal", [True, False])
@pytest.mark.parametrize("kind", ["int16 series", "float32 map", "uint8 mask", "uncompressed", "scaled"])
def test_read_voxels_are_the_ones_itk_reads(tmp_path, monkeypatch, isal, kind):
    """ISA-L's inflate (or ITK, for what it leaves to ITK) gives ITK's voxels and header, not copied."""
    rng = np.random.default_rng(1)
    if not isal:
        monkeypatch.setattr(imageio, "igzip", None)
    if kind == "int16 series":
        path = imageio.write_array(rng.integers(-1000, 1500, (5, 2, 3, 4)).astype(np.int16), GEOMETRY,
                                   tmp_path / "ctp.nii.gz", dt_s=1.5)
    elif kind == "float32 map":
        path = imageio.write_array(rng.random((2, 3, 4)).astype(np.float32), GEOMETRY, tmp_path / "cbf.nii.gz")
    elif kind == "uint8 mask":
        path = imageio.write_array((rng.random((2, 3, 4)) > 0.5).astype(np.uint8), GEOMETRY, tmp_path / "m.nii.gz")
    elif kind == "uncompressed":
        path = tmp_path / "cbf.nii"
        sitk.WriteImage(imageio.array_to_image(rng.random((2, 3, 4)).astype(np.float32), GEOMETRY), str(path))
    else:  # scl_slope 2, scl_inter 10: ITK reads the voxels rescaled, as float
        import gzip
        import struct

        path = imageio.write_array(rng.integers(0, 100, (2, 3, 4)).astype(np.int16), GEOMETRY, tmp_path / "s.nii.gz")
        raw = bytearray(gzip.decompress(path.read_bytes()))
        struct.pack_into("<2f", raw, 112, 2.0, 10.0)
        path.write_bytes(gzip.compress(bytes(raw)))
    voxels, header = imageio.read_voxels(path)
    expected, image = _itk_read(path)
    assert voxels.dtype == expected.dtype and np.array_equal(voxels, expected)
    assert header.GetDimension() == image.GetDimension() and header.GetSize() == image.GetSize()
    assert Geometry.from_image(header) == Geometry.from_image(image)
    assert header.GetSpacing() == image.GetSpacing()
    # The inflated voxels are the decompressed file's bytes, not a copy of them.
    assert voxels.flags.writeable == (not isal or kind in ("uncompressed", "scaled"))
    if kind == "scaled":
        assert voxels.dtype == np.float32 and voxels.min() >= 10.0
