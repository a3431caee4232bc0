"""Output writers, each read back with an independent reader.

seg.nrrd through slicerio and SimpleITK, the NIfTI label map through SimpleITK, the DICOM SEG
through highdicom and pydicom (and dciodvfy when installed), the JSON report as JSON and the
visual report as PNG/PDF files and as the numbers drawn on the page.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from StrokePerfusionSegLib import dicom, writers
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.labels import CORE, LESION_SEGMENTS, PENUMBRA
from StrokePerfusionSegLib.studyio import load_study
from StrokePerfusionSegLib.volumes import lesion_volumes
from StrokePerfusionSegLib.atomic import write_file_atomically

from programmer_errors import raises_programmer_error

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-0042-XYZ"


@pytest.fixture(scope="module")
def dicom_study(lvo_case, tmp_path_factory):
    """The LVO phantom's maps as DICOM, with a named patient, loaded as a study."""
    folder = dicom.write_case_as_dicom(
        lvo_case, tmp_path_factory.mktemp("seg") / "study", maps=("cbf", "cbv", "ttp", "tmax", "mip"), with_ctp=False
    )
    for path in folder.rglob("*.dcm"):
        dataset = pydicom.dcmread(path)
        dataset.PatientName, dataset.PatientID = PATIENT_NAME, PATIENT_ID
        dataset.save_as(path)
    return load_study(dicom_dir=folder, nihss=lvo_case.nihss)


@pytest.fixture(scope="module")
def labels(lvo_case):
    assert (lvo_case.label == CORE).any() and (lvo_case.label == PENUMBRA).any()
    return lvo_case.label


def test_seg_nrrd_read_by_slicerio(labels, lvo_case, tmp_path):
    import slicerio

    path = writers.write_seg_nrrd(labels, lvo_case.geometry, tmp_path / "case.seg.nrrd")
    segmentation = slicerio.read_segmentation(str(path))
    assert [s["name"] for s in segmentation["segments"]] == [s.name for s in LESION_SEGMENTS]
    for segment, spec in zip(segmentation["segments"], LESION_SEGMENTS):
        assert segment["labelValue"] == spec.label
        assert segment["color"] == pytest.approx(spec.color)
        code, scheme, meaning = spec.type
        assert segment["terminology"]["type"] == [scheme, code, meaning]
        mask = slicerio.extract_segments(segmentation, [(spec.name, 1)])["voxels"]
        np.testing.assert_array_equal(mask.transpose(2, 1, 0) == 1, labels == spec.label)
    # SimpleITK sees the same grid: spacing, origin and LPS direction
    image = sitk.ReadImage(str(path))
    assert image.GetSpacing() == pytest.approx(lvo_case.geometry.spacing)
    assert image.GetOrigin() == pytest.approx(lvo_case.geometry.origin)
    assert image.GetDirection() == pytest.approx(lvo_case.geometry.direction)


def test_label_nifti_round_trip(labels, lvo_case, tmp_path):
    path = writers.write_label_nifti(labels, lvo_case.geometry, tmp_path / "labels.nii.gz")
    image = sitk.ReadImage(str(path))
    assert image.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), labels)
    assert image.GetSpacing() == pytest.approx(lvo_case.geometry.spacing)


@pytest.fixture(scope="module")
def seg_file(dicom_study, labels, tmp_path_factory):
    path = tmp_path_factory.mktemp("segout") / "case_seg.dcm"
    return writers.write_dicom_seg(
        labels, dicom_study.reference_headers, path, method="threshold", algorithm_name="thresholds", algorithm_version="1"
    )


def test_dicom_seg_read_by_highdicom(seg_file, dicom_study, labels):
    import highdicom as hd

    segmentation = hd.seg.segread(seg_file)
    assert segmentation.number_of_segments == len(LESION_SEGMENTS)
    reference = dicom_study.reference_headers
    assert segmentation.get_source_image_uids()[0][1] == reference[0].SeriesInstanceUID
    for number, spec in enumerate(LESION_SEGMENTS, start=1):
        description = segmentation.get_segment_description(number)
        assert description.segment_label == spec.name
        assert description.segmented_property_type.value == spec.type[0]
    uids = [str(h.SOPInstanceUID) for h in reference]
    masks = segmentation.get_pixels_by_source_instance(uids, segment_numbers=[1, 2], ignore_spatial_locations=True)
    for index, spec in enumerate(LESION_SEGMENTS):
        np.testing.assert_array_equal(masks[..., index] == 1, labels == spec.label)
    dataset = pydicom.dcmread(seg_file)
    assert dataset.Modality == "SEG" and len(dataset.SegmentSequence) == 2
    assert dataset.PatientID == PATIENT_ID  # the SEG belongs to the patient's study in PACS


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
def test_dicom_seg_passes_dciodvfy(seg_file):
    result = subprocess.run(["dciodvfy", str(seg_file)], capture_output=True, text=True, timeout=120)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert errors == []


def test_dicom_seg_needs_dicom_input_on_its_grid(dicom_study, labels, tmp_path):
    with pytest.raises(InputError, match="DICOM SEG needs a DICOM input"):
        writers.write_dicom_seg(labels, None, tmp_path / "x.dcm", method="dl", algorithm_name="m", algorithm_version="1")
    assert list(tmp_path.iterdir()) == []
    with raises_programmer_error(ValueError, match="slices but the reference series has"):
        writers.write_dicom_seg(labels[1:], dicom_study.reference_headers, tmp_path / "x.dcm", method="dl",
                                algorithm_name="m", algorithm_version="1")
    assert list(tmp_path.iterdir()) == []


def test_reports_carry_the_numbers_without_identifiers(dicom_study, labels, tmp_path, caplog):
    volumes = lesion_volumes(labels, dicom_study.geometry.spacing_zyx)
    report = writers.build_report(dicom_study, volumes, method="threshold", timings_s={"segment": 0.5})
    path = writers.write_report_json(report, tmp_path / "report.json")
    text = path.read_text()
    document = json.loads(text)
    assert document["volumes"]["core_ml"] == pytest.approx(volumes.core_ml)
    assert document["volumes"]["penumbra_ml"] == pytest.approx(volumes.penumbra_ml)
    assert document["volumes"]["mismatch_ratio"] == pytest.approx(volumes.mismatch_ratio)
    assert document["volumes"]["target_mismatch"] == volumes.target_mismatch
    assert "Decision support" in document["volumes"]["caveat"]
    assert document["study"]["nihss"] == dicom_study.nihss
    assert document["software"]["name"] == "StrokePerfusionSeg"
    assert set(document["inputs"]["maps"]) >= {"cbf", "cbv", "ttp", "tmax"}

    figure = writers.render_report_figure(dicom_study.maps, labels, dicom_study.geometry, volumes, title="Study")
    png, pdf = writers.write_visual_report(figure, tmp_path / "report.png", tmp_path / "report.pdf")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    drawn = [t.get_text() for t in figure.texts]
    for axes in figure.axes:
        drawn += [t.get_text() for t in axes.texts]
        for table in axes.tables:
            drawn += [cell.get_text().get_text() for cell in table.get_celld().values()]
    assert f"{volumes.core_ml:.1f}" in drawn and f"{volumes.penumbra_ml:.1f}" in drawn
    assert any("Target mismatch" in t for t in drawn)
    everything = text + " ".join(drawn) + caplog.text
    assert PATIENT_ID not in everything and "Doe" not in everything


def test_report_text_is_broken_into_lines_inside_the_page(dicom_study, labels):
    """Summary, caveat and long notes (broken by the writer, not by matplotlib at draw time)
    stay inside the page, word for word."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    volumes = lesion_volumes(labels, dicom_study.geometry.spacing_zyx)
    notes = ["network input resampled from 512x512 to 128x128 pixels per slice and probabilities back " * 2] * 4
    figure = writers.render_report_figure(dicom_study.maps, labels, dicom_study.geometry, volumes,
                                          title="Study", notes=notes)
    renderer = FigureCanvasAgg(figure).get_renderer()
    width = figure.bbox.width
    running = [t for t in figure.texts if "Decision support" in t.get_text() or "Target mismatch" in t.get_text()]
    assert len(running) == 2
    for text in running:
        extent = text.get_window_extent(renderer)
        assert 0 <= extent.x0 and extent.x1 <= width, (extent, width)
        assert not text.get_wrap() and text.get_text().count("\n") >= 1
    caveat = next(t.get_text() for t in running if "Decision support" in t.get_text())
    expected = ("Notes: " + "; ".join(notes)).split()
    assert caveat.split()[-len(expected):] == expected


def test_writes_are_atomic(tmp_path):
    def broken(temporary):
        temporary.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_file_atomically(tmp_path / "report.json", broken)
    assert list(tmp_path.iterdir()) == []
