"""Model fitting, experiments, evaluation reports and bundle export (``strokeperfusionseg-train``).

The pieces, one concern per module:

* :mod:`strokeperfusionseg_training.config` - :class:`TrainConfig`, the JSON-serialisable settings of one run;
* :mod:`strokeperfusionseg_training.data` - case lists (cohort folders, CSV), patient-level splits, slice datasets,
  augmentation;
* :mod:`strokeperfusionseg_training.checkpoints` - early stopping, last/best checkpoints;
* :mod:`strokeperfusionseg_training.trainer` - :func:`fit` (stages, resume, logs, DDP);
* :mod:`strokeperfusionseg_training.experiments` - the paper's experiments as config grids;
* :mod:`strokeperfusionseg_training.names` - file-system-safe names of runs and methods;
* :mod:`strokeperfusionseg_training.evaluate` - Tables 1-3 style reports beside the thresholding baseline;
* :mod:`strokeperfusionseg_training.export` - a run becomes a model bundle.
"""

from .config import TrainConfig

__all__ = ["TrainConfig"]
