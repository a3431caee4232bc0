"""Read recognised DICOM series as map values in the product's units, or as a 4D CTP."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..imageio import Geometry, check_frame_interval
from ..mapspecs import map_spec
from ..colourcoding import decode_colour_input
from .scan import Series
from .volume import is_colour, read_volume, stack_series, stored_unit

#: Declared unit spellings accepted per product unit, with the factor to the product unit.
UNIT_SPELLINGS = {
    "ml/100g/min": {"ml/100g/min": 1.0, "ml/min/100g": 1.0},
    "ml/100g": {"ml/100g": 1.0},
    "s": {"s": 1.0, "sec": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3},
    "HU": {"hu": 1.0},
}


@dataclass
class SeriesVolume:
    """A 3D map (or 4D CTP) read from one series, with the headers of its slices.

    Attributes
    ----------
    values : ndarray of float32, (z, y, x) map in the map's unit, or (t, z, y, x) CTP in HU
    geometry : Geometry
    slice_headers : list of pydicom.Dataset
        The headers of the (first time point's) slices in z order, for references.
    kind : str
        ``"quantitative"``, ``"colour"`` or ``"ctp"``.
    dt_s : float or None
        Frame interval (CTP only).
    notes : list of str
    """

    values: np.ndarray
    geometry: Geometry
    slice_headers: list
    kind: str
    dt_s: float | None = None
    notes: list[str] = field(default_factory=list)


def _unit_factor(declared: str | None, name: str, series: Series) -> tuple[float, list[str]]:
    unit = map_spec(name).unit
    if declared is None:
        return 1.0, [f"{name}: {series.label} declares no unit; read as {unit}"]
    factors = UNIT_SPELLINGS[unit]
    factor = factors.get(declared.lower().replace(" ", ""))
    if factor is None:
        raise InputError(
            f"{series.label} holds {name.upper()} in '{declared}', not {unit}: export absolute "
            f"values in {unit} (relative maps such as rCBF in % cannot be used)"
        )
    notes = [] if factor == 1.0 else [f"{name}: converted from {declared} to {unit}"]
    return factor, notes


def read_map_series(series: Series, name: str) -> SeriesVolume:
    """Read a 3D map series: quantitative values, or a decoded colour-coded image.

    Parameters
    ----------
    series : Series
    name : str
        The map the series holds (``cbf``, ``cbv``, ``mtt``, ``ttp``, ``tmax``, ``mip``).
    """
    stack = stack_series(series)
    if stack.is_temporal:
        raise InputError(f"{series.label} is a time series, not a {name.upper()} map: name the map series with --map")
    headers = stack.headers[0]
    pixels = read_volume(headers)
    if is_colour(headers[0]):
        notes: list[str] = []
        values = decode_colour_input(pixels, name, series.label, notes)
        return SeriesVolume(values, stack.geometry, headers, "colour", notes=notes)
    factor, notes = _unit_factor(stored_unit(headers[0]), name, series)
    return SeriesVolume((pixels * np.float32(factor)).astype(np.float32), stack.geometry, headers, "quantitative", notes=notes)


def read_ctp_series(series: Series) -> SeriesVolume:
    """Read a 4D CTP series as (t, z, y, x) HU with its frame interval in s."""
    stack = stack_series(series)
    if not stack.is_temporal:
        raise InputError(f"{series.label} has one image per slice position, so it is not a 4D CTP series")
    if is_colour(stack.headers[0][0]):
        raise InputError(f"{series.label} is a colour image series, not a raw CTP in HU")
    ctp = np.stack([read_volume(frame) for frame in stack.headers])
    dt_s = check_frame_interval(
        float(np.median(np.diff(stack.times_s))), source=series.label,
        fix="check the series' AcquisitionTime/ContentTime (or export the CTP as NIfTI and give --dt)",
    )
    return SeriesVolume(ctp, stack.geometry, stack.headers[0], "ctp", dt_s=dt_s)
