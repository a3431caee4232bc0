"""DICOM input: phantom cases written as DICOM series with pydicom and read back.

Covers quantitative and colour-coded map series (with a burned-in colour bar and text), the
4D CTP series, map recognition and manual mapping, loading a study onto one grid, and the
bad inputs of issue 6, each of which must raise an InputError naming the series and the fix.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from StrokePerfusionSegLib import dicom, imageio
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.mapspecs import MAP_SPECS
from StrokePerfusionSegLib.colourcoding import PERFUSION_LUT, decode_rgb, encode_rgb, window_to_index
from StrokePerfusionSegLib.studyio import load_study

MAPS = ("cbf", "cbv", "ttp", "tmax", "mip")


@pytest.fixture(scope="module")
def study_folder(lvo_case, tmp_path_factory):
    """The LVO phantom as a console export: CTP, quantitative maps, colour-coded CBF."""
    folder = tmp_path_factory.mktemp("dicom") / "study"
    return dicom.write_case_as_dicom(lvo_case, folder, maps=MAPS, colour_maps=("cbf",))


@pytest.fixture
def study_copy(study_folder, tmp_path):
    return shutil.copytree(study_folder, tmp_path / "study")


def series_files(folder, description):
    """Files of the series with this description, in instance order."""
    scan = dicom.scan_folder(folder)
    (series,) = [s for s in scan.series if s.description == description]
    return sorted((h.filename for h in series.headers), key=lambda f: int(pydicom.dcmread(f).InstanceNumber))


def edit_series(folder, description, edit):
    """Apply ``edit(dataset, index)`` to every file of a series and save it in place."""
    for index, path in enumerate(series_files(folder, description)):
        dataset = pydicom.dcmread(path)
        edit(dataset, index)
        dataset.save_as(path)


def test_quantitative_maps_round_trip(study_folder, lvo_case):
    study = load_study(dicom_dir=study_folder, needed=("cbf", "cbv", "ttp", "tmax"))
    assert study.geometry.matches(lvo_case.geometry)
    assert study.shape == lvo_case.shape
    for name in MAPS:
        original = lvo_case.maps[name]
        # int16 storage with slope = max|value| / 32000: error at most half a step
        step = max(np.abs(original).max() / 32000, 1e-6) if name != "mip" else 1.0
        np.testing.assert_allclose(study.maps[name], original, atol=step * 0.51)
        assert study.source["maps"][name]["kind"] == "quantitative"
    assert len(study.reference_headers) == lvo_case.shape[0]
    assert any("quantitative series over its colour-coded copy" in note for note in study.notes)


def _with_overlays(rgb):
    """Burn a colour bar (right edge, every table colour) and grey text (corner) into a copy."""
    burned = rgb.copy()
    rows = burned.shape[1]
    burned[:, 4 : rows - 4, -3:] = encode_rgb(np.linspace(80, 0, rows - 8), "cbf")[None, :, None, :]
    burned[:, 1:4, 1:12] = (128, 128, 128)
    return burned


def test_colour_map_decoded_with_overlays_masked(lvo_case, tmp_path):
    burned = dataclasses.replace(lvo_case, rgb={"cbf": _with_overlays(lvo_case.rgb["cbf"])})
    folder = dicom.write_case_as_dicom(burned, tmp_path / "colour", maps=(), colour_maps=("cbf",), with_ctp=False)
    (series,) = dicom.scan_folder(folder).series
    volume = dicom.read_map_series(series, "cbf")
    assert volume.kind == "colour"
    # Without overlays the phantom is black at the overlay places, so the decoded map must be
    # exactly the decoded clean image: colour bar and text gone, every head pixel kept.
    np.testing.assert_array_equal(volume.values, decode_rgb(lvo_case.rgb["cbf"], "cbf"))
    assert any("masked" in note for note in volume.notes)


def test_palette_colour_map(lvo_case, tmp_path):
    """A PALETTE COLOR series (8-bit indices, 16-bit palette) decodes like the RGB copy."""
    folder = dicom.write_case_as_dicom(lvo_case, tmp_path / "palette", maps=(), colour_maps=("cbf",), with_ctp=False)
    indices = window_to_index(lvo_case.maps["cbf"], "cbf")
    palette = PERFUSION_LUT.astype(np.uint16) * 257

    def to_palette(dataset, z):
        dataset.PhotometricInterpretation = "PALETTE COLOR"
        dataset.SamplesPerPixel = 1
        del dataset.PlanarConfiguration
        dataset.PixelData = np.ascontiguousarray(indices[z]).tobytes()
        for channel, colour in enumerate(("Red", "Green", "Blue")):
            dataset.add_new(f"{colour}PaletteColorLookupTableDescriptor", "US", [256, 0, 16])
            dataset.add_new(f"{colour}PaletteColorLookupTableData", "OW", palette[:, channel].tobytes())

    edit_series(folder, "CBF color", to_palette)
    (series,) = dicom.scan_folder(folder).series
    volume = dicom.read_map_series(series, "cbf")
    assert volume.kind == "colour"
    np.testing.assert_array_equal(volume.values, decode_rgb(lvo_case.rgb["cbf"], "cbf"))


def test_ybr_colour_map(lvo_case, tmp_path):
    """A YBR_FULL series decodes like the RGB copy, with pydicom 3 and with pydicom 2.4 (Slicer 5.8, 5.10)."""
    from StrokePerfusionSegLib.dicom.volume import convert_color_space

    folder = dicom.write_case_as_dicom(lvo_case, tmp_path / "ybr", maps=(), colour_maps=("cbf",), with_ctp=False)

    def to_ybr(dataset, z):
        dataset.PhotometricInterpretation = "YBR_FULL"
        dataset.PixelData = convert_color_space(lvo_case.rgb["cbf"][z], "RGB", "YBR_FULL").tobytes()

    edit_series(folder, "CBF color", to_ybr)
    (series,) = dicom.scan_folder(folder).series
    volume = dicom.read_map_series(series, "cbf")
    assert volume.kind == "colour"
    # The YBR round trip moves channels by at most 1-2 grey levels: the decoded map stays close.
    expected = decode_rgb(lvo_case.rgb["cbf"], "cbf")
    assert np.mean(np.abs(volume.values - expected) <= 1.0) > 0.99


def test_unknown_colour_table_is_refused(lvo_case, tmp_path):
    foreign = lvo_case.rgb["cbf"][..., ::-1].copy()  # a blue-for-high table: not ours
    case = dataclasses.replace(lvo_case, rgb={"cbf": foreign})
    folder = dicom.write_case_as_dicom(case, tmp_path / "foreign", maps=(), colour_maps=("cbf",), with_ctp=False)
    (series,) = dicom.scan_folder(folder).series
    with pytest.raises(InputError, match="colour table.*grayscale"):
        dicom.read_map_series(series, "cbf")


def test_ctp_series_grouped_into_time_points(study_folder, lvo_case):
    scan = dicom.scan_folder(study_folder)
    recognition = dicom.recognise_series(scan)
    assert recognition.ctp is not None and recognition.ctp.description == "CT Perfusion"
    volume = dicom.read_ctp_series(recognition.ctp)
    assert volume.values.shape == lvo_case.ctp.shape
    assert volume.dt_s == pytest.approx(lvo_case.dt_s, abs=1e-5)
    np.testing.assert_array_equal(volume.values, np.round(lvo_case.ctp))
    assert volume.geometry.matches(lvo_case.geometry)


def test_maps_computed_from_ctp_series(lvo_case, tmp_path):
    from StrokePerfusionSegLib.perfusion import compute_perfusion_maps

    folder = dicom.write_case_as_dicom(lvo_case, tmp_path / "ctp_only", maps=())
    study = load_study(dicom_dir=folder)
    expected = compute_perfusion_maps(np.round(lvo_case.ctp), lvo_case.dt_s, lvo_case.geometry.spacing_zyx).maps
    for name in ("cbf", "tmax", "mip"):
        np.testing.assert_allclose(study.maps[name], expected[name], rtol=1e-5, atol=1e-5)
    assert study.source["maps"]["cbf"]["kind"] == "computed"
    assert study.dt_s == pytest.approx(lvo_case.dt_s)


def test_vendor_names_recognised():
    assert dicom.maps_named_by("rCBF") == ["cbf"]
    assert dicom.maps_named_by("Perfusion TMAX (s)") == ["tmax"]
    assert dicom.maps_named_by("T-max") == ["tmax"]
    assert dicom.maps_named_by("Time to Peak") == ["ttp"]
    assert dicom.maps_named_by("CBV_color") == ["cbv"]
    assert dicom.maps_named_by("Maximum Intensity Projection") == ["mip"]
    assert dicom.maps_named_by("Scout") == []
    assert dicom.maps_named_by("CBF CBV summary") == ["cbf", "cbv"]


def test_unrecognised_map_asks_for_manual_mapping(study_copy):
    edit_series(study_copy, "TMAX", lambda ds, i: setattr(ds, "SeriesDescription", "Perf map 5"))
    with pytest.raises(InputError, match=r"TMAX.*'Perf map 5'.*--map tmax="):
        load_study(dicom_dir=study_copy)
    study = load_study(dicom_dir=study_copy, series_map={"tmax": "perf map 5"})
    assert study.source["maps"]["tmax"]["from"] == "Perf map 5"


def test_missing_slice(study_copy):
    Path(series_files(study_copy, "CBF")[1]).unlink()
    with pytest.raises(InputError, match=r"'CBF'.*misses 1 slice.*re-export"):
        load_study(dicom_dir=study_copy)


def test_duplicated_instance(study_copy):
    files = series_files(study_copy, "CBV")
    shutil.copy(files[0], str(files[0]) + ".copy.dcm")
    with pytest.raises(InputError, match=r"'CBV'.*duplicated instances.*remove the copies"):
        load_study(dicom_dir=study_copy)


def test_mixed_orientations(study_copy):
    def tilt(dataset, index):
        if index == 2:
            dataset.ImageOrientationPatient = [1, 0, 0, 0, 0.8, -0.6]

    edit_series(study_copy, "TTP", tilt)
    with pytest.raises(InputError, match=r"'TTP'.*mixes image orientations"):
        load_study(dicom_dir=study_copy)


def test_mixed_spacings(study_copy):
    def resize(dataset, index):
        if index == 0:
            dataset.PixelSpacing = [0.5, 0.5]

    edit_series(study_copy, "TMAX", resize)
    with pytest.raises(InputError, match=r"'TMAX'.*mixes image sizes or pixel spacings"):
        load_study(dicom_dir=study_copy)


def test_irregular_ctp_timing(lvo_case, tmp_path):
    folder = dicom.write_case_as_dicom(lvo_case, tmp_path / "timing", maps=())
    depth = lvo_case.shape[0]

    def delay(dataset, index):  # the 10th time point comes 0.8 s late
        if index // depth == 9:
            dataset.AcquisitionTime = dataset.ContentTime = f"{float(dataset.AcquisitionTime) + 0.8:013.6f}"

    edit_series(folder, "CT Perfusion", delay)
    with pytest.raises(InputError, match=r"'CT Perfusion'.*irregular frame timing.*constant frame interval"):
        load_study(dicom_dir=folder)


def test_folder_without_perfusion_series(tmp_path, lvo_case):
    scout = dataclasses.replace(lvo_case, maps={"mtt": lvo_case.maps["mtt"]})
    folder = dicom.write_case_as_dicom(scout, tmp_path / "other", with_ctp=False)
    edit_series(folder, "MTT", lambda ds, i: setattr(ds, "SeriesDescription", "Head routine"))
    with pytest.raises(InputError, match="no CT perfusion series"):
        load_study(dicom_dir=folder)


def test_non_dicom_file_is_skipped_and_reported(study_copy):
    (study_copy / "README.txt").write_text("exported by the console")
    study = load_study(dicom_dir=study_copy, needed=("cbf", "tmax"))
    assert any("skipped 1 file" in note and "README.txt" in note for note in study.notes)


def test_relative_units_refused(study_copy):
    edit_series(study_copy, "CBF", lambda ds, i: setattr(ds, "RescaleType", "%"))
    with pytest.raises(InputError, match=r"'CBF'.*in '%'.*ml/100g/min"):
        load_study(dicom_dir=study_copy)


def test_map_files_on_different_grids(lvo_case, tmp_path):
    files = {}
    for name in ("cbf", "cbv", "ttp", "tmax", "mip"):
        geometry = lvo_case.geometry
        if name == "tmax":
            geometry = dataclasses.replace(geometry, spacing=(1.8, 1.8, 5.0))
        files[name] = imageio.write_array(lvo_case.maps[name], geometry, tmp_path / f"{name}.nii.gz")
    with pytest.raises(InputError, match=r"TMAX \(tmax.nii.gz\) and CBF \(cbf.nii.gz\) are on different grids \(spacing.*--resample"):
        load_study(map_files=files)
    study = load_study(map_files=files, resample=True)
    assert study.maps["tmax"].shape == lvo_case.shape
    assert any("TMAX (tmax.nii.gz): resampled" in note for note in study.notes)


def test_colour_map_file_decoded(lvo_case, tmp_path):
    files = {name: imageio.write_array(lvo_case.maps[name], lvo_case.geometry, tmp_path / f"{name}.nii.gz")
             for name in ("cbf", "cbv", "ttp", "mip")}
    files["tmax"] = imageio.write_array(lvo_case.rgb["tmax"], lvo_case.geometry, tmp_path / "tmax_rgb.nii.gz")
    study = load_study(map_files=files)
    assert study.source["maps"]["tmax"]["kind"] == "colour"
    low, high = MAP_SPECS["tmax"].window
    expected = np.clip(lvo_case.maps["tmax"], low, high)
    np.testing.assert_allclose(study.maps["tmax"], expected, atol=(high - low) / 255 / 2 + 1e-4)
