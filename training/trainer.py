"""Fit a segmentation network: stages, early stopping, checkpoints, resume, logs, DDP.

:func:`fit` trains one run into a run folder::

    run_dir/
      config.json        the TrainConfig (a resumed run must match it)
      split.json         case ids per split actually used
      metrics.csv        one row per epoch: stage, epoch, train/val loss, lr, seconds, best
      tensorboard/       the same curves for TensorBoard
      checkpoints/       last.pt (resume) and best.pt (lowest validation loss)
      summary.json       the training summary that export.py copies into the bundle

The loss of a batch is the mean of the per-slice losses, so a global batch gives the same
gradient whether one process reads it or several data-parallel processes share it. Under
``torchrun`` (``WORLD_SIZE`` > 1) gradients are averaged with DDP over gloo (CPU) or NCCL (GPU);
rank 0 writes every file.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from StrokePerfusionSegLib.casefolder import write_json
from StrokePerfusionSegLib.cpufeatures import describe_bf16, native_bf16_flags
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.networks import to_channels_last

from . import data
from .checkpoints import EarlyStopping, RunCheckpoints
from .config import TrainConfig

log = logging.getLogger(__name__)

#: Config settings a resumed run may change (they do not change what is learned).
RESUMABLE_CHANGES = ("max_minutes", "num_workers", "max_epochs", "streaming", "slice_cache_dir", "cache_mb")
METRICS_FIELDS = ("stage", "epoch", "train_loss", "val_loss", "lr", "seconds", "best")


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a data-parallel run (``torchrun`` environment)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "Distributed":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


def select_device(device: str, dist: Distributed) -> torch.device:
    """``auto``: the process's GPU when CUDA is available, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
        return torch.device("cuda", dist.local_rank)
    return torch.device(device)


def resolved_precision(precision: str, device: torch.device) -> str:
    """``auto`` made concrete: on CUDA bf16 AMP (fp16 where bf16 is unsupported), on a CPU bf16
    where the CPU has native bf16 (AVX512-BF16/AMX flags) and fp32 where it would be emulated."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if native_bf16_flags() else "fp32"


#: torch CPU capabilities (``torch.backends.cpu.get_cpu_capability()``) where oneDNN runs 2D
#: convolutions fastest in channels-last, its vectorised NHWC kernels, in fp32 as in bf16 (narrow
#: layers most: measured in docs/training.md).
CHANNELS_LAST_CPU_CAPABILITIES = ("AVX2", "AVX512")


def channels_last_on_cpu() -> bool:
    """Whether this CPU trains 2D models in channels-last: oneDNN present and the running CPU
    AVX2 or AVX512 (the capability torch dispatches its own kernels by)."""
    return torch.backends.mkldnn.is_available() and \
        torch.backends.cpu.get_cpu_capability() in CHANNELS_LAST_CPU_CAPABILITIES


def in_training_layout(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in channels-last (2D models) where that is the native fast path: on CUDA, and on
    CPUs where :func:`channels_last_on_cpu` (any precision); contiguous elsewhere."""
    if device.type == "cuda":
        return to_channels_last(model)
    capability = torch.backends.cpu.get_cpu_capability()
    if channels_last_on_cpu():
        log.info("training layout on the CPU: channels-last (oneDNN, %s)", capability)
        return to_channels_last(model)
    log.info("training layout on the CPU: contiguous (CPU capability %s, oneDNN %s)", capability,
             "present" if torch.backends.mkldnn.is_available() else "absent")
    return model


def autocast_context(precision: str, device: torch.device):
    """The autocast context and whether fp16 gradient scaling is needed."""
    if precision == "auto":
        precision = resolved_precision(precision, device)
        if device.type == "cpu":
            log.info("precision auto on the CPU: %s (%s)", precision, describe_bf16())
    if precision == "fp32":
        return contextlib.nullcontext(), False
    if precision == "fp16" and device.type != "cuda":
        raise InputError("fp16 mixed precision needs a GPU; use bf16 or fp32 on the CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype), precision == "fp16"


def build_loss(config: TrainConfig):
    """The configured loss module (logits, targets (B, H, W), sample_weights (B,))."""
    from StrokePerfusionSegLib import losses

    if config.loss == "focal_tversky":
        return losses.FocalTverskyLoss(alpha=config.ftl_alpha, beta=config.ftl_beta, gamma=config.ftl_gamma,
                                       class_weights=tuple(config.class_weights))
    return losses.DiceCELoss()


def build_optimizer(parameters, config: TrainConfig) -> torch.optim.Adam:
    """Adam over ``parameters`` at the config's learning rate, one multi-tensor (``foreach``)
    update of all of them: on a CPU torch otherwise updates one tensor at a time (2.4x the time
    for the default model's 156 tensors), with identical results."""
    return torch.optim.Adam(parameters, lr=config.lr, foreach=True)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler=None) -> None:
    """Back-propagate ``loss`` and update, through the fp16 gradient ``scaler`` when given."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def per_slice_loss(loss_fn, logits, target, weight, class_sets=None) -> torch.Tensor:
    """Losses of each slice of a batch, shape (B,): the batch loss is their mean.

    ``class_sets`` (B, V, C), from the cases' label schemes: when a slice's labels are partial,
    the loss compares the summed probabilities of the classes each stored value allows
    (:func:`~StrokePerfusionSegLib.losses.marginal_log_probabilities`), never a class the
    dataset does not label. Fully labelled batches skip the step (identical result).
    """
    if class_sets is not None:
        identity = torch.eye(class_sets.shape[-1], dtype=class_sets.dtype, device=class_sets.device)
        if not bool((class_sets == identity).all()):
            from StrokePerfusionSegLib.losses import marginal_log_probabilities

            logits = marginal_log_probabilities(logits, class_sets)
    # split, not indexing: the backward of B slices would be B zero-filled tensors of the whole
    # batch's shape, summed; split's is one concatenation (the same values).
    return torch.stack([
        loss_fn(one_logits.float(), one_target, sample_weights=one_weight)
        for one_logits, one_target, one_weight in zip(logits.split(1), target.split(1), weight.split(1))
    ])


def seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def bundle_weights(path_or_id: str, model_config) -> dict:
    """State dict of a verified model bundle whose architecture is ``model_config`` (safetensors, no pickle)."""
    from StrokePerfusionSegLib.bundle import load_bundle

    bundle = load_bundle(path_or_id)
    if bundle.config != model_config:
        raise InputError(
            f"init_from {path_or_id}: its architecture {bundle.config.to_dict()} differs from the run's "
            f"{model_config.to_dict()}: start from a bundle of the same model, or set model to its architecture"
        )
    return bundle.model.state_dict()


def prepare_records(config: TrainConfig, source) -> list[data.CaseRecord]:
    """The source's case records with a split (the source's own unless ``resplit``)."""
    records = data.load_records(source)
    if config.resplit or any(r.split is None for r in records):
        records = data.stratified_split(records, config.split_fractions, seed=config.seed)
    return records


def _check_resume_config(run_dir: Path, config: TrainConfig) -> None:
    stored = json.loads((run_dir / "config.json").read_text())
    current = config.to_dict()
    changed = sorted(k for k in set(stored) | set(current)
                     if stored.get(k) != current.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        raise InputError(
            f"{run_dir} holds a run with other settings ({', '.join(changed)}); "
            "resume it with its own config or train into a new folder"
        )


class _Logs:
    """CSV (always) and TensorBoard (when installed) epoch logs, written by rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.path = run_dir / "metrics.csv"
        self.writer = None
        if not enabled:
            return
        if not self.path.exists():
            with open(self.path, "w", newline="") as stream:
                csv.writer(stream).writerow(METRICS_FIELDS)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            log.info("tensorboard is not installed: logging to metrics.csv only")

    def epoch(self, row: dict, step: int) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as stream:
            csv.writer(stream).writerow([row[k] for k in METRICS_FIELDS])
        if self.writer is not None:
            for key in ("train_loss", "val_loss", "lr"):
                self.writer.add_scalar(f"{key}", row[key], step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """Rows of a run's ``metrics.csv`` with numbers parsed."""
    with open(Path(run_dir) / "metrics.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    for row in rows:
        for key in ("train_loss", "val_loss", "lr", "seconds"):
            row[key] = float(row[key])
        row["epoch"] = int(row["epoch"])
        row["best"] = row["best"] == "True"
    return rows


class _Fitter:
    """One run's state; :func:`fit` is the public entry."""

    def __init__(self, config, source, run_dir, *, device, resume, progress, dist):
        self.config, self.run_dir, self.dist = config, Path(run_dir), dist
        self.progress = progress and dist.is_main
        self.model_config = config.model_config()
        records = prepare_records(config, source)
        self.records = records
        loaded = self._load_cases(source)
        augmentation = data.Augmentation(config.rotations, config.flips, config.intensity_jitter)
        self.train_set = data.SliceDataset(loaded["train"], self.model_config, augmentation=augmentation,
                                           lesion_slices_only=config.lesion_slices_only,
                                           nonlvo_weight=config.nonlvo_weight)
        self.val_set = data.SliceDataset(loaded["val"], self.model_config, nonlvo_weight=config.nonlvo_weight)
        self.device = select_device(device, dist)
        self.checkpoints = RunCheckpoints(self.run_dir)
        self.resume_state = None
        if self.checkpoints.has_last() and resume:
            _check_resume_config(self.run_dir, config)
            self.resume_state = self.checkpoints.load_last()
        elif self.checkpoints.has_last() or self.checkpoints.best.is_file():
            raise InputError(f"{self.run_dir} already holds a run; resume it or train into a new folder")

    # -- set-up -------------------------------------------------------------------------------
    def _load_cases(self, source) -> dict:
        """Train and val cases, checked: in memory, or from the slice cache when streaming."""
        inputs, use_nihss = self.model_config.inputs, self.model_config.use_nihss
        if not self.config.streaming:
            return data.load_training_cases(self.records, inputs, use_nihss=use_nihss)
        from .slicecache import default_cache_dir, load_streamed_cases

        cache_dir = self.config.slice_cache_dir or default_cache_dir(source)
        return load_streamed_cases(self.records, inputs, cache_dir, use_nihss=use_nihss, cache_mb=self.config.cache_mb,
                                   rank=self.dist.rank, world_size=self.dist.world_size)

    def _write_run_files(self) -> None:
        if not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.config.to_dict(), self.run_dir / "config.json")
        write_json({split: [r.case_id for r in self.records if r.split == split] for split in ("train", "val", "test")}
                   | {"groups": {r.case_id: r.group for r in self.records}}, self.run_dir / "split.json")

    def _loader(self, dataset, keys, batch_size):
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=keys,
                                           num_workers=self.config.num_workers,
                                           pin_memory=self.device.type == "cuda",
                                           persistent_workers=False)

    # -- epochs -------------------------------------------------------------------------------
    def _forward_losses(self, model, batch):
        images = batch["images"].to(self.device, non_blocking=True)
        nihss = batch["nihss"].to(self.device) if self.model_config.use_nihss else None
        with self.autocast:
            logits = model(images, nihss)
        return per_slice_loss(self.loss_fn, logits, batch["target"].to(self.device), batch["weight"].to(self.device),
                              batch["class_sets"].to(self.device))

    def _train_epoch(self, model, optimizer, scaler, stage_index, epoch, deadline) -> float | None:
        model.train()
        torch.manual_seed(self.config.seed * 1009 + stage_index * 100_003 + epoch)
        keys = data.epoch_plan(len(self.train_set), self.config.batch_size, seed=self.config.seed + 7919 * stage_index,
                               epoch=epoch, world_size=self.dist.world_size, rank=self.dist.rank)
        per_rank = self.config.batch_size // self.dist.world_size
        batches = self._loader(self.train_set, keys, per_rank)
        if self.progress:
            from tqdm import tqdm
            batches = tqdm(batches, desc=f"{self.stage} epoch {epoch}", leave=False, unit="batch")
        total, count = 0.0, 0
        for batch in batches:
            if self.may_abort_epoch and deadline is not None and time.monotonic() > deadline:
                return None
            losses = self._forward_losses(model, batch)
            loss = losses.mean()
            optimizer_step(loss, optimizer, scaler)
            total += float(losses.detach().sum())
            count += losses.shape[0]
        return self._reduce_mean(total, count)

    @torch.no_grad()
    def _validate(self, model) -> float:
        model.eval()
        indices = list(range(self.dist.rank, len(self.val_set), self.dist.world_size))
        total, count = 0.0, 0
        for batch in self._loader(self.val_set, indices, max(1, self.config.batch_size // self.dist.world_size)):
            losses = self._forward_losses(model, batch)
            total += float(losses.sum())
            count += losses.shape[0]
        return self._reduce_mean(total, count)

    def _reduce_mean(self, total: float, count: int) -> float:
        if self.dist.world_size > 1:
            import torch.distributed as tdist
            sums = torch.tensor([total, float(count)], dtype=torch.float64)
            tdist.all_reduce(sums)
            total, count = float(sums[0]), int(sums[1])
        return total / max(count, 1)

    def _agree(self, flag: bool) -> bool:
        """Rank 0's decision, shared with every process."""
        if self.dist.world_size == 1:
            return flag
        import torch.distributed as tdist
        value = torch.tensor([int(flag)])
        tdist.broadcast(value, 0)
        return bool(value.item())

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> dict:
        from StrokePerfusionSegLib.networks import build_model

        config, dist = self.config, self.dist
        started = time.monotonic()
        seed_everything(config.seed, config.deterministic)
        self.autocast, needs_scaler = autocast_context(config.precision, self.device)
        self.loss_fn = build_loss(config)
        model = build_model(self.model_config, imagenet_weights=config.imagenet_weights).to(self.device)
        in_training_layout(model, self.device)
        if self.resume_state is None:
            if config.init_from:
                model.load_state_dict(bundle_weights(config.init_from, self.model_config))
            self._write_run_files()
        logs = _Logs(self.run_dir, dist.is_main)
        stage_index, epoch, stopper, epochs_run, elapsed_before = self._resumed_position(model)
        budget_s = None if config.max_minutes is None else config.max_minutes * 60.0 - elapsed_before
        deadline = None if budget_s is None else started + budget_s
        stop_reason = "max_epochs"
        global_best = self._global_best()
        while stage_index < len(config.stages):
            trained, optimizer, scaler = self._start_stage(model, stage_index, needs_scaler)
            stop_reason = "max_epochs"
            # Checked first: a run resumed right after its stage stopped early moves on at once.
            while epoch < config.max_epochs and not stopper.should_stop:
                epoch_start = time.monotonic()
                # A run always completes one epoch; after that a single process may stop mid-epoch.
                self.may_abort_epoch = dist.world_size == 1 and sum(epochs_run.values()) > 0
                train_loss = self._train_epoch(trained, optimizer, scaler, stage_index, epoch, deadline)
                if train_loss is None:
                    stop_reason = "time_limit"
                    break
                val_loss = self._validate(model)
                if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                    raise InputError(
                        f"training diverged in stage {self.stage}, epoch {epoch} (loss {train_loss} / validation "
                        f"{val_loss}): lower the learning rate (now {config.lr}); the best checkpoint so far is kept"
                    )
                stopper.step(val_loss, epoch)
                is_best = val_loss < global_best
                epochs_run[self.stage] = epoch + 1
                if dist.is_main:
                    if is_best:
                        self.checkpoints.save_best(model.state_dict(), stage=self.stage, epoch=epoch, val_loss=val_loss)
                    self.checkpoints.save_last({
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "stage_index": stage_index, "epoch": epoch, "early_stopping": stopper.state_dict(),
                        "epochs_run": epochs_run, "elapsed_s": elapsed_before + time.monotonic() - started,
                    })
                    logs.epoch({"stage": self.stage, "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                                "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.monotonic() - epoch_start, 3),
                                "best": is_best}, step=sum(epochs_run.values()))
                global_best = min(global_best, val_loss)
                epoch += 1
                if self._agree(deadline is not None and time.monotonic() > deadline):
                    stop_reason = "time_limit"
                    break
            if stop_reason == "time_limit":
                break
            if stopper.should_stop:
                stop_reason = "early_stopping"
            # The next stage starts from this stage's best weights, as in the paper.
            self._barrier()
            model.load_state_dict(self.checkpoints.load_best()["model"])
            stage_index, epoch, stopper = stage_index + 1, 0, EarlyStopping(config.patience)
        logs.close()
        self._barrier()
        return self._summary(stop_reason, epochs_run, elapsed_before + time.monotonic() - started)

    def _resumed_position(self, model) -> tuple:
        """Where the run starts: stage index, epoch, early stopping, epochs per stage, seconds used.

        A resumed run also gets its model weights back here.
        """
        stopper = EarlyStopping(self.config.patience)
        state = self.resume_state
        if state is None:
            return 0, 0, stopper, {}, 0.0
        model.load_state_dict(state["model"])
        stopper.load_state_dict(state["early_stopping"])
        return (int(state["stage_index"]), int(state["epoch"]) + 1, stopper, dict(state["epochs_run"]),
                float(state["elapsed_s"]))

    def _start_stage(self, model, stage_index: int, needs_scaler: bool):
        """Set the stage's trainable trunk blocks; its optimiser (restored when resuming in this
        stage), gradient scaler, and the model to train (DDP-wrapped over several processes)."""
        from StrokePerfusionSegLib.networks import set_trunk_trainable

        self.stage = self.config.stages[stage_index]
        set_trunk_trainable(model, self.stage)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = build_optimizer(trainable, self.config)
        scaler = torch.amp.GradScaler("cuda") if needs_scaler else None
        if self.resume_state is not None and int(self.resume_state["stage_index"]) == stage_index:
            optimizer.load_state_dict(self.resume_state["optimizer"])
        self.resume_state = None
        trained = model
        if self.dist.world_size > 1:
            trained = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return trained, optimizer, scaler

    def _global_best(self) -> float:
        return float(self.checkpoints.load_best()["val_loss"]) if self.checkpoints.best.is_file() else float("inf")

    def _barrier(self) -> None:
        if self.dist.world_size > 1:
            import torch.distributed as tdist
            tdist.barrier()

    def _summary(self, stop_reason, epochs_run, wall_s) -> dict:
        best = self.checkpoints.load_best()
        summary = {
            "stop_reason": stop_reason,
            "best_val_loss": float(best["val_loss"]),
            "best_stage": best["stage"],
            "best_epoch": int(best["epoch"]),
            "epochs_run": epochs_run,
            "wall_s": round(wall_s, 1),
            "device": str(self.device) + (f" x{self.dist.world_size}" if self.dist.world_size > 1 else ""),
            "torch": torch.__version__,
            "n_train_slices": len(self.train_set),
            "n_val_slices": len(self.val_set),
            "cases": {split: sum(r.split == split for r in self.records) for split in ("train", "val", "test")},
            "config": self.config.to_dict(),
        }
        if self.dist.is_main:
            write_json(summary, self.run_dir / "summary.json")
        return summary


def fit(config: TrainConfig, source, run_dir, *, device: str = "auto", resume: bool = True,
        progress: bool = True) -> dict:
    """Train a model and keep its best checkpoint.

    Parameters
    ----------
    config : TrainConfig
    source : path
        Cohort folder or CSV case list (see :mod:`strokeperfusionseg_training.data`).
    run_dir : path
        Run folder; an existing run there is resumed from ``checkpoints/last.pt`` (its config
        must match) unless ``resume`` is False, which then refuses to overwrite it.
    device : {"auto", "cpu", "cuda"}
    progress : bool
        tqdm progress bars (rank 0 only).

    Returns
    -------
    dict
        The training summary (also written to ``run_dir/summary.json``).

    Every case is read and checked before the first epoch; bad input raises
    :class:`~StrokePerfusionSegLib.errors.InputError` naming the case and the fix.
    Under ``torchrun`` the process group is set up here (gloo on CPU, NCCL on GPU).
    """
    dist = Distributed.from_environment()
    initialised = False
    if dist.world_size > 1:
        import torch.distributed as tdist
        if not tdist.is_initialized():
            use_cuda = select_device(device, dist).type == "cuda"
            if use_cuda:
                torch.cuda.set_device(dist.local_rank)
            tdist.init_process_group("nccl" if use_cuda else "gloo")
            initialised = True
    try:
        return _Fitter(config, source, run_dir, device=device, resume=resume, progress=progress, dist=dist).run()
    finally:
        if initialised:
            import torch.distributed as tdist
            tdist.destroy_process_group()


def load_run_model(run_dir: str | os.PathLike, *, device: str = "cpu"):
    """The best model of a run folder and its :class:`TrainConfig`, in eval mode."""
    from StrokePerfusionSegLib.networks import build_model

    run_dir = Path(run_dir)
    checkpoints = RunCheckpoints(run_dir)
    if not checkpoints.best.is_file():
        raise InputError(f"{run_dir} holds no trained model (checkpoints/best.pt); train it first")
    config = TrainConfig.from_json(run_dir / "config.json")
    model = build_model(config.model_config(), imagenet_weights=None)
    model.load_state_dict(checkpoints.load_best()["model"])
    return model.to(device).eval(), config
