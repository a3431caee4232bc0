"""The training configuration: one JSON-serialisable dataclass per run.

Defaults are the paper's (``docs/training.md``): Adam lr 1e-5, batch 2, up to 1000 epochs per
stage, early stopping patience 25 on the validation loss, gradual fine-tuning
frozen -> later half -> all, focal Tversky loss gamma 4/3, alpha 0.7, beta 0.3, class weights
(0, 0.1, 50, 440), Non-LVO samples weighted x6, rotations and flips.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.labels import NUM_CLASSES
from StrokePerfusionSegLib.losses import NONLVO_LESION_MULTIPLIER, PAPER_CLASS_WEIGHTS

#: Trunk-training stages understood by ``networks.set_trunk_trainable``.
STAGES = ("frozen", "later_half", "all")
#: Gradual fine-tuning (the paper's "G" models).
GRADUAL = ("frozen", "later_half", "all")
LOSSES = ("focal_tversky", "dice_ce")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything that decides a training run (the model's own settings live in ``model``).

    Attributes
    ----------
    model : dict
        :class:`StrokePerfusionSegLib.networks.ModelConfig` as a dict (arch, inputs, use_nihss,
        width, image_size, num_classes, dropout, encoding).
    stages : list of str
        Trunk stages trained in turn, each until early stopping: ``["frozen"]`` (F models),
        ``["all"]`` (unfrozen, U models) or ``["frozen", "later_half", "all"]`` (gradual, G).
    imagenet_weights : str or None
        Passed to ``build_model``: a weights file, ``"auto"`` (use one if found) or None.
    init_from : str or None
        A model bundle (folder or registered id) whose weights start the run instead of a
        random or ImageNet initialisation: fine-tuning a shipped model on new data (say,
        maps from another perfusion software). Its architecture must be ``model``'s.
    lr : float
        Adam learning rate.
    batch_size : int
        Global batch (split over data-parallel processes).
    max_epochs : int
        Epoch limit of each stage.
    patience : int
        Early-stopping patience in epochs (validation loss).
    max_minutes : float or None
        Wall-clock budget of the whole run; training stops cleanly (best checkpoint kept).
    loss : str
        ``focal_tversky`` or ``dice_ce``.
    ftl_alpha, ftl_beta, ftl_gamma : float
        Focal Tversky weights of false negatives, false positives, and focal exponent.
    class_weights : list of float
        Per-class weights (background, brain, penumbra, core).
    nonlvo_weight : float
        Sample weight of Non-LVO slices.
    lesion_slices_only : bool
        Drop lesion-free slices (the reference code's behaviour; off by default).
    rotations, flips : bool
    intensity_jitter : float
        Augmentation settings (see ``strokeperfusionseg_training.data.Augmentation``).
    seed : int
    deterministic : bool
        Deterministic algorithms (slower on GPU).
    precision : str
        ``auto`` (bf16 autocast on GPUs that support it, else fp16 AMP; fp32 on CPU), ``fp32``,
        ``bf16`` (autocast on CPU or GPU) or ``fp16`` (GPU AMP with gradient scaling).
    num_workers : int
        Data-loader worker processes.
    streaming : bool
        Read training slices from disk on demand (a slice cache of uncompressed arrays, built
        once) instead of holding every case in memory: for cohorts larger than memory. Same
        items, same result (``strokeperfusionseg_training.slicecache``).
    slice_cache_dir : str or None
        Where the slice cache lives; None: ``.slice-cache`` in the cohort folder (or beside the
        CSV case list).
    cache_mb : float
        Bound of the in-memory cache of recently read slices when streaming, per process (MiB).
    split_fractions : list of float
        Train/val/test fractions used when the source has no split or ``resplit`` is set.
    resplit : bool
        Ignore the source's split and split by patient, stratified by group, with ``seed``.
    """

    model: dict = field(default_factory=lambda: {"arch": "SF", "inputs": ["cbf", "cbv", "ttp", "tmax"],
                                                 "use_nihss": True})
    stages: list = field(default_factory=lambda: list(GRADUAL))
    imagenet_weights: str | None = "auto"
    init_from: str | None = None
    lr: float = 1e-5
    batch_size: int = 2
    max_epochs: int = 1000
    patience: int = 25
    max_minutes: float | None = None
    loss: str = "focal_tversky"
    ftl_alpha: float = 0.7
    ftl_beta: float = 0.3
    ftl_gamma: float = 4.0 / 3.0
    class_weights: list = field(default_factory=lambda: list(PAPER_CLASS_WEIGHTS))
    nonlvo_weight: float = NONLVO_LESION_MULTIPLIER
    lesion_slices_only: bool = False
    rotations: bool = True
    flips: bool = True
    intensity_jitter: float = 0.05
    seed: int = 0
    deterministic: bool = True
    precision: str = "auto"
    num_workers: int = 0
    streaming: bool = False
    slice_cache_dir: str | None = None
    cache_mb: float = 256.0
    split_fractions: list = field(default_factory=lambda: [0.58, 0.20, 0.22])
    resplit: bool = False

    def __post_init__(self):
        self.stages = list(self.stages)
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown or not self.stages:
            raise InputError(f"unknown training stage(s) {unknown or '(none)'}: use a list of {', '.join(STAGES)}")
        if self.loss not in LOSSES:
            raise InputError(f"unknown loss '{self.loss}': use one of {', '.join(LOSSES)}")
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision '{self.precision}': use one of {', '.join(PRECISIONS)}")
        if self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1 or self.lr <= 0:
            raise InputError("batch_size, max_epochs and patience must be >= 1 and lr > 0")
        if self.ftl_gamma <= 0:
            raise InputError(f"ftl_gamma must be positive (e.g. 4/3), got {self.ftl_gamma}")
        if self.cache_mb < 0:
            raise InputError(f"cache_mb must be >= 0 (MiB of recently read slices kept in memory), got {self.cache_mb}")
        if len(self.class_weights) != 4:
            raise InputError(f"class_weights needs 4 values (background, brain, penumbra, core), got {self.class_weights}")

    def model_config(self):
        """The validated :class:`~StrokePerfusionSegLib.networks.ModelConfig`."""
        from StrokePerfusionSegLib.networks import ModelConfig

        config = ModelConfig.from_dict(dict(self.model))
        if config.num_classes != NUM_CLASSES:
            raise InputError(f"training fits {NUM_CLASSES}-class models (labels 0..3); set model.num_classes to 4")
        return config

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(document) - known)
        if unknown:
            raise InputError(f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**document)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "TrainConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(f"cannot read training config {path}: {error}") from None


def apply_overrides(document: dict, overrides: dict) -> dict:
    """A copy of ``document`` with dotted keys set (``{"model.width": 0.25, "lr": 1e-4}``)."""
    result = json.loads(json.dumps(document))
    for dotted, value in overrides.items():
        target = result
        *parents, leaf = dotted.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = value
    return result


def parse_override(text: str) -> tuple[str, object]:
    """``key=value`` from the command line; the value is read as JSON when it parses."""
    if "=" not in text:
        raise InputError(f"override '{text}' must look like key=value (e.g. model.width=0.25)")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw
