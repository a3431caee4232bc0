"""Colour-coded maps: the colour table, value -> colour coding, and the one decoder back.

The colour-coded copies imitate what vendor consoles export as secondary captures: the map is
clipped to its window (:mod:`.mapspecs`), scaled to 0..255 and sent through
:data:`PERFUSION_LUT`, a 256-entry "rainbow" table interpolated linearly (in RGB) through
:data:`LUT_CONTROL_POINTS`: black at the bottom of the window, then dark blue, blue, cyan,
green, yellow, red and white at the top. The MIP is shown in grey levels.

Every colour-coded input, whatever its source (DICOM secondary capture, NIfTI/NRRD RGB file,
Slicer vector volume), is read back by :func:`decode_colour_map`, which masks overlays:

* **on-table** pixels have a colour within :data:`COLOUR_TOLERANCE` (Euclidean RGB distance)
  of an entry of the map's table (:func:`lut_for`); the rest
  (grey or coloured text, markers) are **off-table**;
* **overlays** are the connected groups of non-black pixels (8-connected, slice by slice) that
  lie entirely in the image's border band (:data:`BORDER_FRACTION` of the width/height on each
  side), where consoles put colour bars and text; the **head region** is, slice by slice, the
  convex hull of all other non-black pixels. Everything outside it is background and gets the
  window's low value, like the black surround of the map itself. Maps such as Tmax are black
  over much of the brain, so the hull (not connectivity) decides what is inside;
* off-table pixels inside the head region (text written over the head) take the value of the
  nearest on-table pixel of their slice. When more than :data:`MAX_OFF_TABLE_FRACTION` of the
  head region is off-table, the image was not made with this product's colour table and an
  :class:`~StrokePerfusionSegLib.errors.InputError` asks for quantitative (grayscale) maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .errors import InputError
from .mapspecs import map_spec

#: Largest RGB distance from a table colour still read as that colour (compression noise).
COLOUR_TOLERANCE = 24.0
#: Width of the image border band, as a fraction of the image size, where overlays live.
BORDER_FRACTION = 0.1
#: Largest share of off-table pixels in the head region before the table is called unknown.
MAX_OFF_TABLE_FRACTION = 0.05


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


@dataclass
class DecodedColourMap:
    """Values of a colour-coded map and what was masked to get them.

    Attributes
    ----------
    values : ndarray of float32, shape (z, y, x)
        Map values in the map's unit.
    head : ndarray of bool, shape (z, y, x)
        The head region; outside it values are the window's low end.
    overlay_outside : int
        Non-black pixels outside the head region (colour bar, text) that were discarded.
    off_table_inside : int
        Off-table pixels inside the head region that were filled from their neighbours.
    """

    values: np.ndarray
    head: np.ndarray
    overlay_outside: int
    off_table_inside: int


def _head_region(foreground: np.ndarray) -> np.ndarray:
    from skimage.morphology import convex_hull_image

    head = np.zeros_like(foreground)
    rows, columns = foreground.shape[1:]
    band_rows, band_columns = int(BORDER_FRACTION * rows), int(BORDER_FRACTION * columns)
    central = np.zeros((rows, columns), dtype=bool)
    central[band_rows : rows - band_rows, band_columns : columns - band_columns] = True
    for z, plane in enumerate(foreground):
        components, _ = ndimage.label(plane, structure=np.ones((3, 3), dtype=bool))
        kept = np.isin(components, np.unique(components[central & plane]))
        kept &= plane
        if kept.any():
            head[z] = convex_hull_image(kept)
    return head


def decode_colour_map(rgb: np.ndarray, name: str, *, source: str = "colour map") -> DecodedColourMap:
    """Decode a colour-coded map volume to values, masking colour bar and burned-in text.

    Parameters
    ----------
    rgb : ndarray of uint8, shape (z, y, x, 3)
    name : str
        Map name, which selects the colour table and the window (``mapspecs.MAP_SPECS``).
    source : str
        How error messages name the input (e.g. the series label).

    Returns
    -------
    DecodedColourMap
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise InputError(f"{source}: a colour-coded map must be (z, y, x, 3) RGB, got shape {rgb.shape}")
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    unique_codes, inverse = np.unique(codes.ravel(), return_inverse=True)
    colours = np.stack([(unique_codes >> 16) & 255, (unique_codes >> 8) & 255, unique_codes & 255], axis=1)
    table = lut_for(name).astype(np.int32)
    distance = np.sqrt(((colours[:, None, :] - table[None, :, :]) ** 2).sum(axis=2).min(axis=1))
    colour_values = decode_rgb(colours.astype(np.uint8), name)
    low = map_spec(name).window[0]
    values = colour_values[inverse].reshape(codes.shape)
    on_table = (distance <= COLOUR_TOLERANCE)[inverse].reshape(codes.shape)
    black = on_table & (values == low)
    head = _head_region(~black)
    off_inside = head & ~on_table
    if head.any() and off_inside.sum() > MAX_OFF_TABLE_FRACTION * head.sum():
        raise InputError(
            f"{source}: {100.0 * off_inside.sum() / head.sum():.0f} % of the head is drawn in colours "
            f"outside the {name.upper()} colour table this product knows: export quantitative "
            "(grayscale) maps instead, or name them with --map"
        )
    values = np.where(head, values, np.float32(low)).astype(np.float32)
    for z in np.flatnonzero(off_inside.any(axis=(1, 2))):
        _, (rows, cols) = ndimage.distance_transform_edt(off_inside[z], return_indices=True)
        values[z] = values[z][rows, cols]
    return DecodedColourMap(
        values=values,
        head=head,
        overlay_outside=int(np.count_nonzero(~black & ~head)),
        off_table_inside=int(off_inside.sum()),
    )


def decode_colour_input(rgb: np.ndarray, name: str, origin: str, notes: list[str]) -> np.ndarray:
    """Values of a colour-coded map ``(z, y, x, 3)`` uint8 in its unit; appends one note to ``notes``.

    Every front end (files, DICOM, Slicer volumes, the predictor) reads colour-coded maps through
    :func:`decode_colour_map`, and this is how they tell the user.
    """
    decoded = decode_colour_map(rgb, name, source=origin)
    spec = map_spec(name)
    note = (
        f"{name}: colour-coded ({origin}); decoded with the product's colour table, so values are "
        f"quantised to 1/255 of {spec.window[0]:g}..{spec.window[1]:g} {spec.unit}"
    )
    if decoded.overlay_outside or decoded.off_table_inside:
        note += (
            f"; masked {decoded.overlay_outside} overlay pixel(s) outside the head and filled "
            f"{decoded.off_table_inside} off-table pixel(s) inside it from their neighbours"
        )
    notes.append(note)
    return decoded.values
