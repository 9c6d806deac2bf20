"""Datasets known to tidewater, discovered: every module of this package that declares a
`DATASET`, and every `tidewater.datasets` entry point of an installed package (a dataset
kept in its own repository). Adding a dataset is adding a module; nothing is registered
by hand."""

from __future__ import annotations

import functools
import importlib
import pkgutil
from importlib.metadata import entry_points

from datasets.base import (
    Dataset,
    DatasetModel,
    FeatureRoles,
    LandingFormat,
    labels_of,
    record_line,
    row_id,
    row_id_numbers,
    row_ids,
)

ENTRY_POINT_GROUP = "tidewater.datasets"


@functools.cache
def _registry() -> dict[str, Dataset]:
    found: dict[str, tuple[Dataset, str]] = {}
    candidates = [
        (f"{__name__}.{module.name}", lambda name=module.name: _declared(name))
        for module in pkgutil.iter_modules(__path__)
    ] + [(f"entry point {ep.name}", ep.load) for ep in entry_points(group=ENTRY_POINT_GROUP)]
    for origin, load in candidates:
        dataset = load()
        if dataset is None:
            continue
        if not isinstance(dataset, Dataset):
            raise TypeError(f"{origin} does not give a datasets.Dataset: {dataset!r}")
        if dataset.name in found:
            raise ValueError(
                f"dataset {dataset.name!r} is declared twice: {found[dataset.name][1]}, {origin}"
            )
        found[dataset.name] = (dataset, origin)
    return {name: dataset for name, (dataset, _) in found.items()}


def _declared(module: str) -> Dataset | None:
    return getattr(importlib.import_module(f"{__name__}.{module}"), "DATASET", None)


def dataset_names() -> list[str]:
    """The names of every discovered dataset."""
    return sorted(_registry())


def get_dataset(name: str) -> Dataset:
    """The dataset called `name`; a clear error for any other name."""
    registry = _registry()
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise KeyError(f"unknown dataset {name!r}; known datasets: {known}") from None


__all__ = [
    "Dataset",
    "DatasetModel",
    "FeatureRoles",
    "LandingFormat",
    "dataset_names",
    "get_dataset",
    "record_line",
    "row_id",
    "labels_of",
    "row_id_numbers",
    "row_ids",
]
