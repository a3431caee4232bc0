"""Early stopping and the run folder's checkpoints (last for resuming, best for shipping).

Checkpoints are ``torch.save`` files of plain state dicts, tensors and numbers only, written to
a temporary file and renamed into place, and read back with ``weights_only=True`` (never
unpickling code). ``last.pt`` holds everything needed to resume (model, optimiser, stage, epoch,
early-stopping state); ``best.pt`` holds the weights with the lowest validation loss so far and
is never overwritten by a worse epoch, so an interrupted run keeps its best model.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from StrokePerfusionSegLib.atomic import write_file_atomically


@dataclass
class EarlyStopping:
    """Stop when the monitored loss has not improved for ``patience`` consecutive epochs.

    An epoch improves when its loss is lower than the best so far by more than ``min_delta``.
    """

    patience: int = 25
    min_delta: float = 0.0
    best: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0

    def step(self, loss: float, epoch: int) -> bool:
        """Record one epoch's loss; True when it is the new best."""
        if loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = float(loss), int(epoch), 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])


def save_atomic(state: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename."""
    return write_file_atomically(path, lambda temporary: torch.save(state, temporary))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_atomic` without unpickling code."""
    return torch.load(path, map_location="cpu", weights_only=True)


class RunCheckpoints:
    """The ``checkpoints/`` folder of a run: ``last.pt`` and ``best.pt``."""

    def __init__(self, run_dir: str | os.PathLike):
        self.folder = Path(run_dir) / "checkpoints"
        self.last = self.folder / "last.pt"
        self.best = self.folder / "best.pt"

    def has_last(self) -> bool:
        return self.last.is_file()

    def save_last(self, state: dict) -> None:
        save_atomic(state, self.last)

    def save_best(self, model_state: dict, *, stage: str, epoch: int, val_loss: float) -> None:
        save_atomic({"model": model_state, "stage": stage, "epoch": epoch, "val_loss": val_loss}, self.best)

    def load_last(self) -> dict:
        return load_checkpoint(self.last)

    def load_best(self) -> dict:
        return load_checkpoint(self.best)
