"""Study ids: one check for every source of an id (folder or file name, case.json, CSV, option).

A study id names the study's folder and files under the output folder, so it must be one plain
folder name: an empty id, ``.``/``..``, a path separator or a leading dot (hidden, like the
staging folders) would write outside the study's folder, replace the output folder itself, or
hide the results. Unsafe ids are refused with the source and the fix, never silently altered,
since an altered id could collide with another study's.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import InputError

#: One folder name on every system: no separators, no characters Windows forbids, no control
#: characters, not hidden (a leading dot, like the staging folders), not ending in a space or
#: dot (Windows drops those), at most 128 characters.
_SAFE_ID = re.compile(r'[^./\\<>:"|?*\x00-\x1f\x7f\s]([^/\\<>:"|?*\x00-\x1f\x7f]{0,126}[^./\\<>:"|?*\x00-\x1f\x7f\s])?')


def check_study_id(value, *, source: str) -> str:
    """``value`` as a study id when it is one plain, visible folder name.

    Parameters
    ----------
    value : str
        The candidate id.
    source : str
        Where it came from, for the message (e.g. ``"case.json of P0001"``, ``"CSV row 3"``).

    Raises
    ------
    InputError
        Not a string, or not a safe folder name.
    """
    if not isinstance(value, str) or not _SAFE_ID.fullmatch(value.strip()):
        raise InputError(
            f"{source}: study id {value!r} is not a plain folder name: give one visible name "
            "(no '/', '\\', '..', leading '.', or any of <>:\"|?*)"
        )
    return value.strip()


def study_id_from_path(path: str | os.PathLike) -> str:
    """The id a folder or file gives a study: its resolved name without image suffixes.

    ``--case .`` is named after the current folder, ``cohort/P0001/`` after ``P0001`` and
    ``p7.nii.gz`` after ``p7``; a name that is no safe id (``.hidden.nii.gz``) is refused.
    """
    resolved = Path(path).resolve()
    name = resolved.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return check_study_id(name, source=f"the name of {resolved}")
