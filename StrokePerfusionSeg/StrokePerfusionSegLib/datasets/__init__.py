"""Readers of public CT perfusion datasets: one module per dataset, one conversion for all.

Public names::

    DATASETS                      name -> reader module (INFO, find_cases, read_case)
    dataset_reader(name)          the reader module, or an InputError listing the names
    convert_dataset(reader, src, out, ...) -> Path    a cohort folder of case folders (and map_agreement.md)
    build_case(source, info, ...) -> Case             one patient completed from its raw CTP

See ``docs/datasets.md`` for the layouts, what each dataset's labels mean and the commands.
"""

from . import isles2018, isles2024, unitobrain
from .convert import AGREEMENT_FILE, DatasetInfo, SourceCase, build_case, convert_dataset

DATASETS = {module.INFO.name: module for module in (isles2018, isles2024, unitobrain)}


def dataset_reader(name: str):
    """The reader module of dataset ``name``."""
    from ..errors import InputError

    if name not in DATASETS:
        raise InputError(f"unknown dataset '{name}': use one of {', '.join(DATASETS)}")
    return DATASETS[name]


__all__ = ["AGREEMENT_FILE", "DATASETS", "DatasetInfo", "SourceCase", "build_case", "convert_dataset", "dataset_reader"]
