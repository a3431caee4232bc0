"""File-system-safe names for runs and methods (run folders, bundle ids, report files)."""

from __future__ import annotations

import re


def folder_name(run_name: str) -> str:
    """A file-system-safe folder name for a run name like ``SFG(PMs,N) g=4/3``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_name).strip("_")
