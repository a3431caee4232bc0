"""Resolved methods kept between runs of one front end (the Slicer panel's Apply).

Resolving a model reads its bundle, checks the weights' sha256 and builds the network: about
0.15 s for the default model, paid on every Apply without a cache. A :class:`MethodCache` keeps
each resolved method until the files of its bundle change (replaced, rewritten or touched)::

    methods = MethodCache()
    method = methods.resolve(None)      # the default model: loaded
    method = methods.resolve(None)      # the same Method, nothing read but two file stats
"""

from __future__ import annotations

import os
from pathlib import Path

from .pipeline import THRESHOLD, Method, resolve_method


class MethodCache:
    """:func:`~StrokePerfusionSegLib.pipeline.resolve_method`, remembered per spec.

    A model's :class:`Method` is reused while its bundle folder is the same and its
    ``model.json`` and ``weights.safetensors`` keep their inode, size and modification time;
    otherwise it is resolved again (and a bundle that became broken is refused as by
    ``resolve_method``). Errors are not remembered. Thresholding and specs that are already a
    Bundle or a Method are passed through.
    """

    def __init__(self) -> None:
        self._methods: dict[object, tuple[tuple, Method]] = {}

    def resolve(self, spec=None) -> Method:
        """The method named by ``spec`` (as in ``resolve_method``), loaded at most once per
        version of its bundle's files."""
        if not (spec is None or isinstance(spec, (str, os.PathLike))) or spec == THRESHOLD:
            return resolve_method(spec)
        from .registry import resolve_model

        folder = resolve_model(spec)
        stamp = _bundle_stamp(folder)
        known = self._methods.get(spec)
        if stamp is not None and known is not None and known[0] == stamp:
            return known[1]
        method = resolve_method(folder)
        if stamp is not None:
            self._methods[spec] = (stamp, method)
        return method


def _bundle_stamp(folder: Path) -> tuple | None:
    """What changes when a bundle's files change: folder, and per file inode, size and
    modification time (ns); None when a file cannot be read (the load then says why)."""
    from .bundleformat import MANIFEST_FILE, WEIGHTS_FILE

    try:
        stats = [os.stat(folder / name) for name in (MANIFEST_FILE, WEIGHTS_FILE)]
    except OSError:
        return None
    return (str(folder), *((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats))
