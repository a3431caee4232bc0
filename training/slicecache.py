"""Training slices read from disk on demand, so a cohort larger than memory can train.

A gzip NIfTI cannot be sliced without decompressing the whole file, so with ``streaming`` each
case's input maps and label are converted once into uncompressed ``.npy`` arrays in a slice
cache beside the training source (``<cohort>/.slice-cache/`` or, for a CSV case list,
``.slice-cache/`` in the CSV's folder; ``slice_cache_dir`` to choose)::

    <cache>/<key>/manifest.json    source folder, size and mtime of its files, shape, lesion slices, scheme
    <cache>/<key>/<map>.npy         float32 (z, y, x), one per input map
    <cache>/<key>/label.npy         uint8 (z, y, x)

``<key>`` is a digest of the case folder's absolute path and the input maps. A case is
converted (and checked, as the in-memory path does) once; later runs reuse it while its files
keep their size and modification time, and rebuild it otherwise. The folder can be deleted at
any time.

An item reads one axial slice through a memory map that is closed right after, so a process
holds only the slices it is working on plus a bounded least-recently-used cache of slices
(``cache_mb`` per process: every DataLoader worker has its own, and workers are restarted each
epoch, so across epochs it serves the main process; re-reads otherwise come from the operating
system's page cache, which the kernel frees under pressure). Under ``torchrun`` the ranks
convert disjoint shares of the cases, and each rank then reads only the items of its share of
every global batch (:func:`~strokeperfusionseg_training.data.epoch_plan`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from StrokePerfusionSegLib.atomic import staged_folder
from StrokePerfusionSegLib.casefolder import CASE_JSON, write_json
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.labelschemes import label_scheme

from .data import CaseRecord, TrainingCase, check_nihss_present, read_training_arrays, records_by_split

CACHE_FOLDER = ".slice-cache"
MANIFEST = "manifest.json"
#: Bumped when the cache layout changes; older caches are rebuilt.
CACHE_VERSION = 1


def default_cache_dir(source: str | os.PathLike) -> Path:
    """The slice cache beside a training source: inside a cohort folder, beside a CSV case list."""
    source = Path(source)
    return (source if source.is_dir() else source.parent) / CACHE_FOLDER


class SliceLRU:
    """A least-recently-used cache of slices holding at most ``max_bytes`` of arrays.

    Pickled (a DataLoader worker started by *spawn*) without its contents.
    """

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise InputError(f"cache_mb must be >= 0, got {max_bytes / 2**20:g}")
        self.max_bytes, self.bytes = int(max_bytes), 0
        self.entries: OrderedDict = OrderedDict()

    def get(self, key):
        value = self.entries.get(key)
        if value is not None:
            self.entries.move_to_end(key)
        return value

    def put(self, key, chunk: dict[str, np.ndarray], label: np.ndarray) -> None:
        size = label.nbytes + sum(a.nbytes for a in chunk.values())
        if size > self.max_bytes or key in self.entries:
            return
        for array in (label, *chunk.values()):
            array.flags.writeable = False  # shared by every later read: nobody may change it
        self.entries[key] = (chunk, label)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (old_chunk, old_label) = self.entries.popitem(last=False)
            self.bytes -= old_label.nbytes + sum(a.nbytes for a in old_chunk.values())

    def __getstate__(self):
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state):
        self.__init__(state["max_bytes"])


def _read_plane(path: Path, z: int) -> np.ndarray:
    """Plane ``z`` of a (z, y, x) ``.npy`` file as a (1, y, x) copy; the memory map is closed after."""
    mapped = np.load(path, mmap_mode="r")
    plane = np.array(mapped[z:z + 1])
    del mapped
    return plane


class DiskSlices:
    """One case's slices in the slice cache, read on demand (the interface of
    :class:`~strokeperfusionseg_training.data.ArraySlices`).

    Parameters
    ----------
    folder : Path
        The case's cache folder (``manifest.json``, ``<map>.npy``, ``label.npy``).
    manifest : dict
    lru : SliceLRU
        Shared by the cases of a dataset.
    """

    def __init__(self, folder: Path, manifest: dict, lru: SliceLRU):
        self.folder, self.manifest, self.lru = folder, manifest, lru

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.manifest["shape"])

    def lesion_slices(self) -> list[bool]:
        return list(self.manifest["lesion_slices"])

    def read(self, z: int, names) -> tuple[dict[str, np.ndarray], np.ndarray]:
        key = (str(self.folder), z, tuple(names))
        cached = self.lru.get(key)
        if cached is not None:
            return cached
        chunk = {n: _read_plane(self.folder / f"{n}.npy", z) for n in names}
        label = _read_plane(self.folder / "label.npy", z)[0]
        self.lru.put(key, chunk, label)
        return chunk, label


def _fingerprint(folder: Path, inputs: Sequence[str]) -> dict:
    """Size and modification time (ns) of the case files training reads."""
    found = {}
    for name in [*(f"{n}.nii.gz" for n in inputs), "label.nii.gz", CASE_JSON]:
        path = folder / name
        if path.is_file():
            stat = path.stat()
            found[name] = [stat.st_size, stat.st_mtime_ns]
    return found


def case_cache_folder(cache_dir: Path, record: CaseRecord, inputs: Sequence[str]) -> Path:
    key = json.dumps([str(record.folder.resolve()), list(inputs)])
    return Path(cache_dir) / hashlib.sha1(key.encode()).hexdigest()[:20]


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _is_current(manifest: dict | None, files: dict) -> bool:
    """Whether a cache manifest was written from case files with the fingerprint ``files``."""
    return manifest is not None and manifest.get("version") == CACHE_VERSION and manifest.get("files") == files


def cache_case(record: CaseRecord, inputs: Sequence[str], cache_dir: Path) -> Path:
    """Convert one case into the slice cache unless a current copy is there; its cache folder.

    The case is read and checked as in memory (:func:`~strokeperfusionseg_training.data.
    read_training_arrays`), written to a staging folder in ``cache_dir`` (which must exist) and
    renamed into place.
    """
    folder = case_cache_folder(cache_dir, record, inputs)
    files = _fingerprint(record.folder, inputs)
    if _is_current(_read_manifest(folder), files):
        return folder
    slices, scheme = read_training_arrays(record, inputs)
    with staged_folder(folder, overwrite=True) as staging:
        for name in inputs:
            np.save(staging / f"{name}.npy", np.ascontiguousarray(slices.images[name], dtype=np.float32))
        np.save(staging / "label.npy", np.ascontiguousarray(slices.label, dtype=np.uint8))
        write_json({"version": CACHE_VERSION, "case": record.case_id, "source": str(record.folder.resolve()),
                    "inputs": list(inputs), "files": files, "shape": list(slices.shape),
                    "lesion_slices": slices.lesion_slices(), "label_scheme": scheme.name}, staging / MANIFEST)
    return folder


def _all_gather(value, world_size: int) -> list:
    if world_size == 1:
        return [value]
    import torch.distributed as tdist

    gathered = [None] * world_size
    tdist.all_gather_object(gathered, value)
    return gathered


def load_streamed_cases(
    records: Sequence[CaseRecord],
    inputs: Sequence[str],
    cache_dir: str | os.PathLike,
    *,
    use_nihss: bool,
    splits: Sequence[str] = ("train", "val"),
    cache_mb: float = 256.0,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, list[TrainingCase]]:
    """The cases of ``splits`` read from the slice cache, converting what is missing first.

    Checks as :func:`~strokeperfusionseg_training.data.load_training_cases` (split, NIHSS, files,
    grid, label scheme), one case in memory at a time. Under ``torchrun`` (``world_size`` > 1)
    each rank converts every ``world_size``-th case from ``rank``; an error on any rank is
    raised on every rank.

    Returns
    -------
    dict of split name to list of TrainingCase
        Cases whose ``slices`` are :class:`DiskSlices` sharing one :class:`SliceLRU`.
    """
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the slice cache {cache_dir} ({error.strerror}); "
                         "give a writable folder with --set slice_cache_dir='\"DIR\"'") from None
    chosen = records_by_split(records, splits)
    ordered = [r for split in splits for r in chosen[split]]
    for record in ordered:
        check_nihss_present(record, use_nihss=use_nihss)
    error = None
    try:
        for record in ordered[rank::world_size]:
            cache_case(record, inputs, cache_dir)
    except InputError as raised:
        error = str(raised)
    errors = [e for e in _all_gather(error, world_size) if e is not None]
    if errors:
        raise InputError(errors[0])
    lru = SliceLRU(int(cache_mb * 2**20))

    def opened(record: CaseRecord) -> TrainingCase:
        folder = case_cache_folder(cache_dir, record, inputs)
        manifest = _read_manifest(folder)
        if not _is_current(manifest, _fingerprint(record.folder, inputs)):
            raise InputError(f"case {record.case_id} changed on disk while training started; start the run again")
        return TrainingCase(record, DiskSlices(folder, manifest, lru), label_scheme(manifest["label_scheme"]))

    return {split: [opened(r) for r in chosen[split]] for split in splits}
