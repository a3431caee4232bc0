"""Parametric maps: names, long names, units and display windows.

One place defines each map's unit and the window it is shown (and colour-coded) in; the
colour table itself and the coding between values and colours are in :mod:`.colourcoding`.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def map_spec(name: str) -> MapSpec:
    """The :class:`MapSpec` of ``name``; an :class:`InputError` listing known names otherwise."""
    try:
        return MAP_SPECS[name]
    except KeyError:
        raise InputError(
            f"unknown map '{name}': use one of {', '.join(MAP_NAMES)}"
        ) from None
