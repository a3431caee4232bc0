"""The NIH Stroke Scale score: one check for every way it enters (CLI, CSV, case.json, panel)."""

from __future__ import annotations

import math

from .errors import InputError

#: Lowest and highest NIHSS score.
NIHSS_RANGE = (0, 42)


def check_nihss(value, *, what: str = "NIHSS") -> int | None:
    """The score as an int in 0..42; None when absent (None or an empty string).

    Parameters
    ----------
    value : int, float or str or None
        A whole number; ``14``, ``14.0`` and ``"14"`` are accepted.
    what : str
        How the message names the value, e.g. ``"case P0001: NIHSS"``.

    Raises
    ------
    InputError
        Not a whole number, or outside 0..42.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):  # JSON true/false: Python would read them as 1/0
        raise InputError(f"{what} {value!r} is not a whole number: give the admission score 0..42")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} {value!r} is not a whole number: give the admission score 0..42") from None
    low, high = NIHSS_RANGE
    if not (math.isfinite(number) and number == int(number) and low <= number <= high):
        raise InputError(f"{what} {value!r} is outside 0..42 or not whole: give the admission score 0..42")
    return int(number)
