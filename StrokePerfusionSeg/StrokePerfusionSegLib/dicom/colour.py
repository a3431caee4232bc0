"""Read values back from colour-coded map images, with overlays masked.

Console exports burn a colour bar and text (patient banner, scale labels) into the map
images. This module decides, per pixel, what is map and what is overlay:

* **on-table** pixels have a colour within :data:`COLOUR_TOLERANCE` (Euclidean RGB distance)
  of an entry of the map's table (:func:`~StrokePerfusionSegLib.maps.lut_for`); the rest
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

from ..errors import InputError
from ..maps import decode_rgb, lut_for, map_spec

#: Largest RGB distance from a table colour still read as that colour (compression noise).
COLOUR_TOLERANCE = 24.0
#: Width of the image border band, as a fraction of the image size, where overlays live.
BORDER_FRACTION = 0.1
#: Largest share of off-table pixels in the head region before the table is called unknown.
MAX_OFF_TABLE_FRACTION = 0.05


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
        Map name, which selects the colour table and the window (``maps.MAP_SPECS``).
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
