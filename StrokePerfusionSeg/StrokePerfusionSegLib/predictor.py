"""Predictor: parametric maps of one study -> labels (and class probabilities).

One call serves every way in (Slicer panel, batch, command line)::

    prediction = predict(images, spacing, method=bundle, nihss=12, mip=mip)
    prediction.labels  # (z, y, x) uint8: 0 background, 1 brain, 2 penumbra, 3 core

With a model bundle the maps are encoded as the model was trained (:mod:`.encoding`), each
slice's network input is resampled to the model's square image size and the class
probabilities back to the input grid (the user's data and the labels' grid never change),
slices run in batches sized to a memory budget, and the MIP brain mask decides background:
inside the brain a voxel takes the most probable of brain / penumbra / core, outside it is 0.
With ``method="threshold"`` the RAPID-like thresholds of :mod:`.thresholding` run instead
(no weights needed).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from . import mapspecs
from .brainmask import brain_mask_from_mip
from .colourcoding import decode_colour_input
from .cpufeatures import describe_bf16, native_bf16_flags
from .encoding import encode_colours, encode_inputs, is_colour_coded, normalise_units, scalar_units, to_device
from .errors import CancelledError, InputError
from .labels import BACKGROUND, BRAIN
from .nihss import check_nihss

log = logging.getLogger(__name__)

#: Default memory budget (MB) for the activations of one batch of slices.
DEFAULT_MEMORY_BUDGET_MB = 2048
#: Precisions: "auto" picks bf16/fp16 autocast on CUDA, bf16 on CPUs with native bf16
#: (AVX512-BF16 or AMX) and fp32 elsewhere (emulated bf16 is slower than fp32).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class Prediction:
    """Result of :func:`predict`.

    Attributes
    ----------
    labels : (z, y, x) uint8
        0 background, 1 brain, 2 penumbra, 3 core, on the input grid.
    probabilities : (z, C, y, x) float32 or None
        Softmax class probabilities of the network on the input grid (``C`` = the model's
        classes, in label order); None for the threshold method.
    device : str
        Where the network ran (``cpu``, ``cuda``, ``cuda:0`` ...), ``cpu`` for thresholding.
    notes : list of str
        What the user should know about how the result was made.
    timings : dict of str to float
        Seconds per step: ``checks_s`` (input checks and brain mask), then ``encode_s``
        (encoding and resampling to the model's size), ``network_s``, ``postprocess_s`` for a
        network or ``threshold_s`` for thresholding; ``total_s`` always. On a GPU the host
        makes the brain mask while the network runs: it is then part of ``network_s``. With a
        model still loading, ``wait_model_s``: the wait for it after the checks and the mask
        (part of ``total_s``, not of ``checks_s``).
    """

    labels: np.ndarray
    probabilities: np.ndarray | None
    device: str
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def predict(
    images: Mapping[str, np.ndarray],
    spacing,
    *,
    method,
    nihss: float | None = None,
    mip: np.ndarray | None = None,
    brain_mask: np.ndarray | None = None,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    precision: str = "auto",
    threshold_params=None,
) -> Prediction:
    """Segment core and penumbra of one study.

    Parameters
    ----------
    images : mapping of str to ndarray
        Map name -> scalar map ``(z, y, x)`` in its unit (:data:`mapspecs.MAP_SPECS`) or
        colour-coded map ``(z, y, x, 3)`` uint8. Exactly the maps the model reads; ``"mip"``
        may also be given here for the brain mask.
    spacing : (3,) sequence of float
        Voxel size ``(z, y, x)`` in mm.
    method : Bundle, Future of a Bundle, or "threshold"
        A model bundle (anything with ``.model`` and ``.config``, see :mod:`.bundle`) or the
        threshold method. The bundle's model is left in eval mode on ``device`` (channels-last).
        A ``concurrent.futures.Future`` is a model still loading in another thread: the brain
        mask is then made from the MIP first, and the model waited for where it is first
        needed (``wait_model_s`` in the timings; a failed load raises its error there).
    nihss : int or None
        NIHSS score 0..42; required when the model reads it.
    mip : (z, y, x) ndarray or None
        MIP in HU for the brain mask (else ``images["mip"]``). Without it a 4-class model
        decides background itself; 3-class models and thresholding require it.
    brain_mask : (z, y, x) bool ndarray or None
        The brain mask when the caller already has it (the perfusion analysis made one from the
        same MIP); replaces the one derived from ``mip``.
    device : {"auto", "cpu", "cuda"} or "cuda:N"
    progress : callable(done_slices, total_slices), optional
        Called after each batch.
    cancel : callable() -> bool, optional
        Checked before each batch; True stops with :class:`CancelledError`.
    memory_budget_mb : float
        Activation memory allowed for one batch of slices, in MB.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast precision of the network (see :data:`PRECISIONS`).
    threshold_params : thresholding.ThresholdParams, optional
        Thresholds of the threshold method (its defaults when None).

    Returns
    -------
    Prediction
    """
    start = time.perf_counter()
    spacing = _check_spacing(spacing)
    check_map_values(images, mip)
    if isinstance(method, str):
        if method != "threshold":
            raise InputError(f"unknown method '{method}': give a model bundle or 'threshold'")
        return _predict_threshold(images, spacing, mip, brain_mask, threshold_params, start)
    premade_mask, waited = None, None
    if isinstance(method, Future):
        premade_mask = _mask_while_loading(images, mip, brain_mask, spacing)
        waiting = time.perf_counter()
        method = method.result()
        waited = time.perf_counter() - waiting
    if not (hasattr(method, "model") and hasattr(method, "config")):
        raise InputError(
            f"method must be a model bundle (bundle.load_bundle) or 'threshold', got {type(method).__name__}"
        )
    return _predict_network(
        images, spacing, method, nihss, mip, brain_mask, premade_mask, device, progress, cancel, memory_budget_mb,
        precision, start, waited,
    )


# --- checks -------------------------------------------------------------------------------


def _check_spacing(spacing) -> tuple[float, float, float]:
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise InputError(f"spacing must be three sizes in mm (z, y, x), got {spacing!r}") from None
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise InputError(f"spacing must be three positive sizes in mm (z, y, x), got {spacing!r}")
    return values


#: Fewest pixels along a slice's rows and columns: smaller grids are no perfusion study.
MIN_SLICE_PIXELS = 8


def check_map_values(images: Mapping[str, np.ndarray], mip: np.ndarray | None = None) -> None:
    """The input check every method shares: what no real study looks like is refused.

    Each map (and the MIP) must be finite, at least :data:`MIN_SLICE_PIXELS` pixels in-plane
    and not constant (an all-zero map is an empty export); a scalar CBF must hold positive
    flow. Without this, a network would turn such input into a plausible "no lesion".

    Raises
    ------
    InputError
        Naming the map and the fix.
    """
    given = dict(images) | ({"mip": mip} if mip is not None else {})
    for name, image in given.items():
        array = np.asarray(image)
        colour = is_colour_coded(array)
        if not colour and np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise InputError(f"map '{name}' holds NaN or infinite voxels: replace them (e.g. with 0) before segmenting")
        shape = array.shape[:3] if colour else array.shape
        if len(shape) == 3 and min(shape[1:]) < MIN_SLICE_PIXELS:
            raise InputError(
                f"map '{name}' has {shape[2]}x{shape[1]} pixels per slice: a perfusion study has at least "
                f"{MIN_SLICE_PIXELS}x{MIN_SLICE_PIXELS}; give the whole map"
            )
        if array.size and array.min() == array.max():
            raise InputError(
                f"map '{name}' holds one value everywhere ({array.flat[0]}): it is empty or damaged; export it again"
            )
    cbf = given.get("cbf")
    if cbf is not None and not is_colour_coded(np.asarray(cbf)) and not np.asarray(cbf).max() > 0:
        raise InputError("map 'cbf' holds no positive flow (all zero or negative): give CBF in ml/100g/min")


def _check_nihss(nihss, required: bool, notes: list[str]) -> float | None:
    if nihss is None:
        if required:
            raise InputError("this model reads the NIHSS score: give nihss (an integer 0..42)")
        return None
    value = check_nihss(nihss)
    if not required:
        notes.append("NIHSS given but this model does not read it; it was ignored")
        return None
    return float(value)


def _check_grid(images: Mapping[str, np.ndarray], names) -> tuple[int, int, int]:
    """The common (z, y, x) shape of the named maps; InputError when they differ or are 2D,
    found before any slice is processed."""
    shapes = {}
    for name in names:
        array = np.asarray(images[name])
        shape = array.shape[:3] if is_colour_coded(array) else array.shape
        if len(shape) != 3:
            raise InputError(
                f"map '{name}' has shape {array.shape}: give a 3D map (z, y, x) or colour-coded "
                "(z, y, x, 3); a single slice needs a leading axis of length 1"
            )
        shapes[name] = tuple(shape)
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise InputError(f"maps differ in shape (z, y, x): {listing}; resample them to one grid")
    return next(iter(shapes.values()))


def _scalar_map(name: str, image: np.ndarray, notes: list[str]) -> np.ndarray:
    """A map in its unit: scalar as given, colour-coded decoded through its look-up table."""
    image = np.asarray(image)
    if not is_colour_coded(image):
        return image
    if image.dtype != np.uint8:
        raise InputError(f"colour-coded '{name}' has dtype {image.dtype}: give RGB as uint8 0..255")
    if not mapspecs.map_spec(name).colour and not (
        np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
    ):
        raise InputError(f"'{name}' is shown in grey levels but was given in colour: give the scalar {name} in HU")
    return decode_colour_input(image, name, f"colour-coded {name}", notes)


def _brain_mask(mip, given, images, spacing, grid, notes) -> np.ndarray | None:
    make_mask = _brain_mask_maker(mip, given, images, spacing, grid, notes)
    return None if make_mask is None else make_mask()


def _brain_mask_maker(mip, given, images, spacing, grid, notes) -> Callable[[], np.ndarray] | None:
    """Check where the brain mask comes from now; return what makes it (None: no mask).

    The mask itself is made by the returned function, so that a caller can make it while other
    work runs. It raises InputError when the mask is empty.
    """
    if given is not None:
        if tuple(np.shape(given)) != grid:
            raise ValueError(f"brain_mask has shape {np.shape(given)} but the maps have {grid}")
        return lambda: _non_empty(np.asarray(given, dtype=bool))
    if mip is None and images.get("mip") is None:
        return None
    mip = _scalar_map("mip", mip if mip is not None else images["mip"], notes)
    if tuple(np.shape(mip)) != grid:
        raise InputError(
            f"the MIP has shape {np.shape(mip)} but the maps have {grid}: give the MIP of the same study grid"
        )
    return lambda: _non_empty(brain_mask_from_mip(mip, spacing))


def _mask_while_loading(images, mip, given, spacing) -> tuple[list[str], Callable[[], np.ndarray]] | None:
    """(notes, what gives the brain mask) with the mask made from the MIP now, before the model
    is needed; None: the mask is made later, as when the model is at hand.

    Only when no mask is given and the maps and the MIP share one 3D grid; otherwise the model's
    inputs decide which grid error is the user's, as when the model is at hand. Errors of the
    mask itself (an empty mask, a colour MIP that does not decode) are raised here, before the
    model's: they are the user's input.
    """
    source = mip if mip is not None else images.get("mip")
    if given is not None or source is None:
        return None
    arrays = {**images, "MIP for the brain mask": source}  # a distinct key: both MIPs, when both are given
    try:
        grid = _check_grid(arrays, list(arrays))
    except InputError:  # reported after the wait, by the model's own checks
        return None
    notes: list[str] = []
    mask = _brain_mask_maker(mip, None, images, spacing, grid, notes)()
    return notes, lambda: mask


def _non_empty(mask: np.ndarray) -> np.ndarray:
    if not mask.any():  # every method refuses it: "no lesion" would be a silent wrong answer
        raise InputError("the brain mask is empty (no brain tissue found): check that the MIP is the study's, in HU")
    return mask


# --- threshold method ---------------------------------------------------------------------


def _predict_threshold(images, spacing, mip, given_mask, params, start) -> Prediction:
    from .thresholding import ThresholdParams, threshold_segmentation

    params = ThresholdParams() if params is None else params
    notes: list[str] = [
        f"thresholding (RAPID-like): core rCBF < {params.core_rcbf:.0%} of the contralateral mean, "
        f"hypoperfused Tmax > {params.tmax_s:g} s; decision support only"
    ]
    missing = [name for name in ("cbf", "tmax") if name not in images]
    if missing:
        raise InputError(f"the threshold method needs {' and '.join(missing)}: give the scalar map(s)")
    grid = _check_grid(images, ("cbf", "tmax"))
    cbf = _scalar_map("cbf", images["cbf"], notes)
    tmax = _scalar_map("tmax", images["tmax"], notes)
    mask = _brain_mask(mip, given_mask, images, spacing, grid, notes)
    if mask is None:
        raise InputError("the threshold method needs the MIP for the brain mask: give mip (HU)")
    checked = time.perf_counter()
    labels = threshold_segmentation(cbf, tmax, mask, spacing, params).astype(np.uint8)
    end = time.perf_counter()
    timings = {"checks_s": checked - start, "threshold_s": end - checked, "total_s": end - start}
    return Prediction(labels, None, "cpu", notes, timings)


# --- network method -----------------------------------------------------------------------


def _predict_network(
    images, spacing, bundle, nihss, mip, given_mask, premade_mask, device, progress, cancel, memory_budget_mb,
    precision, start, waited,
) -> Prediction:
    config = bundle.config
    notes: list[str] = []
    readable = set(config.inputs) | {"mip"}
    missing = [name for name in config.inputs if name not in images]
    if missing:
        raise InputError(
            f"missing input map(s) {', '.join(missing)}: this model reads {', '.join(config.inputs)}"
        )
    extra = sorted(set(images) - readable)
    if extra:
        raise InputError(
            f"input map(s) {', '.join(extra)} not read by this model ({', '.join(config.inputs)}): leave them out"
        )
    grid = _check_grid(images, [*config.inputs, *(["mip"] if "mip" in images else [])])
    converted = [name for name in config.inputs
                 if is_colour_coded(np.asarray(images[name])) != (config.encoding == "rgb")]
    if converted and config.encoding == "rgb":
        notes.append(f"{', '.join(converted)} colour-coded with the product's colour table, "
                     "as this model reads colour-coded maps")
    elif converted:
        notes.append(f"{', '.join(converted)} decoded from colour to values for this scalar-input model "
                     "(quantised to 1/255 of each window)")
    nihss = _check_nihss(nihss, config.use_nihss, notes)
    if memory_budget_mb is None or not memory_budget_mb > 0:
        raise InputError(f"memory budget must be a positive number of MB, got {memory_budget_mb!r}")
    torch_device = _resolve_device(device)
    dtype = _autocast_dtype(precision, torch_device)
    if premade_mask is None:
        make_mask = _brain_mask_maker(mip, given_mask, images, spacing, grid, notes)
    else:
        notes.extend(premade_mask[0])
        make_mask = premade_mask[1]
    if make_mask is None:
        if config.num_classes == 3:
            raise InputError("this 3-class model needs the MIP for the brain mask: give mip (HU)")
        notes.append("no MIP given: no brain mask, the network alone decides background")

    resampler = SliceResampler(grid[1:], config.image_size, padding_values(config))
    if resampler.resamples:
        notes.append(
            f"network input resampled from {grid[2]}x{grid[1]} to {config.image_size}x{config.image_size} "
            "pixels per slice (padded to square, bilinear) and probabilities back to the input grid; "
            "your data and the labels' grid are unchanged"
        )
    chosen = f"precision {'fp32' if dtype is None else str(dtype).replace('torch.', '')} on {torch_device}"
    notes.append(chosen + (f" ({describe_bf16()})" if precision == "auto" and torch_device.type == "cpu" else ""))
    checks_end = time.perf_counter()

    batch = slices_per_batch(config, memory_budget_mb, dtype)
    log.info("%d slices in batches of %d on %s (%s)", grid[0], batch, torch_device, notes[-1])
    # On a GPU the host makes the brain mask while the network runs; on the CPU before it, on
    # every core (the network's threads would take them all).
    overlap = make_mask is not None and torch_device.type == "cuda"
    mask = None
    with ThreadPoolExecutor(max_workers=1) as background:
        if overlap:
            pending_mask = background.submit(make_mask)
        elif make_mask is not None:
            mask = make_mask()
            checks_end = time.perf_counter()
        labels, probabilities, encode_s = _run_network(
            bundle.model, {name: images[name] for name in config.inputs}, config, nihss, make_mask is not None,
            torch_device, dtype, resampler, batch, progress, cancel,
        )
        if overlap:
            mask = pending_mask.result()
    network_end = time.perf_counter()
    if mask is not None:
        labels[~mask] = BACKGROUND
    end = time.perf_counter()
    timings = {"checks_s": checks_end - start - (waited or 0.0), "encode_s": encode_s,
               "network_s": network_end - checks_end - encode_s, "postprocess_s": end - network_end,
               "total_s": end - start}
    if waited is not None:
        timings["wait_model_s"] = waited
    return Prediction(labels, probabilities, str(torch_device), notes, timings)


def _resolve_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise InputError(f"unknown device {device!r}: use auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("CUDA was requested but no CUDA GPU is available: use device 'cpu' or 'auto'")
    try:
        return torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}: use auto, cpu or cuda") from None


def _autocast_dtype(precision: str, device):
    """Autocast dtype for ``precision`` on ``device``; None means plain fp32."""
    import torch

    if precision not in PRECISIONS:
        raise InputError(f"unknown precision '{precision}': use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if native_bf16_flags() else None
    if precision == "fp16" and device.type == "cpu":
        raise InputError("fp16 runs on CUDA only: use precision bf16 or fp32 on the CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def slices_per_batch(config, memory_budget_mb: float, dtype=None) -> int:
    """Slices per network batch so that activations fit ``memory_budget_mb`` (MB), at least 1.

    ``dtype`` is the autocast dtype (None: fp32, 4 bytes per element; else 2 bytes).
    """
    from .batchsizing import activation_elements_per_slice

    element_bytes = 4 if dtype is None else 2
    per_slice = activation_elements_per_slice(config) * element_bytes
    return max(1, int(memory_budget_mb * 2**20 // per_slice))


def padding_values(config) -> np.ndarray:
    """What pads a slice to a square before resampling: the value of an empty (zero) map.

    Per branch the 0..1 value ``(n,)`` for the scalar encoding (resampled before it is
    normalised, :func:`network_input`), the encoded value ``(n, 3)`` for the rgb encoding.
    """
    zero = {name: np.zeros((1, 1, 1), np.float32) for name in config.inputs}
    if config.encoding == "scalar":
        return scalar_units(zero, config.inputs)[0, :, 0, 0]
    return encode_inputs(zero, config.inputs, config.encoding)[0, :, :, 0, 0]


def network_input(images: Mapping[str, np.ndarray], config, resampler: SliceResampler, device):
    """Network input ``(B, n, 3, S, S)`` float32 on ``device`` from ``B`` slices of the maps.

    The scalar encoding resamples its ``n`` 0..1 maps to the model's size and normalises them
    onto 3 channels there (a third of the resampling, and normalising at 128 px rather than
    512 px); the rgb encoding looks its normalised colours up on the input grid (on a GPU, by
    the GPU), then resamples. Training uses it too, so the network sees at training what it
    sees at inference.
    """
    if config.encoding == "scalar":
        units = resampler.to_network(to_device(scalar_units(images, config.inputs), device))
        return normalise_units(units, units.new_empty(*units.shape[:2], 3, *units.shape[2:]))
    return resampler.to_network(encode_colours(images, config.inputs, device))


class SliceResampler:
    """Pads slices to a square (centred) and resizes them to the network's size, and back.

    Parameters
    ----------
    shape_yx : (int, int)
        In-plane shape of the input slices.
    size : int
        The network's square image size ``S``.
    pad_values : ndarray
        Value of an empty map for every channel between the batch and the in-plane axes, e.g.
        ``(n,)`` or ``(n, 3)`` (:func:`padding_values`).
    """

    def __init__(self, shape_yx: tuple[int, int], size: int, pad_values: np.ndarray):
        self.shape = shape_yx
        self.size = size
        self.side = max(shape_yx)
        self.offset = ((self.side - shape_yx[0]) // 2, (self.side - shape_yx[1]) // 2)
        self.pad_values = pad_values
        self.resamples = shape_yx != (size, size)

    def to_network(self, x):
        """``(B, ..., y, x)`` -> ``(B, ..., S, S)``, the middle axes shaped as ``pad_values``."""
        import torch.nn.functional as F

        if not self.resamples:
            return x
        b, channels = x.shape[0], x.shape[1:-2]
        if self.shape[0] != self.shape[1]:
            square = x.new_empty(b, *channels, self.side, self.side)
            square[:] = x.new_tensor(self.pad_values)[..., None, None]
            (oy, ox), (ny, nx) = self.offset, self.shape
            square[..., oy : oy + ny, ox : ox + nx] = x
            x = square
        x = x.reshape(b, -1, self.side, self.side)
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=self.side > self.size)
        return x.reshape(b, *channels, self.size, self.size)

    def to_input(self, p):
        """Probabilities ``(B, C, S, S)`` -> ``(B, C, y, x)``."""
        import torch.nn.functional as F

        if not self.resamples:
            return p
        p = F.interpolate(p, size=(self.side, self.side), mode="bilinear", align_corners=False,
                          antialias=self.size > self.side)
        (oy, ox), (ny, nx) = self.offset, self.shape
        return p[..., oy : oy + ny, ox : ox + nx]


def _run_network(model, images, config, nihss, masked, device, dtype, resampler, batch, progress, cancel):
    """Run the network over the slices in batches.

    Each batch is encoded on the CPU while the accelerator still works on the previous one
    (results are collected one batch late), so encoding hides behind GPU compute. On the CPU the
    probabilities are brought back to the grid straight into the returned arrays.

    Returns
    -------
    labels : (z, y, x) uint8
        Most probable class per voxel (among brain/penumbra/core when ``masked``), before the
        brain mask is applied.
    probabilities : (z, C, y, x) float32
    encode_s : float
        Seconds spent encoding and resampling the input.
    """
    import torch

    from .networks import to_channels_last

    to_channels_last(model.eval().to(device))
    total = next(iter(images.values())).shape[0]
    labels = np.empty((total, *resampler.shape), np.uint8)
    probabilities = np.empty((total, config.num_classes, *resampler.shape), np.float32)
    on_host = device.type == "cpu"
    encode_s = 0.0

    def outputs(first, count):
        """Where a batch's labels and probabilities go: the result itself on the CPU."""
        if on_host:
            return torch.from_numpy(labels[first : first + count]), torch.from_numpy(probabilities[first : first + count])
        return (torch.empty((count, *resampler.shape), dtype=torch.uint8, device=device),
                torch.empty((count, config.num_classes, *resampler.shape), device=device))

    def collect(first, batch_outputs):
        count = len(batch_outputs[0])
        if not on_host:  # straight into the result's memory, no intermediate host tensor
            torch.from_numpy(labels[first : first + count]).copy_(batch_outputs[0])
            torch.from_numpy(probabilities[first : first + count]).copy_(batch_outputs[1])
        if progress is not None:
            progress(first + count, total)

    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        # no_grad, not inference_mode: under inference_mode autocast re-casts every weight in every
        # forward; under no_grad it casts each once per call (its cache), identical results.
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                      enabled=dtype is not None):
            pending = None
            for first in range(0, total, batch):
                if cancel is not None and cancel():
                    raise CancelledError("segmentation cancelled")
                tic = time.perf_counter()
                chunk = {name: values[first : first + batch] for name, values in images.items()}
                x = network_input(chunk, config, resampler, device)
                encode_s += time.perf_counter() - tic
                scores = None if nihss is None else torch.full((x.shape[0],), nihss, device=device)
                p = torch.softmax(model(x, scores).float(), dim=1)
                launched = (first, outputs(first, len(p)))
                to_grid(p, resampler, masked, config.num_classes, *launched[1])
                if pending is not None:
                    collect(*pending)
                pending = launched
            collect(*pending)
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
    return labels, probabilities, encode_s


#: Bytes of input-grid probabilities made at a time by :func:`to_grid` (about one 512 x 512
#: slice of 4 classes): they are still in the CPU's cache when the labels are taken from them.
GRID_CHUNK_BYTES = 4 * 2**20


def to_grid(p, resampler: SliceResampler, masked: bool, num_classes: int, labels, probabilities) -> None:
    """Probabilities ``p`` (B, C, S, S) at the model's size -> ``probabilities`` (B, C, y, x) on
    the input grid and their ``labels`` (B, y, x) uint8 (:func:`_most_probable`), in place.

    A few slices at a time, so that the cost stays linear in voxels: resampling the whole batch
    first and taking the labels in a second pass over it went out of the cache at 512 px.
    """
    step = max(1, GRID_CHUNK_BYTES // (probabilities[0].numel() * probabilities.element_size()))
    for start in range(0, len(p), step):
        chunk = resampler.to_input(p[start : start + step])
        probabilities[start : start + step] = chunk
        labels[start : start + step] = _most_probable(chunk, masked, num_classes)


def _most_probable(probabilities, masked: bool, num_classes: int):
    """Label per pixel ``(B, y, x)`` uint8 from probabilities ``(B, C, y, x)`` (on their device).

    4-class models: classes are labels 0..3; with a brain mask the most probable of brain,
    penumbra and core (background is the mask's decision), without it the plain argmax.
    3-class models: classes are brain, penumbra, core (labels 1..3).
    """
    import torch

    # max().indices, not argmax(): the same first-maximum labels, several times faster over the
    # strided channel slice (argmax copies it first).
    if num_classes == 3:
        labels = BRAIN + probabilities.max(dim=1).indices
    elif masked:
        labels = BRAIN + probabilities[:, BRAIN:].max(dim=1).indices
    else:
        labels = probabilities.max(dim=1).indices
    return labels.to(torch.uint8)
