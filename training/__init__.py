"""Model fitting, experiments, evaluation reports and bundle export (``strokeperfusionseg-train``).

The pieces, one concern per module:

* :mod:`training.config` - :class:`TrainConfig`, the JSON-serialisable settings of one run;
* :mod:`training.data` - case lists (cohort folders, CSV), patient-level splits, slice datasets,
  augmentation;
* :mod:`training.checkpoints` - early stopping, last/best checkpoints;
* :mod:`training.trainer` - :func:`fit` (stages, resume, logs, DDP);
* :mod:`training.experiments` - the paper's experiments as config grids;
* :mod:`training.names` - file-system-safe names of runs and methods;
* :mod:`training.evaluate` - Tables 1-3 style reports beside the thresholding baseline;
* :mod:`training.export` - a run becomes a model bundle.
"""

from .config import TrainConfig

__all__ = ["TrainConfig"]
