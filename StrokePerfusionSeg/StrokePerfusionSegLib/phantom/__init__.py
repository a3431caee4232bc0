"""Digital CT-perfusion phantom: real MNI152 anatomy, gamma-variate bolus, lesions with known truth.

:func:`generate_case` makes one patient (4D CTP in HU, maps, colour-coded copies, truth label,
NIHSS); :func:`simulate` also returns the truth parameter maps; :func:`generate_cohort` writes
a cohort of case folders with ``cohort.json``. ``docs/phantom.md`` describes the model.
"""

from .config import MAP_SOURCES, PAPER_GROUP_COUNTS, PAPER_SPLIT, PhantomConfig, parse_groups, parse_perfusion_methods
from .cohort import assign_groups, case_seed, generate_cohort, patient_config, split_patients
from .generator import TRUTH_UNITS, PhantomStudy, generate_case, load_truth, save_study, simulate

__all__ = [
    "MAP_SOURCES",
    "PAPER_GROUP_COUNTS",
    "PAPER_SPLIT",
    "PhantomConfig",
    "PhantomStudy",
    "TRUTH_UNITS",
    "assign_groups",
    "case_seed",
    "generate_case",
    "generate_cohort",
    "load_truth",
    "parse_groups",
    "parse_perfusion_methods",
    "patient_config",
    "save_study",
    "simulate",
    "split_patients",
]
