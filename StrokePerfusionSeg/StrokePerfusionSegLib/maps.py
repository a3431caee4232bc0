"""Parametric maps: names, units, display windows and the colour look-up table.

One place defines how each map is shown and colour-coded. The phantom writes colour-coded
copies with it, the network input encoding reads it, the reports draw with it.

The colour-coded copies imitate what vendor consoles export as secondary captures: the map is
clipped to its window, scaled to 0..255 and sent through :data:`PERFUSION_LUT`, a 256-entry
"rainbow" table interpolated linearly (in RGB) through :data:`LUT_CONTROL_POINTS`:
black at the bottom of the window, then dark blue, blue, cyan, green, yellow, red and white at
the top. The MIP is shown in grey levels (the same index repeated on R, G and B).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class MapSpec:
    """Display and unit facts of one parametric map."""

    name: str
    long_name: str
    unit: str
    window: tuple[float, float]  # (low, high) in ``unit``; values outside are clipped
    colour: bool  # True: PERFUSION_LUT; False: grey levels


MAP_SPECS = {
    spec.name: spec
    for spec in (
        MapSpec("cbf", "cerebral blood flow", "ml/100g/min", (0.0, 80.0), True),
        MapSpec("cbv", "cerebral blood volume", "ml/100g", (0.0, 6.0), True),
        MapSpec("mtt", "mean transit time", "s", (0.0, 16.0), True),
        MapSpec("ttp", "time to peak", "s", (0.0, 40.0), True),
        MapSpec("tmax", "time to maximum of the residue function", "s", (0.0, 12.0), True),
        MapSpec("mip", "maximum intensity projection over time", "HU", (0.0, 150.0), False),
    )
}
#: The maps every case folder holds, in a fixed order.
MAP_NAMES = tuple(MAP_SPECS)
#: The four maps the paper's network reads ("PMs").
PERFUSION_MAP_INPUTS = ("cbf", "cbv", "ttp", "tmax")

#: (position in 0..1, (R, G, B) in 0..255) control points of the colour table.
LUT_CONTROL_POINTS = (
    (0.00, (0, 0, 0)),
    (0.12, (0, 0, 140)),
    (0.28, (0, 60, 255)),
    (0.42, (0, 220, 255)),
    (0.56, (0, 200, 60)),
    (0.70, (255, 255, 0)),
    (0.86, (255, 40, 0)),
    (1.00, (255, 255, 255)),
)


def _build_lut(points) -> np.ndarray:
    positions = np.array([p for p, _ in points])
    colours = np.array([c for _, c in points], dtype=float)
    grid = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(grid, positions, colours[:, k]) for k in range(3)], axis=1)
    return np.round(lut).astype(np.uint8)


#: (256, 3) uint8 colour look-up table used for every colour-coded map.
PERFUSION_LUT = _build_lut(LUT_CONTROL_POINTS)
#: (256, 3) uint8 grey-level table used for the MIP.
GREY_LUT = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)


def map_spec(name: str) -> MapSpec:
    """The :class:`MapSpec` of ``name``; an :class:`InputError` listing known names otherwise."""
    try:
        return MAP_SPECS[name]
    except KeyError:
        raise InputError(
            f"unknown map '{name}': use one of {', '.join(MAP_NAMES)}"
        ) from None


def lut_for(name: str) -> np.ndarray:
    """The (256, 3) uint8 table that colour-codes map ``name``."""
    return PERFUSION_LUT if map_spec(name).colour else GREY_LUT


def window_to_index(values: np.ndarray, name: str) -> np.ndarray:
    """Clip ``values`` (in the map's unit) to its window and scale to uint8 indices 0..255."""
    low, high = map_spec(name).window
    scaled = (np.nan_to_num(np.asarray(values, dtype=np.float32), nan=low) - low) / (high - low)
    return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def encode_rgb(values: np.ndarray, name: str) -> np.ndarray:
    """Colour-code a scalar map as a vendor console would.

    Parameters
    ----------
    values : ndarray, any shape
        Map values in the map's unit (see :data:`MAP_SPECS`).
    name : str
        Map name (``cbf``, ``cbv``, ``mtt``, ``ttp``, ``tmax`` or ``mip``).

    Returns
    -------
    ndarray of uint8, shape ``values.shape + (3,)``
    """
    return lut_for(name)[window_to_index(values, name)]


def decode_rgb(rgb: np.ndarray, name: str) -> np.ndarray:
    """Recover map values from a colour-coded image (inverse of :func:`encode_rgb`).

    Each pixel takes the value of the nearest table colour (squared RGB distance), so slight
    compression noise is tolerated. Values outside the window were clipped when encoding and
    stay at the window's ends.

    Parameters
    ----------
    rgb : ndarray of uint8, shape ``(..., 3)``
    name : str

    Returns
    -------
    ndarray of float32, shape ``rgb.shape[:-1]``, in the map's unit.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise InputError(
            f"colour-coded '{name}' must have 3 colour components (RGB), got shape {rgb.shape}"
        )
    lut = lut_for(name).astype(np.int32)
    # Every uint8 colour is one of 2**24 codes; decode each distinct colour once.
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    unique_codes, inverse = np.unique(codes.ravel(), return_inverse=True)
    colours = np.stack(
        [(unique_codes >> 16) & 255, (unique_codes >> 8) & 255, unique_codes & 255], axis=1
    )
    distance = ((colours[:, None, :] - lut[None, :, :]) ** 2).sum(axis=2)
    index = distance.argmin(axis=1)
    low, high = map_spec(name).window
    values = low + index.astype(np.float32) / 255.0 * (high - low)
    return values[inverse].reshape(codes.shape).astype(np.float32)
