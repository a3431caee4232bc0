"""Which perfusion analysis a front end runs: the method names and the one default.

Kept apart from :mod:`.perfusion` (which needs scipy) so that the command line and the Slicer
module can offer the choice before the analysis is imported. docs/perfusion.md compares the
methods and says why the default is the default.
"""

import math

from .errors import InputError

#: Block-circulant SVD (fixed truncation), oscillation-limited SVD (Wu et al. 2003), Tikhonov
#: with GCV, and the model fit of :mod:`.perfusion.modelfit`.
METHODS = ("bcsvd", "osvd", "tikhonov", "model")
#: The method of every front end unless told otherwise: the ``perfusion`` and ``segment``
#: commands, :func:`.studyio.load_study`, the dataset converters, the phantom's computed maps
#: and the Slicer module.
DEFAULT_METHOD = "model"


def check_factors(**factors) -> None:
    """InputError for a haematocrit ratio ``kh`` or tissue density ``rho`` (g/ml) that is not a positive number."""
    for name, value in factors.items():
        try:
            positive = math.isfinite(float(value)) and float(value) > 0
        except (TypeError, ValueError):
            positive = False
        if not positive:
            raise InputError(f"{name} must be a positive number, got {value}: e.g. --kh 0.73 --rho 1.04")
