"""Datasets known to tidewater: one small module each, registered here by name."""

from __future__ import annotations

from datasets.base import Dataset, DatasetModel, FeatureRoles, LandingFormat


def _registry() -> dict[str, Dataset]:
    from datasets import adult

    return {adult.DATASET.name: adult.DATASET}


def dataset_names() -> list[str]:
    """The names of every registered dataset."""
    return sorted(_registry())


def get_dataset(name: str) -> Dataset:
    """The registered dataset called `name`; a clear error for any other name."""
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
]
