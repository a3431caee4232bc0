"""How parametric maps become network input: the one definition every model, trainer and bundle uses.

Two encodings exist; a model bundle records which one its model expects.

``"rgb"`` (paper faithful)
    Each map is the colour-coded image a vendor console exports: given directly as
    ``(z, y, x, 3)`` uint8, or made from a scalar map with :func:`colourcoding.encode_rgb` (the map's
    window and :data:`colourcoding.PERFUSION_LUT`; the MIP in grey levels).
``"scalar"``
    Each map is clipped to its window (:data:`mapspecs.MAP_SPECS`), scaled to 0..1 and repeated
    on the three channels a VGG-16 trunk reads. A colour-coded input is first decoded with
    :func:`colourcoding.decode_rgb`.

Both end in 0..1 per channel, then ImageNet mean/std normalisation (the statistics the
torchvision VGG-16 weights were trained with).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import colourcoding, mapspecs
from .errors import InputError

#: Encoding names a model may declare.
ENCODINGS = ("rgb", "scalar")
#: Per-channel (R, G, B) mean and standard deviation of ImageNet, for inputs in 0..1.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def is_colour_coded(image: np.ndarray) -> bool:
    """True for a colour-coded map ``(z, y, x, 3)``; False for a scalar map ``(z, y, x)``."""
    return np.ndim(image) == 4 and np.shape(image)[-1] == 3


def _check_map(name: str, image) -> np.ndarray:
    """Validate one map and return it as an array (InputError naming the map otherwise)."""
    mapspecs.map_spec(name)
    image = np.asarray(image)
    if is_colour_coded(image):
        if image.dtype != np.uint8:
            raise InputError(
                f"colour-coded map '{name}' has dtype {image.dtype}: give RGB as uint8 0..255 "
                "or give the scalar map (z, y, x) in its unit"
            )
        return image
    if image.ndim != 3:
        raise InputError(
            f"map '{name}' has shape {image.shape}: give a 3D scalar map (z, y, x) "
            "or a colour-coded map (z, y, x, 3); a single 2D slice needs a leading axis of 1"
        )
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise InputError(f"map '{name}' has dtype {image.dtype}: give real numbers in the map's unit")
    if not np.isfinite(image).all():
        bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        raise InputError(
            f"map '{name}' holds {bad} NaN/inf voxels: replace them (e.g. with 0) before segmenting"
        )
    return image


def _normalised_levels(table: np.ndarray) -> np.ndarray:
    """A ``(256, 3)`` uint8 colour table as ImageNet-normalised float32 channel values."""
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    return (table.astype(np.float32) / np.float32(255.0) - mean) / std


def _host_levels(name: str, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One map's colour levels and the ImageNet-normalised table they index: a colour-coded
    map's own channels ``(z, y, x, 3)`` and the identity table, or a scalar map's window levels
    ``(z, y, x)`` (:func:`colourcoding.window_to_index`) and its colour table ``(256, 3)``."""
    if is_colour_coded(image):
        return image, _normalised_levels(colourcoding.GREY_LUT)  # the identity table: level i -> i
    return colourcoding.window_to_index(image, name), _normalised_levels(colourcoding.lut_for(name))


def _look_up(levels, table, out) -> None:
    """Write the normalised colours of ``levels`` (a :func:`_host_levels` pair, as tensors on
    ``out``'s device) into ``out`` (z, 3, y, x): one table look-up per value and channel."""
    import torch

    index = levels.int()
    for channel in range(3):
        flat = (index[..., channel] if index.ndim == 4 else index).reshape(-1)
        out[:, channel] = torch.index_select(table[:, channel], 0, flat).view(out[:, channel].shape)


def to_device(array: np.ndarray, device):
    """``array`` as a tensor on ``device``; to a GPU through pinned memory without waiting, so
    the host prepares the next batch while the GPU still works on this one."""
    import torch

    tensor = torch.from_numpy(array)
    if torch.device(device).type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def _write_unit(name: str, image: np.ndarray, out: np.ndarray) -> None:
    """Write one map of the scalar encoding before normalisation into ``out`` (z, y, x) float32:
    its window scaled to 0..1."""
    out[...] = colourcoding.decode_rgb(image, name) if is_colour_coded(image) else image
    low, high = mapspecs.map_spec(name).window
    out -= np.float32(low)
    out /= np.float32(high - low)
    np.clip(out, 0.0, 1.0, out=out)


def _stacked_units(checked: Mapping[str, np.ndarray], inputs: Sequence[str]) -> np.ndarray:
    """``(z, n, y, x)`` unit maps of already checked maps."""
    z, y, x = checked[inputs[0]].shape[:3]
    units = np.empty((z, len(inputs), y, x), np.float32)
    for branch, name in enumerate(inputs):
        _write_unit(name, checked[name], units[:, branch])
    return units


def normalise_units(units, out):
    """ImageNet-normalise 0..1 maps onto the three channels a VGG-16 trunk reads.

    Parameters
    ----------
    units : (B, n, y, x) float32 ndarray or torch tensor
        Maps scaled to 0..1 (:func:`scalar_units`), possibly resampled since.
    out : (B, n, 3, y, x) float32, the same kind as ``units``
        Written in place and returned.

    Normalisation is per pixel and affine, so resampling the ``n`` unit maps and normalising
    afterwards equals normalising the ``3 n`` channels and resampling them (up to rounding),
    at a third of the resampling work.
    """
    for channel, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD)):
        out[:, :, channel] = (units - mean) / std
    return out


def _checked_maps(images: Mapping[str, np.ndarray], inputs: Sequence[str], encoding: str) -> dict:
    """The maps named in ``inputs``, validated, of one common (z, y, x) shape."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown input encoding '{encoding}': use one of {', '.join(ENCODINGS)}")
    if len(inputs) == 0:
        raise ValueError("no input maps requested: name at least one map (e.g. cbf,cbv,ttp,tmax)")
    missing = [name for name in inputs if name not in images]
    if missing:
        raise InputError(
            f"missing input map(s) {', '.join(missing)}: the model reads {', '.join(inputs)}; "
            f"given {', '.join(images) or 'none'}"
        )
    checked = {name: _check_map(name, images[name]) for name in inputs}
    shapes = {name: image.shape[:3] for name, image in checked.items()}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise InputError(f"input maps differ in shape (z, y, x): {listing}; resample them to one grid")
    return checked


def scalar_units(images: Mapping[str, np.ndarray], inputs: Sequence[str]) -> np.ndarray:
    """The scalar encoding before normalisation: each map's window scaled to 0..1.

    Parameters and errors as :func:`encode_inputs` (with ``encoding="scalar"``).

    Returns
    -------
    ndarray of float32, shape ``(z, len(inputs), y, x)``
        ``encode_inputs(images, inputs, "scalar")`` is :func:`normalise_units` of this.
    """
    checked = _checked_maps(images, inputs, "scalar")
    return _stacked_units(checked, inputs)


def encode_inputs(
    images: Mapping[str, np.ndarray], inputs: Sequence[str], encoding: str = "rgb"
) -> np.ndarray:
    """Stack the maps a model reads into its input tensor.

    Parameters
    ----------
    images : mapping of str to ndarray
        Map name -> scalar map ``(z, y, x)`` in its unit (any real dtype) or colour-coded map
        ``(z, y, x, 3)`` uint8. Maps not named in ``inputs`` are ignored (the MIP is often
        passed for the brain mask only).
    inputs : sequence of str
        Map names in branch order, e.g. ``("cbf", "cbv", "ttp", "tmax")``.
    encoding : {"rgb", "scalar"}
        See the module docstring.

    Returns
    -------
    ndarray of float32, shape ``(z, len(inputs), 3, y, x)``
        ImageNet-normalised input, one slice per row.

    Raises
    ------
    InputError
        Unknown map name, a missing map, maps of different ``(z, y, x)`` shapes, NaN/inf in a
        scalar map, a non-uint8 colour-coded map, or an array that is not 3D.
    ValueError
        Unknown encoding or no input named (the model configuration is checked before).
    """
    if encoding == "rgb":
        return encode_colours(images, inputs).numpy()
    checked = _checked_maps(images, inputs, encoding)
    units = _stacked_units(checked, inputs)
    return normalise_units(units, np.empty((*units.shape[:2], 3, *units.shape[2:]), np.float32))


def encode_colours(images: Mapping[str, np.ndarray], inputs: Sequence[str], device="cpu"):
    """The rgb encoding as a float32 tensor ``(z, len(inputs), 3, y, x)`` on ``device``.

    ``encode_inputs(images, inputs, "rgb")`` is this on the CPU; with a GPU the host sends one
    byte per voxel and channel and the GPU makes the colour look-ups. Parameters and errors as
    :func:`encode_inputs`.
    """
    import torch

    checked = _checked_maps(images, inputs, "rgb")
    z, y, x = next(iter(checked.values())).shape[:3]
    out = torch.empty((z, len(inputs), 3, y, x), dtype=torch.float32, device=device)
    # The host's part, one byte per voxel, for all maps at once (numpy releases the GIL); the
    # look-ups then run on the device, a GPU's without waiting for its earlier work.
    with ThreadPoolExecutor(max_workers=len(inputs)) as pool:
        host = list(pool.map(_host_levels, inputs, [checked[name] for name in inputs]))
    for branch, (levels, table) in enumerate(host):
        _look_up(to_device(levels, device), to_device(table, device), out[:, branch])
    return out


def encoding_manifest(inputs: Sequence[str], encoding: str) -> dict:
    """What a model bundle records about its input encoding (JSON-ready).

    Lists, per input in branch order, the unit, window and colour table (``"perfusion"`` for
    :data:`colourcoding.PERFUSION_LUT` with its control points, ``"grey"`` for the MIP), plus the
    normalisation, so a bundle stays interpretable without this code.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown input encoding '{encoding}': use one of {', '.join(ENCODINGS)}")
    per_input = []
    for name in inputs:
        spec = mapspecs.map_spec(name)
        per_input.append(
            {
                "name": name,
                "unit": spec.unit,
                "window": list(spec.window),
                "lut": "perfusion" if spec.colour and encoding == "rgb" else "grey",
            }
        )
    return {
        "encoding": encoding,
        "inputs": per_input,
        "lut_control_points": [[p, list(c)] for p, c in colourcoding.LUT_CONTROL_POINTS],
        "normalisation": {"scale": "0..1", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
    }
