"""Datasets known to tidewater: one small module each, registered here by name."""

from __future__ import annotations

from datasets.base import Dataset, DatasetModel, FeatureRoles


def get_dataset(name: str) -> Dataset:
    """The registered dataset called `name`; a clear error for any other name."""
    from datasets import adult

    registry = {adult.DATASET.name: adult.DATASET}
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise KeyError(f"unknown dataset {name!r}; known datasets: {known}") from None


__all__ = ["Dataset", "DatasetModel", "FeatureRoles", "get_dataset"]
