"""One segmentation pipeline behind every front end: study -> labels, volumes, notes -> files.

The command line, the batch runner, the Slicer panel and headless Slicer all run the same three
steps; each front end only turns its own inputs into a :class:`~StrokePerfusionSegLib.studyio.Study`
and the :class:`SegmentationResult` into what it shows::

    method = resolve_method("threshold")            # or a model id, a bundle folder, None (default model)
    study = load_study(case_dir=..., needed=method.required_maps)
    result = segment_study(study, method)
    write_outputs(result, out / study.study_id, FORMATS)

:func:`resolve_method` is the one place that says which maps a method reads, which it requires
(the MIP where the brain mask needs it) and whether it reads the NIHSS score. The command line
resolves it with ``background=True``: PyTorch and the weights then load in a second thread while
the study is read, and :attr:`Method.bundle` waits for them where the network first needs them.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import staged_folder
from .errors import InputError

THRESHOLD = "threshold"
#: Output formats :func:`write_outputs` knows; the JSON report is always written.
FORMATS = ("seg.nrrd", "nifti", "dicom-seg", "report")
#: Maps the thresholds read, and the MIP that gives them the brain mask.
THRESHOLD_READS = ("cbf", "tmax")


@dataclass(frozen=True)
class Method:
    """A segmentation method, resolved once for any number of studies.

    Attributes
    ----------
    name : str
        ``"threshold"`` or the model id.
    reads : tuple of str
        Maps handed to the predictor, in the model's branch order.
    required_maps : tuple of str
        Maps a study must hold (``reads`` plus the MIP where the brain mask needs it).
    uses_nihss : bool
        The model reads the NIHSS score, so a study without one is refused.
    version : str or None
        Model version (None for thresholding).
    model : Bundle, Future of a Bundle, or None
        The model, or its load still running in the background (None for thresholding);
        read it through :attr:`bundle`.
    """

    name: str
    reads: tuple[str, ...]
    required_maps: tuple[str, ...]
    uses_nihss: bool = False
    version: str | None = None
    model: object | None = field(default=None, repr=False)

    @property
    def is_network(self) -> bool:
        return self.model is not None

    @property
    def model_ready(self) -> bool:
        """The model is at hand: loaded at once, or loaded in the background with success
        (False while it loads, or when its load failed)."""
        model = self.model
        return not isinstance(model, Future) or (model.done() and model.exception() is None)

    @property
    def bundle(self):
        """The loaded model (None for thresholding).

        A model loading in the background is waited for here, and its loading error (an
        InputError for a broken bundle) raised here, for every caller alike.
        """
        return self.model.result() if isinstance(self.model, Future) else self.model

    @property
    def display_name(self) -> str:
        """How reports and the panel name the method."""
        if not self.is_network:
            from .thresholding import ThresholdParams

            return f"thresholds {ThresholdParams().summary}"
        return f"model {self.name} {self.version}"


def resolve_method(spec=None, *, background: bool = False) -> Method:
    """The method named by ``spec``, its model loaded (on the CPU; the predictor moves it).

    Parameters
    ----------
    spec : None, ``"threshold"``, str or path, a loaded Bundle, or a Method
        None is the registry's default model; a string other than ``"threshold"`` is a model id
        of the registry or a bundle folder.
    background : bool
        Load the model (PyTorch, weights) in a background thread and return at once with what
        its manifest says; :attr:`Method.bundle` waits for it. For front ends that read the
        study meanwhile. The thread is a daemon: a run that stops early does not wait for it.

    Raises
    ------
    InputError
        No default model installed, an unknown model id, a broken bundle (with ``background``,
        a bundle whose manifest reads well but whose weights are broken is refused by
        :attr:`Method.bundle`).
    """
    if isinstance(spec, Method):
        return spec
    if spec == THRESHOLD:
        return Method(THRESHOLD, THRESHOLD_READS, (*THRESHOLD_READS, "mip"))
    if spec is None:
        from .registry import default_model_id

        spec = default_model_id()
        if spec is None:
            raise InputError("no default model is installed: name a model (id or bundle folder), or use thresholding")
    if hasattr(spec, "model") and hasattr(spec, "config"):
        return _network_method(getattr(spec, "model_id", "model"), getattr(spec, "version", None),
                               _config_needs(spec.config), spec)
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"a method is 'threshold', a model id, a bundle folder or a Bundle, not {type(spec).__name__}")
    from .bundleformat import read_manifest
    from .registry import resolve_model

    path = resolve_model(spec)
    manifest = read_manifest(path)
    needs = _manifest_needs(manifest, path)
    load = functools.partial(_load_as_described, path, needs)
    return _network_method(manifest["id"], manifest["version"], needs, _in_background(load) if background else load())


def _network_method(name: str, version: str | None, needs: tuple[tuple[str, ...], int, bool], model) -> Method:
    """The Method of a model with these needs (maps read, number of classes, reads NIHSS)."""
    reads, num_classes, uses_nihss = needs
    return Method(name, reads, _required_maps(reads, num_classes), uses_nihss, version, model)


def _required_maps(reads: tuple[str, ...], num_classes: int) -> tuple[str, ...]:
    # A 3-class model has no background class: the MIP's brain mask decides it.
    return reads + (("mip",) if num_classes == 3 else ())


def _manifest_needs(manifest: dict, path) -> tuple[tuple[str, ...], int, bool]:
    """(maps read, number of classes, reads NIHSS) as the bundle's ``model.json`` states them."""
    from .mapspecs import MAP_NAMES

    reads, classes, uses_nihss = manifest.get("inputs"), manifest.get("classes"), manifest.get("uses_nihss")
    if not (isinstance(reads, list) and reads and all(name in MAP_NAMES for name in reads)
            and isinstance(classes, list) and isinstance(uses_nihss, bool)):
        raise InputError(f"bundle {path}: model.json does not list its input maps, classes and uses_nihss: "
                         "export the bundle again")
    return tuple(reads), len(classes), uses_nihss


def _config_needs(config) -> tuple[tuple[str, ...], int, bool]:
    """(maps read, number of classes, reads NIHSS) of a model's architecture."""
    return tuple(config.inputs), config.num_classes, bool(config.use_nihss)


def _load_as_described(path, needs: tuple[tuple[str, ...], int, bool]):
    """The bundle at ``path``, refused unless its architecture needs what its manifest said."""
    from .bundle import load_bundle

    bundle = load_bundle(path, device="cpu")
    if _config_needs(bundle.config) != needs:
        raise InputError(f"bundle {path}: the inputs, classes or uses_nihss in model.json disagree with its "
                         "architecture: export the bundle again")
    return bundle


def _in_background(load: Callable[[], object]) -> Future:
    """The future result of ``load()``, run in a daemon thread."""
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(load())
        except BaseException as error:  # whatever it is, the waiting caller gets it rather than waiting forever
            future.set_exception(error)

    threading.Thread(target=run, name="strokeperfusionseg-model-load", daemon=True).start()
    return future


def method_needs(spec=None) -> tuple[tuple[str, ...], bool]:
    """(required maps, reads NIHSS) of a method, read from its manifest without loading it.

    For the panel, which must say what is missing before PyTorch is even installed.
    ``spec`` is as in :func:`resolve_method`.
    """
    if spec == THRESHOLD:
        method = resolve_method(THRESHOLD)
        return method.required_maps, method.uses_nihss
    from .bundleformat import read_manifest
    from .registry import resolve_model

    path = resolve_model(spec)
    reads, num_classes, uses_nihss = _manifest_needs(read_manifest(path), path)
    return _required_maps(reads, num_classes), uses_nihss


@dataclass
class SegmentationResult:
    """One segmented study.

    Attributes
    ----------
    study : Study
        The inputs (maps, geometry, NIHSS, source description).
    method : Method
    labels : ndarray of uint8, shape (z, y, x)
        0 background, 1 brain, 2 penumbra, 3 core, on the study grid.
    probabilities : ndarray of float32, shape (z, C, y, x), or None
        The network's class probabilities (None for thresholding).
    volumes : LesionVolumes
        Core, penumbra, hypoperfused volume (ml), mismatch ratio and volume, target-mismatch flags.
    device : str
        Where the method ran.
    notes : list of str
        Everything the user should know, from loading (resampling, colour decoding, the
        perfusion analysis' warnings) to the method (encoding, precision).
    timings : dict of str to float
        Seconds per stage: the study's (``read``, ``perfusion``), ``wait_model`` (a network's
        model still loading when the study was read and its brain mask made), ``segment``
        (without that wait), then the writers'.
    """

    study: object
    method: Method
    labels: np.ndarray
    probabilities: np.ndarray | None
    volumes: object
    device: str
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def missing_maps(method: Method, available) -> list[str]:
    """The maps ``method`` requires that are not in ``available`` (names, in the method's order)."""
    return [name for name in method.required_maps if name not in available]


def segment_study(
    study,
    method: Method,
    *,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    precision: str = "auto",
) -> SegmentationResult:
    """Segment core and penumbra of one loaded study.

    Parameters
    ----------
    study : Study
        From :func:`~StrokePerfusionSegLib.studyio.load_study` or a front end's own adapter.
    method : Method
        From :func:`resolve_method`.
    device : {"auto", "cpu", "cuda"} or "cuda:N"
    progress : callable(done_slices, total_slices), optional
    cancel : callable() -> bool, optional
        Polled between batches of slices; True stops with ``CancelledError``.
    precision : {"auto", "fp32", "bf16", "fp16"}

    Returns
    -------
    SegmentationResult
    """
    from .predictor import predict
    from .volumes import lesion_volumes

    missing = missing_maps(method, study.maps)
    if missing:
        raise InputError(
            f"{study.study_id}: the method ({method.display_name}) needs {', '.join(m.upper() for m in missing)}: "
            "give the map(s) or the CTP to compute them from"
        )
    if method.uses_nihss and study.nihss is None:
        raise InputError(
            f"{study.study_id}: model {method.name} reads the NIHSS score: give it (0..42; --nihss N on the "
            "command line, nihss in case.json or the batch CSV)"
        )
    timings = dict(study.timings)
    runs = THRESHOLD
    if method.is_network:
        # A model not at hand yet: the predictor checks the maps and makes the brain mask first,
        # then waits (and raises the load's error after the study's own input errors).
        runs = method.bundle if method.model_ready else method.model
    start = time.perf_counter()
    prediction = predict(
        {name: study.maps[name] for name in method.reads},
        study.geometry.spacing_zyx,
        method=runs,
        nihss=study.nihss,
        mip=study.maps.get("mip"),
        brain_mask=study.brain_mask,
        device=device,
        progress=progress,
        cancel=cancel,
        precision=precision,
    )
    labels = np.asarray(prediction.labels, dtype=np.uint8)
    if method.is_network:
        timings["wait_model"] = prediction.timings.get("wait_model_s", 0.0)
    timings["segment"] = time.perf_counter() - start - timings.get("wait_model", 0.0)
    return SegmentationResult(
        study=study,
        method=method,
        labels=labels,
        probabilities=prediction.probabilities,
        volumes=lesion_volumes(labels, study.geometry.spacing_zyx),
        device=str(prediction.device),
        notes=[*study.notes, *prediction.notes],
        timings=timings,
    )


def formats_for(study, requested: Sequence[str] | None) -> tuple[str, ...]:
    """The formats to write for ``study``: ``requested``, or all that fit (None = auto).

    A DICOM Segmentation refers to DICOM source images, so it is written by default for DICOM
    input only and refused for other inputs.
    """
    is_dicom = study.reference_headers is not None
    if requested is None:
        return FORMATS if is_dicom else tuple(f for f in FORMATS if f != "dicom-seg")
    unknown = [f for f in requested if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown output format(s) {unknown}; known: {FORMATS}")
    if "dicom-seg" in requested and not is_dicom:
        raise InputError(
            f"{study.study_id}: a DICOM SEG needs a DICOM input; leave dicom-seg out of the formats for other inputs"
        )
    return tuple(requested)


def output_names(study_id: str, formats: Sequence[str]) -> dict[str, str]:
    """File name per output (key ``report.json`` always; ``report.png`` and ``report.pdf`` for ``report``)."""
    names = {"report.json": f"{study_id}_report.json"}
    if "seg.nrrd" in formats:
        names["seg.nrrd"] = f"{study_id}.seg.nrrd"
    if "nifti" in formats:
        names["nifti"] = f"{study_id}_labels.nii.gz"
    if "dicom-seg" in formats:
        names["dicom-seg"] = f"{study_id}_seg.dcm"
    if "report" in formats:
        names["report.png"] = f"{study_id}_report.png"
        names["report.pdf"] = f"{study_id}_report.pdf"
    return names


def _software_version() -> str:
    from . import __version__

    return __version__


def report_subtitle(result: SegmentationResult) -> str:
    """One line under the report's title: method, device, NIHSS, software version."""
    nihss = result.study.nihss if result.study.nihss is not None else "not given"
    return (f"{result.method.display_name} on {result.device}; NIHSS {nihss}; "
            f"StrokePerfusionSeg {_software_version()}")


def write_outputs(
    result: SegmentationResult,
    target: str | os.PathLike,
    formats: Sequence[str] | None = None,
    *,
    overwrite: bool = False,
) -> dict[str, str]:
    """Write the result's files into the folder ``target``, all or nothing.

    The files are written into a hidden staging folder beside ``target`` and renamed into place
    at the end, so ``target`` is either complete or as it was.

    Parameters
    ----------
    result : SegmentationResult
    target : path
        The study's output folder (``OUT/<study id>``).
    formats : sequence of str or None
        Subset of :data:`FORMATS`; None writes every format that fits the input.
    overwrite : bool
        Replace an existing ``target``; otherwise an existing one is an InputError.

    Returns
    -------
    dict of str to str
        Output -> file name inside ``target`` (see :func:`output_names`).
    """
    from . import writers

    study = result.study
    target = Path(target)
    formats = formats_for(study, formats)
    names = output_names(study.study_id, formats)
    timings = dict(result.timings)

    def timed(stage: str, write) -> None:
        started = time.perf_counter()
        write()
        timings[stage] = time.perf_counter() - started

    with staged_folder(target, overwrite=overwrite) as staging:
        if "seg.nrrd" in formats:
            timed("write_seg_nrrd", lambda: writers.write_seg_nrrd(result.labels, study.geometry,
                                                                   staging / names["seg.nrrd"]))
        if "nifti" in formats:
            timed("write_nifti", lambda: writers.write_label_nifti(result.labels, study.geometry,
                                                                   staging / names["nifti"]))
        if "dicom-seg" in formats:
            method = result.method
            timed("write_dicom_seg", lambda: writers.write_dicom_seg(
                result.labels, study.reference_headers, staging / names["dicom-seg"],
                method="dl" if method.is_network else THRESHOLD,
                algorithm_name=method.name if method.is_network else "rCBF-Tmax thresholds",
                algorithm_version=method.version or _software_version(),
            ))
        if "report" in formats:
            def visual_report() -> None:
                figure = writers.render_report_figure(
                    study.maps, result.labels, study.geometry, result.volumes,
                    title=f"Core and penumbra: {study.study_id}", subtitle=report_subtitle(result),
                    notes=result.notes,
                )
                writers.write_visual_report(figure, staging / names["report.png"], staging / names["report.pdf"])

            timed("write_report", visual_report)
        timings["total"] = sum(timings.values())
        report = writers.build_report(
            study, result.volumes, method="dl" if result.method.is_network else THRESHOLD,
            model_id=result.method.name if result.method.is_network else None,
            model_version=result.method.version, device=result.device, timings_s=timings,
            notes=result.notes, outputs=names,
        )
        writers.write_report_json(report, staging / names["report.json"])
    result.timings = timings
    return names
