"""Recognise which DICOM series holds which parametric map, or the raw 4D CTP.

Automatic recognition reads ``SeriesDescription`` with the names consoles commonly use
(:data:`MAP_PATTERNS`: "CBF", "rCBF", "Blood Flow", "Tmax", "TMAX", "T-max", "Time to Peak",
"MIP", ...). The 4D CTP is recognised by its structure (several images per slice position),
not by its name. The user can name any series explicitly, by SeriesInstanceUID or by its
exact description, which always wins: ``{"cbf": "1.2.3...", "tmax": "Tmax color"}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import InputError
from ..mapspecs import MAP_NAMES
from .scan import ScanResult, Series
from .volume import check_one_acquisition, is_colour

#: The key a manual mapping uses for the raw CTP series.
CTP = "ctp"

#: Map name -> regular expression on the normalised description (lower case, words split by
#: single spaces). Order matters only for reading; a description matching two maps is ambiguous.
MAP_PATTERNS = {
    "cbf": r"\br?cbf\b|\bblood flow\b",
    "cbv": r"\br?cbv\b|\bblood volume\b",
    "mtt": r"\bmtt\b|\bmean transit\b",
    "ttp": r"\bttp\b|\btime to peak\b",
    "tmax": r"\bt ?max\b|\btime to max(imum)?\b",
    "mip": r"\bt?mip\b|\bmax(imum)? intensity\b|\bmax ip\b",
}


def normalise_description(description: str) -> str:
    """Lower case, every run of non-alphanumerics replaced by one space."""
    return " ".join(re.split(r"[^0-9a-z]+", description.lower())).strip()


def maps_named_by(description: str) -> list[str]:
    """Map names whose pattern matches ``description`` (empty, one, or several if ambiguous)."""
    text = normalise_description(description)
    return [name for name, pattern in MAP_PATTERNS.items() if re.search(pattern, text)]


def is_time_series(series: Series) -> bool:
    """True when the series has several images per slice position taken at different times.

    Copies of one image (same SOPInstanceUID, or same position and time) do not make a time
    series: such a series is read as a 3D series, whose checks report the duplicates.
    """
    headers = series.headers
    positions = {tuple(round(float(v), 2) for v in h.get("ImagePositionPatient", ())) for h in headers}
    if not len(headers) > len(positions) > 0:
        return False
    moments = {
        (tuple(round(float(v), 2) for v in h.get("ImagePositionPatient", ())),
         str(h.get("TemporalPositionIdentifier", "")), str(h.get("AcquisitionTime", h.get("ContentTime", ""))))
        for h in headers
    }
    instances = {str(h.get("SOPInstanceUID", "")) for h in headers}
    return len(moments) == len(instances) == len(headers)


@dataclass
class Recognition:
    """What each series of a study folder was taken to be."""

    maps: dict[str, Series] = field(default_factory=dict)
    ctp: Series | None = None
    unrecognised: list[Series] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def missing_map_error(self, name: str, scan: ScanResult) -> InputError:
        """The error for a required map that no series provides, listing what was found."""
        others = self.unrecognised or scan.series
        listed = "; ".join(s.label for s in others) or "none"
        return InputError(
            f"no series recognised as {name.upper()} in {scan.folder} (series without a known map "
            f"name: {listed}); name it with --map {name}=<SeriesInstanceUID or series description>"
        )


def _match_manual(value: str, scan: ScanResult, key: str) -> Series:
    by_uid = [s for s in scan.series if s.uid == value]
    if by_uid:
        return by_uid[0]
    by_description = [s for s in scan.series if s.description.lower() == value.strip().lower()]
    if len(by_description) == 1:
        return by_description[0]
    if len(by_description) > 1:
        raise InputError(
            f"--map {key}={value} matches {len(by_description)} series with that description: "
            "give the SeriesInstanceUID instead (" + "; ".join(s.label for s in by_description) + ")"
        )
    raise InputError(f"--map {key}={value} matches no series in {scan.folder}; series found: {scan.describe_series()}")


def recognise_series(scan: ScanResult, manual: Mapping[str, str] | None = None) -> Recognition:
    """Assign series to map names and find the 4D CTP.

    Parameters
    ----------
    scan : ScanResult
    manual : mapping of str to str, optional
        Map name (or ``"ctp"``) -> SeriesInstanceUID or exact series description.

    Returns
    -------
    Recognition
        When two series carry the same map name, the quantitative (grayscale) one is taken and
        a note says so; two of the same kind is an :class:`InputError` asking for ``--map``.

    Raises
    ------
    InputError
        Also when the recognised series belong to different patients or studies, or the map
        series to different frames of reference (see :func:`check_one_acquisition`).
    """
    recognition = Recognition()
    taken: set[str] = set()
    for key, value in (manual or {}).items():
        key = key.strip().lower()
        if key not in MAP_NAMES and key != CTP:
            raise InputError(f"--map {key}=...: unknown map name; use one of {', '.join(MAP_NAMES)}, {CTP}")
        series = _match_manual(value, scan, key)
        if key == CTP:
            recognition.ctp = series
        else:
            recognition.maps[key] = series
        taken.add(series.uid)
    candidates: dict[str, list[Series]] = {}
    for series in scan.series:
        if series.uid in taken:
            continue
        names = maps_named_by(series.description)
        if not names and is_time_series(series):
            if recognition.ctp is None:
                recognition.ctp = series
                continue
            recognition.notes.append(f"ignored a second time series: {series.label}")
            continue
        if len(names) == 1 and names[0] not in recognition.maps:
            candidates.setdefault(names[0], []).append(series)
        else:
            recognition.unrecognised.append(series)
    for name, found in candidates.items():
        if len(found) > 1:
            grayscale = [s for s in found if not is_colour(s.headers[0])]
            if len(grayscale) != 1:
                raise InputError(
                    f"{len(found)} series look like {name.upper()} ("
                    + "; ".join(s.label for s in found)
                    + f"): choose one with --map {name}=<SeriesInstanceUID>"
                )
            recognition.notes.append(f"{name}: took the quantitative series over its colour-coded copy")
            found = grayscale
        recognition.maps[name] = found[0]
    # The maps are combined voxel by voxel; the CTP stands in for them when they are missing.
    check_one_acquisition(list(recognition.maps.values()), combined=True)
    check_one_acquisition([*recognition.maps.values(), *([recognition.ctp] if recognition.ctp else [])], combined=False)
    return recognition
