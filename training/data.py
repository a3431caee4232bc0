"""Training data: case lists, patient-level splits, 2D slice datasets and augmentation.

A training source is either a cohort folder (``cohort.json`` beside case folders, as written by
``strokeperfusionseg phantom``) or a CSV file listing case folders with the columns
``case`` (folder, relative to the CSV), ``nihss``, ``group`` and optionally ``split``.

Every case is checked before any training starts (:func:`load_training_cases`): files present,
one grid per case, labels in 0..3 and defined by the case's label scheme
(:mod:`StrokePerfusionSegLib.labelschemes`, named in ``case.json``), NIHSS present when the
model reads it, no empty split. Cases of public datasets whose group is not known carry the
group ``unknown``.

The network sees 2D axial slices. A case's slices come from a slice source: :class:`ArraySlices`
holds its maps in memory; :class:`~strokeperfusionseg_training.slicecache.DiskSlices` reads them
from disk on demand (``streaming``, for cohorts larger than memory). :class:`SliceDataset`
encodes one slice per item with the predictor's
:func:`StrokePerfusionSegLib.predictor.network_input`, so the same encoding and resampling
serve training and prediction. Items are addressed by ``(slice_index,
augmentation_seed)`` keys that the trainer plans per epoch (:func:`epoch_plan`): augmentation
and shuffling then depend only on the run seed and the epoch, not on worker or process count,
which keeps runs reproducible, resumable and identical under data-parallel training.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from StrokePerfusionSegLib import casefolder, labels
from StrokePerfusionSegLib.atomic import write_csv_atomically
from StrokePerfusionSegLib.casefolder import GROUPS, SPLITS, UNKNOWN_GROUP
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.labelschemes import LabelScheme, label_scheme
from StrokePerfusionSegLib.nihss import check_nihss

#: Default patient-level split fractions (train, val, test) of the paper: 89/30/33 of 152.
DEFAULT_SPLIT_FRACTIONS = (0.58, 0.20, 0.22)


@dataclass(frozen=True)
class CaseRecord:
    """One patient of a training source: where it lives and how it is used."""

    case_id: str
    folder: Path
    group: str
    nihss: int | None = None
    split: str | None = None


#: Groups a training case may have: the paper's, or unknown (public datasets).
TRAINING_GROUPS = (*GROUPS, UNKNOWN_GROUP)


def _check_group(case_id: str, group) -> str:
    if group not in TRAINING_GROUPS:
        raise InputError(
            f"case {case_id}: group '{group}' is not one of {', '.join(TRAINING_GROUPS)}; fix the group column"
        )
    return group


def records_from_cohort(root: str | os.PathLike) -> list[CaseRecord]:
    """Case records of a cohort folder (its ``cohort.json``)."""
    cohort = casefolder.load_cohort(root)
    return [
        CaseRecord(
            case_id=str(entry["id"]),
            folder=cohort.case_folder(str(entry["id"])),
            group=_check_group(entry["id"], entry.get("group")),
            nihss=check_nihss(entry.get("nihss"), what=f"case {entry['id']}: NIHSS"),
            split=entry.get("split"),
        )
        for entry in cohort.cases
    ]


def records_from_csv(path: str | os.PathLike) -> list[CaseRecord]:
    """Case records of a CSV list with columns ``case``, ``nihss``, ``group`` [, ``split``].

    ``case`` is a case folder, absolute or relative to the CSV file's folder; as written, it is
    also the case's id (so ``part-0/P0001`` and ``part-1/P0001`` stay apart).
    """
    path = Path(path)
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        missing = {"case", "group"} - set(reader.fieldnames or ())
        if missing:
            raise InputError(
                f"{path}: missing column(s) {', '.join(sorted(missing))}; "
                "the header must be case,nihss,group[,split]"
            )
        records = []
        for row in reader:
            case_id = row["case"].strip()
            folder = Path(case_id)
            folder = folder if folder.is_absolute() else path.parent / folder
            split = (row.get("split") or "").strip() or None
            if split is not None and split not in SPLITS:
                raise InputError(f"case {case_id}: split '{split}' is not one of {', '.join(SPLITS)}")
            records.append(
                CaseRecord(case_id, folder, _check_group(case_id, row["group"].strip()),
                           check_nihss(row.get("nihss"), what=f"case {case_id}: NIHSS"), split)
            )
    if not records:
        raise InputError(f"{path} lists no case; add one row per case folder")
    return records


def load_records(source: str | os.PathLike) -> list[CaseRecord]:
    """Case records of a cohort folder or a CSV case list."""
    source = Path(source)
    if source.is_dir():
        return records_from_cohort(source)
    if source.suffix.lower() == ".csv" and source.is_file():
        return records_from_csv(source)
    raise InputError(f"{source} is neither a cohort folder (with cohort.json) nor a CSV case list")


def write_case_list(cohorts: Sequence[str | os.PathLike], path: str | os.PathLike, *,
                    split_seed: int | None = None) -> Path:
    """Write a CSV case list joining cohort folders (their cases, groups, NIHSS and splits).

    Case folders are written relative to the CSV's folder when they lie below it. With
    ``split_seed`` the joined cases are re-split (:func:`stratified_split`) instead of keeping
    each cohort's own split.
    """
    path = Path(path)
    records = [record for root in cohorts for record in records_from_cohort(root)]
    if split_seed is not None:
        records = stratified_split(records, seed=split_seed)
    rows = []
    for record in records:
        folder = record.folder.resolve()
        try:
            folder = folder.relative_to(path.parent.resolve())
        except ValueError:
            pass
        rows.append({"case": folder.as_posix(), "nihss": "" if record.nihss is None else record.nihss,
                     "group": record.group, "split": record.split or ""})
    if not rows:
        raise InputError("the cohorts hold no case; generate or give cohort folders with cases")
    return write_csv_atomically(path, rows, ("case", "nihss", "group", "split"))


def stratified_split(
    records: Sequence[CaseRecord],
    fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    seed: int = 0,
) -> list[CaseRecord]:
    """Assign train/val/test by patient, stratified by group.

    Within each group the patients are shuffled with ``seed`` and cut at the cumulative
    ``fractions`` (rounded), so every group is spread over the splits in the same proportions.

    Returns
    -------
    list of CaseRecord
        The records in their input order with ``split`` set.
    """
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise InputError(f"split fractions {tuple(fractions)} must be three non-negative numbers summing to 1")
    rng = np.random.default_rng(seed)
    split_of = {}  # keyed by folder: case ids repeat across the parts of a joined cohort
    for group in TRAINING_GROUPS:
        members = sorted(r.folder for r in records if r.group == group)
        order = [members[i] for i in rng.permutation(len(members))]
        cuts = np.round(np.cumsum(fractions) * len(order)).astype(int)
        for position, folder in enumerate(order):
            split_of[folder] = SPLITS[int(np.searchsorted(cuts, position, side="right"))]
    return [replace(r, split=split_of[r.folder]) for r in records]


class ArraySlices:
    """A case's input maps and label held in memory.

    Parameters
    ----------
    images : dict of str to ndarray
        Map name -> (z, y, x) float32 in the map's unit.
    label : ndarray
        (z, y, x) uint8, 0..3.
    """

    def __init__(self, images: dict[str, np.ndarray], label: np.ndarray):
        self.images, self.label = images, label

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.label.shape)

    def lesion_slices(self) -> list[bool]:
        """Per axial slice: does it hold penumbra or core?"""
        return [slice_has_lesion(plane) for plane in self.label]

    def read(self, z: int, names) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Slice ``z``: ``{name: (1, y, x) float32}`` of ``names`` and the (y, x) label."""
        return {n: self.images[n][z:z + 1] for n in names}, self.label[z]


@dataclass
class TrainingCase:
    """One patient ready for training: where its slices come from and what its label values mean.

    ``slices`` is an :class:`ArraySlices` (in memory) or a
    :class:`~strokeperfusionseg_training.slicecache.DiskSlices` (read on demand).
    """

    record: CaseRecord
    slices: object
    scheme: LabelScheme = label_scheme(None)


def check_nihss_present(record: CaseRecord, *, use_nihss: bool) -> None:
    """:class:`InputError` when the model reads the NIHSS and the case has none."""
    if use_nihss and record.nihss is None:
        raise InputError(
            f"case {record.case_id}: NIHSS is missing but the model reads it; "
            "add it to case.json/cohort.json/the CSV or train without NIHSS"
        )


def read_training_arrays(record: CaseRecord, inputs: Sequence[str]) -> tuple[ArraySlices, LabelScheme]:
    """Read and check one case's input maps and label; :class:`InputError` naming the case and the fix."""
    case = casefolder.load_case(record.folder, maps=tuple(inputs), with_label=True)
    if case.label is None:
        raise InputError(
            f"case {record.case_id}: no label.nii.gz in {record.folder}; training needs the ground truth"
        )
    shapes = {name: array.shape for name, array in case.maps.items()} | {"label": case.label.shape}
    if len(set(shapes.values())) != 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise InputError(f"case {record.case_id}: maps and label differ in shape ({listed}); resample them onto one grid")
    scheme = label_scheme(case.meta.get("label_scheme"))
    if not scheme.has_lesion_labels:
        raise InputError(
            f"case {record.case_id}: its label scheme '{scheme.name}' marks no lesion ({scheme.description}); "
            "leave it out of training"
        )
    scheme.check_values(case.label, f"case {record.case_id}")
    return ArraySlices(dict(case.maps), case.label), scheme


def load_training_case(record: CaseRecord, inputs: Sequence[str], *, use_nihss: bool) -> TrainingCase:
    """Read and check one case into memory; :class:`InputError` naming the case and the fix otherwise."""
    check_nihss_present(record, use_nihss=use_nihss)
    slices, scheme = read_training_arrays(record, inputs)
    return TrainingCase(record, slices, scheme)


def records_by_split(records: Sequence[CaseRecord], splits: Sequence[str]) -> dict[str, list[CaseRecord]]:
    """The records of each of ``splits``; :class:`InputError` when a case has no split or a split is empty."""
    missing_split = [r.case_id for r in records if r.split is None]
    if missing_split:
        raise InputError(
            f"case {missing_split[0]} has no split; give every case one or let the trainer split (--set resplit=true)"
        )
    chosen = {split: [r for r in records if r.split == split] for split in splits}
    for split, members in chosen.items():
        if not members:
            raise InputError(f"the {split} split is empty; add cases to it or re-split the cohort (--set resplit=true)")
    return chosen


def load_training_cases(
    records: Sequence[CaseRecord],
    inputs: Sequence[str],
    *,
    use_nihss: bool,
    splits: Sequence[str] = ("train", "val"),
) -> dict[str, list[TrainingCase]]:
    """Load and check every case of ``splits`` into memory, before any training starts.

    Returns
    -------
    dict of split name to list of TrainingCase
    """
    return {split: [load_training_case(r, inputs, use_nihss=use_nihss) for r in chosen]
            for split, chosen in records_by_split(records, splits).items()}


def slice_has_lesion(label_slice: np.ndarray) -> bool:
    """True when a label slice holds penumbra or core."""
    return bool(np.isin(label_slice, (labels.PENUMBRA, labels.CORE)).any())


@dataclass(frozen=True)
class Augmentation:
    """The paper's augmentations (90/180/270 rotations, flips) plus a mild intensity jitter.

    ``intensity_jitter`` is the largest relative gain change and additive offset applied per
    branch to the normalised inputs (0.05: +-5 %).
    """

    rotations: bool = True
    flips: bool = True
    intensity_jitter: float = 0.05

    def __call__(self, images, target, seed: int):
        """Augment ``images`` (n_branches, 3, H, W) and ``target`` (H, W) tensors alike."""
        import torch

        generator = torch.Generator().manual_seed(int(seed))
        draws = torch.rand(3, generator=generator)
        if self.rotations:
            turns = int(draws[0] * 4)
            images, target = torch.rot90(images, turns, (-2, -1)), torch.rot90(target, turns, (-2, -1))
        if self.flips:
            if draws[1] < 0.5:
                images, target = images.flip(-2), target.flip(-2)
            if draws[2] < 0.5:
                images, target = images.flip(-1), target.flip(-1)
        if self.intensity_jitter > 0:
            n = images.shape[0]
            gain = 1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * self.intensity_jitter
            offset = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * self.intensity_jitter
            images = images * gain + offset
        return images.contiguous(), target.contiguous()


class SliceDataset:
    """2D axial slices of training cases, encoded for the network.

    Parameters
    ----------
    cases : list of TrainingCase
        In memory or read from disk per item (their ``slices``); the items are the same.
    model_config : ModelConfig
        Its ``inputs`` (branch order), ``encoding`` and ``image_size`` decide the items. Slices
        whose in-plane size differs are padded to a square and resized exactly as the
        predictor does at inference (bilinear images, nearest-neighbour labels).
    augmentation : Augmentation or None
    lesion_slices_only : bool
        Keep only slices with penumbra or core (the reference code's behaviour, which also
        drops every WIS patient). Off by default: lesion-free slices teach the network where
        there is no lesion.
    nonlvo_weight : float
        Factor on the penumbra and core class weights of Non-LVO slices (the paper's 6, see
        :func:`StrokePerfusionSegLib.losses.group_sample_weights`).

    Items are dicts of tensors: ``images`` (n_branches, 3, S, S) float32, ``nihss`` () float32,
    ``target`` (S, S) int64 stored label values, ``weight`` (num_classes,) float32,
    ``class_sets`` (num_classes, num_classes) float32 (the case's label scheme, see
    :func:`StrokePerfusionSegLib.losses.marginal_log_probabilities`), ``index`` () int64.
    """

    def __init__(self, cases, model_config, augmentation=None, lesion_slices_only=False, nonlvo_weight=6.0):
        import torch

        from StrokePerfusionSegLib.losses import group_sample_weights
        # The predictor's own resampling, so training sees what inference feeds the network.
        from StrokePerfusionSegLib.predictor import SliceResampler, padding_values

        self.cases = list(cases)
        self.config = model_config
        self.weights = group_sample_weights([c.record.group for c in self.cases],
                                            num_classes=model_config.num_classes, nonlvo_multiplier=nonlvo_weight)
        self.class_sets = [torch.from_numpy(c.scheme.class_sets()) for c in self.cases]
        padding = padding_values(model_config)
        self.resamplers = [SliceResampler(c.slices.shape[1:], model_config.image_size, padding) for c in self.cases]
        self.augmentation = augmentation
        self.slices = [
            (c, z)
            for c, case in enumerate(self.cases)
            for z, has_lesion in enumerate(case.slices.lesion_slices())
            if not lesion_slices_only or has_lesion
        ]
        if not self.slices:
            raise InputError("no training slice left (every slice lesion-free?); keep lesion-free slices")

    def __len__(self) -> int:
        return len(self.slices)

    def case_of(self, index: int) -> TrainingCase:
        return self.cases[self.slices[index][0]]

    @staticmethod
    def _resize_label(label, resampler):
        import torch
        import torch.nn.functional as F

        if not resampler.resamples:
            return label
        square = label.new_zeros(resampler.side, resampler.side)
        (oy, ox), (ny, nx) = resampler.offset, resampler.shape
        square[oy:oy + ny, ox:ox + nx] = label
        size = (resampler.size, resampler.size)
        return F.interpolate(square[None, None].float(), size=size, mode="nearest")[0, 0].to(torch.int64)

    def __getitem__(self, key):
        import torch

        from StrokePerfusionSegLib.predictor import network_input

        index, augmentation_seed = key if isinstance(key, tuple) else (key, None)
        case_index, z = self.slices[index]
        case, resampler = self.cases[case_index], self.resamplers[case_index]
        chunk, label = case.slices.read(z, self.config.inputs)
        images = network_input(chunk, self.config, resampler, "cpu")[0]
        target = self._resize_label(torch.from_numpy(label.astype(np.int64)), resampler)
        if self.augmentation is not None and augmentation_seed is not None:
            images, target = self.augmentation(images, target, augmentation_seed)
        return {
            "images": images.contiguous(),
            "nihss": torch.tensor(float(case.record.nihss or 0), dtype=torch.float32),
            "target": target.contiguous(),
            "weight": self.weights[case_index],
            "class_sets": self.class_sets[case_index],
            "index": torch.tensor(index, dtype=torch.int64),
        }


def epoch_plan(n_items: int, batch_size: int, *, seed: int, epoch: int, shuffle: bool = True,
               world_size: int = 1, rank: int = 0) -> list[tuple[int, int]]:
    """The ``(item index, augmentation seed)`` keys one process reads in one epoch.

    ``batch_size`` is the global batch; every process reads ``batch_size / world_size`` items of
    each global batch. The order and seeds depend only on ``seed`` and ``epoch``, so one process
    and several data-parallel processes see the same global batches, and a resumed run sees the
    same epochs as an uninterrupted one. The last global batch is completed by wrapping around.
    """
    import torch

    if batch_size % world_size:
        raise InputError(f"batch size {batch_size} is not a multiple of the {world_size} processes; change either")
    generator = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
    order = torch.randperm(n_items, generator=generator) if shuffle else torch.arange(n_items)
    seeds = torch.randint(0, 2**31 - 1, (n_items,), generator=generator)
    padded = -(-n_items // batch_size) * batch_size
    positions = [i % n_items for i in range(padded)]
    per_rank = batch_size // world_size
    keys = []
    for start in range(0, padded, batch_size):
        for position in positions[start + rank * per_rank:start + (rank + 1) * per_rank]:
            keys.append((int(order[position]), int(seeds[position])))
    return keys
